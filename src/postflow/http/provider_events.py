"""Provider callbacks (SendGrid Event Webhook, Twilio inbound SMS and status callbacks) mapped
to postflow events: pure functions, no database, no clock.

The HTTP layer verifies the signature, asks the store once for what it needs (the outbox's
:class:`SentRef` for each ``postflow_message_id``, the owner of each address) and passes those
lookups in, so the mapping can be tested exhaustively without a server. The result is plain
JSON-ready event dicts shaped like contract §1 events, ingested like any other: validated,
de-duplicated by id, applied at ``at``.

Providers retry and batch, and may send event types we do not know yet. So an item we cannot
use is counted as ignored, never an error: a 4xx would make SendGrid retry the whole batch for
a day. Only a body that is not what the endpoint accepts at all raises :class:`CallbackError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import orjson

from postflow.compliance import is_mailbox, normalize_email
from postflow.durations import MAX_INSTANT, MIN_INSTANT, US_PER_SECOND, format_instant
from postflow.events import SUPPRESSED, UNSUPPRESSED

MESSAGE_ID_ARG = "postflow_message_id"
"""The custom arg every mail carries; SendGrid copies it onto each event, at the top level."""
MAX_FORM_FIELDS = 1000

SENDGRID_ENGAGEMENT = {
    "delivered": "email_delivered",
    "open": "email_opened",
    "click": "email_clicked",
    "bounce": "email_bounced",
}
SENDGRID_SUPPRESSING = frozenset("bounce dropped spamreport unsubscribe group_unsubscribe".split())
"""Event names that suppress the address; the name is the suppression reason (contract §2)."""

OPT_OUT_WORDS = frozenset("stop stopall unsubscribe cancel end quit revoke optout".split())
"""Twilio's default opt-out keywords (whole body, any case); START/UNSTOP/YES opt back in."""
OPT_IN_WORDS = frozenset({"start", "unstop", "yes"})
HELP_WORDS = frozenset({"help", "info"})
_OPT_OUT_TYPES: dict[str, Literal["stop", "start", "help"]] = {
    "STOP": "stop",
    "START": "start",
    "HELP": "help",
}
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class CallbackError(Exception):
    """A callback body the endpoint cannot read at all: answered ``400`` with
    ``{"error": message, "field": field, "index": index}``."""

    def __init__(self, message: str, field: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.index = index


@dataclass(frozen=True)
class SentRef:
    """What the outbox knows of a message we sent: who it was for and which step sent it."""

    message_id: str
    customer_id: str
    journey: str
    step: str
    to: str


@dataclass(frozen=True)
class SendGridResult:
    """Events to ingest, and how many items produced none (for the response and metrics)."""

    events: list[dict[str, Any]]
    ignored: int


@dataclass(frozen=True)
class StatusUpdate:
    """A Twilio delivery status for the message Twilio knows as ``provider_id`` (its SID)."""

    provider_id: str
    status: str
    error_code: int | None


def _event(
    id_: str | None, type_: str, customer_id: str, at_us: int, data: dict[str, Any]
) -> dict[str, Any]:
    event: dict[str, Any] = {} if id_ is None else {"id": id_}
    event.update(type=type_, customer_id=customer_id, at=format_instant(at_us), data=data)
    return event


# --- SendGrid -------------------------------------------------------------------------------


def _address(value: Any) -> str | None:
    """A normalised email that could be a mailbox (``local@domain``, at most 320 characters):
    a provider's junk (``"@"``, a 100 KB string) must not land on the suppression list."""
    found = normalize_email(value)
    if found is None or len(found) > 320 or not is_mailbox(found):
        return None
    return found


def parse_sendgrid(body: bytes) -> list[Any]:
    """The Event Webhook body: always a JSON array of event objects (the items are checked
    one by one in :func:`map_sendgrid`, where a bad one is ignored, not fatal)."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CallbackError(f"body is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise CallbackError("expected a JSON array of events")
    return items


def _name(item: Any) -> str | None:
    """The event name of an item we map; None for anything else (including unhashable junk)."""
    if not isinstance(item, dict):
        return None
    name = item.get("event")
    if not isinstance(name, str):
        return None
    return name if name in SENDGRID_ENGAGEMENT or name in SENDGRID_SUPPRESSING else None


def _message_id(item: Mapping[str, Any]) -> str | None:
    value = item.get(MESSAGE_ID_ARG)
    return value if isinstance(value, str) and value else None


def _suppresses(item: Mapping[str, Any]) -> bool:
    """``blocked`` is SendGrid's soft bounce (a receiving server refused for now): the address
    stays usable, so it suppresses nothing."""
    name = _name(item)
    return name in SENDGRID_SUPPRESSING and not (name == "bounce" and item.get("type") == "blocked")


def sendgrid_message_ids(items: list[Any]) -> list[str]:
    """The distinct ``postflow_message_id`` values of the items that map to an event, so the
    caller can fetch every :class:`SentRef` with one query."""
    ids = (_message_id(item) for item in items if _name(item) is not None)
    return list(dict.fromkeys(i for i in ids if i is not None))


def sendgrid_addresses(items: list[Any], refs: Mapping[str, SentRef] | None = None) -> list[str]:
    """The distinct normalised emails whose owner the caller must look up: those of
    suppressing items. With ``refs`` given, items whose message is known are left out (their
    ref names the customer already)."""
    found: list[str] = []
    for item in items:
        if not isinstance(item, dict) or not _suppresses(item):
            continue
        message_id = _message_id(item)
        if refs is not None and message_id is not None and message_id in refs:
            continue
        address = _address(item.get("email"))
        if address is not None:
            found.append(address)
    return list(dict.fromkeys(found))


def instant(value: Any, now_us: int) -> int:
    """``timestamp`` (unix seconds: int, float or numeric string) in microseconds; anything
    unusable (missing, bool, NaN, out of the printable years) is the time of receipt."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return now_us
    try:
        seconds = Decimal(value)  # exact for ints, floats and strings alike; strips blanks
    except InvalidOperation:
        return now_us
    if not seconds.is_finite() or abs(seconds) > 10**12:
        return now_us
    us = int((seconds * US_PER_SECOND).to_integral_value())
    return us if MIN_INSTANT <= us <= MAX_INSTANT else now_us


def _event_key(item: Mapping[str, Any]) -> str:
    """``sg_event_id``, else a digest of the item's canonical JSON: a retried batch carries
    the same items, so the fallback id still lets ingestion drop the duplicate."""
    value = item.get("sg_event_id")
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    canonical = json.dumps(
        item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return "h:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def map_sendgrid(
    items: list[Any], refs: Mapping[str, SentRef], owners: Mapping[str, str], now_us: int
) -> SendGridResult:
    """Map an Event Webhook batch (contract §6).

    ``delivered``/``open``/``click``/``bounce`` of a message the outbox knows become
    ``email_delivered``/``email_opened``/``email_clicked``/``email_bounced`` for its customer
    (``sendgrid:{sg_event_id}``). Suppressing events also raise ``address_suppressed``
    (``sendgrid:{sg_event_id}:suppressed``, reason = the SendGrid event name) even for mail we
    cannot match, since suppression belongs to the address: its customer is the message's,
    else ``owners[address]``, else the address itself. The address is the event's ``email``,
    else the recipient the outbox recorded. Items producing no event count as ``ignored``.
    """
    events: list[dict[str, Any]] = []
    ignored = 0
    for item in items:
        name = _name(item)
        if name is None:
            ignored += 1
            continue
        message_id = _message_id(item)
        ref = refs.get(message_id) if message_id is not None else None
        key = _event_key(item)
        at = instant(item.get("timestamp"), now_us)
        produced = False
        if ref is not None and name in SENDGRID_ENGAGEMENT:
            data: dict[str, Any] = {
                "message_id": ref.message_id,
                "journey": ref.journey,
                "step": ref.step,
            }
            if name == "click" and isinstance(item.get("url"), str):
                data["url"] = item["url"]
            type_ = SENDGRID_ENGAGEMENT[name]
            events.append(_event(f"sendgrid:{key}", type_, ref.customer_id, at, data))
            produced = True
        if _suppresses(item):
            address = _address(item.get("email"))
            if address is None and ref is not None:
                address = _address(ref.to)
            if address is not None:
                customer = ref.customer_id if ref is not None else owners.get(address, address)
                data = {"address": address, "reason": name}
                events.append(_event(f"sendgrid:{key}:suppressed", SUPPRESSED, customer, at, data))
                produced = True
        if not produced:
            ignored += 1
    return SendGridResult(events, ignored)


# --- Twilio ---------------------------------------------------------------------------------


def parse_form(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """A Twilio callback's form parameters, as received pairs (repeated keys kept: the
    signature covers all of them). Percent-escapes must decode to UTF-8 too: replacing bad
    bytes would only produce a signature mismatch that hides the real problem."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise CallbackError(
            f"expected application/x-www-form-urlencoded, got {content_type or 'no content type'}",
            field="content-type",
        )
    try:
        text = body.decode("utf-8")
        return parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise CallbackError("form body is not UTF-8") from None
    except ValueError:
        raise CallbackError(f"more than {MAX_FORM_FIELDS} form fields") from None


def classify_inbound(params: Mapping[str, str]) -> Literal["stop", "start", "help", "message"]:
    """What an inbound SMS asks for. Advanced Opt-Out's ``OptOutType`` decides first (it knows
    custom and localised keywords); else Twilio's default keywords, matched against the whole
    body, trimmed, ignoring case (``STOP please`` is a message, as it is for Twilio)."""
    kind = _OPT_OUT_TYPES.get(str(params.get("OptOutType") or "").strip().upper())
    if kind is not None:
        return kind
    word = str(params.get("Body") or "").strip().lower()
    if word in OPT_OUT_WORDS:
        return "stop"
    if word in OPT_IN_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return "message"


def inbound_events(
    params: Mapping[str, str], customer_id: str, sender: str, now_us: int
) -> list[dict[str, Any]]:
    """Events for an inbound SMS from ``sender`` (normalised E.164 ``From``), id
    ``twilio:{MessageSid}``. STOP withdraws SMS consent and suppresses the number; START
    restores both; HELP raises nothing (the caller answers with ``help_text``)."""
    kind = classify_inbound(params)
    sid = params.get("MessageSid") or params.get("SmsSid")
    id_ = f"twilio:{sid}" if sid else None
    if kind == "help":
        return []
    if kind == "message":
        data = {"from": sender, "body": params.get("Body") or ""}
        return [_event(id_, "sms_received", customer_id, now_us, data)]
    stop = kind == "stop"
    type_ = SUPPRESSED if stop else UNSUPPRESSED
    event = _event(id_, type_, customer_id, now_us, {"address": sender, "reason": kind})
    event["customer"] = {"sms_consent": not stop}
    return [event]


def twiml(message: str | None) -> str:
    """The TwiML answer: empty ``<Response/>``, or one reply message. Characters XML 1.0
    cannot carry at all (control characters from a config file) are dropped so Twilio
    always receives a well-formed document."""
    if message is None:
        return _TWIML_EMPTY
    text = escape(_XML_INVALID.sub("", message))
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{text}</Message></Response>'


def status_update(params: Mapping[str, str]) -> StatusUpdate:
    """A status callback's message SID, status and (on failures) numeric ``ErrorCode``."""
    sid, status = (str(params.get(name) or "").strip() for name in ("MessageSid", "MessageStatus"))
    if not sid or not status:
        field = "MessageSid" if not sid else "MessageStatus"
        raise CallbackError(f"missing {field}", field=field)
    code = str(params.get("ErrorCode") or "").strip()
    numeric = code.isascii() and code.isdigit() and len(code) <= 9
    return StatusUpdate(sid, status, int(code) if numeric else None)
