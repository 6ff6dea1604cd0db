"""Serving the HTTP API from a background thread of the daemon.

The daemon's main thread owns the sweep, the dispatcher and the signals, so uvicorn runs in a
thread of its own and never installs signal handlers: :meth:`HttpServer.stop` is how it ends.
The socket is bound in :meth:`HttpServer.start`, in the caller's thread, so a port already in
use is a clear :class:`HttpServerError` at once (uvicorn alone would log it and call
``sys.exit`` inside its thread), and port 0 gives a real port to tests.

Also here: the ``http`` section of ``postflow.yaml`` (:func:`http_options`), with the
``HOST:PORT`` and size (``5MB``) notations it uses.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from postflow.config import Settings

log = logging.getLogger("postflow.http")

DEFAULT_LISTEN = "127.0.0.1:8025"
DEFAULT_MAX_BODY = "5MB"
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_SIZE = re.compile(r"\s*([0-9]+)\s*([KMG]?B)\s*", re.IGNORECASE)
_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]*)):(?P<port>[0-9]{1,5})")


class HttpServerError(Exception):
    """The server could not start (address in use, bad host), said in one line."""


def parse_size(text: str) -> int:
    """``"5MB"`` -> 5242880. Units ``B``, ``KB``, ``MB``, ``GB`` (any case) are powers of
    1024: ``1KB`` is 1024 bytes. Raises ValueError with a message for a person."""
    match = _SIZE.fullmatch(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"bad size {text!r}: write it like 512KB or 5MB (1KB = 1024 bytes)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def format_size(size: int) -> str:
    """The largest unit that writes ``size`` exactly: 5242880 -> ``5MB``, 1000 -> ``1000B``."""
    for unit in ("GB", "MB", "KB"):
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size}B"


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8025"`` -> ("127.0.0.1", 8025); ``"[::1]:8025"`` -> ("::1", 8025);
    ``":8025"`` (no host) listens on every IPv4 interface, "0.0.0.0"."""
    match = _LISTEN.fullmatch(text.strip()) if isinstance(text, str) else None
    port = int(match.group("port")) if match else -1
    if match is None or port > 65535:
        raise ValueError(
            f"bad listen address {text!r}: use HOST:PORT with a port 0-65535, "
            "like 127.0.0.1:8025 or [::1]:8025"
        )
    host = match.group("v6") or match.group("host") or "0.0.0.0"
    return host, port


def http_options(settings: Settings) -> dict[str, Any]:
    """``{"host", "port", "max_body", "api_token", "public_url"}`` from the ``http`` section
    (defaults: 127.0.0.1:8025, 5MB) and ``POSTFLOW_API_TOKEN`` (empty counts as unset).
    Raises ValueError for a bad ``listen`` or ``max_body``."""
    raw = settings.raw.get("http") or {}
    host, port = parse_listen(str(raw.get("listen", DEFAULT_LISTEN)))
    return {
        "listen": f"{host}:{port}",
        "host": host,
        "port": port,
        "max_body": parse_size(str(raw.get("max_body", DEFAULT_MAX_BODY))),
        "public_url": raw.get("public_url"),
        "api_token": os.environ.get("POSTFLOW_API_TOKEN") or None,
    }


class _QuietServer(uvicorn.Server):
    """A uvicorn server that never touches signal handlers (the daemon owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


class HttpServer:
    """An ASGI app served by uvicorn in a daemon thread. ``start()`` returns once the socket
    accepts connections; ``stop()`` finishes the requests in flight and joins the thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._failure: BaseException | None = None
        self._bound_port = port

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.requested_port}"

    def start(self, timeout: float = 10.0) -> None:
        """Bind, then serve in a background thread. Raises :class:`HttpServerError`."""
        if self._thread is not None:
            raise HttpServerError("the HTTP server is already started")
        sock = self._bind()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,  # keep the daemon's logging configuration as it is
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        server = _QuietServer(config)
        self._server, self._socket = server, sock
        thread = threading.Thread(target=self._run, name="postflow-http", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and thread.is_alive():
            if time.monotonic() > deadline:
                self.stop()
                raise HttpServerError(f"the HTTP server on {self.address} did not start")
            time.sleep(0.005)
        if not server.started:
            self._thread = None
            raise HttpServerError(f"cannot serve on {self.address}: {self._failure!r}")

    def _bind(self) -> socket.socket:
        """The listening socket (as asyncio would make it: SO_REUSEADDR, IPv6 only for an
        IPv6 address), or :class:`HttpServerError` naming the address and the reason."""
        try:
            infos = socket.getaddrinfo(
                self.host, self.requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, addr = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise HttpServerError(f"cannot listen on {self.address}: {_reason(exc)}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(2048)
            self._bound_port = int(sock.getsockname()[1])
        except OSError as exc:
            sock.close()
            raise HttpServerError(f"cannot listen on {self.address}: {_reason(exc)}") from None
        return sock

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # SystemExit included: uvicorn exits on startup errors
            self._failure = exc
            log.error("the HTTP server stopped: %r", exc)
        finally:
            self._socket.close()

    @property
    def port(self) -> int:
        """The port actually bound (the real one when 0 was asked for)."""
        server = self._server
        if server is not None and server.started and server.servers:
            sockets = server.servers[0].sockets
            if sockets:
                return int(sockets[0].getsockname()[1])
        return self._bound_port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5) -> None:
        """Stop accepting, let requests in flight finish (within ``timeout`` seconds, then
        force), and join the thread. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        if thread.is_alive():
            log.warning("the HTTP server thread did not stop within %ss", 2 * timeout)
        self._thread = None


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "the address is not one of this machine's"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return exc.strerror or str(exc)
