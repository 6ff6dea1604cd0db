"""Loopback HTTP server base shared by the provider fakes.

Why a real server: channel tests must go through the *official* SendGrid and Twilio SDKs,
because URL building, body serialisation and the mapping of HTTP errors to exceptions are
exactly what breaks in production. Monkeypatching the SDKs would skip all of that, so the
fakes listen on 127.0.0.1 and the SDKs are pointed at them.

This module holds what both fakes share: the server thread, the thread-safe request log,
the FIFO of scripted answers and the answer types themselves. A provider fake subclasses
`FakeServer` and implements `handle`, which turns one request into an `Outcome`.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Ok:
    """Answer the send with the provider's success response (202 / 201)."""


@dataclass(frozen=True)
class Fail:
    """Answer with `status` in the provider's documented error shape.

    `code` is Twilio's error code (defaults to `status`); SendGrid has no codes and ignores
    it. `retry_after` adds a `Retry-After` header, as providers do on 429 and 503.
    """

    status: int
    message: str | None = None
    code: int | None = None
    retry_after: int | float | str | None = None

    @property
    def text(self) -> str:
        """The error message, defaulting to the HTTP reason phrase of `status`."""
        if self.message is not None:
            return self.message
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"


@dataclass(frozen=True)
class Hang:
    """Accept the request, wait `seconds`, then answer Ok.

    Lets a test make the client time out. The provider has accepted the message by then,
    so the request already counts in `sent` and its id in `message_ids`: a timeout does not
    mean "not sent", which is exactly the ambiguity channel code has to cope with.
    Stopping the fake cuts the wait short.
    """

    seconds: float


Answer = Ok | Fail | Hang


class Headers(dict[str, str]):
    """Request headers keyed by lower-case name; item access and `in` ignore case."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for name, value in items:
            key = name.lower()
            self[key] = f"{self[key]}, {value}" if key in self else value

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class Incoming:
    """One HTTP request as read off the socket, before the fake judges it."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class Reply:
    """The HTTP response a fake decided to give."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(
            status,
            jsonlib.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


@dataclass(frozen=True)
class Outcome:
    """What a provider fake made of a request: the reply plus what to record about it.

    `answer` is the scripted (or default) answer used, None when the fake answered on its
    own (violation, magic number). `message_id` is set when the request counts as sent.
    """

    reply: Reply
    answer: Answer | None = None
    message_id: str | None = None
    violations: tuple[str, ...] = ()
    json: Any = None
    form_pairs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Recorded:
    """One request the fake received, with the status it answered.

    `json` is the parsed JSON body (SendGrid); `form_pairs` / `form` are the urlencoded
    fields in order and as a dict, last value winning (Twilio).
    """

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes
    status: int
    answer: Answer | None
    json: Any = None
    form_pairs: list[tuple[str, str]] = field(default_factory=list)
    form: dict[str, str] = field(default_factory=dict)
    violations: tuple[str, ...] = ()


class FakeServer:
    """Threaded HTTP server on 127.0.0.1:<free port>; use as a context manager.

    Threaded so that a hanging answer never delays other requests; every shared list is
    guarded by one lock because handlers run on their own threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._violations: list[str] = []
        self._sent: list[Recorded] = []
        self._message_ids: list[str] = []
        self._script: deque[Answer] = deque()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started; use it in a with block")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        httpd.daemon_threads = True
        self._httpd, self._port = httpd, int(httpd.server_address[1])
        # A short poll interval keeps shutdown() (and so every test's teardown) quick.
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and wake any hanging answers."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting and the log ------------------------------------------------------------
    def script(self, *answers: Answer) -> None:
        """Queue answers for the next valid send requests; an empty queue answers Ok."""
        with self._lock:
            self._script.extend(answers)

    def clear_script(self) -> None:
        """Drop the queued answers: from now on every send is answered Ok (a recovery)."""
        with self._lock:
            self._script.clear()

    def _next_answer(self) -> Answer:
        with self._lock:
            return self._script.popleft() if self._script else Ok()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        with self._lock:
            return list(self._violations)

    @property
    def sent(self) -> list[Recorded]:
        with self._lock:
            return list(self._sent)

    @property
    def message_ids(self) -> list[str]:
        with self._lock:
            return list(self._message_ids)

    # -- request handling -----------------------------------------------------------------
    def handle(self, request: Incoming) -> Outcome:
        raise NotImplementedError

    def _dispatch(self, request: Incoming) -> Reply:
        try:
            outcome = self.handle(request)
        except Exception as exc:  # a bug in the fake must show up in the test, not hang it
            problem = f"{request.method} {request.path}: fake crashed: {exc!r}"
            outcome = Outcome(Reply.of_json(500, {"message": problem}), violations=(problem,))
        record = Recorded(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            status=outcome.reply.status,
            answer=outcome.answer,
            json=outcome.json,
            form_pairs=list(outcome.form_pairs),
            form=dict(outcome.form_pairs),
            violations=outcome.violations,
        )
        with self._lock:
            self._requests.append(record)
            self._violations.extend(outcome.violations)
            if outcome.message_id is not None:
                self._sent.append(record)
                self._message_ids.append(outcome.message_id)
        if isinstance(outcome.answer, Hang):
            self._stopping.wait(outcome.answer.seconds)
        return outcome.reply


def _handler_for(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so no handler thread lingers on keep-alive.
        server_version = "postflow-fake/1.0"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            url = urlsplit(self.path)
            headers = Headers(self.headers.items())
            reply = fake._dispatch(Incoming(self.command, url.path, url.query, headers, body))
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:
                pass  # the client gave up (timed out on a Hang): nothing left to tell it

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output clean; the request log is on the fake."""

    return Handler
