"""The HTTP API (contract section 6) over a real uvicorn server and a real database.

Every test starts :class:`HttpServer` on port 0 and talks to it with httpx, on SQLite and on
PostgreSQL (the ``db_url`` fixture), so what is checked is what a client sees: status codes,
JSON errors, the size limit enforced while a body streams in, and what reached the store.
"""

from __future__ import annotations

import io
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from conftest import Project

from postflow import config, loader
from postflow.channels.registry import build_channels, close_channels
from postflow.http.app import create_app
from postflow.http.server import (
    HttpServer,
    HttpServerError,
    format_size,
    http_options,
    parse_listen,
    parse_size,
)
from postflow.runtime.service import Runtime, load_machines
from postflow.store import database
from postflow.store import schema as t
from postflow.store.sql import SqlStore, wall_us

ORDER = {
    "id": "evt_1",
    "type": "order_placed",
    "customer_id": "c_1",
    "at": "2026-03-01T10:00:00Z",
    "customer": {"email": "ann@example.com", "first_name": "Ann"},
    "data": {"order_id": "o_1", "total": 120.5, "currency": "USD"},
}


def event(n: int, customer: str = "c_1", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "type": "page_viewed",
        "customer_id": customer,
        "at": "2026-03-01T10:00:00Z",
        **extra,
    }


@contextmanager
def serving(app: Any) -> Iterator[httpx.Client]:
    server = HttpServer(app, "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture
def settings(proj: Project) -> config.Settings:
    return proj.settings()


@pytest.fixture
def store(db_url: str, settings: config.Settings) -> Iterator[SqlStore]:
    opened = SqlStore.open(db_url, settings, upgrade=True)
    yield opened
    opened.close()


Serve = Callable[..., httpx.Client]


@pytest.fixture
def serve(store: SqlStore) -> Iterator[Serve]:
    """``serve(**create_app options)`` -> a client of a running server over ``store``."""
    with_stack: list[Any] = []

    def start(**options: Any) -> httpx.Client:
        context = serving(create_app(store, **options))
        with_stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(with_stack):
        context.__exit__(None, None, None)


@pytest.fixture
def client(serve: Serve) -> httpx.Client:
    return serve()


def stored_events(store: SqlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.events.c.body).order_by(t.events.c.seq)).scalars()
        return [orjson.loads(body) for body in rows]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- POST /events: shapes and counts -----------------------------------------------------------
def test_single_object_array_and_ndjson_are_counted(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = client.post("/events", json=ORDER)
    assert (r.status_code, r.json()) == (202, {"accepted": 1, "duplicates": 0})
    r = client.post("/events", json=[event(1), event(2)])
    assert (r.status_code, r.json()) == (202, {"accepted": 2, "duplicates": 0})
    lines = b"\n".join(orjson.dumps(event(n)) for n in (3, 4, 5)) + b"\n\n"
    r = client.post("/events", content=lines, headers={"content-type": "application/x-ndjson"})
    assert (r.status_code, r.json()) == (202, {"accepted": 3, "duplicates": 0})
    # Several lines starting with "{" are NDJSON whatever the Content-Type says.
    lines = orjson.dumps(event(6)) + b"\r\n" + orjson.dumps(event(7))
    r = client.post("/events", content=lines, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (202, {"accepted": 2, "duplicates": 0})
    r = client.post("/events", json=[])
    assert (r.status_code, r.json()) == (202, {"accepted": 0, "duplicates": 0})


def test_ids_already_ingested_count_as_duplicates(client: httpx.Client, store: SqlStore) -> None:
    batch = [event(1), event(2), {**event(3), "id": None}]
    batch[2].pop("id")
    assert client.post("/events", json=batch).json() == {"accepted": 3, "duplicates": 0}
    again = [event(1), event(2), event(9), event(9)]
    assert client.post("/events", json=again).json() == {"accepted": 1, "duplicates": 3}
    assert [e.get("id") for e in stored_events(store)] == ["e1", "e2", None, "e9"]


def test_a_bad_event_rejects_the_whole_batch(client: httpx.Client, store: SqlStore) -> None:
    batch = [event(1, "c_new"), event(2, "c_new"), event(3, "c_new", at="2026-03-01T10:00:00")]
    r = client.post("/events", json=batch)
    assert r.status_code == 422
    body = r.json()
    assert (body["index"], body["field"]) == (2, "at")
    assert "UTC offset" in body["error"]
    assert stored_events(store) == []
    assert client.get("/customers/c_new").status_code == 404
    # Nothing of it was stored, ids included: the corrected batch is accepted whole.
    batch[2]["at"] = "2026-03-01T10:00:00Z"
    assert client.post("/events", json=batch).json() == {"accepted": 3, "duplicates": 0}


def test_errors_name_the_field_and_index(client: httpx.Client) -> None:
    r = client.post("/events", json={"type": "order_placed"})
    assert r.status_code == 422
    assert r.json() == {"error": "missing required key 'customer_id'", "field": "customer_id"}
    r = client.post("/events", json=[event(1), {**event(2), "bogus": 1}])
    assert (r.status_code, r.json()["field"], r.json()["index"]) == (422, "bogus", 1)
    r = client.post("/events", json=[event(1), 5])
    assert (r.status_code, r.json()["index"]) == (422, 1)
    r = client.post("/events", json="order_placed")
    assert r.status_code == 422 and "event object" in r.json()["error"]
    lines = b'{"type": "a", "customer_id": "c"}\n{"type": "a", "customer_id": "c", "type": "b"}'
    r = client.post("/events", content=lines, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 422
    assert r.json() == {"error": "duplicate key 'type'", "field": "type", "index": 1}
    r = client.post(
        "/events", content=b'[{"type": "a", "customer_id": "c", "data": {"x": 1, "x": 2}}]'
    )
    assert r.json() == {"error": "duplicate key 'x'", "field": "data.x", "index": 0}


def test_missing_at_gets_the_ingestion_time(client: httpx.Client, store: SqlStore) -> None:
    before = wall_us()
    assert (
        client.post("/events", json={"type": "signed_up", "customer_id": "c_2"}).status_code == 202
    )
    after = wall_us()
    with store.engine.connect() as conn:
        at = conn.execute(sa.select(t.events.c.at)).scalar_one()
    assert before <= at <= after
    assert stored_events(store)[0]["at"].endswith("Z")


def test_bodies_that_are_not_json(client: httpx.Client, store: SqlStore) -> None:
    r = client.post("/events", content=b'{"type": "a", "customer_id": ')
    assert r.status_code == 400 and r.json()["error"].startswith("body is not JSON: ")
    r = client.post("/events", content=b"\xff\xfe")
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"]
    r = client.post("/events", content=b"  \n")
    assert r.status_code == 400 and "empty body" in r.json()["error"]
    lines = orjson.dumps(event(1)) + b"\n{oops}\n"
    r = client.post("/events", content=lines, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("line 2 is not JSON") and r.json()["index"] == 1
    assert stored_events(store) == []


def test_nesting_too_deep_is_refused_and_the_server_goes_on(client: httpx.Client) -> None:
    r = client.post("/events", content=b"[" * 10_000)
    assert r.status_code == 400
    assert r.json() == {"error": "body is nested deeper than 64 levels"}
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(70):
        inner["a"] = {}
        inner = inner["a"]
    r = client.post("/events", json=[event(1), event(2, data=deep)])
    assert r.status_code == 422
    body = r.json()
    assert body["index"] == 1 and body["field"].startswith("data.a.a.")
    assert "deeper than 64 levels" in body["error"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.post("/events", json=event(3)).status_code == 202


def test_more_than_100000_events_is_413(client: httpx.Client, store: SqlStore) -> None:
    r = client.post("/events", content=b"[" + b"{}," * 100_000 + b"{}]")
    assert r.status_code == 413 and "more than 100000 events" in r.json()["error"]
    assert stored_events(store) == []


def test_body_over_max_body_is_413_while_streaming(serve: Serve, store: SqlStore) -> None:
    client = serve(max_body=1024)
    big = orjson.dumps([event(n) for n in range(30_000)])  # about 2 MB
    assert len(big) > 2_000_000
    r = client.post("/events", content=big)  # Content-Length says too big
    assert (r.status_code, r.json()) == (413, {"error": "body larger than 1KB"})

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length, refused mid-stream
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    r = client.post("/events", content=chunks())
    assert (r.status_code, r.json()) == (413, {"error": "body larger than 1KB"})
    assert stored_events(store) == []
    r = client.post("/events", json=event(1))
    assert r.status_code == 202


def test_on_ingest_is_called_when_events_were_stored(serve: Serve) -> None:
    calls: list[int] = []
    client = serve(on_ingest=lambda: calls.append(1))
    client.post("/events", json=event(1))
    assert calls == [1]
    client.post("/events", json=event(1))  # a duplicate only: nothing new to sweep
    client.post("/events", json={"type": "x"})  # rejected
    assert calls == [1]


# -- auth, health, errors --------------------------------------------------------------------
def test_bearer_token(serve: Serve) -> None:
    client = serve(api_token="s3cret")
    r = client.post("/events", json=event(1))
    assert r.status_code == 401
    assert r.json() == {"error": "missing or wrong bearer token"}
    assert r.headers["www-authenticate"].startswith("Bearer")
    wrong = {"authorization": "Bearer nope"}
    assert client.post("/events", json=event(1), headers=wrong).status_code == 401
    assert client.get("/openapi.json").status_code == 401
    right = {"authorization": "Bearer s3cret"}
    assert client.post("/events", json=event(1), headers=right).status_code == 202
    assert client.get("/customers/c_1", headers=right).status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    # Webhooks carry their own signatures: no token asked (this one does not exist yet).
    assert client.post("/webhooks/nothing", content=b"{}").status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_unreachable_database_is_503(
    backend: str, settings: config.Settings, tmp_path: Path
) -> None:
    if backend == "sqlite":
        folder = tmp_path / "gone"
        folder.mkdir()
        url = f"sqlite:///{folder / 'db.sqlite'}"
        engine = database.create_engine(url)
        folder.rmdir()  # the file can no longer be created
    else:
        url = f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none"
        engine = database.create_engine(url)
    broken = SqlStore(engine, url, settings)
    with serving(create_app(broken)) as client:
        r = client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable" and r.json()["error"]
        r = client.post("/events", json=event(1))
        assert r.status_code == 503 and "database" in r.json()["error"]
        assert r.headers["retry-after"] == "1"
        assert client.get("/customers/c_1").status_code == 503
    engine.dispose()


def test_unexpected_errors_are_json(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(customer_id: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "customer_view", boom)
    with serving(create_app(store)) as client:
        r = client.get("/customers/c_1")
        assert (r.status_code, r.json()) == (500, {"error": "internal error"})
        r = client.get("/nowhere")
        assert r.status_code == 404 and r.json()["error"] == "no such path '/nowhere'"
        r = client.delete("/events")
        assert r.status_code == 405 and r.json() == {"error": "method not allowed"}
    assert "boom" in caplog.text


# -- GET /customers/{id}, /openapi.json --------------------------------------------------------
JOURNEY = """
id: thanks
trigger: {event: order_placed}
steps:
  - id: hello
    email: {subject: "Thanks {{ customer.first_name }}", body: "Order {{ trigger.data.order_id }}"}
"""


def test_customer_view_after_a_run(
    client: httpx.Client, store: SqlStore, proj: Project, settings: config.Settings
) -> None:
    proj.journey("thanks", JOURNEY)
    assert client.post("/events", json=ORDER).status_code == 202
    out = io.StringIO()
    channels = build_channels(settings, console_stream=out, environ={})
    try:
        machines = load_machines(settings, proj.root / "journeys")
        Runtime(store, settings, machines, channels).run_once(wall_us())
    finally:
        close_channels(channels.values())
    r = client.get("/customers/c_1")
    assert r.status_code == 200
    view = r.json()
    assert view["customer_id"] == "c_1"
    assert view["profile"]["orders_count"] == 1
    assert view["profile"]["total_spent"] == 120.5
    assert view["profile"]["first_name"] == "Ann"
    kinds = [(rec["kind"], rec.get("step")) for rec in view["records"]]
    assert ("enter", None) in kinds and ("message", "hello") in kinds
    message = next(rec for rec in view["records"] if rec["kind"] == "message")
    assert (message["status"], message["subject"]) == ("sent", "Thanks Ann")
    assert [i["journey"] for i in view["instances"]] == ["thanks"]
    r = client.get("/customers/nobody")
    assert r.status_code == 404 and "nobody" in r.json()["error"]


def test_openapi_document(client: httpx.Client) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert {"/events", "/healthz", "/customers/{customer_id}"} <= set(doc["paths"])
    assert doc["components"]["schemas"]["Event"] == loader.load_schema("event")
    post = doc["paths"]["/events"]["post"]
    assert {"202", "413", "422"} <= set(post["responses"])


# -- the server and its settings ---------------------------------------------------------------
def test_a_port_in_use_is_a_clear_error(settings: config.Settings, tmp_path: Path) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'port.db'}", settings)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    first = HttpServer(create_app(store), "127.0.0.1", 0)
    first.start()
    # The daemon owns the signals: uvicorn installs no handler.
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    try:
        second = HttpServer(create_app(store), "127.0.0.1", first.port)
        with pytest.raises(HttpServerError) as caught:
            second.start()
        expected = f"cannot listen on 127.0.0.1:{first.port}: address already in use"
        assert str(caught.value) == expected
        r = httpx.get(f"http://127.0.0.1:{first.port}/healthz")
        assert r.status_code == 200
    finally:
        first.stop()
        first.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{first.port}/healthz")
    store.close()


def test_listen_size_and_options(proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_listen("127.0.0.1:8025") == ("127.0.0.1", 8025)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen(":9000") == ("0.0.0.0", 9000)
    for bad in ("127.0.0.1", "localhost:99999", "a b:1", ""):
        with pytest.raises(ValueError, match="bad listen address"):
            parse_listen(bad)
    assert parse_size("5MB") == 5 * 1024 * 1024 and parse_size("512KB") == 512 * 1024
    assert parse_size("1GB") == 1024**3 and parse_size("10B") == 10
    for bad in ("5", "0MB", "5TB", "MB"):
        with pytest.raises(ValueError, match="bad size"):
            parse_size(bad)
    assert [format_size(n) for n in (5 * 1024**2, 512 * 1024, 1000)] == ["5MB", "512KB", "1000B"]
    monkeypatch.delenv("POSTFLOW_API_TOKEN", raising=False)
    defaults = http_options(proj.settings())
    assert (defaults["host"], defaults["port"], defaults["max_body"]) == (
        "127.0.0.1",
        8025,
        5 << 20,
    )
    assert defaults["api_token"] is None
    proj.config('timezone: UTC\nhttp: {listen: "0.0.0.0:9000", max_body: 512KB}\n')
    monkeypatch.setenv("POSTFLOW_API_TOKEN", "tok")
    options = http_options(proj.settings())
    assert (options["host"], options["port"], options["max_body"]) == ("0.0.0.0", 9000, 512 << 10)
    assert options["api_token"] == "tok"
