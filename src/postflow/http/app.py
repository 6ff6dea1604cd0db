"""The HTTP API of ``postflow run --http`` (contract section 6) as a Starlette application.

The app only takes events in and shows what the store holds: ``POST /events`` validates a
whole body with the same :func:`postflow.events.parse_event` as every other way in, and
stores it with one all-or-nothing :meth:`SqlStore.ingest`; the daemon's sweep decides what
the events do. Hostile bodies are refused before they cost memory or a deep recursion: the
size limit is enforced while the body streams in, nesting is measured without recursion,
and every error, expected or not, is a JSON object (never a traceback).

Decoding, validating and storing run in a worker thread (they are synchronous and can take a
second for a big batch), so ``/healthz`` keeps answering while a batch is being stored.

Behaviours the contract leaves open, chosen here:

- A single event object gets errors without ``index``; an array or NDJSON body gets the
  0-based ``index`` of the offending event (for NDJSON: among the non-blank lines).
- Sizes: ``1KB`` = 1024 bytes, ``1MB`` = 1024 KB, ``1GB`` = 1024 MB
  (:func:`postflow.http.server.parse_size`).
- More than :data:`MAX_EVENTS` events in one request: ``413`` (send several requests).
- An event nested deeper than :data:`MAX_DEPTH` levels (the event object is level 1): ``422``
  naming its index and the field where the limit is crossed; a body so deep that the JSON
  parser itself gives up (1024 levels): ``400``.
- A key written twice in one object: ``422`` naming it, as ``postflow ingest`` does.
- ``on_ingest`` is called after a successful ingest that accepted at least one new event.
- Database errors give ``503`` with ``Retry-After: 1`` (ingestion is idempotent by id, so
  a retry is safe).
- A body over ``max_body`` is answered 413 at once; the server discards whatever the client
  still sends (uvicorn does so on a kept-alive connection), so the client reads the 413.
"""

from __future__ import annotations

import copy
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from postflow import events, loader
from postflow.http import shopify_webhook
from postflow.http.server import format_size
from postflow.http.webhooks import WebhookSettings
from postflow.http.webhooks import routes as provider_routes
from postflow.store import database
from postflow.store.sql import IngestResult, SqlStore, wall_us

log = logging.getLogger("postflow.http")

MAX_DEPTH = 64
"""Deepest nesting accepted in one event (the event object itself is level 1)."""
MAX_EVENTS = 100_000
"""Most events in one request."""
DEFAULT_MAX_BODY = 5 * 1024 * 1024
NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
OPEN_PATHS = ("/healthz",)
OPEN_PREFIXES = ("/webhooks/",)
_MISSING_KEY = re.compile(r"^missing required key '([^']+)'")


# -- responses ---------------------------------------------------------------------------------
class JSONBody(Response):
    """A JSON response written by orjson (profiles and records may be large)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class Rejected(Exception):
    """A request refused with an HTTP status and a JSON error body."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        field: str | None = None,
        index: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        self.index = index
        self.headers = headers

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.error}
        if self.field is not None:
            body["field"] = self.field
        if self.index is not None:
            body["index"] = self.index
        return JSONBody(body, status_code=self.status, headers=self.headers)


def _unavailable(exc: BaseException, store: SqlStore) -> Rejected:
    if isinstance(exc, database.DatabaseError):
        message = str(exc)
    else:
        message = database.explain(exc, store.url)
    return Rejected(503, message, headers={"Retry-After": "1"})


# -- decoding a body ---------------------------------------------------------------------------
@dataclass
class Batch:
    """The decoded events of one body, before validation. ``sources`` is what to hand
    :func:`events.parse_event` as ``source`` (it only looks for a ``\\u0000`` escape there);
    ``indexed`` says whether errors carry an ``index`` (an array or NDJSON)."""

    items: list[Any]
    sources: list[str | None]
    indexed: bool


def decode_body(body: bytes, content_type: str = "") -> Batch:
    """One event object, a JSON array, or NDJSON (by Content-Type, or a body of several lines
    that starts with ``{`` and is not one JSON value). Raises :class:`Rejected`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(
            400,
            f"body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}): "
            "send JSON as UTF-8",
        ) from None
    text = text.removeprefix(events.BOM)
    stripped = text.strip()
    if not stripped:
        raise Rejected(400, "empty body: send an event object, a JSON array of events, or NDJSON")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in NDJSON_TYPES:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if not (stripped.startswith("{") and "\n" in stripped):
                raise Rejected(400, _not_json(exc)) from None
        else:
            return _whole(text, value)
    return _lines(text)


def _not_json(exc: orjson.JSONDecodeError, where: str = "body") -> str:
    if "depth" in exc.msg or "recursion" in exc.msg:
        return f"{where} is nested deeper than {MAX_DEPTH} levels"
    return f"{where} is not JSON: {exc}"


def _whole(text: str, value: Any) -> Batch:
    if isinstance(value, dict):
        items, indexed = [value], False
    elif isinstance(value, list):
        if len(value) > MAX_EVENTS:
            raise _too_many()
        items, indexed = value, True
    else:
        raise Rejected(422, "the body must be an event object, a JSON array of events, or NDJSON")
    _check_depth(items, indexed)
    if events.may_repeat_keys(text, value):
        repeated = events.repeated_keys(text)
        if repeated:
            _, _, path = repeated[0]
            index: int | None = None
            if indexed:
                first, _, path = path.partition(".")
                index = int(first)
            key = path.rsplit(".", 1)[-1]
            raise Rejected(422, f"duplicate key '{key}'", field=path, index=index)
    # parse_event looks for a NUL escape in ``source``: "" when the whole text has none.
    source: str | None = None if "\\u0000" in text else ""
    return Batch(items, [source] * len(items), indexed)


def _lines(text: str) -> Batch:
    items: list[Any] = []
    sources: list[str | None] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        index = len(items)
        if index >= MAX_EVENTS:
            raise _too_many()
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Rejected(400, _not_json(exc, f"line {number}"), index=index) from None
        if events.may_repeat_keys(line, value):
            repeated = events.repeated_keys(line)
            if repeated:
                path = repeated[0][2]
                key = path.rsplit(".", 1)[-1]
                raise Rejected(422, f"duplicate key '{key}'", field=path, index=index)
        items.append(value)
        sources.append(line)
    _check_depth(items, True)
    return Batch(items, sources, True)


def _too_many() -> Rejected:
    return Rejected(
        413, f"more than {MAX_EVENTS} events in one request: send them in several requests"
    )


def _check_depth(items: list[Any], indexed: bool) -> None:
    if not _too_deep(items):
        return
    for index, item in enumerate(items):
        if _too_deep([item]):
            raise Rejected(
                422,
                f"the event is nested deeper than {MAX_DEPTH} levels",
                field=_deep_path(item),
                index=index if indexed else None,
            )


def _containers(values: Iterable[Any]) -> list[Any]:
    return [v for v in values if type(v) is dict or type(v) is list]


def _too_deep(values: list[Any]) -> bool:
    """Whether a container among ``values`` (each at level 1) nests deeper than
    :data:`MAX_DEPTH`. Breadth-first over the whole batch at once, touching only containers:
    a hostile body costs no stack, and 20,000 ordinary events take a few milliseconds."""
    level = _containers(values)
    for _ in range(MAX_DEPTH):
        level = _containers(
            child for item in level for child in (item.values() if type(item) is dict else item)
        )
        if not level:
            return False
    return True


def _deep_path(value: Any) -> str | None:
    """The dotted path of a container at level ``MAX_DEPTH + 1`` (for the error message)."""
    todo: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while todo:
        item, path = todo.pop()
        if len(path) >= MAX_DEPTH:
            return ".".join(path)
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        todo.extend(
            (child, (*path, str(k))) for k, child in pairs if isinstance(child, dict | list)
        )
    return None


def validate(batch: Batch, now: int) -> list[events.Event]:
    """Every event of the batch, or :class:`Rejected` (422) for the first bad one."""
    parsed: list[events.Event] = []
    for index, (item, source) in enumerate(zip(batch.items, batch.sources, strict=True)):
        try:
            parsed.append(events.parse_event(item, default_at=now, source=source))
        except events.EventError as exc:
            field = exc.field
            missing = _MISSING_KEY.match(exc.message)
            if field is None and missing:
                field = missing.group(1)
            raise Rejected(
                422, exc.message, field=field, index=index if batch.indexed else None
            ) from None
    return parsed


def ingest_body(store: SqlStore, body: bytes, content_type: str = "") -> IngestResult:
    """Decode, validate and store one request body, all or nothing. Synchronous: call it in
    a worker thread. Raises :class:`Rejected`."""
    batch = decode_body(body, content_type)
    parsed = validate(batch, wall_us())
    if not parsed:
        return IngestResult(0, 0)
    try:
        return store.ingest(parsed)
    except (sa.exc.SQLAlchemyError, database.DatabaseError) as exc:
        refused = _unavailable(exc, store)
        log.warning("POST /events: nothing stored: %s", refused.error)
        raise refused from None


# -- reading a body ----------------------------------------------------------------------------
async def read_body(request: Request, max_body: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``max_body``: by its
    Content-Length before a byte is read, else while it streams in. The server discards what
    the client still sends after the answer, so the client gets to read the 413."""
    too_large = Rejected(413, f"body larger than {format_size(max_body)}")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise Rejected(400, f"bad Content-Length {length!r}")
        if int(length) > max_body:
            raise too_large
    received = bytearray()
    try:
        async for chunk in request.stream():
            received += chunk
            if len(received) > max_body:
                raise too_large
    except ClientDisconnect:
        raise Rejected(400, "the client went away before sending the whole body") from None
    return bytes(received)


# -- the application ---------------------------------------------------------------------------
class BearerAuth:
    """Every path but ``/healthz`` and ``/webhooks/*`` needs ``Authorization: Bearer TOKEN``
    (compared in constant time); webhooks carry their own signatures."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope["path"]) or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = JSONBody(
            {"error": "missing or wrong bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="postflow"'},
        )
        await response(scope, receive, send)

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(given.strip(), self.token)
        return False


def create_app(
    store: SqlStore,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    api_token: str | None = None,
    on_ingest: Callable[[], None] | None = None,
    webhooks: WebhookSettings | None = None,
) -> Starlette:
    """The API over ``store``. ``api_token`` (``POSTFLOW_API_TOKEN``) turns on bearer auth;
    ``on_ingest`` is called after events were stored (the daemon wakes its sweep);
    ``webhooks`` holds the providers' secrets (default: none set, so Twilio and Shopify
    callbacks get 503 and SendGrid's are taken unsigned)."""

    async def post_events(request: Request) -> Response:
        body = await read_body(request, max_body)
        content_type = request.headers.get("content-type", "")
        result = await run_in_threadpool(ingest_body, store, body, content_type)
        if on_ingest is not None and result.accepted:
            try:
                on_ingest()
            except Exception:
                log.exception("on_ingest failed")
        return JSONBody({"accepted": result.accepted, "duplicates": result.duplicates}, 202)

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(store.ping)
        except Exception as exc:
            reason = _unavailable(exc, store).error
            return JSONBody({"status": "unavailable", "error": reason}, 503)
        return JSONBody({"status": "ok"})

    async def customer(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        try:
            view = await run_in_threadpool(store.customer_view, customer_id)
        except (sa.exc.SQLAlchemyError, database.DatabaseError) as exc:
            raise _unavailable(exc, store) from None
        if view is None:
            raise Rejected(404, f"unknown customer {customer_id!r}")
        return JSONBody(view)

    document = openapi_document(bearer=bool(api_token))

    async def openapi(request: Request) -> Response:
        return JSONBody(document)

    routes = [
        Route("/events", _guarded(post_events), methods=["POST"]),
        Route("/healthz", _guarded(healthz), methods=["GET"]),
        Route("/customers/{customer_id:path}", _guarded(customer), methods=["GET"]),
        Route("/openapi.json", _guarded(openapi), methods=["GET"]),
    ]
    secrets = webhooks or WebhookSettings()
    callbacks = provider_routes(
        store,
        secrets,
        read_body=lambda request: read_body(request, max_body),
        respond=JSONBody,
        on_ingest=on_ingest,
    )
    callbacks.append(
        shopify_webhook.route(
            store,
            secrets,
            read_body=lambda request: read_body(request, max_body),
            respond=JSONBody,
            on_ingest=on_ingest,
        )
    )
    routes += [Route(path, _guarded(endpoint), methods=["POST"]) for path, endpoint in callbacks]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    if api_token:
        app.add_middleware(BearerAuth, token=api_token)
    return app


def _guarded(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Turn :class:`Rejected` into its JSON answer, and anything unexpected into a logged
    500 (answered here, so the server does not log the same traceback again)."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Rejected as exc:
            return exc.response()
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONBody({"error": "internal error"}, 500)

    return run


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no such path {request.url.path!r}", 405: "method not allowed"}.get(
        exc.status_code, str(exc.detail)
    )
    return JSONBody({"error": message}, exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONBody({"error": "internal error"}, 500)


# -- OpenAPI -----------------------------------------------------------------------------------
def _responses(**codes: tuple[str, str]) -> dict[str, Any]:
    """``_responses(r202=("Accepted", "stored"))``: status -> a JSON body of that schema."""
    return {
        code[1:]: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
        for code, (name, text) in codes.items()
    }


def openapi_document(*, bearer: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 description of these routes; the event schema is the bundled one."""
    event = {"$ref": "#/components/schemas/Event"}
    auth = {"r401": ("Error", "missing or wrong bearer token")} if bearer else {}
    post = {
        "summary": "Ingest events: all or nothing, idempotent by id",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [event, {"type": "array", "items": event}]}
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
        "responses": _responses(
            r202=("Accepted", "stored"),
            r400=("Error", "not JSON, not UTF-8, or empty"),
            r413=("Error", f"body too large, or more than {MAX_EVENTS} events"),
            r422=("Error", "a bad event (index, field); nothing was stored"),
            r503=("Error", "the database is unavailable; nothing was stored"),
            **auth,
        ),
    }
    health = {
        "summary": "Whether the store answers (never needs a token)",
        "security": [],
        "responses": _responses(r200=("Health", "it answers"), r503=("Health", "it does not")),
    }
    customer = {
        "summary": "A customer's profile, journey instances and records",
        "parameters": [
            {"name": "customer_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "responses": _responses(
            r200=("Customer", "the customer"),
            r404=("Error", "unknown customer"),
            r503=("Error", "the database is unavailable"),
            **auth,
        ),
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "postflow", "version": "1", "description": "Contract section 6."},
        "paths": {
            "/events": {"post": post},
            "/healthz": {"get": health},
            "/customers/{customer_id}": {"get": customer},
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {"schemas": _schemas()},
    }
    if bearer:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def _schemas() -> dict[str, Any]:
    string, count, obj = {"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "object"}

    def shape(required: list[str], **properties: Any) -> dict[str, Any]:
        return {"type": "object", "required": required, "properties": properties}

    return {
        "Event": copy.deepcopy(loader.load_schema("event")),
        "Accepted": shape(["accepted", "duplicates"], accepted=count, duplicates=count),
        "Error": shape(["error"], error=string, field=string, index=count),
        "Health": shape(["status"], status={"enum": ["ok", "unavailable"]}, error=string),
        "Customer": shape(
            ["customer_id", "profile", "instances", "records"],
            customer_id=string,
            profile=obj,
            instances={"type": "array", "items": obj},
            records={"type": "array", "items": obj},
        ),
    }
