"""Fake Twilio Messages API (create message) for tests that drive the real `twilio` SDK.

Point the SDK at it with `client = Client(fake.account_sid, fake.auth_token)` and
`client.api.base_url = fake.base_url` (Twilio's SDK has no base-URL argument). Requests are
checked against the documented create-message contract; problems go to `violations` and
get a 400 (401 / 404 / 405) in Twilio's *legacy* error JSON. The legacy shape matters:
twilio>=9.10 turns an RFC 9457 body into `TwilioServiceException`, which is not a
`TwilioRestException`, and the Messages API answers in the legacy shape.

What the real API answers to a well-formed request (an invalid `To`, the test-credential
magic numbers) is *not* a violation: it is the provider's normal answer and is sent
without consuming the script.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .server import Answer, Fail, FakeServer, Incoming, Outcome, Reply

API_VERSION = "2010-04-01"
PATH = re.compile(rf"/{API_VERSION}/Accounts/(?P<sid>[^/]+)/Messages\.json")
E164 = re.compile(r"\+[1-9]\d{1,14}")
# Twilio's test-credential numbers: To these, the real API fails in a known way.
MAGIC_TO = {
    "+15005550001": 21211,
    "+15005550004": 21610,
}
MESSAGES = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource was not found",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21701: "The Messaging Service Sid is invalid.",
}

Pairs = tuple[tuple[str, str], ...]


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's legacy error JSON, the shape the Messages API returns."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio(FakeServer):
    """In-process stand-in for `POST /2010-04-01/Accounts/{sid}/Messages.json`."""

    def __init__(
        self,
        account_sid: str = "AC" + "0123456789abcdef" * 2,
        auth_token: str = "test-token",
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token

    def handle(self, request: Incoming) -> Outcome:
        match = PATH.fullmatch(request.path)
        if match is None or match["sid"] != self.account_sid:
            return _reject(request, 404, [(20404, f"unknown path {request.path}")])
        if request.method != "POST":
            return _reject(request, 405, [(20004, f"method {request.method} not supported")])
        if not self._authorized(request.headers.get("Authorization")):
            return _reject(request, 401, [(20003, "Basic auth is not account_sid:auth_token")])
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            problem = f"Content-Type must be application/x-www-form-urlencoded: {content_type!r}"
            return _reject(request, 400, [(21602, problem)])
        pairs = tuple(parse_qsl(request.body.decode(), keep_blank_values=True))
        form = dict(pairs)
        problems = message_problems(form)
        if problems:
            return _reject(request, 400, problems, pairs)
        to = form["To"]
        if not E164.fullmatch(to) or to in MAGIC_TO:
            code = MAGIC_TO.get(to, 21211)
            message = MESSAGES.get(code) or f"The 'To' number {to} is not a valid phone number."
            reply = Reply.of_json(400, error_body(400, code, message))
            return Outcome(reply, form_pairs=pairs)
        return self._answer(self._next_answer(), form, pairs)

    def _authorized(self, header: str | None) -> bool:
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return header == "Basic " + base64.b64encode(expected).decode()

    def _answer(self, answer: Answer, form: dict[str, str], pairs: Pairs) -> Outcome:
        if isinstance(answer, Fail):
            code = answer.code or answer.status
            headers = {} if answer.retry_after is None else {"Retry-After": str(answer.retry_after)}
            body = error_body(answer.status, code, answer.text)
            return Outcome(Reply.of_json(answer.status, body, headers), answer, form_pairs=pairs)
        sid = "SM" + secrets.token_hex(16)
        service = form.get("MessagingServiceSid")
        now = format_datetime(datetime.now(UTC))
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": None if service else form.get("From"),
            "to": form["To"],
            "messaging_service_sid": service,
            "num_media": str(sum(1 for name, _ in pairs if name == "MediaUrl")),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "status": "accepted" if service else "queued",
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {},
        }
        return Outcome(Reply.of_json(201, message), answer, message_id=sid, form_pairs=pairs)


def message_problems(form: dict[str, str]) -> list[tuple[int, str]]:
    """Check create-message fields against the documented contract; [] when valid."""
    problems: list[tuple[int, str]] = []
    if not form.get("To"):
        problems.append((21604, MESSAGES[21604]))
    sender, service = form.get("From"), form.get("MessagingServiceSid")
    if bool(sender) == bool(service):
        problems.append((21603, "exactly one of From / MessagingServiceSid is required"))
    if service and not service.startswith("MG"):
        problems.append((21701, f"MessagingServiceSid {service!r} does not start with MG"))
    body = form.get("Body")
    if body is None and not ("MediaUrl" in form or "ContentSid" in form):
        problems.append((21602, MESSAGES[21602]))
    elif body is not None and not body:
        problems.append((21602, "Body is empty"))
    elif body is not None and len(body) > 1600:
        problems.append((21617, f"{MESSAGES[21617]} (got {len(body)})"))
    callback = form.get("StatusCallback")
    if callback is not None:
        url = urlsplit(callback)
        if url.scheme not in ("http", "https") or not url.netloc:
            problems.append((21609, f"StatusCallback {callback!r} is not an absolute http(s) URL"))
    return problems


def _reject(
    request: Incoming, status: int, problems: list[tuple[int, str]], pairs: Pairs = ()
) -> Outcome:
    """Answer in the legacy error shape (first problem's code) and record violations."""
    where = f"Twilio {request.method} {request.path}"
    violations = tuple(f"{where}: {message} (code {code})" for code, message in problems)
    code = problems[0][0]
    message = "; ".join(message for _, message in problems)
    if status in (401, 404, 405):
        message = MESSAGES[code]
    reply = Reply.of_json(status, error_body(status, code, message))
    return Outcome(reply, violations=violations, form_pairs=pairs)
