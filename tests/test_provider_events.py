"""Provider callbacks mapped to postflow events: every rule, and contract-valid output."""

from __future__ import annotations

import calendar
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import orjson
import pytest

from postflow import events as pf_events
from postflow.http.provider_events import (
    CallbackError,
    SendGridResult,
    SentRef,
    StatusUpdate,
    classify_inbound,
    inbound_events,
    map_sendgrid,
    parse_form,
    parse_sendgrid,
    sendgrid_addresses,
    sendgrid_message_ids,
    status_update,
    twiml,
)

T = calendar.timegm(datetime(2026, 3, 1, 10, 0, 0).timetuple())  # 2026-03-01T10:00:00Z
NOW_US = (T + 3600) * 1_000_000  # 2026-03-01T11:00:00Z
REF = SentRef("m1", "c_1", "welcome", "email_1", "ann@example.com")
REFS = {"m1": REF}
ENGAGEMENT_DATA = {"message_id": "m1", "journey": "welcome", "step": "email_1"}


def sg(event: str, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "email": "Ann@Example.com",
        "timestamp": T,
        "event": event,
        "sg_event_id": "e1",
        "sg_message_id": "abc.filter",
        "postflow_message_id": "m1",
    }
    item.update(extra)
    return {k: v for k, v in item.items() if v is not None}


def one(item: Any, refs: Any = None, owners: Any = None) -> SendGridResult:
    result = map_sendgrid([item], REFS if refs is None else refs, owners or {}, NOW_US)
    for event in result.events:  # every event we raise is a valid contract event
        pf_events.parse_event(orjson.loads(orjson.dumps(event)))
    return result


# --- SendGrid --------------------------------------------------------------------------------


def test_parse_sendgrid() -> None:
    assert parse_sendgrid(b'[{"event":"open"}, 1]\r\n') == [{"event": "open"}, 1]
    with pytest.raises(CallbackError, match="^body is not JSON: ") as bad:
        parse_sendgrid(b"[{")
    assert bad.value.field is None and bad.value.index is None
    with pytest.raises(CallbackError, match="^body is not JSON: "):
        parse_sendgrid(b"")
    with pytest.raises(CallbackError, match="^expected a JSON array of events$"):
        parse_sendgrid(b'{"event":"open"}')


@pytest.mark.parametrize(
    "name, type_",
    [
        ("delivered", "email_delivered"),
        ("open", "email_opened"),
        ("click", "email_clicked"),
    ],
)
def test_engagement_events(name: str, type_: str) -> None:
    result = one(sg(name))
    assert result == SendGridResult(
        [
            {
                "id": "sendgrid:e1",
                "type": type_,
                "customer_id": "c_1",
                "at": "2026-03-01T10:00:00Z",
                "data": ENGAGEMENT_DATA,
            }
        ],
        0,
    )


def test_click_url_kept_only_when_a_string() -> None:
    assert one(sg("click", url="https://shop/x?a=1")).events[0]["data"] == {
        **ENGAGEMENT_DATA,
        "url": "https://shop/x?a=1",
    }
    assert one(sg("click", url=["https://shop"])).events[0]["data"] == ENGAGEMENT_DATA
    assert "url" not in one(sg("open", url="https://shop")).events[0]["data"]


def test_hard_bounce_raises_bounced_and_suppressed() -> None:
    result = one(sg("bounce", type="bounce", email="  Ann@Example.COM "))
    assert result.ignored == 0
    assert result.events == [
        {
            "id": "sendgrid:e1",
            "type": "email_bounced",
            "customer_id": "c_1",
            "at": "2026-03-01T10:00:00Z",
            "data": ENGAGEMENT_DATA,
        },
        {
            "id": "sendgrid:e1:suppressed",
            "type": "address_suppressed",
            "customer_id": "c_1",
            "at": "2026-03-01T10:00:00Z",
            "data": {"address": "ann@example.com", "reason": "bounce"},
        },
    ]


def test_soft_bounce_suppresses_nothing() -> None:
    result = one(sg("bounce", type="blocked"))
    assert [e["type"] for e in result.events] == ["email_bounced"]
    unknown = one(sg("bounce", type="blocked", postflow_message_id="zzz"))
    assert unknown == SendGridResult([], 1)
    assert sendgrid_addresses([sg("bounce", type="blocked", postflow_message_id="zzz")]) == []


@pytest.mark.parametrize("name", ["dropped", "spamreport", "unsubscribe", "group_unsubscribe"])
def test_suppressing_events_with_known_message(name: str) -> None:
    result = one(sg(name))
    assert result.events == [
        {
            "id": "sendgrid:e1:suppressed",
            "type": "address_suppressed",
            "customer_id": "c_1",
            "at": "2026-03-01T10:00:00Z",
            "data": {"address": "ann@example.com", "reason": name},
        }
    ]


def test_suppression_customer_without_known_message() -> None:
    item = sg("dropped", postflow_message_id=None)
    owned = one(item, owners={"ann@example.com": "c_9"})
    assert owned.events[0]["customer_id"] == "c_9"
    orphan = one(item)
    assert orphan.events[0]["customer_id"] == "ann@example.com"
    assert orphan.events[0]["data"] == {"address": "ann@example.com", "reason": "dropped"}
    # a message id the outbox does not know: no engagement event, but the suppression stands
    stranger = one(sg("bounce", postflow_message_id="m404"), owners={"ann@example.com": "c_9"})
    assert [(e["type"], e["customer_id"]) for e in stranger.events] == [
        ("address_suppressed", "c_9")
    ]


def test_suppression_without_usable_email() -> None:
    assert one(sg("spamreport", email=None, postflow_message_id=None)) == SendGridResult([], 1)
    assert one(sg("spamreport", email="not-an-email", postflow_message_id=None)).ignored == 1
    # the outbox's recipient stands in when the event names no address
    known = one(sg("spamreport", email=None))
    assert known.events[0]["data"] == {"address": "ann@example.com", "reason": "spamreport"}


def test_engagement_without_known_message_is_ignored() -> None:
    for name in ("delivered", "open", "click"):
        assert one(sg(name, postflow_message_id="m404")) == SendGridResult([], 1)
        assert one(sg(name, postflow_message_id=None)) == SendGridResult([], 1)
        assert one(sg(name, postflow_message_id=7)) == SendGridResult([], 1)


@pytest.mark.parametrize(
    "item",
    [
        sg("processed"),
        sg("deferred"),
        sg("group_resubscribe"),
        sg("a_future_event_type"),
        sg("OPEN"),
        {"event": None},
        {"event": ["open"]},
        {},
        1,
        "open",
        None,
        [sg("open")],
    ],
)
def test_unknown_and_non_dict_items_are_ignored(item: Any) -> None:
    assert one(item) == SendGridResult([], 1)


def test_batch_counts_and_order() -> None:
    body = orjson.dumps(
        [
            sg("processed", sg_event_id="p"),
            sg("delivered", sg_event_id="d"),
            "junk",
            sg("bounce", sg_event_id="b"),
            sg("open", sg_event_id="o", postflow_message_id="m2"),
        ]
    )
    items = parse_sendgrid(body)
    result = map_sendgrid(items, REFS, {}, NOW_US)
    assert [e["id"] for e in result.events] == [
        "sendgrid:d",
        "sendgrid:b",
        "sendgrid:b:suppressed",
    ]
    assert result.ignored == 3


def test_missing_sg_event_id_gets_a_stable_digest() -> None:
    item = sg("bounce", sg_event_id=None)
    ids = [e["id"] for e in one(item).events]
    digest = ids[0].removeprefix("sendgrid:h:")
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert ids[1] == ids[0] + ":suppressed"
    # a retry carries the same item, maybe with keys in another order: same id
    reordered = dict(reversed(list(item.items())))
    assert [e["id"] for e in one(reordered).events] == ids
    assert [e["id"] for e in one(orjson.loads(orjson.dumps(item))).events] == ids
    # a different item is a different event
    assert one(sg("bounce", sg_event_id=None, timestamp=T + 1)).events[0]["id"] != ids[0]
    assert one(sg("bounce", sg_event_id="")).events[0]["id"].startswith("sendgrid:h:")


@pytest.mark.parametrize(
    "timestamp, at",
    [
        (T, "2026-03-01T10:00:00Z"),
        (T + 0.5, "2026-03-01T10:00:00.500000Z"),
        (str(T), "2026-03-01T10:00:00Z"),
        (f" {T}.25 ", "2026-03-01T10:00:00.250000Z"),
        (None, "2026-03-01T11:00:00Z"),
        ("soon", "2026-03-01T11:00:00Z"),
        (True, "2026-03-01T11:00:00Z"),
        (float("nan"), "2026-03-01T11:00:00Z"),
        ("inf", "2026-03-01T11:00:00Z"),
        (10**15, "2026-03-01T11:00:00Z"),
        (-(10**11), "2026-03-01T11:00:00Z"),
        ({"t": 1}, "2026-03-01T11:00:00Z"),
    ],
)
def test_event_time(timestamp: Any, at: str) -> None:
    item = sg("delivered")
    item["timestamp"] = timestamp
    if timestamp is None:
        del item["timestamp"]
    assert one(item).events[0]["at"] == at


def test_lookup_helpers() -> None:
    items = [
        sg("delivered", postflow_message_id="m1"),
        sg("open", postflow_message_id="m1"),
        sg("click", postflow_message_id="m2"),
        sg("processed", postflow_message_id="m3"),
        sg("dropped", postflow_message_id="m4", email="B@x.io"),
        sg("bounce", type="blocked", postflow_message_id="m5", email="c@x.io"),
        sg("unsubscribe", postflow_message_id=None, email="D@X.io"),
        sg("group_unsubscribe", postflow_message_id="m1", email="ann@example.com"),
        sg("spamreport", postflow_message_id=None, email="d@x.io"),
        sg("spamreport", postflow_message_id=None, email=None),
        sg("open", postflow_message_id=5),
        "junk",
    ]
    assert sendgrid_message_ids(items) == ["m1", "m2", "m4", "m5"]
    assert sendgrid_addresses(items) == ["b@x.io", "d@x.io", "ann@example.com"]
    assert sendgrid_addresses(items, REFS) == ["b@x.io", "d@x.io"]


# --- Twilio ----------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"


def test_parse_form() -> None:
    body = b"MessageSid=SM1&From=%2B15555550100&Body=Hello+there%21&MediaUrl=a&MediaUrl=b&Empty="
    assert parse_form(body, FORM) == [
        ("MessageSid", "SM1"),
        ("From", "+15555550100"),
        ("Body", "Hello there!"),
        ("MediaUrl", "a"),
        ("MediaUrl", "b"),
        ("Empty", ""),
    ]
    assert parse_form(b"Body=caf%C3%A9", "Application/X-WWW-Form-URLEncoded; charset=UTF-8") == [
        ("Body", "café")
    ]
    assert parse_form(b"", FORM) == []
    assert len(parse_form(b"&".join([b"a=1"] * 1000), FORM)) == 1000


@pytest.mark.parametrize(
    "content_type", ["application/json", "", "multipart/form-data; boundary=x"]
)
def test_parse_form_bad_content_type(content_type: str) -> None:
    with pytest.raises(CallbackError, match="expected application/x-www-form-urlencoded") as bad:
        parse_form(b"Body=hi", content_type)
    assert bad.value.field == "content-type"


@pytest.mark.parametrize("body", [b"Body=\xff\xfe", b"Body=%FF", b"Body=caf%E9"])
def test_parse_form_not_utf8(body: bytes) -> None:
    with pytest.raises(CallbackError, match="not UTF-8"):
        parse_form(body, FORM)


def test_parse_form_too_many_fields() -> None:
    with pytest.raises(CallbackError, match="more than 1000 form fields"):
        parse_form(b"&".join([b"a=1"] * 1001), FORM)


@pytest.mark.parametrize(
    "body, kind",
    [
        ("STOP", "stop"),
        ("stop", "stop"),
        (" Stop ", "stop"),
        ("\nSTOPALL\t", "stop"),
        *[(w, "stop") for w in ("UNSUBSCRIBE", "cancel", "End", "QUIT", "revoke", "OptOut")],
        ("START", "start"),
        ("unstop", "start"),
        ("Yes", "start"),
        ("HELP", "help"),
        (" info", "help"),
        ("STOP please", "message"),
        ("stop.", "message"),
        ("S T O P", "message"),
        ("hello", "message"),
        ("", "message"),
    ],
)
def test_classify_inbound_by_body(body: str, kind: str) -> None:
    assert classify_inbound({"Body": body}) == kind


def test_classify_inbound_opt_out_type_first() -> None:
    assert classify_inbound({"OptOutType": "STOP", "Body": "arrêter"}) == "stop"
    assert classify_inbound({"OptOutType": "START", "Body": "STOP"}) == "start"
    assert classify_inbound({"OptOutType": "HELP", "Body": "stop"}) == "help"
    assert classify_inbound({"OptOutType": "stop", "Body": "hi"}) == "stop"
    assert classify_inbound({"OptOutType": "", "Body": "STOP"}) == "stop"
    assert classify_inbound({"OptOutType": "OTHER", "Body": "hi"}) == "message"
    assert classify_inbound({}) == "message"


def _inbound(body: str, **extra: str) -> list[dict[str, Any]]:
    params = {"MessageSid": "SM1", "From": "(555) 555-0100", "Body": body, **extra}
    produced = inbound_events(params, "c_1", "+15555550100", NOW_US)
    for event in produced:
        pf_events.parse_event(orjson.loads(orjson.dumps(event)))
    return produced


def test_inbound_stop_and_start() -> None:
    assert _inbound(" Stop ") == [
        {
            "id": "twilio:SM1",
            "type": "address_suppressed",
            "customer_id": "c_1",
            "at": "2026-03-01T11:00:00Z",
            "data": {"address": "+15555550100", "reason": "stop"},
            "customer": {"sms_consent": False},
        }
    ]
    assert _inbound("start") == [
        {
            "id": "twilio:SM1",
            "type": "address_unsuppressed",
            "customer_id": "c_1",
            "at": "2026-03-01T11:00:00Z",
            "data": {"address": "+15555550100", "reason": "start"},
            "customer": {"sms_consent": True},
        }
    ]


def test_inbound_help_and_message() -> None:
    assert _inbound("HELP") == []
    assert _inbound("Where is my order? ") == [
        {
            "id": "twilio:SM1",
            "type": "sms_received",
            "customer_id": "c_1",
            "at": "2026-03-01T11:00:00Z",
            "data": {"from": "+15555550100", "body": "Where is my order? "},
        }
    ]


def test_inbound_ids() -> None:
    params = {"SmsSid": "SM2", "Body": "hi"}
    assert inbound_events(params, "c", "+15555550100", NOW_US)[0]["id"] == "twilio:SM2"
    no_sid = inbound_events({"Body": "hi"}, "c", "+15555550100", NOW_US)[0]
    assert "id" not in no_sid
    assert inbound_events({}, "c", "+15555550100", NOW_US)[0]["data"]["body"] == ""


def test_twiml() -> None:
    assert twiml(None) == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    text = twiml('Reply STOP to opt out. Tom & Jerry <shop> "quotes"')
    assert text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        'Reply STOP to opt out. Tom &amp; Jerry &lt;shop&gt; "quotes"'
        "</Message></Response>"
    )
    root = ET.fromstring(text.encode())
    assert root.tag == "Response"
    assert root.find("Message").text == 'Reply STOP to opt out. Tom & Jerry <shop> "quotes"'  # type: ignore[union-attr]
    control = twiml("bell\x07 tab\t ok\ufffe")
    assert ET.fromstring(control.encode()).find("Message").text == "bell tab\t ok"  # type: ignore[union-attr]


def test_status_update() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert status_update(params) == StatusUpdate("SM1", "undelivered", 30003)
    assert status_update({"MessageSid": "SM1", "MessageStatus": "delivered"}).error_code is None
    for code in ("", "abc", "30.5", "-1", "٣"):
        assert status_update({**params, "ErrorCode": code}).error_code is None


@pytest.mark.parametrize(
    "params, field",
    [
        ({"MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "", "MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "SM1"}, "MessageStatus"),
        ({"MessageSid": "SM1", "MessageStatus": "  "}, "MessageStatus"),
        ({}, "MessageSid"),
    ],
)
def test_status_update_missing_fields(params: dict[str, str], field: str) -> None:
    with pytest.raises(CallbackError, match=field) as bad:
        status_update(params)
    assert bad.value.field == field


def test_an_error_code_too_long_to_be_one_is_none() -> None:
    """Python refuses int() on thousands of digits; a signed callback carrying such junk
    must not become a 500."""
    update = status_update(
        {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "9" * 5000}
    )
    assert update.error_code is None
    assert (
        status_update(
            {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "30003"}
        ).error_code
        == 30003
    )


def test_junk_addresses_are_not_suppressed() -> None:
    items = [
        {"event": "spamreport", "email": "@", "sg_event_id": "a", "timestamp": 1},
        {
            "event": "spamreport",
            "email": "x" * 400 + "@example.com",
            "sg_event_id": "b",
            "timestamp": 1,
        },
        {"event": "spamreport", "email": "ok@example.com", "sg_event_id": "c", "timestamp": 1},
    ]
    result = map_sendgrid(items, {}, {}, 0)
    assert [e["data"]["address"] for e in result.events] == ["ok@example.com"]
    assert result.ignored == 2
