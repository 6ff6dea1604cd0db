"""The SendGrid and Twilio channels, through the official SDKs, against the loopback fakes.

What a shop sees: the mail and SMS requests carry every field the contract promises
(sender, reply-to, subject, both parts or a dynamic template, categories, the message id in
custom args, the unsubscribe group on marketing only; From or a Messaging Service, the
status callback), and each provider answer becomes the right outcome for the dispatcher:
sent with the provider's id, retry (with Retry-After) or failed with ``"<code> <message>"``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import Fail, FakeSendGrid, FakeTwilio, Hang, Ok

from postflow.channels.base import ChannelConfigError
from postflow.channels.sendgrid import SendGridChannel
from postflow.channels.twilio import TwilioChannel
from postflow.effects import OutboundMessage


def mail(**changes: Any) -> OutboundMessage:
    base: dict[str, Any] = dict(
        message_id="review:c_1:1:ask",
        customer_id="c_1",
        instance="review:c_1:1",
        journey="review",
        step="ask",
        channel="email",
        at=1_772_000_000_000_000,
        to="ann@example.com",
        subject="How is your tea?",
        html="<p>Tell us</p>",
        text="Tell us",
    )
    base.update(changes)
    return OutboundMessage(**base)


def text(**changes: Any) -> OutboundMessage:
    base: dict[str, Any] = dict(
        message_id="ship:c_1:1:sms",
        customer_id="c_1",
        instance="ship:c_1:1",
        journey="ship",
        step="sms",
        channel="sms",
        at=1_772_000_000_000_000,
        to="+15555550100",
        text="Your order is on its way",
        transactional=True,
    )
    base.update(changes)
    return OutboundMessage(**base)


@pytest.fixture
def sg() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def tw() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def sendgrid(fake: FakeSendGrid, **options: Any) -> SendGridChannel:
    options.setdefault("sender", "Tea Shop <hi@shop.example>")
    return SendGridChannel(fake.api_key, base_url=fake.base_url, **options)


def twilio(fake: FakeTwilio, **options: Any) -> TwilioChannel:
    if "messaging_service_sid" not in options:
        options.setdefault("sender", "+15005550006")
    return TwilioChannel(fake.account_sid, fake.auth_token, base_url=fake.base_url, **options)


# -- SendGrid -----------------------------------------------------------------------------------
def test_sendgrid_marketing_mail_carries_every_field(sg: FakeSendGrid) -> None:
    channel = sendgrid(sg, reply_to="Care <care@shop.example>", unsubscribe_group_id=42)
    delivery = channel.send(mail())
    assert (delivery.status, delivery.provider) == ("sent", "sendgrid")
    assert delivery.provider_id == sg.message_ids[0]
    body = sg.requests[0].json
    assert body["from"] == {"email": "hi@shop.example", "name": "Tea Shop"}
    assert body["reply_to"] == {"email": "care@shop.example", "name": "Care"}
    assert body["personalizations"] == [{"to": [{"email": "ann@example.com"}]}]
    assert body["subject"] == "How is your tea?"
    assert body["content"] == [
        {"type": "text/plain", "value": "Tell us"},
        {"type": "text/html", "value": "<p>Tell us</p>"},
    ]
    assert body["categories"] == ["review", "ask"]
    assert body["custom_args"]["postflow_message_id"] == "review:c_1:1:ask"
    assert body["asm"] == {"group_id": 42}
    assert sg.requests[0].headers["authorization"] == f"Bearer {sg.api_key}"
    assert sg.violations == []


def test_sendgrid_transactional_mail_has_no_unsubscribe_group(sg: FakeSendGrid) -> None:
    sendgrid(sg, unsubscribe_group_id=42).send(mail(transactional=True))
    assert "asm" not in sg.requests[0].json
    assert sg.violations == []


def test_sendgrid_dynamic_template_sends_its_data_per_recipient(sg: FakeSendGrid) -> None:
    message = mail(
        subject=None,
        html=None,
        text=None,
        sendgrid_template_id="d-123",
        template_data={"first_name": "Ann", "items": [{"sku": "TEA-1"}]},
    )
    assert sendgrid(sg).send(message).status == "sent"
    body = sg.requests[0].json
    assert body["template_id"] == "d-123"
    assert "content" not in body and "subject" not in body
    assert body["personalizations"][0]["dynamic_template_data"]["first_name"] == "Ann"
    assert sg.violations == []


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [
        (
            Fail(400, "The from address does not match a verified Sender Identity"),
            "failed",
            "400 The from address does not match a verified Sender Identity",
        ),
        (
            Fail(401, "The provided authorization grant is invalid"),
            "failed",
            "401 The provided authorization grant is invalid",
        ),
        (
            Fail(403, "Sending is temporarily blocked"),
            "failed",
            "403 Sending is temporarily blocked",
        ),
        (Fail(500, "Internal error"), "retry", "500 Internal error"),
        (Fail(503, "Service Unavailable"), "retry", "503 Service Unavailable"),
        (Fail(502), "retry", "502 Bad Gateway"),
    ],
)
def test_sendgrid_answers_map_to_outcomes(
    sg: FakeSendGrid, answer: Fail, status: str, error: str
) -> None:
    sg.script(answer)
    delivery = sendgrid(sg).send(mail())
    assert (delivery.status, delivery.error) == (status, error)


def test_sendgrid_429_waits_for_retry_after_or_the_rate_limit_reset(sg: FakeSendGrid) -> None:
    sg.script(Fail(429, "too many requests", retry_after=17))
    delivery = sendgrid(sg).send(mail())
    assert (delivery.status, delivery.error, delivery.retry_after) == (
        "retry",
        "429 too many requests",
        17.0,
    )
    sg.script(Fail(429, "too many requests"))
    delivery = sendgrid(sg).send(mail())
    assert delivery.status == "retry" and delivery.retry_after is not None


def test_sendgrid_timeout_and_refused_connection_are_retried(sg: FakeSendGrid) -> None:
    sg.script(Hang(5))
    delivery = sendgrid(sg, timeout_s=0.2).send(mail())
    assert delivery.status == "retry" and delivery.error.startswith("timeout")  # type: ignore[union-attr]
    port = free_port()
    channel = SendGridChannel("SG.k", sender="hi@shop.example", base_url=f"http://127.0.0.1:{port}")
    delivery = channel.send(mail())
    assert delivery.status == "retry"
    assert delivery.error is not None and delivery.error.startswith("connection_error")


def test_sendgrid_sender_must_be_an_address() -> None:
    with pytest.raises(ChannelConfigError, match="channels.email.from: 'Tea Shop' is not an"):
        SendGridChannel("SG.k", sender="Tea Shop")


# -- Twilio -------------------------------------------------------------------------------------
def test_twilio_sends_from_a_number_with_a_status_callback(tw: FakeTwilio) -> None:
    channel = twilio(tw, status_callback="https://hooks.example.com/webhooks/twilio/status")
    delivery = channel.send(text())
    assert (delivery.status, delivery.provider) == ("sent", "twilio")
    assert delivery.provider_id == tw.message_ids[0]
    form = tw.requests[0].form
    assert form["To"] == "+15555550100"
    assert form["From"] == "+15005550006"
    assert form["Body"] == "Your order is on its way"
    assert form["StatusCallback"] == "https://hooks.example.com/webhooks/twilio/status"
    assert "MessagingServiceSid" not in form
    assert tw.violations == []


def test_twilio_sends_through_a_messaging_service(tw: FakeTwilio) -> None:
    service = "MG" + "0" * 32
    assert twilio(tw, messaging_service_sid=service).send(text()).status == "sent"
    form = tw.requests[0].form
    assert form["MessagingServiceSid"] == service
    assert "From" not in form and "StatusCallback" not in form
    assert tw.violations == []


def test_twilio_unsubscribed_number_fails_and_asks_for_suppression(tw: FakeTwilio) -> None:
    delivery = twilio(tw).send(text(to="+15005550004"))
    assert delivery.status == "failed"
    assert delivery.suppress == "stop"
    assert delivery.error == "21610 Attempt to send to unsubscribed recipient"


def test_twilio_invalid_number_fails_without_suppressing(tw: FakeTwilio) -> None:
    delivery = twilio(tw).send(text(to="+15005550001"))
    assert (delivery.status, delivery.suppress) == ("failed", None)
    assert delivery.error is not None and delivery.error.startswith("21211 ")


def test_twilio_transient_answers_are_retried_with_retry_after(tw: FakeTwilio) -> None:
    tw.script(Fail(429, "Too Many Requests", code=20429, retry_after=9), Fail(500, "oops"))
    channel = twilio(tw)
    first, second = channel.send(text()), channel.send(text())
    assert (first.status, first.error, first.retry_after) == (
        "retry",
        "20429 Too Many Requests",
        9.0,
    )
    assert (second.status, second.error, second.retry_after) == ("retry", "500 oops", None)
    tw.script(Fail(401, "Authenticate", code=20003))
    assert channel.send(text()).status == "failed"


def test_twilio_timeout_and_refused_connection_are_retried(tw: FakeTwilio) -> None:
    tw.script(Hang(5))
    delivery = twilio(tw, timeout_s=0.2).send(text())
    assert delivery.status == "retry" and delivery.error.startswith("timeout")  # type: ignore[union-attr]
    channel = TwilioChannel(
        "AC1", "t", sender="+15005550006", base_url=f"http://127.0.0.1:{free_port()}"
    )
    delivery = channel.send(text())
    assert delivery.status == "retry"
    assert delivery.error is not None and delivery.error.startswith("connection_error")
    channel.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fakes_saw_only_valid_requests(sg: FakeSendGrid, tw: FakeTwilio) -> None:
    """Both SDK paths, sent many times, never break the documented API shape."""
    channel_sg, channel_tw = sendgrid(sg, unsubscribe_group_id=1), twilio(tw)
    for n in range(5):
        channel_sg.send(mail(message_id=f"m{n}", to=f"u{n}@example.com"))
        channel_tw.send(text(message_id=f"s{n}"))
    sg.script(Ok())
    assert len(sg.sent) == 5 and len(tw.sent) == 5
    assert sg.violations == [] and tw.violations == []
