"""The webhook channel against a real HTTP server on 127.0.0.1 (no mocked httpx)."""

from __future__ import annotations

import email.utils
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from postflow import durations
from postflow.channels.base import Delivery
from postflow.channels.webhook import WebhookChannel, one_line, parse_retry_after
from postflow.effects import OutboundMessage

AT = durations.parse_instant("2027-01-13T15:00:00Z")


# --- a recording server ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reason: str | None = None  # None: the standard phrase; "": none at all
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


@dataclass
class Recorder:
    base: str
    requests: list[Seen] = field(default_factory=list)
    replies: dict[str, Reply] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook") -> str:
        return self.base + path

    def answer(self, path: str, reply: Reply) -> str:
        self.replies[path] = reply
        return self.url(path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
    recorder: Recorder  # set on the subclass built per server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, list(self.headers.items()), body)
        with self.recorder.lock:
            self.recorder.requests.append(seen)
        reply = self.recorder.replies.get(self.path.split("?")[0], Reply())
        if reply.delay and self.recorder.stop.wait(reply.delay):
            return
        try:
            self.send_response(reply.status, reply.reason)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up (timeout test)
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops concurrent connects: 1 s SYN retries


@pytest.fixture
def server() -> Iterator[Recorder]:
    httpd = Server(("127.0.0.1", 0), Handler)
    recorder = Recorder(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = type("BoundHandler", (Handler,), {"recorder": recorder})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield recorder
    finally:
        recorder.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def channel() -> Iterator[WebhookChannel]:
    webhook = WebhookChannel(2.0)
    try:
        yield webhook
    finally:
        webhook.close()


def message(to: str, n: int = 1, **changes: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": f"c1:review-request:1:m{n}",
        "customer_id": "c1",
        "instance": "c1:review-request:1",
        "journey": "review-request",
        "step": "notify",
        "channel": "webhook",
        "at": AT,
        "to": to,
        "transactional": True,
        "method": "POST",
        "json": {"customer": "c1", "rating": 5, "note": "très bon"},
        "headers": (("X-Shop", "tea"), ("Authorization", "Bearer s3cret")),
    }
    fields.update(changes)
    return OutboundMessage(**fields)


# --- requests ---------------------------------------------------------------------------------


def test_post_arrives_as_sent(server: Recorder, channel: WebhookChannel) -> None:
    result = channel.send(message(server.url("/hooks/review?src=postflow&x=1")))

    assert result == Delivery("sent", "webhook")
    [seen] = server.requests
    assert seen.method == "POST"
    assert seen.path == "/hooks/review?src=postflow&x=1"
    assert orjson.loads(seen.body) == {"customer": "c1", "rating": 5, "note": "très bon"}
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("Idempotency-Key") == "c1:review-request:1:m1"
    assert seen.header("X-Shop") == "tea"
    assert seen.header("Authorization") == "Bearer s3cret"
    assert (seen.header("User-Agent") or "").startswith("postflow/")


def test_headers_the_journey_set_win(server: Recorder, channel: WebhookChannel) -> None:
    headers = (
        ("Content-Type", "application/vnd.shop+json"),
        ("idempotency-key", "mine"),
        ("User-Agent", "shop-bot"),
        ("X-Trim", "  padded\t"),
        ("Content-Length", "999"),  # wrong framing from a journey is dropped, not sent
    )
    result = channel.send(message(server.url(), headers=headers))

    assert result.status == "sent"
    [seen] = server.requests
    assert seen.header("Content-Type") == "application/vnd.shop+json"
    assert seen.header("Idempotency-Key") == "mine"
    assert seen.header("User-Agent") == "shop-bot"
    assert seen.header("X-Trim") == "padded"
    assert seen.header("Content-Length") == str(len(seen.body))


def test_put_and_get_methods_are_honoured(server: Recorder, channel: WebhookChannel) -> None:
    put = channel.send(message(server.url("/put"), method="put", json=[1, 2]))
    get = channel.send(message(server.url("/get?id=7"), n=2, method="GET", json=None))
    default = channel.send(message(server.url("/default"), n=3, method=None))

    assert [put.status, get.status, default.status] == ["sent", "sent", "sent"]
    first, second, third = server.requests
    assert (first.method, first.path, orjson.loads(first.body)) == ("PUT", "/put", [1, 2])
    assert (second.method, second.path, second.body) == ("GET", "/get?id=7", b"")
    assert second.header("Content-Type") is None
    assert second.header("Idempotency-Key") == "c1:review-request:1:m2"
    assert third.method == "POST"


def test_a_non_ascii_message_id_still_gives_a_stable_key(
    server: Recorder, channel: WebhookChannel
) -> None:
    sent = message(server.url(), message_id="zoë:review:1:m1")
    assert channel.send(sent).status == "sent"
    assert channel.send(sent).status == "sent"
    keys = [seen.header("Idempotency-Key") for seen in server.requests]
    assert keys == ["zo%C3%AB:review:1:m1"] * 2


# --- answers ----------------------------------------------------------------------------------


def test_2xx_is_sent_with_the_request_id(server: Recorder, channel: WebhookChannel) -> None:
    url = server.answer("/ok", Reply(202, (("X-Request-Id", "req-42"),), b'{"queued":true}'))
    assert channel.send(message(url)) == Delivery("sent", "webhook", provider_id="req-42")
    url = server.answer("/empty", Reply(204))
    assert channel.send(message(url)) == Delivery("sent", "webhook")


def test_500_is_retried(server: Recorder, channel: WebhookChannel) -> None:
    url = server.answer("/boom", Reply(500))
    assert channel.send(message(url)) == Delivery(
        "retry", "webhook", error="500 Internal Server Error"
    )


def test_503_retry_after_seconds(server: Recorder, channel: WebhookChannel) -> None:
    url = server.answer("/busy", Reply(503, (("Retry-After", "7"),)))
    result = channel.send(message(url))
    assert result == Delivery("retry", "webhook", error="503 Service Unavailable", retry_after=7)


def test_retry_after_as_an_http_date(server: Recorder, channel: WebhookChannel) -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    url = server.answer("/later", Reply(503, (("Retry-After", later),)))
    result = channel.send(message(url))
    assert result.status == "retry"
    assert result.retry_after is not None and 115 <= result.retry_after <= 121


def test_429_is_retried(server: Recorder, channel: WebhookChannel) -> None:
    url = server.answer("/slow-down", Reply(429, (("Retry-After", "junk"),)))
    assert channel.send(message(url)) == Delivery("retry", "webhook", error="429 Too Many Requests")


@pytest.mark.parametrize("status", [408, 425, 502, 504])
def test_other_transient_statuses(server: Recorder, channel: WebhookChannel, status: int) -> None:
    url = server.answer("/t", Reply(status))
    result = channel.send(message(url))
    assert result.status == "retry"
    assert (result.error or "").startswith(f"{status} ")


def test_404_fails(server: Recorder, channel: WebhookChannel) -> None:
    url = server.answer("/gone", Reply(404))
    assert channel.send(message(url)) == Delivery("failed", "webhook", error="404 Not Found")


def test_400_without_a_reason_quotes_the_body_on_one_line(
    server: Recorder, channel: WebhookChannel
) -> None:
    body = b'{"error":\n  "rating must be 1..5"}' + b"x" * 1000
    url = server.answer("/bad", Reply(400, body=body, reason=""))
    result = channel.send(message(url))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith('400 {"error": "rating must be 1..5"}xxx')
    assert "\n" not in result.error and len(result.error) <= 300


def test_redirects_are_not_followed(server: Recorder, channel: WebhookChannel) -> None:
    url = server.answer("/moved", Reply(301, (("Location", server.url("/new")),)))
    result = channel.send(message(url))
    assert result == Delivery("failed", "webhook", error="301 Moved Permanently")
    assert [seen.path for seen in server.requests] == ["/moved"]


# --- transport problems -----------------------------------------------------------------------


def test_a_slow_receiver_times_out_and_is_retried(server: Recorder) -> None:
    url = server.answer("/sleepy", Reply(200, delay=2.0))
    webhook = WebhookChannel(0.2)
    try:
        started = time.monotonic()
        result = webhook.send(message(url))
        elapsed = time.monotonic() - started
    finally:
        webhook.close()
    assert result.status == "retry"
    assert (result.error or "").startswith("timeout ")
    assert elapsed < 1.5


def test_connection_refused_is_retried(channel: WebhookChannel) -> None:
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        result = channel.send(message(f"http://127.0.0.1:{port}/hook"))
    assert result.status == "retry"
    assert (result.error or "").startswith("connection_error ")
    assert "\n" not in (result.error or "")


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("ftp://x", "scheme 'ftp'"),
        ("not a url", "no scheme"),
        ("http://", ""),
        ("https:///path-only", ""),
        ("", "empty"),
        ("http://exa mple.com/", "host 'exa%20mple.com'"),
        ("http://999.1.1.1/", ""),
    ],
)
def test_invalid_urls_fail_without_a_call(
    server: Recorder, channel: WebhookChannel, to: str, why: str
) -> None:
    result = channel.send(message(to))
    assert result.status == "failed"
    assert (result.error or "").startswith(f"invalid_url {why}")
    assert server.requests == []


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ((("X-Ok", "1"), ("X-Bad", "a\r\nInjected: 1")), "X-Bad"),
        ((("X-Nul", "a\x00b"),), "X-Nul"),
        ((("X-Name", "Zoë"),), "X-Name"),
        ((("Bad Name", "v"),), "'Bad Name'"),
        ((("X-Split\n", "v"),), "'X-Split"),
    ],
)
def test_bad_headers_fail_without_a_call(
    server: Recorder,
    channel: WebhookChannel,
    headers: tuple[tuple[str, str], ...],
    named: str,
) -> None:
    result = channel.send(message(server.url(), headers=headers))
    assert result.status == "failed"
    assert (result.error or "").startswith(f"invalid_header {named}")
    assert "\n" not in (result.error or "")
    assert server.requests == []


def test_concurrent_sends_all_arrive(server: Recorder, channel: WebhookChannel) -> None:
    messages = [message(server.url(f"/n/{n}"), n=n) for n in range(64)]
    results: list[Delivery | None] = [None] * len(messages)
    barrier = threading.Barrier(8)

    def work(offset: int) -> None:
        barrier.wait()
        for index in range(offset, len(messages), 8):
            results[index] = channel.send(messages[index])

    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert all(result is not None and result.status == "sent" for result in results)
    keys = sorted(seen.header("Idempotency-Key") or "" for seen in server.requests)
    assert keys == sorted(m.message_id for m in messages)
    assert sorted(seen.path for seen in server.requests) == sorted(f"/n/{n}" for n in range(64))


def test_close_twice_and_send_after_close(server: Recorder) -> None:
    webhook = WebhookChannel()
    assert webhook.send(message(server.url())).status == "sent"
    webhook.close()
    webhook.close()
    after = webhook.send(message(server.url(), n=2))
    assert after.status == "retry"
    assert len(server.requests) == 1


# --- helpers ----------------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after(" 7 ") == 7
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("0") == 0
    assert parse_retry_after("-3") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("9" * 400) is None
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(future, now=now) == 30
    assert parse_retry_after(past, now=now) == 0
    assert parse_retry_after("Wed, 99 Foo 2027 99:00:00 GMT", now=now) is None


def test_one_line() -> None:
    assert one_line("a\n  b\r\n\tc") == "a b c"
    assert len(one_line("x" * 1000)) == 300
