"""Email through SendGrid's v3 Mail Send API, with the official ``sendgrid`` SDK.

One request per message, one personalization each: a message is one customer's, and a
failure must belong to one outbox row. Every mail carries ``custom_args.postflow_message_id``
(SendGrid copies custom args onto each Event Webhook event, which is how opens, clicks and
bounces find their message, and how a duplicate after a crash can be traced) and the
journey and step as categories (SendGrid's statistics group by them). Marketing mail gets
the configured unsubscribe group (``asm``), so SendGrid's own unsubscribe link and
suppression work; transactional mail never does (a receipt must not be unsubscribable).

Answers map to the dispatcher's three outcomes: 2xx sent (the ``X-Message-Id``), 429 / 5xx /
network trouble retry (never sooner than ``Retry-After`` or the rate-limit reset), any other
refusal (400 bad request, 401 bad key, 403 unverified sender...) failed at once.
"""

from __future__ import annotations

import email.utils
import math
import time
import urllib.error
from collections.abc import Mapping
from typing import Any

import orjson
from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from postflow.channels.base import (
    MAX_RETRY_AFTER,
    ChannelConfigError,
    Delivery,
    one_line,
    parse_retry_after,
)
from postflow.effects import OutboundMessage

DEFAULT_HOST = "https://api.sendgrid.com"
RETRY_STATUSES = frozenset({408, 429})
MAX_CATEGORY = 255


def parse_sender(value: str, setting: str) -> dict[str, str]:
    """``"Shop <hi@shop.example>"`` -> ``{"email": ..., "name": ...}``; raises
    :class:`ChannelConfigError` naming ``setting`` when there is no address in it."""
    name, address = email.utils.parseaddr(value)
    if "@" not in address or " " in address:
        raise ChannelConfigError(
            f"{setting}: {value!r} is not an email address (write it like Shop <hi@shop.example>)"
        )
    return {"email": address, "name": name} if name else {"email": address}


class SendGridChannel:
    name = "sendgrid"
    concurrent = True

    def __init__(
        self,
        api_key: str,
        *,
        sender: str,
        reply_to: str | None = None,
        unsubscribe_group_id: int | None = None,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        rate: tuple[float, int | None] | None = None,
    ) -> None:
        self.sender = parse_sender(sender, "channels.email.from")
        self.reply_to = parse_sender(reply_to, "channels.email.reply_to") if reply_to else None
        self.group_id = unsubscribe_group_id
        self.rate = rate
        self.client = SendGridAPIClient(
            api_key=api_key, host=(base_url or DEFAULT_HOST).rstrip("/")
        )
        # Child clients copy the timeout when they are built (python_http_client), so this
        # reaches every request.
        self.client.client.timeout = timeout_s

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        """The v3 mail/send request for one message."""
        personalization: dict[str, Any] = {"to": [{"email": message.to}]}
        mail: dict[str, Any] = {"personalizations": [personalization], "from": self.sender}
        if self.reply_to:
            mail["reply_to"] = self.reply_to
        if message.subject is not None:
            mail["subject"] = message.subject
        if message.sendgrid_template_id:
            mail["template_id"] = message.sendgrid_template_id
            if message.template_data is not None:
                personalization["dynamic_template_data"] = _plain(message.template_data)
        else:
            content = []
            if message.text is not None:
                content.append({"type": "text/plain", "value": message.text or " "})
            if message.html is not None:
                content.append({"type": "text/html", "value": message.html or " "})
            mail["content"] = content or [{"type": "text/plain", "value": " "}]
        categories = [message.journey[:MAX_CATEGORY], message.step[:MAX_CATEGORY]]
        mail["categories"] = list(dict.fromkeys(categories))
        mail["custom_args"] = {
            "postflow_message_id": message.message_id,
            "postflow_journey": message.journey,
            "postflow_step": message.step,
        }
        if self.group_id is not None and not message.transactional:
            mail["asm"] = {"group_id": self.group_id}
        return mail

    def send(self, message: OutboundMessage) -> Delivery:
        try:
            response = self.client.client.mail.send.post(request_body=self.body(message))
        except http_errors.HTTPError as exc:
            return _refused(exc)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            kind = "timeout" if isinstance(reason, TimeoutError) else "connection_error"
            return Delivery("retry", self.name, error=one_line(f"{kind} {reason}"))
        except OSError as exc:
            return Delivery("retry", self.name, error=one_line(f"connection_error {exc}"))
        headers = getattr(response, "headers", None)
        provider_id = headers.get("X-Message-Id") if headers is not None else None
        return Delivery("sent", self.name, provider_id=provider_id)

    def close(self) -> None:
        """Nothing to release: the SDK opens a connection per request."""


def _refused(exc: http_errors.HTTPError) -> Delivery:
    status = int(getattr(exc, "status_code", 0) or 0)
    error = one_line(f"{status} {_error_message(exc)}")
    if status == 429:
        return Delivery("retry", "sendgrid", error=error, retry_after=_retry_after(exc.headers))
    if status in RETRY_STATUSES or status >= 500:
        headers = exc.headers
        after = parse_retry_after(headers.get("Retry-After")) if headers is not None else None
        return Delivery("retry", "sendgrid", error=error, retry_after=after)
    return Delivery("failed", "sendgrid", error=error)


def _error_message(exc: http_errors.HTTPError) -> str:
    """SendGrid's first error message (``{"errors": [{"message": ...}]}``), else the reason."""
    try:
        body = orjson.loads(exc.body or b"")
        messages = [e.get("message") for e in body.get("errors", []) if isinstance(e, dict)]
        text = "; ".join(str(m) for m in messages if m)
        if text:
            return text
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        pass
    return str(getattr(exc, "reason", "") or "error")


def _retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """``Retry-After`` (seconds or an HTTP-date), else on a 429 the wait until
    ``X-RateLimit-Reset`` (epoch seconds); absurd values are read as none."""
    if headers is None:
        return None
    found = parse_retry_after(headers.get("Retry-After"), now=now)
    if found is not None:
        return found
    reset = headers.get("X-RateLimit-Reset")
    if reset is None or headers.get("X-RateLimit-Remaining") not in (None, "0"):
        return None
    try:
        wait = float(reset) - (now if now is not None else time.time())
    except ValueError:
        return None
    return max(0.0, wait) if math.isfinite(wait) and wait <= MAX_RETRY_AFTER else None


def _plain(value: Any) -> Any:
    """Template data as JSON would carry it (dates and the like as text)."""
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
