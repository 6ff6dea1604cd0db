"""Provider callbacks (contract §6) over a real server, real signatures and a real store.

Each test starts :class:`HttpServer` on port 0 and posts what SendGrid and Twilio post: a
SendGrid Event Webhook batch (signed with a P-256 key made here, as SendGrid signs), Twilio
form callbacks signed with the Twilio SDK's own ``RequestValidator``. Messages to call back
about come from the real runtime (console channels), so the outbox rows are what the daemon
writes. What is checked is what a shop sees: the answers, the events stored, the outbox's
delivery status, and what the runtime then decides (suppressed addresses skipped, consent
withdrawn and restored by STOP and START). Tests whose outcome depends on the store run on
SQLite and PostgreSQL; those about signatures and malformed bodies, on SQLite.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from conftest import Project
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_http import closed_port, serving, stored_events
from twilio.request_validator import RequestValidator

from postflow import events
from postflow.channels.registry import build_channels, close_channels
from postflow.durations import format_instant
from postflow.http.app import create_app
from postflow.http.webhooks import WebhookSettings
from postflow.runtime.service import Runtime, load_machines
from postflow.store import database
from postflow.store import schema as t
from postflow.store.sql import SqlStore, wall_us

TOKEN = "twilio-auth-token-0123456789abcdef"
PUBLIC_URL = "https://hooks.example.com"
HELP = "Tea & Co: reply STOP to opt out, <HELP> for help."
INBOUND = "/webhooks/twilio/inbound"
STATUS = "/webhooks/twilio/status"
SENDGRID = "/webhooks/sendgrid"
SG_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SG_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SHOP_NUMBER = "+15555559999"

CONFIG = f"""\
timezone: UTC
default_region: US
http: {{public_url: "{PUBLIC_URL}/"}}
channels: {{sms: {{help_text: "{HELP}"}}}}
"""
RECEIPT = """
id: receipt
trigger: {event: order_placed}
entry: {reentry: always}
steps:
  - id: mail
    email: {subject: "Order {{ trigger.data.order_id }}", body: "Thanks.", transactional: true}
  - id: text
    sms: {body: "Order {{ trigger.data.order_id }} confirmed.", transactional: true}
"""
PROMO = """
id: promo
trigger: {event: promo}
entry: {reentry: always}
steps:
  - id: mail
    email: {subject: "Spring tea", body: "New teas are in."}
  - id: text
    sms: {body: "New teas are in."}
"""


# -- the shop: a project, its store and its runtime --------------------------------------------
class Shop:
    """A project with a transactional ``receipt`` journey (email + SMS on ``order_placed``)
    and a marketing ``promo`` journey (email + SMS on ``promo``), over one store."""

    def __init__(self, proj: Project, store: SqlStore) -> None:
        self.proj = proj
        self.store = store
        self.settings = store.settings
        self.console = io.StringIO()
        self.count = 0

    def ingest(self, *objects: dict[str, Any]) -> None:
        self.store.ingest([events.parse_event(obj) for obj in objects])

    def order(self, customer: str, email: str | None = None, phone: str | None = None) -> None:
        """An order placed now; the receipt journey mails and texts the customer."""
        self.count += 1
        profile = {k: v for k, v in (("email", email), ("phone", phone)) if v is not None}
        self.ingest(
            {
                "id": f"order_{self.count}",
                "type": "order_placed",
                "customer_id": customer,
                "at": format_instant(wall_us()),
                "customer": {**profile, "sms_consent": True},
                "data": {"order_id": f"o{self.count}", "total": 10},
            }
        )

    def promo(self, *customers: str) -> None:
        """A marketing campaign, now, for each customer."""
        at = format_instant(wall_us())
        for customer in customers:
            self.count += 1
            self.ingest(
                {"id": f"promo_{self.count}", "type": "promo", "customer_id": customer, "at": at}
            )

    def run(self) -> None:
        """``run --once`` at the wall clock's now: decide what is due, then dispatch it."""
        channels = build_channels(self.settings, console_stream=self.console, environ={})
        try:
            machines = load_machines(self.settings, self.proj.root / "journeys")
            swept, dispatched = Runtime(self.store, self.settings, machines, channels).run_once(
                wall_us()
            )
        finally:
            close_channels(channels.values())
        assert swept.errors == 0 and dispatched.failed == 0

    def messages(self, customer: str, journey: str) -> list[tuple[str, str, str | None]]:
        """(step, status, reason) of the customer's messages in a journey, in order."""
        return [
            (r["step"], r["status"], r.get("reason"))
            for r in self.store.history(customer=customer, journey=journey)
            if r["kind"] == "message"
        ]

    def outbox(self) -> dict[str, dict[str, Any]]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(t.outbox)).mappings().all()
        return {row["message_id"]: dict(row) for row in rows}

    def set_provider_id(self, message_id: str, provider_id: str) -> None:
        """What the Twilio channel records: the message's SID (the console keeps our id)."""
        with self.store.engine.begin() as conn:
            conn.execute(
                t.outbox.update()
                .where(t.outbox.c.message_id == message_id)
                .values(provider="twilio", provider_id=provider_id)
            )

    def events(self) -> list[dict[str, Any]]:
        return stored_events(self.store)

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {e["id"]: e for e in self.events() if e.get("id")}


def _open_store(url: str, proj: Project) -> Iterator[Shop]:
    proj.config(CONFIG)
    proj.journey("receipt", RECEIPT)
    proj.journey("promo", PROMO)
    store = SqlStore.open(url, proj.settings(), upgrade=True)
    try:
        yield Shop(proj, store)
    finally:
        store.close()


@pytest.fixture
def shop(db_url: str, proj: Project) -> Iterator[Shop]:
    """A shop on SQLite and on PostgreSQL."""
    yield from _open_store(db_url, proj)


@pytest.fixture
def lite(proj: Project, tmp_path: Path) -> Iterator[Shop]:
    """A shop on SQLite only, for checks that do not depend on the database."""
    yield from _open_store(f"sqlite:///{tmp_path / 'lite.db'}", proj)


Serve = Callable[..., httpx.Client]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(shop, **create_app options)`` -> a client of a running server."""
    with ExitStack() as stack:

        def start(shop: Shop, **options: Any) -> httpx.Client:
            return stack.enter_context(serving(create_app(shop.store, **options)))

        yield start


def twilio_settings(shop: Shop, **changes: Any) -> WebhookSettings:
    """What the daemon builds: public_url and help_text from postflow.yaml, the token from
    the environment."""
    loaded = WebhookSettings.load(shop.settings, {"TWILIO_AUTH_TOKEN": TOKEN})
    assert (loaded.public_url, loaded.help_text, loaded.region) == (PUBLIC_URL, HELP, "US")
    return dataclasses.replace(loaded, **changes)


# -- Twilio helpers ----------------------------------------------------------------------------
def sms(sid: str, sender: str, body: str, **extra: str) -> dict[str, str]:
    """An inbound SMS as Twilio posts it (all the parameters it sends, not only ours)."""
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": SHOP_NUMBER,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": sender,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def status(sid: str, message_status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": message_status,
        "SmsStatus": message_status,
        "AccountSid": "AC" + "0" * 32,
        "From": SHOP_NUMBER,
        "To": "+15555550100",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def post_twilio(
    client: httpx.Client,
    path: str,
    params: dict[str, str],
    *,
    url: str | None = None,
    token: str = TOKEN,
    signature: str | None = None,
    signed: bool = True,
) -> httpx.Response:
    """POST a form signed by the Twilio SDK over ``url`` (default: public_url + path), or
    with the given ``signature``, or with no X-Twilio-Signature at all (``signed=False``)."""
    if signature is None:
        signature = RequestValidator(token).compute_signature(url or PUBLIC_URL + path, params)
    headers = {"X-Twilio-Signature": signature} if signed else {}
    return client.post(path, data=params, headers=headers)


def own_url(client: httpx.Client, path: str) -> str:
    return f"http://127.0.0.1:{client.base_url.port}{path}"


def twiml_message(response: httpx.Response) -> str | None:
    """The text of the TwiML answer's ``<Message>``, None for an empty ``<Response/>``."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    found = root.find("Message")
    return None if found is None else found.text


# -- SendGrid helpers --------------------------------------------------------------------------
def sg(
    event: str, event_id: str, email: str, at: int, mid: str | None = None, **extra: Any
) -> dict[str, Any]:
    """One Event Webhook item; ``mid`` is our custom arg, which SendGrid copies on top."""
    item: dict[str, Any] = {
        "email": email,
        "timestamp": at,
        "event": event,
        "sg_event_id": event_id,
        "sg_message_id": f"{event_id}X.filterdrecv-p3mdw1-1",
        "smtp-id": f"<{event_id}@ismtpd0039p1iad1.sendgrid.net>",
        "category": ["postflow"],
        **extra,
    }
    if mid is not None:
        item["postflow_message_id"] = mid
    return item


def signing_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key and its public half as SendGrid's console shows it (base64 DER SPKI)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode()


def sg_sign(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


# -- SendGrid ----------------------------------------------------------------------------------
def test_sendgrid_batch_becomes_events_suppressions_and_delivery_status(
    shop: Shop, serve: Serve
) -> None:
    """An unsigned Event Webhook batch: engagement of mail we sent becomes email_* events for
    the customer we mailed; hard bounces, drops, spam reports and unsubscribes suppress the
    address (soft ``blocked`` bounces do not); delivery reports land on the outbox row
    (latest first, whatever order they arrive in); anything unknown is counted as ignored,
    never a 4xx. A retried batch adds nothing. Then the runtime skips marketing to
    unsubscribed addresses but still sends them transactional mail, and skips everything
    to a hard-bounced one."""
    people = ("ann", "bob", "cat", "dan", "eve", "fay")
    for name in people:
        shop.order(f"c_{name}", email=f"{name}@example.com")
    shop.run()
    mid = {name: f"receipt:c_{name}:1:m1" for name in people}
    assert set(mid.values()) <= set(shop.outbox())
    calls: list[int] = []
    client = serve(shop, on_ingest=lambda: calls.append(1))

    now = int(time.time())
    batch: list[Any] = [
        sg("delivered", "d1", "ann@example.com", now, mid["ann"], response="250 OK"),
        sg("open", "o1", "ann@example.com", now, mid["ann"], sg_machine_open=False),
        sg("click", "k1", "ann@example.com", now, mid["ann"], url="https://tea.example/new?x=1"),
        sg("processed", "p1", "ann@example.com", now, mid["ann"]),  # late, same second
        sg("bounce", "b1", "bob@example.com", now, mid["bob"], type="bounce", status="5.1.1"),
        sg("deferred", "f1", "cat@example.com", now - 5, mid["cat"], attempt="1"),
        sg("bounce", "b2", "cat@example.com", now, mid["cat"], type="blocked", status="4.0.0"),
        sg("dropped", "r1", "Dan@Example.com", now, reason="Bounced Address"),  # no custom arg
        sg("spamreport", "s1", "fay@example.com", now, mid["fay"]),
        sg("unsubscribe", "u1", "eve@example.com", now, mid["eve"]),
        sg("group_unsubscribe", "g1", "zed@example.com", now, asm_group_id=7),
        sg("group_resubscribe", "x1", "zed@example.com", now, asm_group_id=7),
        "not an event",
    ]
    body = orjson.dumps(batch) + b"\r\n"
    r = client.post(SENDGRID, content=body, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (200, {"accepted": 10, "duplicates": 0, "ignored": 4})
    assert calls == [1]

    at = format_instant(now * 1_000_000)

    def engagement(name: str) -> dict[str, Any]:
        return {"message_id": mid[name], "journey": "receipt", "step": "mail"}

    def suppressed(address: str, reason: str) -> dict[str, Any]:
        return {"address": address, "reason": reason}

    stored = {k: v for k, v in shop.by_id().items() if k.startswith("sendgrid:")}
    assert {k: (e["type"], e["customer_id"], e["data"]) for k, e in stored.items()} == {
        "sendgrid:d1": ("email_delivered", "c_ann", engagement("ann")),
        "sendgrid:o1": ("email_opened", "c_ann", engagement("ann")),
        "sendgrid:k1": (
            "email_clicked",
            "c_ann",
            {**engagement("ann"), "url": "https://tea.example/new?x=1"},
        ),
        "sendgrid:b1": ("email_bounced", "c_bob", engagement("bob")),
        "sendgrid:b1:suppressed": (
            "address_suppressed",
            "c_bob",
            suppressed("bob@example.com", "bounce"),
        ),
        "sendgrid:b2": ("email_bounced", "c_cat", engagement("cat")),
        # No message id: filed under the customer last mailed at that address.
        "sendgrid:r1:suppressed": (
            "address_suppressed",
            "c_dan",
            suppressed("dan@example.com", "dropped"),
        ),
        "sendgrid:s1:suppressed": (
            "address_suppressed",
            "c_fay",
            suppressed("fay@example.com", "spamreport"),
        ),
        "sendgrid:u1:suppressed": (
            "address_suppressed",
            "c_eve",
            suppressed("eve@example.com", "unsubscribe"),
        ),
        # An address we never wrote to: filed under the address itself.
        "sendgrid:g1:suppressed": (
            "address_suppressed",
            "zed@example.com",
            suppressed("zed@example.com", "group_unsubscribe"),
        ),
    }
    assert {e["at"] for e in stored.values()} == {at}

    outbox = shop.outbox()
    delivery = {name: outbox[mid[name]]["delivery_status"] for name in people}
    assert delivery == {
        "ann": "delivered",  # the older "processed" that came after it does not replace it
        "bob": "bounce",
        "cat": "bounce",
        "dan": None,
        "eve": None,
        "fay": None,
    }
    assert outbox[mid["ann"]]["delivery_at"] == now * 1_000_000
    assert all(row["status"] == "sent" for row in outbox.values())  # the engine's decision

    # SendGrid retries a batch it thinks failed: nothing new.
    count = len(shop.events())
    r = client.post(SENDGRID, content=body, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (200, {"accepted": 0, "duplicates": 10, "ignored": 4})
    assert len(shop.events()) == count and calls == [1]

    # What the runtime then decides.
    shop.promo("c_bob", "c_cat", "c_dan", "c_eve", "c_fay")
    shop.order("c_eve", email="eve@example.com")
    shop.order("c_bob", email="bob@example.com")
    shop.run()
    skipped = ("mail", "skipped", "suppressed")
    assert shop.messages("c_bob", "promo")[0] == skipped
    assert shop.messages("c_bob", "receipt")[-2] == skipped  # a hard bounce blocks all mail
    assert shop.messages("c_cat", "promo")[0] == ("mail", "sent", None)  # soft bounce
    assert shop.messages("c_dan", "promo")[0] == skipped
    assert shop.messages("c_fay", "promo")[0] == skipped
    assert shop.messages("c_eve", "promo")[0] == skipped  # unsubscribed from marketing ...
    assert shop.messages("c_eve", "receipt")[-2] == ("mail", "sent", None)  # ... not receipts


def test_sendgrid_signature_is_checked_over_the_exact_bytes(lite: Shop, serve: Serve) -> None:
    """With SENDGRID_WEBHOOK_PUBLIC_KEY set, only a batch signed by SendGrid's key over
    timestamp + the exact body (trailing CRLF included) is taken; anything else is 403 and
    stores nothing, so nobody can forge suppressions. An unusable key is 503."""
    key, public = signing_key()
    other, _ = signing_key()
    client = serve(lite, webhooks=WebhookSettings(sendgrid_public_key=public))
    now = int(time.time())
    body = orjson.dumps([sg("spamreport", "sig1", "zed@example.com", now)]) + b"\r\n"
    stamp = str(now)
    good = sg_sign(key, stamp, body)

    def post(content: bytes, headers: dict[str, str]) -> httpx.Response:
        return client.post(SENDGRID, content=content, headers=headers)

    forged = body.replace(b"zed@", b"amy@")
    refused = [
        post(forged, {SG_SIGNATURE: good, SG_TIMESTAMP: stamp}),  # tampered body
        post(body.rstrip(), {SG_SIGNATURE: good, SG_TIMESTAMP: stamp}),  # CRLF dropped
        post(body, {SG_SIGNATURE: good, SG_TIMESTAMP: str(now + 1)}),  # other timestamp
        post(body, {SG_TIMESTAMP: stamp}),  # no signature
        post(body, {SG_SIGNATURE: good}),  # no timestamp
        post(body, {}),
        post(body, {SG_SIGNATURE: sg_sign(other, stamp, body), SG_TIMESTAMP: stamp}),
        post(body, {SG_SIGNATURE: "not base64!", SG_TIMESTAMP: stamp}),
    ]
    for r in refused:
        assert (r.status_code, r.json()) == (403, {"error": "bad or missing SendGrid signature"})
    assert lite.events() == []

    r = post(body, {SG_SIGNATURE: good, SG_TIMESTAMP: stamp, "content-type": "application/json"})
    assert (r.status_code, r.json()) == (200, {"accepted": 1, "duplicates": 0, "ignored": 0})
    assert [e["id"] for e in lite.events()] == ["sendgrid:sig1:suppressed"]

    broken = serve(lite, webhooks=WebhookSettings(sendgrid_public_key="not a key"))
    r = broken.post(SENDGRID, content=body, headers={SG_SIGNATURE: good, SG_TIMESTAMP: stamp})
    assert r.status_code == 503 and "SENDGRID_WEBHOOK_PUBLIC_KEY" in r.json()["error"]
    assert len(lite.events()) == 1


# -- Twilio: signatures ------------------------------------------------------------------------
def test_twilio_callbacks_need_a_valid_signature(lite: Shop, serve: Serve) -> None:
    """Without TWILIO_AUTH_TOKEN a Twilio callback cannot be checked: 503. With it, the
    X-Twilio-Signature must be Twilio's over http.public_url + path (the request's own URL
    when no public_url is set) and every parameter; else 403. Nothing refused is stored."""
    params = sms("SM" + "1" * 32, "+15555550100", "STOP")
    unset = serve(lite)
    for path in (INBOUND, STATUS):
        r = post_twilio(unset, path, params)
        assert r.status_code == 503 and "TWILIO_AUTH_TOKEN" in r.json()["error"]

    client = serve(lite, webhooks=twilio_settings(lite))
    good = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + INBOUND, params)
    tampered = {**params, "From": "+15555550111"}
    refused = [
        post_twilio(client, INBOUND, tampered, signature=good),
        post_twilio(client, INBOUND, params, signature="bm9wZQ=="),
        post_twilio(client, INBOUND, params, signed=False),  # no header at all
        post_twilio(client, INBOUND, params, token="another-accounts-token"),
        post_twilio(client, INBOUND, params, url=own_url(client, INBOUND)),  # not public_url
        post_twilio(client, INBOUND, params, url=PUBLIC_URL + STATUS),  # another endpoint
        post_twilio(client, STATUS, status("SM" + "1" * 32, "delivered"), url=PUBLIC_URL + INBOUND),
    ]
    for r in refused:
        assert (r.status_code, r.json()) == (403, {"error": "bad or missing X-Twilio-Signature"})
    assert lite.events() == []

    assert twiml_message(post_twilio(client, INBOUND, params)) is None
    assert [e["id"] for e in lite.events()] == [f"twilio:{params['MessageSid']}"]

    # No public_url: Twilio signed the URL it called, which is the request's own.
    direct = serve(lite, webhooks=twilio_settings(lite, public_url=None))
    again = sms("SM" + "2" * 32, "+15555550100", "START")
    r = post_twilio(direct, INBOUND, again)
    assert r.status_code == 403
    assert twiml_message(post_twilio(direct, INBOUND, again, url=own_url(direct, INBOUND))) is None
    assert len(lite.events()) == 2


# -- Twilio: inbound SMS -----------------------------------------------------------------------
def test_twilio_inbound_keywords(shop: Shop, serve: Serve) -> None:
    """Inbound SMS: opt-out words (any case, trimmed; or Advanced Opt-Out's OptOutType)
    suppress the number with reason stop and withdraw SMS consent, filed under the customer
    we last texted there (else the number itself); START restores both; HELP is answered
    with help_text and raises nothing; other text is sms_received. A Twilio retry (same
    MessageSid) adds nothing."""
    shop.order("c_old", phone="+15555550100")
    shop.run()
    shop.order("c_new", phone="(555) 555-0100")  # the same number, texted later
    shop.run()
    assert {row["to_address"] for row in shop.outbox().values()} == {"+15555550100"}
    client = serve(shop, webhooks=twilio_settings(shop))

    def inbound(n: int, sender: str, body: str, **extra: str) -> str | None:
        return twiml_message(
            post_twilio(client, INBOUND, sms(f"SM{n:032d}", sender, body, **extra))
        )

    assert inbound(1, "+15555550100", "STOP") is None
    assert inbound(2, "+15555550199", "stop ") is None  # a number we never texted
    assert inbound(3, "5555550101", "Unsubscribe") is None  # national format, default_region
    assert inbound(4, "+15555550102", "arrêt", OptOutType="STOP") is None
    assert inbound(5, "+15555550100", "Start") is None
    assert inbound(6, "+15555550100", "HELP") == HELP
    assert inbound(7, "+15555550100", "Where is my tea? <3 & thanks") is None
    assert inbound(8, "+15555550100", "STOP please") is None  # not a keyword: a message

    def stop(customer: str, number: str) -> tuple[Any, ...]:
        data = {"address": number, "reason": "stop"}
        return ("address_suppressed", customer, data, {"sms_consent": False})

    found = {
        e["id"]: (e["type"], e["customer_id"], e["data"], e.get("customer"))
        for e in shop.events()
        if e["id"].startswith("twilio:")
    }
    sid = {n: f"twilio:SM{n:032d}" for n in range(1, 9)}
    assert found == {
        sid[1]: stop("c_new", "+15555550100"),
        sid[2]: stop("+15555550199", "+15555550199"),
        sid[3]: stop("+15555550101", "+15555550101"),
        sid[4]: stop("+15555550102", "+15555550102"),
        sid[5]: (
            "address_unsuppressed",
            "c_new",
            {"address": "+15555550100", "reason": "start"},
            {"sms_consent": True},
        ),
        sid[7]: (
            "sms_received",
            "c_new",
            {"from": "+15555550100", "body": "Where is my tea? <3 & thanks"},
            None,
        ),
        sid[8]: (
            "sms_received",
            "c_new",
            {"from": "+15555550100", "body": "STOP please"},
            None,
        ),
    }

    count = len(shop.events())
    assert inbound(1, "+15555550100", "STOP") is None  # Twilio retrying the same message
    assert inbound(7, "+15555550100", "Where is my tea? <3 & thanks") is None
    assert len(shop.events()) == count


def test_stop_and_start_decide_later_texts(shop: Shop, serve: Serve) -> None:
    """End to end: after a customer texts STOP, the runtime skips the next SMS to that
    number as suppressed (email still goes out); after START it is sent again."""
    shop.order("c_1", email="ann@example.com", phone="+15555550100")
    shop.run()
    client = serve(shop, webhooks=twilio_settings(shop))

    def reply(sid: str, body: str) -> None:
        sent = post_twilio(client, INBOUND, sms(sid, "+15555550100", body))
        assert twiml_message(sent) is None

    reply("SM" + "a" * 32, "STOP")
    shop.promo("c_1")
    shop.run()
    assert shop.messages("c_1", "promo") == [
        ("mail", "sent", None),
        ("text", "skipped", "suppressed"),
    ]

    reply("SM" + "b" * 32, "START")
    shop.promo("c_1")
    shop.run()
    assert shop.messages("c_1", "promo")[2:] == [("mail", "sent", None), ("text", "sent", None)]


# -- Twilio: status callbacks ------------------------------------------------------------------
def test_twilio_status_callbacks(shop: Shop, serve: Serve) -> None:
    """Status callbacks set the delivery status of the message Twilio knows by its SID (the
    latest report wins); an unknown SID is acknowledged and changes nothing; error 21610
    (the recipient had texted STOP) suppresses the number, so later texts are skipped."""
    shop.order("c_1", phone="+15555550100")
    shop.run()
    (text,) = [mid for mid, row in shop.outbox().items() if row["channel"] == "sms"]
    sid = "SM" + "c" * 32
    shop.set_provider_id(text, sid)
    client = serve(shop, webhooks=twilio_settings(shop))

    def report(message_sid: str, message_status: str, **extra: str) -> None:
        r = post_twilio(client, STATUS, status(message_sid, message_status, **extra))
        assert (r.status_code, r.text) == (200, EMPTY_TWIML)

    report(sid, "sent")
    assert shop.outbox()[text]["delivery_status"] == "sent"
    first = shop.outbox()[text]["delivery_at"]
    report(sid, "delivered")
    row = shop.outbox()[text]
    assert row["delivery_status"] == "delivered" and row["delivery_at"] >= first
    assert row["status"] == "sent"  # the engine's decision is not the provider's report
    report(sid, "sent")  # callbacks arrive out of order: a late "sent" changes nothing
    assert shop.outbox()[text]["delivery_status"] == "delivered"

    before = shop.outbox()
    report("SM" + "d" * 32, "undelivered", ErrorCode="21610")
    assert shop.outbox() == before
    assert shop.events() and not [e for e in shop.events() if e["id"].startswith("twilio:")]

    report(sid, "undelivered", ErrorCode="21610")
    report(sid, "undelivered", ErrorCode="21610")  # retried: one event
    assert shop.outbox()[text]["delivery_status"] == "undelivered"
    found = [e for e in shop.events() if e["id"].startswith("twilio:")]
    assert [(e["id"], e["type"], e["customer_id"], e["data"]) for e in found] == [
        (
            f"twilio:{sid}:suppressed",
            "address_suppressed",
            "c_1",
            {"address": "+15555550100", "reason": "stop"},
        )
    ]
    shop.order("c_1", phone="+15555550100")
    shop.run()
    assert shop.messages("c_1", "receipt")[-1] == ("text", "skipped", "suppressed")


# -- bad input and auth ------------------------------------------------------------------------
def test_bodies_the_endpoints_do_not_take(
    lite: Shop, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed callbacks get a 400 (413 when too large) JSON error naming what is wrong,
    store nothing, log no traceback, and the server goes on answering."""
    caplog.set_level(logging.INFO)
    client = serve(lite, webhooks=twilio_settings(lite, public_url=None))

    r = client.post(SENDGRID, content=b'[{"event": "delivered"')
    assert r.status_code == 400 and r.json()["error"].startswith("body is not JSON")
    r = client.post(SENDGRID, json={"event": "delivered", "email": "ann@example.com"})
    assert (r.status_code, r.json()) == (400, {"error": "expected a JSON array of events"})

    params = sms("SM" + "e" * 32, "+15555550100", "STOP")
    signature = RequestValidator(TOKEN).compute_signature(own_url(client, INBOUND), params)
    r = client.post(INBOUND, json=params, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 400 and r.json()["field"] == "content-type"
    assert "application/x-www-form-urlencoded" in r.json()["error"]
    # A body that cannot be read is refused before its signature can be checked (but a
    # request without any signature is 403 whatever its body).
    form = {"content-type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"}
    for body in (b"From=%2B15555550100&Body=%FF%FE", b"From=%2B15555550100&Body=\xff"):
        r = client.post(INBOUND, content=body, headers=form)
        assert (r.status_code, r.json()) == (400, {"error": "form body is not UTF-8"})
        unsigned = client.post(
            INBOUND, content=body, headers={"content-type": form["content-type"]}
        )
        assert unsigned.status_code == 403

    hello = sms("SM" + "f" * 32, "hello", "STOP")
    r = post_twilio(client, INBOUND, hello, url=own_url(client, INBOUND))
    assert r.status_code == 400
    assert r.json() == {"error": "From 'hello' is not a phone number", "field": "From"}
    no_status = status("SM" + "f" * 32, "")
    r = post_twilio(client, STATUS, no_status, url=own_url(client, STATUS))
    assert (r.status_code, r.json()["field"]) == (400, "MessageStatus")

    small = serve(lite, max_body=1024, webhooks=twilio_settings(lite))
    big = orjson.dumps([sg("open", f"big{n}", "ann@example.com", 0) for n in range(20)])
    assert len(big) > 1024
    r = small.post(SENDGRID, content=big)
    assert (r.status_code, r.json()) == (413, {"error": "body larger than 1KB"})
    r = post_twilio(small, INBOUND, sms("SM" + "9" * 32, "+15555550100", "x" * 2000))
    assert (r.status_code, r.json()) == (413, {"error": "body larger than 1KB"})

    assert lite.events() == []
    assert client.get("/healthz").json() == {"status": "ok"}
    assert small.get("/healthz").json() == {"status": "ok"}
    assert "Traceback" not in caplog.text
    assert [rec for rec in caplog.records if rec.levelno >= logging.ERROR] == []


def test_webhooks_need_no_bearer_token(lite: Shop, serve: Serve) -> None:
    """With POSTFLOW_API_TOKEN set, providers (who cannot send it) still reach /webhooks/*:
    their signature is what guards them; the rest of the API still asks for the token."""
    client = serve(lite, api_token="s3cret", webhooks=twilio_settings(lite))
    r = client.post(SENDGRID, json=[sg("spamreport", "t1", "zed@example.com", int(time.time()))])
    assert (r.status_code, r.json()) == (200, {"accepted": 1, "duplicates": 0, "ignored": 0})
    params = sms("SM" + "7" * 32, "+15555550100", "hi")
    assert twiml_message(post_twilio(client, INBOUND, params)) is None
    assert post_twilio(client, INBOUND, params, signed=False).status_code == 403
    assert client.post("/events", json={"type": "x", "customer_id": "c"}).status_code == 401
    assert len(lite.events()) == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_outage_is_503_for_callbacks(
    backend: str, proj: Project, tmp_path: Path, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database is down, a callback is answered 503 with Retry-After, like
    POST /events (the provider retries; ingestion is idempotent by id), and the outage is
    logged in one line, not as an internal error with a traceback."""
    proj.config(CONFIG)
    if backend == "sqlite":
        folder = tmp_path / "gone"
        folder.mkdir()
        url = f"sqlite:///{folder / 'db.sqlite'}"
        engine = database.create_engine(url)
        folder.rmdir()  # the file can no longer be created
    else:
        url = f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none"
        engine = database.create_engine(url)
    broken = Shop(proj, SqlStore(engine, url, proj.settings()))
    client = serve(broken, webhooks=twilio_settings(broken))
    try:
        answers = [
            client.post(SENDGRID, json=[sg("open", "o1", "ann@example.com", 0, "m1")]),
            post_twilio(client, INBOUND, sms("SM" + "3" * 32, "+15555550100", "STOP")),
            post_twilio(client, STATUS, status("SM" + "3" * 32, "delivered")),
        ]
        for r in answers:
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "database" in r.json()["error"]
        assert "Traceback" not in caplog.text
    finally:
        engine.dispose()
