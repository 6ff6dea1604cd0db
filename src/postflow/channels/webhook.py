"""Call the journey's webhook: one HTTP request per message, its answer mapped to a Delivery.

Every request carries ``Idempotency-Key: <message_id>``. The outbox gives at-least-once
delivery: if we crash (or time out) after the receiver accepted a call but before the
``sent`` is stored, the dispatcher sends the message again, and the unchanged key lets the
receiver recognise the repeat. A key the journey set itself is kept.

Redirects are not followed: a 3xx is a permanent ``failed`` naming the status. Following
one would replay a rendered body, with its headers (credentials included), to a host the
journey author never wrote down, and turn a POST into a GET on 301/302; an endpoint that
moved should be fixed in the journey, where it shows up in review.

Whether an answer is worth a retry follows the dispatch rules of the spec: timeouts,
connection errors, 408, 425, 429 and 5xx are ``retry`` (with the receiver's
``Retry-After``); every other status is ``failed``. Problems the request itself has (a URL
that is not http(s) with a host, a header httpx cannot send) fail before any network call.
One :class:`httpx.Client` is shared by all dispatcher threads, so connections are reused.
"""

from __future__ import annotations

import re
import threading
from importlib import metadata
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from postflow.channels.base import Delivery, DeliveryStatus, one_line, parse_retry_after
from postflow.effects import OutboundMessage

RETRY_STATUSES = frozenset({408, 425, 429})
"""Besides 5xx: statuses that say "not now" rather than "never"."""

BODY_EXCERPT = 200
_READ_LIMIT = 64 * 1024  # body bytes read to reuse the connection / quote an error
_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")  # RFC 9110 token: header names, methods
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs but HTAB: never in a header value
_HOST = re.compile(r"[A-Za-z0-9._~-]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")  # name, IPv4 or IPv6
_FRAMING = frozenset({"content-length", "transfer-encoding"})  # ours to set, from the body
_KEY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def _user_agent() -> str:
    try:
        version = metadata.version("postflow")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"postflow/{version}"


USER_AGENT = _user_agent()


class WebhookChannel:
    """Sends webhook messages with one shared, thread-safe :class:`httpx.Client`.

    ``timeout_s`` bounds each phase (connect, write, each read, waiting for a pooled
    connection), not the call as a whole; ``transport`` replaces the network (tests)."""

    name = "webhook"
    concurrent = True
    rate: tuple[float, int | None] | None = None

    def __init__(
        self, timeout_s: float = 10.0, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )
        self._lock = threading.Lock()
        self._closed = False

    def send(self, message: OutboundMessage) -> Delivery:
        try:
            return self._send(message)
        except Exception as exc:  # the contract: a Delivery, never an exception
            return self._delivery("retry", f"error {type(exc).__name__} {exc}")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._client.close()

    def _send(self, message: OutboundMessage) -> Delivery:
        url, problem = check_url(message.to)
        if url is None:
            return self._delivery("failed", f"invalid_url {problem}")
        method = (message.method or "POST").upper()
        if not _TOKEN.fullmatch(method):
            return self._delivery("failed", f"invalid_method {method}")
        body: bytes | None = None
        if message.json is not None:
            try:
                body = orjson.dumps(message.json, option=orjson.OPT_NON_STR_KEYS)
            except orjson.JSONEncodeError as exc:
                return self._delivery("failed", f"EncodeError {exc}")
        headers, bad = build_headers(message, has_body=body is not None)
        if headers is None:
            return self._delivery("failed", f"invalid_header {bad}")
        if self._closed:
            return self._delivery("retry", "closed the webhook channel is closed")
        try:
            request = self._client.build_request(method, url, content=body, headers=headers)
            response = self._client.send(request, stream=True)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return self._delivery("failed", f"invalid_url {exc}")
        except httpx.LocalProtocolError as exc:  # what we would send is not valid HTTP
            return self._delivery("failed", f"invalid_request {exc}")
        except httpx.TimeoutException as exc:
            return self._delivery("retry", f"timeout {_detail(exc)}")
        except httpx.TransportError as exc:
            return self._delivery("retry", f"connection_error {_detail(exc)}")
        except RuntimeError as exc:  # closed by another thread meanwhile
            return self._delivery("retry", f"closed {exc}")
        try:
            excerpt = _read_excerpt(response)
        finally:
            response.close()
        return self._answer(response, excerpt)

    def _answer(self, response: httpx.Response, excerpt: str) -> Delivery:
        status = response.status_code
        if 200 <= status < 300:
            provider_id = response.headers.get("X-Request-Id") or None
            return Delivery("sent", self.name, provider_id=provider_id)
        reason = response.reason_phrase.strip() or excerpt[:BODY_EXCERPT]
        error = f"{status} {reason}"
        if status in RETRY_STATUSES or 500 <= status < 600:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return self._delivery("retry", error, retry_after=retry_after)
        return self._delivery("failed", error)

    def _delivery(
        self, status: DeliveryStatus, error: str, *, retry_after: float | None = None
    ) -> Delivery:
        return Delivery(status, self.name, error=one_line(error), retry_after=retry_after)


def check_url(text: Any) -> tuple[httpx.URL | None, str]:
    """``(url, "")`` for an absolute http(s) URL with a host, else ``(None, why)``."""
    if not isinstance(text, str) or not text.strip():
        return None, "empty"
    try:
        url = httpx.URL(text.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return None, str(exc)
    if not url.scheme:
        return None, "no scheme (expected http:// or https://)"
    if url.scheme not in ("http", "https"):
        return None, f"scheme {url.scheme!r} is not http or https"
    if not url.host:
        return None, "no host"
    if not _HOST.fullmatch(url.raw_host.decode("ascii", "replace")):
        return None, f"host {url.raw_host.decode('ascii', 'replace')!r} is not a host name"
    return url, ""


def build_headers(
    message: OutboundMessage, *, has_body: bool
) -> tuple[list[tuple[str, str]] | None, str]:
    """The request headers, or ``(None, name)`` for the first header that cannot be sent.

    Values lose surrounding blanks (not part of a value in HTTP); framing headers
    (Content-Length, Transfer-Encoding) are dropped since they follow from the body."""
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, raw in message.headers:
        value = (raw if isinstance(raw, str) else str(raw)).strip(" \t")
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            return None, repr(name)
        if _CONTROL.search(value) or not value.isascii():
            return None, name
        lowered = name.lower()
        if lowered in _FRAMING:
            continue
        seen.add(lowered)
        headers.append((name, value))
    if has_body and "content-type" not in seen:
        headers.append(("Content-Type", "application/json"))
    if "idempotency-key" not in seen:
        headers.append(("Idempotency-Key", idempotency_key(message.message_id)))
    return headers, ""


def idempotency_key(message_id: str) -> str:
    """The message id, percent-encoded where a header could not carry it (stable per id)."""
    if message_id.isascii() and message_id.isprintable() and " " not in message_id:
        return message_id
    return quote(message_id, safe=_KEY_SAFE)


def _detail(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _read_excerpt(response: httpx.Response) -> str:
    """Up to 64 KiB of the body, decoded leniently; read errors leave what arrived.

    Reading a small body to its end lets the connection go back to the pool. The status is
    already known: a body that stalls or breaks must not turn an accepted call into a
    retry."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= _READ_LIMIT:
                break
    except httpx.HTTPError:
        pass
    return b"".join(chunks)[:_READ_LIMIT].decode("utf-8", errors="replace")
