"""The provider fakes, driven by the real SendGrid and Twilio SDKs over loopback HTTP.

Besides proving the fakes, these tests pin down how each SDK surfaces each failure
(exception class, status, code, where Retry-After / X-Message-Id / sid live), because the
channel code relies on exactly that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from fakes import Fail, FakeSendGrid, FakeTwilio, Hang, Ok
from python_http_client import exceptions as sg_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

MAIL: dict[str, Any] = {
    "personalizations": [{"to": [{"email": "ada@example.com", "name": "Ada"}]}],
    "from": {"email": "shop@example.com", "name": "Shop"},
    "subject": "Your order shipped",
    "content": [
        {"type": "text/plain", "value": "It shipped."},
        {"type": "text/html", "value": "<p>It shipped.</p>"},
    ],
    "categories": ["journey"],
    "custom_args": {"journey_run_id": "r1"},
    "asm": {"group_id": 123},
}
TO, FROM, SERVICE = "+15551234567", "+15005550006", "MG" + "ab" * 16


# -- SendGrid ---------------------------------------------------------------------------------
@pytest.fixture
def sg() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


def sendgrid_client(fake: FakeSendGrid, timeout: float | None = None) -> SendGridAPIClient:
    client = SendGridAPIClient(fake.api_key, host=fake.base_url)
    # The root python_http_client.Client's timeout is copied into every child client that
    # `client.mail.send` builds, so setting it once covers all calls (None = no timeout).
    client.client.timeout = timeout
    return client


def send_mail(fake: FakeSendGrid, body: dict[str, Any] | None = None, **kw: Any) -> Any:
    return sendgrid_client(fake, **kw).client.mail.send.post(request_body=body or MAIL)


def test_sendgrid_ok_gives_202_and_message_id(sg: FakeSendGrid) -> None:
    response = send_mail(sg)
    assert response.status_code == 202 and response.body == b""
    # http.client.HTTPMessage: header lookup ignores case.
    message_id = response.headers["x-message-id"]
    assert message_id == response.headers["X-Message-Id"] == sg.message_ids[0]
    assert len(message_id) == 22
    [sent] = sg.sent
    assert sent.json == MAIL and sent.status == 202 and sent.answer == Ok()
    assert sent.headers["authorization"] == sent.headers["Authorization"] == "Bearer SG.test-key"
    assert sg.violations == []


def test_sendgrid_mail_helper_output_is_valid(sg: FakeSendGrid) -> None:
    mail = Mail("shop@example.com", "ada@example.com", "Hi", html_content="<b>hi</b>")
    assert sendgrid_client(sg).send(mail).status_code == 202
    assert sg.violations == []


SENDGRID_FAILURES = [
    (400, sg_errors.BadRequestsError),
    (401, sg_errors.UnauthorizedError),
    (403, sg_errors.ForbiddenError),
    (413, sg_errors.PayloadTooLargeError),
    (429, sg_errors.TooManyRequestsError),
    (500, sg_errors.InternalServerError),
    (502, sg_errors.HTTPError),  # unmapped statuses raise the base class itself
    (503, sg_errors.ServiceUnavailableError),
]


@pytest.mark.parametrize(("status", "exc_type"), SENDGRID_FAILURES)
def test_sendgrid_scripted_failures(sg: FakeSendGrid, status: int, exc_type: type) -> None:
    sg.script(Fail(status, "nope", retry_after=7 if status in (429, 503) else None))
    with pytest.raises(sg_errors.HTTPError) as info:
        send_mail(sg)
    error = info.value
    assert type(error) is exc_type
    assert error.status_code == status
    assert error.to_dict == {"errors": [{"message": "nope", "field": None, "help": None}]}
    retry_after = error.headers.get("Retry-After")  # HTTPMessage, case-insensitive
    assert retry_after == ("7" if status in (429, 503) else None)
    if status == 429:
        assert error.headers.get("x-ratelimit-remaining") == "0"
        assert int(error.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert sg.sent == [] and sg.message_ids == [] and sg.violations == []


def test_sendgrid_script_is_fifo_then_ok(sg: FakeSendGrid) -> None:
    sg.script(Fail(500), Ok(), Fail(503))
    statuses = []
    for _ in range(4):
        try:
            statuses.append(send_mail(sg).status_code)
        except sg_errors.HTTPError as error:
            statuses.append(error.status_code)
    assert statuses == [500, 202, 503, 202]
    assert len(sg.sent) == 2 and len(sg.requests) == 4


def test_sendgrid_hang_times_out_client_and_still_counts_as_sent(sg: FakeSendGrid) -> None:
    sg.script(Hang(10))
    started = time.monotonic()
    # urllib raises the bare socket timeout (TimeoutError), not URLError, on a read timeout.
    with pytest.raises(TimeoutError):
        send_mail(sg, timeout=0.2)
    assert time.monotonic() - started < 2
    assert len(sg.sent) == 1 and len(sg.message_ids) == 1  # the provider took it anyway


def test_hang_blocks_neither_other_requests_nor_shutdown() -> None:
    results: list[int] = []
    with FakeSendGrid() as fake:
        fake.script(Hang(30))
        hung = threading.Thread(target=lambda: results.append(send_mail(fake).status_code))
        hung.start()
        while not fake.requests:
            time.sleep(0.01)
        started = time.monotonic()
        assert send_mail(fake).status_code == 202
        assert time.monotonic() - started < 1
        started = time.monotonic()
    hung.join(timeout=5)
    assert time.monotonic() - started < 2
    assert results == [202]  # exiting the context released the hang with its Ok answer


def test_sendgrid_wrong_key_is_401_and_a_violation(sg: FakeSendGrid) -> None:
    client = SendGridAPIClient("SG.wrong", host=sg.base_url)
    with pytest.raises(sg_errors.UnauthorizedError) as info:
        client.client.mail.send.post(request_body=MAIL)
    assert info.value.to_dict == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert len(sg.violations) == 1 and "Authorization" in sg.violations[0]
    assert sg.sent == []


def _mail(**changes: Any) -> dict[str, Any]:
    body = {**MAIL, **changes}
    return {k: v for k, v in body.items() if v is not None}


BAD_MAILS = {
    "no personalizations": (_mail(personalizations=None), "personalizations"),
    "empty personalizations": (_mail(personalizations=[]), "personalizations"),
    "empty to": (_mail(personalizations=[{"to": []}]), "personalizations.0.to"),
    "to not a list": (_mail(personalizations=[{"to": "a@x.io"}]), "personalizations.0.to"),
    "email without @": (
        _mail(personalizations=[{"to": [{"email": "nobody"}]}]),
        "personalizations.0.to.0.email",
    ),
    "duplicate recipient": (
        _mail(personalizations=[{"to": [{"email": "a@x.io"}], "cc": [{"email": "A@x.io"}]}]),
        "personalizations.0.cc.0.email",
    ),
    "no from": (_mail(**{"from": None}), "from.email"),
    "no content nor template": (_mail(content=None), "content"),
    "html before plain": (_mail(content=MAIL["content"][::-1]), "text/plain content type"),
    "unknown content type": (_mail(content=[{"type": "text/md", "value": "x"}]), "content.0"),
    "no subject": (_mail(subject=None), "subject"),
    "top-level dynamic_template_data": (
        _mail(template_id="d-1", dynamic_template_data={"a": 1}),
        "dynamic_template_data",
    ),
    "custom_args not an object": (_mail(custom_args="r1"), "Expected: object"),
    "custom_args int value": (_mail(custom_args={"n": 1}), "custom_args"),
    "11 categories": (_mail(categories=[f"c{i}" for i in range(11)]), "categories"),
    "long category": (_mail(categories=["x" * 256]), "categories"),
    "asm group_id string": (_mail(asm={"group_id": "123"}), "asm.group_id"),
    "reply_to without email": (_mail(reply_to={"name": "x"}), "reply_to.email"),
}


@pytest.mark.parametrize(("body", "mentions"), BAD_MAILS.values(), ids=BAD_MAILS.keys())
def test_sendgrid_malformed_bodies_are_violations(
    sg: FakeSendGrid, body: dict[str, Any], mentions: str
) -> None:
    sg.script(Fail(500))  # must not be consumed by an invalid request
    with pytest.raises(sg_errors.BadRequestsError) as info:
        send_mail(sg, body)
    errors = info.value.to_dict["errors"]
    assert errors and all(set(e) == {"message", "field", "help"} for e in errors)
    assert sg.violations and any(mentions in v for v in sg.violations), sg.violations
    assert sg.sent == []
    with pytest.raises(sg_errors.InternalServerError):
        send_mail(sg)


GOOD_MAILS = {
    "template without content or subject": _mail(content=None, subject=None, template_id="d-1"),
    "subject in every personalization": _mail(
        subject=None, personalizations=[{"to": [{"email": "a@x.io"}], "subject": "s"}]
    ),
    "dynamic data in personalization": _mail(
        template_id="d-1",
        personalizations=[{"to": [{"email": "a@x.io"}], "dynamic_template_data": {"n": 1}}],
    ),
    "html only": _mail(content=[{"type": "text/html", "value": "<p>x</p>"}]),
}


@pytest.mark.parametrize("body", GOOD_MAILS.values(), ids=GOOD_MAILS.keys())
def test_sendgrid_valid_variants_pass(sg: FakeSendGrid, body: dict[str, Any]) -> None:
    assert send_mail(sg, body).status_code == 202
    assert sg.violations == []


def test_sendgrid_unknown_path_wrong_method_and_content_type(sg: FakeSendGrid) -> None:
    client = sendgrid_client(sg).client
    with pytest.raises(sg_errors.NotFoundError):
        client.mail.sned.post(request_body=MAIL)
    with pytest.raises(sg_errors.MethodNotAllowedError):
        client.mail.send.get()
    with pytest.raises(sg_errors.UnsupportedMediaTypeError):
        # Note: request_headers mutate the client's shared header dict, hence a fresh client.
        sendgrid_client(sg).client.mail.send.post(
            request_body="x", request_headers={"Content-Type": "text/plain"}
        )
    not_json = httpx.post(
        sg.base_url + "/v3/mail/send",
        content=b"{nope",
        headers={"Authorization": "Bearer SG.test-key", "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400 and not_json.json()["errors"]
    assert len(sg.violations) == 4 and sg.sent == []


# -- Twilio -----------------------------------------------------------------------------------
@pytest.fixture
def tw() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def twilio_client(fake: FakeTwilio, timeout: float | None = None, **http: Any) -> Client:
    client = Client(
        fake.account_sid, fake.auth_token, http_client=TwilioHttpClient(timeout=timeout, **http)
    )
    client.api.base_url = fake.base_url  # no constructor argument for this
    return client


def test_twilio_ok_with_from(tw: FakeTwilio) -> None:
    message = twilio_client(tw).messages.create(
        to=TO, from_=FROM, body="hi", status_callback="https://example.com/cb"
    )
    assert message.sid == tw.message_ids[0] and message.sid.startswith("SM")
    assert len(message.sid) == 34
    assert message.status == "queued" and message.from_ == FROM and message.to == TO
    assert message.date_created is not None and message.date_created.tzinfo is not None
    assert message.error_code is None and message.num_segments == "1"
    [sent] = tw.sent
    assert sent.form == {
        "To": TO,
        "StatusCallback": "https://example.com/cb",
        "From": FROM,
        "Body": "hi",
    }
    assert ("Body", "hi") in sent.form_pairs
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert tw.violations == []


def test_twilio_ok_with_messaging_service(tw: FakeTwilio) -> None:
    message = twilio_client(tw).messages.create(to=TO, messaging_service_sid=SERVICE, body="hi")
    assert message.status == "accepted" and message.from_ is None
    assert message.messaging_service_sid == SERVICE
    assert tw.violations == []


TWILIO_FAILURES = [
    Fail(400, "Attempt to send to unsubscribed recipient", code=21610),
    Fail(429, "Too Many Requests", code=20429, retry_after=3),
    Fail(500, "Internal Server Error"),
    Fail(503, "Service Unavailable", retry_after="120"),
]


@pytest.mark.parametrize("fail", TWILIO_FAILURES, ids=lambda f: str(f.status))
def test_twilio_scripted_failures(tw: FakeTwilio, fail: Fail) -> None:
    seen: list[requests.Response] = []
    # TwilioRestException carries no headers; a requests response hook is the public way to
    # read Retry-After (client.http_client._test_only_last_response also has it, privately).
    client = twilio_client(tw, request_hooks={"response": [lambda r, *a, **k: seen.append(r)]})
    tw.script(fail)
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=TO, from_=FROM, body="hi")
    error = info.value
    assert not isinstance(error, TwilioServiceException)
    assert error.status == fail.status
    assert error.code == (fail.code or fail.status)
    assert error.msg == f"Unable to create record: {fail.message}"
    assert error.method == "POST"
    assert error.uri == f"/Accounts/{tw.account_sid}/Messages.json"
    retry_after = None if fail.retry_after is None else str(fail.retry_after)
    assert seen[-1].headers.get("Retry-After") == retry_after
    assert client.http_client._test_only_last_response.headers.get("Retry-After") == retry_after
    assert tw.sent == [] and tw.violations == []


@pytest.mark.parametrize(
    ("to", "code", "message"),
    [
        ("+15005550001", 21211, "The 'To' number +15005550001 is not a valid phone number."),
        ("+15005550004", 21610, "Attempt to send to unsubscribed recipient"),
        ("5551234567", 21211, "The 'To' number 5551234567 is not a valid phone number."),
        ("+1555abc", 21211, "The 'To' number +1555abc is not a valid phone number."),
    ],
)
def test_twilio_provider_rejections_are_not_violations(
    tw: FakeTwilio, to: str, code: int, message: str
) -> None:
    tw.script(Fail(500))  # magic numbers answer before the script and leave it alone
    client = twilio_client(tw)
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=to, from_=FROM, body="hi")
    assert (info.value.status, info.value.code) == (400, code)
    assert info.value.msg == f"Unable to create record: {message}"
    assert tw.violations == [] and tw.sent == []
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=TO, from_=FROM, body="hi")
    assert info.value.status == 500


def test_twilio_wrong_token_is_401_and_a_violation(tw: FakeTwilio) -> None:
    client = Client(tw.account_sid, "wrong")
    client.api.base_url = tw.base_url
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to=TO, from_=FROM, body="hi")
    assert (info.value.status, info.value.code) == (401, 20003)
    assert info.value.msg == "Unable to create record: Authenticate"
    assert len(tw.violations) == 1 and tw.sent == []


BAD_MESSAGES = {
    "empty To": (dict(to="", from_=FROM, body="hi"), 21604),
    "neither From nor service": (dict(to=TO, body="hi"), 21603),
    "both From and service": (
        dict(to=TO, from_=FROM, messaging_service_sid=SERVICE, body="hi"),
        21603,
    ),
    "service not MG": (dict(to=TO, messaging_service_sid="PN123", body="hi"), 21701),
    "no Body": (dict(to=TO, from_=FROM), 21602),
    "empty Body": (dict(to=TO, from_=FROM, body=""), 21602),
    "Body too long": (dict(to=TO, from_=FROM, body="x" * 1601), 21617),
    "relative StatusCallback": (dict(to=TO, from_=FROM, body="hi", status_callback="/cb"), 21609),
    "ftp StatusCallback": (
        dict(to=TO, from_=FROM, body="hi", status_callback="ftp://example.com/cb"),
        21609,
    ),
}


@pytest.mark.parametrize(("kwargs", "code"), BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_twilio_malformed_requests_are_violations(
    tw: FakeTwilio, kwargs: dict[str, Any], code: int
) -> None:
    with pytest.raises(TwilioRestException) as info:
        twilio_client(tw).messages.create(**kwargs)
    assert (info.value.status, info.value.code) == (400, code)
    assert tw.violations and f"(code {code})" in tw.violations[0]
    assert tw.sent == []


def test_twilio_body_of_1600_chars_and_media_only_pass(tw: FakeTwilio) -> None:
    client = twilio_client(tw)
    client.messages.create(to=TO, from_=FROM, body="x" * 1600)
    message = client.messages.create(to=TO, from_=FROM, media_url=["https://example.com/a.png"])
    assert message.num_media == "1"
    assert tw.violations == []


def test_twilio_hang_times_out_with_requests_exception(tw: FakeTwilio) -> None:
    tw.script(Hang(10))
    started = time.monotonic()
    # Network errors are not wrapped: requests' ReadTimeout (an OSError, not TwilioException).
    with pytest.raises(requests.exceptions.ReadTimeout):
        twilio_client(tw, timeout=0.2).messages.create(to=TO, from_=FROM, body="hi")
    assert time.monotonic() - started < 2
    assert len(tw.sent) == 1


def test_twilio_unknown_path_method_and_content_type(tw: FakeTwilio) -> None:
    auth = (tw.account_sid, tw.auth_token)
    messages = f"{tw.base_url}/2010-04-01/Accounts/{tw.account_sid}/Messages.json"
    calls = httpx.post(messages.replace("Messages", "Calls"), auth=auth, data={"To": TO})
    assert calls.status_code == 404 and calls.json()["code"] == 20404
    other = httpx.post(messages.replace(tw.account_sid, "AC" + "f" * 32), auth=auth, data={})
    assert other.status_code == 404
    assert httpx.get(messages, auth=auth).status_code == 405
    as_json = httpx.post(messages, auth=auth, json={"To": TO, "From": FROM, "Body": "hi"})
    assert as_json.status_code == 400
    assert set(as_json.json()) == {"code", "message", "more_info", "status"}
    assert len(tw.violations) == 4 and tw.sent == []


def test_fakes_require_start() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeTwilio().base_url
