"""Provider callbacks on the daemon's HTTP server: ``/webhooks/sendgrid`` and
``/webhooks/twilio/{status,inbound}`` (contract §6).

Each handler checks the provider's signature over the exact bytes received before reading
anything, asks the outbox once for what the mapping needs (whose message, whose address),
and ingests the resulting events like any others (validated, de-duplicated by id, applied
by the sweep at their time). A wrong or missing signature is 403 and changes nothing; a
Twilio callback while ``TWILIO_AUTH_TOKEN`` is unset is 503 (it cannot be checked). SendGrid
is checked only when ``SENDGRID_WEBHOOK_PUBLIC_KEY`` is set, as SendGrid's signing is
optional. Bodies that are not what the endpoint takes are 400 with the reason; items a
provider may add tomorrow (unknown event types) are counted as ignored, since a 4xx would
make SendGrid retry the whole batch for a day.

Besides events, delivery reports are kept on the outbox row (``delivery_status``), so
``status: sent`` in the records stays the engine's decision, as the contract says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from postflow import events
from postflow.compliance import normalize_phone
from postflow.config import Settings
from postflow.http import provider_events as pe
from postflow.http import signatures
from postflow.store import database
from postflow.store.outbox import Outbox, SentRef
from postflow.store.sql import SqlStore, wall_us
from postflow.suppression import change_event

log = logging.getLogger("postflow.http")

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TWILIO_SIGNATURE = "X-Twilio-Signature"
SENDGRID_RANK = {"processed": 0, "deferred": 1, "delivered": 2, "bounce": 2, "dropped": 2}
"""SendGrid events that say where a mail is (kept as the outbox row's delivery status), in
the order they happen."""
TWILIO_REFUSED = 21610
_RANK = {"queued": 0, "accepted": 0, "scheduled": 0, "sending": 1, "sent": 2}
"""Twilio's statuses in the order they happen; anything later (delivered, undelivered,
failed, read) ranks 3, so a late ``sent`` callback never replaces ``delivered``."""


@dataclass(frozen=True)
class WebhookSettings:
    """What the callbacks need: secrets from the environment, the rest from postflow.yaml."""

    sendgrid_public_key: str | None = None
    twilio_auth_token: str | None = None
    shopify_secret: str | None = None
    public_url: str | None = None
    help_text: str | None = None
    region: str | None = None

    @classmethod
    def load(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if environ is None else environ
        http = settings.raw.get("http") or {}
        sms = (settings.raw.get("channels") or {}).get("sms") or {}
        return cls(
            sendgrid_public_key=env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
            shopify_secret=env.get("SHOPIFY_WEBHOOK_SECRET") or None,
            public_url=(http.get("public_url") or "").rstrip("/") or None,
            help_text=sms.get("help_text"),
            region=settings.default_region,
        )


class Refusal(Exception):
    """An answer other than 200: status and JSON error."""

    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.field = status, error, field


Ingest = Callable[[list[dict[str, Any]]], tuple[int, int]]


class Callbacks:
    """The three endpoints' logic over one store; synchronous (run in a worker thread)."""

    def __init__(
        self, store: SqlStore, settings: WebhookSettings, on_ingest: Callable[[], None] | None
    ) -> None:
        self.store = store
        self.outbox = Outbox(store)
        self.settings = settings
        self.on_ingest = on_ingest

    # -- SendGrid ---------------------------------------------------------------------------
    def sendgrid(self, body: bytes, signature: str | None, timestamp: str | None) -> dict[str, Any]:
        key = self.settings.sendgrid_public_key
        if key is not None:
            try:
                good = signatures.verify_sendgrid(key, body, signature, timestamp)
            except signatures.SignatureConfigError as exc:
                log.error("%s", exc)
                raise Refusal(503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not usable") from None
            if not good:
                raise Refusal(403, "bad or missing SendGrid signature")
        items = self._parsed(lambda: pe.parse_sendgrid(body))
        now = wall_us()
        found = self.outbox.refs(pe.sendgrid_message_ids(items))
        refs = {mid: _ref(r) for mid, r in found.items()}
        owners = self.outbox.owners(pe.sendgrid_addresses(items, refs))
        result = pe.map_sendgrid(items, refs, owners, now)
        self.outbox.track(_sendgrid_reports(items, found, now))
        accepted, duplicates, bad = self._ingest(result.events)
        return {"accepted": accepted, "duplicates": duplicates, "ignored": result.ignored + bad}

    # -- Twilio -----------------------------------------------------------------------------
    def twilio(
        self, path: str, own_url: str, content_type: str, body: bytes, signature: str | None
    ) -> str:
        """Check and act on one Twilio callback; returns the TwiML answer."""
        token = self.settings.twilio_auth_token
        if token is None:
            raise Refusal(503, "TWILIO_AUTH_TOKEN is not set: the signature cannot be checked")
        if not signature:
            raise Refusal(403, "bad or missing X-Twilio-Signature")
        params = self._parsed(lambda: pe.parse_form(body, content_type))
        url = self.settings.public_url + path if self.settings.public_url else own_url
        if not signatures.verify_twilio(token, url, params, signature):
            raise Refusal(403, "bad or missing X-Twilio-Signature")
        form = dict(params)
        if path.endswith("/status"):
            self._status(form)
            return pe.twiml(None)
        return self._inbound(form)

    def _status(self, form: Mapping[str, str]) -> None:
        update = self._parsed(lambda: pe.status_update(form))
        now = wall_us()
        found = self.outbox.by_provider_id([update.provider_id], provider="twilio")
        ref = found.get(update.provider_id)
        if ref is None:
            log.info("Twilio status for unknown message %s ignored", update.provider_id)
            return
        if _RANK.get(update.status, 3) >= _RANK.get(ref.delivery_status or "queued", 3):
            self.outbox.track([(ref.message_id, update.status, now)])
        if update.error_code == TWILIO_REFUSED and ref.to:
            event_id = f"twilio:{update.provider_id}:suppressed"
            self._ingest([change_event(ref.to, "stop", ref.customer_id, now, event_id=event_id)])

    def _inbound(self, form: Mapping[str, str]) -> str:
        sender = normalize_phone(form.get("From"), self.settings.region)
        if sender is None:
            raise Refusal(400, f"From {form.get('From', '')!r} is not a phone number", "From")
        customer = self.outbox.owners([sender]).get(sender, sender)
        kind = pe.classify_inbound(form)
        self._ingest(pe.inbound_events(form, customer, sender, wall_us()))
        return pe.twiml(self.settings.help_text if kind == "help" else None)

    # -- shared -----------------------------------------------------------------------------
    @staticmethod
    def _parsed(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except pe.CallbackError as exc:
            raise Refusal(400, exc.message, exc.field) from None

    def _ingest(self, objects: Sequence[dict[str, Any]]) -> tuple[int, int, int]:
        """Validate and store; an object the event schema refuses (a provider sent text we
        cannot store) is logged and counted, never a reason to refuse the batch."""
        parsed, bad = [], 0
        for obj in objects:
            try:
                parsed.append(events.parse_event(obj))
            except events.EventError as exc:
                bad += 1
                log.warning("provider callback item not stored: %s", exc)
        if not parsed:
            return 0, 0, bad
        result = self.store.ingest(parsed)
        if result.accepted and self.on_ingest is not None:
            try:
                self.on_ingest()
            except Exception:
                log.exception("on_ingest failed")
        return result.accepted, result.duplicates, bad


def _ref(row: Any) -> pe.SentRef:
    return pe.SentRef(row.message_id, row.customer_id, row.journey, row.step, row.to or "")


def _sendgrid_reports(
    items: list[Any], known: Mapping[str, SentRef], now: int
) -> list[tuple[str, str, int]]:
    """The newest delivery state of each known message in a batch, ranked so a report that
    comes late (``processed`` after ``delivered``, often in the same second) never moves a
    message backwards: by rank, then by time."""
    best: dict[str, tuple[int, int, str]] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("event") not in SENDGRID_RANK:
            continue
        mid = item.get(pe.MESSAGE_ID_ARG)
        if not isinstance(mid, str) or mid not in known:
            continue
        event = str(item["event"])
        candidate = (SENDGRID_RANK[event], pe.instant(item.get("timestamp"), now), event)
        stored = known[mid].delivery_status
        floor = (SENDGRID_RANK.get(stored or "", -1), -1, "")
        if candidate[0] >= floor[0] and candidate > best.get(mid, floor):
            best[mid] = candidate
    return [(mid, event, at) for mid, (_, at, event) in best.items()]


def routes(
    store: SqlStore,
    settings: WebhookSettings,
    *,
    read_body: Callable[[Request], Any],
    respond: Callable[[Any, int], Response],
    on_ingest: Callable[[], None] | None = None,
) -> list[tuple[str, Callable[[Request], Any]]]:
    """(path, endpoint) pairs for the app; ``read_body`` enforces ``max_body``."""
    callbacks = Callbacks(store, settings, on_ingest)

    async def sendgrid(request: Request) -> Response:
        body = await read_body(request)
        headers = request.headers
        answer = await run_callback(
            store,
            respond,
            callbacks.sendgrid,
            body,
            headers.get(SENDGRID_SIGNATURE),
            headers.get(SENDGRID_TIMESTAMP),
        )
        return answer if isinstance(answer, Response) else respond(answer, 200)

    async def twilio(request: Request) -> Response:
        body = await read_body(request)
        xml = await run_callback(
            store,
            respond,
            callbacks.twilio,
            request.url.path,
            str(request.url),
            request.headers.get("content-type", ""),
            body,
            request.headers.get(TWILIO_SIGNATURE),
        )
        if isinstance(xml, Response):
            return xml
        return Response(xml, 200, media_type="application/xml")

    return [
        ("/webhooks/sendgrid", sendgrid),
        ("/webhooks/twilio/status", twilio),
        ("/webhooks/twilio/inbound", twilio),
    ]


async def run_callback(
    store: SqlStore, respond: Callable[[Any, int], Response], handle: Callable[..., Any], *args: Any
) -> Any:
    """``handle(*args)`` in a worker thread, for every provider callback alike: its answer, or
    the response to send instead: a :class:`Refusal` as its status and JSON error, a database
    error as 503 with Retry-After."""
    try:
        return await run_in_threadpool(handle, *args)
    except Refusal as exc:
        return respond(_error(exc), exc.status)
    except (sa.exc.SQLAlchemyError, database.DatabaseError) as exc:
        return _unavailable(exc, store, respond)


def _unavailable(
    exc: BaseException, store: SqlStore, respond: Callable[[Any, int], Response]
) -> Response:
    """A database error: 503 with Retry-After (the provider retries; events de-duplicate
    by id), logged in one line like POST /events does."""
    if isinstance(exc, database.DatabaseError):
        message = str(exc)
    else:
        message = database.explain(exc, store.url)
    log.warning("provider callback: nothing stored: %s", message)
    response = respond({"error": message}, 503)
    response.headers["Retry-After"] = "1"
    return response


def _error(exc: Refusal) -> dict[str, Any]:
    return {"error": exc.error, **({"field": exc.field} if exc.field else {})}
