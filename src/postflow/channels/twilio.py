"""SMS through Twilio's Messages API, with the official ``twilio`` SDK.

Sent from ``from`` or a Messaging Service (``messaging_service_sid``), with a
``StatusCallback`` to this daemon's ``/webhooks/twilio/status`` when ``http.public_url`` is
set, so delivery reports come back. The SDK has no base-URL option; pointing ``client.api``
at ``base_url`` is the documented way to reach a fake or a proxy. Its pluggable HTTP client
is subclassed only to keep the last ``Retry-After`` per thread, which Twilio's exceptions
do not carry.

Answers: 2xx sent (the message SID); 429, 5xx, timeouts and connection errors retry; every
other refusal fails at once. 21610 (the number replied STOP to Twilio) also suppresses the
number; 21211 (not a valid number) just fails.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from postflow.channels.base import Delivery, one_line, parse_retry_after
from postflow.effects import OutboundMessage

DEFAULT_HOST = "https://api.twilio.com"
UNSUBSCRIBED = 21610


class _HttpClient(TwilioHttpClient):
    """Twilio's own requests-based client, remembering each thread's last Retry-After."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(timeout=timeout_s)
        self.local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self.local.retry_after = None
        response = super().request(*args, **kwargs)
        self.local.retry_after = parse_retry_after((response.headers or {}).get("Retry-After"))
        return response


class TwilioChannel:
    name = "twilio"
    concurrent = True

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        sender: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 10.0,
        rate: tuple[float, int | None] | None = None,
    ) -> None:
        self.sender = sender
        self.service = messaging_service_sid
        self.status_callback = status_callback
        self.rate = rate
        self.http = _HttpClient(timeout_s)
        self.client = Client(account_sid, auth_token, http_client=self.http)
        self.client.api.base_url = (base_url or DEFAULT_HOST).rstrip("/")

    def send(self, message: OutboundMessage) -> Delivery:
        body = message.text if message.text is not None else message.html
        try:
            created = self.client.api.v2010.account.messages.create(
                to=message.to,
                body=body or " ",
                from_=self.sender if not self.service else None,
                messaging_service_sid=self.service,
                status_callback=self.status_callback,
            )
        except TwilioRestException as exc:
            return self._refused(exc.status, exc.code, exc.msg)
        except requests.Timeout as exc:
            return Delivery("retry", self.name, error=one_line(f"timeout {exc}"))
        except requests.RequestException as exc:
            return Delivery("retry", self.name, error=one_line(f"connection_error {exc}"))
        except TwilioException as exc:  # e.g. the RFC 9457 TwilioServiceException
            status = getattr(exc, "status", 0) or 0
            code = getattr(exc, "code", None)
            return self._refused(int(status), code, str(exc))
        return Delivery("sent", self.name, provider_id=created.sid)

    def _refused(self, status: int, code: Any, text: str) -> Delivery:
        text = text.removeprefix("Unable to create record: ")
        error = one_line(f"{code if code is not None else status} {text}")
        if status == 429 or status >= 500:
            retry_after = getattr(self.http.local, "retry_after", None)
            return Delivery("retry", self.name, error=error, retry_after=retry_after)
        if code == UNSUBSCRIBED:
            return Delivery("failed", self.name, error=error, suppress="stop")
        return Delivery("failed", self.name, error=error)

    def close(self) -> None:
        session = getattr(self.http, "session", None)
        if session is not None:
            session.close()
