"""Bundled schemas and their human, located messages (contract sections 1, 2, 5 and 7)."""

from __future__ import annotations

import copy
import re
import textwrap
from typing import Any

import contract_examples
import fastjsonschema
import pytest
from jsonschema import Draft202012Validator

from postflow.loader import SCHEMAS, explain, load_schema, load_yaml_text, schema_problems

EXAMPLE_JOURNEY = contract_examples.JOURNEY

EVERY_KIND = """\
id: every-kind
trigger:
  schedule: "0 9 * * *"
  timezone: America/New_York
  audience: "customer.orders_count >= 2 and days_since(customer.last_order_at) >= 180"
entry: {reentry: always}
settings: {quiet_hours: false}
steps:
  - {id: a, wait: 1d12h}
  - {id: b, wait: {for: P1DT2H, at: "10:00"}}
  - {id: c, wait: {at: "10:00:30"}}
  - {id: d, wait: {until: "customer.birthday"}}
  - {id: e, split: [{weight: 1, goto: f, name: control}, {weight: 2.5, goto: f}]}
  - id: f
    email: {sendgrid_template_id: d-123, data: {coupon: X1}, transactional: true, to: "a@b.c"}
  - {id: g, sms: {template: reminder, to: "{{ customer.phone }}", transactional: false}}
  - id: h
    webhook:
      url: "https://example.com/hook"
      method: POST
      json: {order: "{{ trigger.data.order_id }}", n: [1, 2]}
      headers: {X-Token: abc}
  - id: i
    set: {customer.tier: "'gold'", vars.count: 3, vars.flag: true, customer.note: null}
  - {id: j, emit: {event: tier_changed, data: {tier: customer.tier, n: 1}}}
  - {id: k, goto: end}
"""

EXAMPLE_CONFIG = """\
database: sqlite:///postflow.db
journeys: journeys                  # directory of journey files
templates: templates
catalog: catalog.yaml               # optional: sku -> {category, replenish_days, ...}
timezone: UTC                       # for customers without `timezone`
default_region: US                  # optional: for phone numbers written without +
purchase_event: order_placed
quiet_hours: {start: "21:00", end: "09:00", channels: [sms]}  # example (default: none)
limits:                             # example (default: none)
  email: {max: 2, per: 1d}
  sms: {max: 1, per: 1d}
channels:
  email: {provider: auto}           # auto (default) | console | file | sendgrid
  sms: {provider: auto, help_text: "Shop: reply STOP to opt out."}   # auto | console | file | twilio
  webhook: {timeout: 10s}
dispatch: {max_attempts: 8, backoff: 30s, max_backoff: 1h, concurrency: 4}
worker: {batch: 1000, poll: 1s, lease: 60s}
http: {listen: "127.0.0.1:8025", public_url: "https://hooks.example.com", max_body: 5MB}
log: {format: text}                 # text | json
"""

PROVIDERS_CONFIG = """\
quiet_hours: false
channels:
  email: {provider: sendgrid, from: "Shop <hi@shop.example>", reply_to: "help@shop.example",
          unsubscribe_group_id: 42, base_url: "http://127.0.0.1:8999",
          rate: {per_second: 10, burst: 20}}
  sms: {provider: twilio, messaging_service_sid: MG123, base_url: "http://127.0.0.1:8998/"}
"""

EXAMPLE_TEST = (
    contract_examples.TEST_FILE
    + """\
  - name: from a file
    events: events.jsonl
    expect:
      - {kind: enter, at: "2027-01-10T12:00:00+01:00", customer_id: c1, journey: j,
         instance: "j:c1:1", key: c1, variant: control}
      - {kind: message, channel: sms, status: skipped, reason: no_consent, error: x,
         to: "+15555550100", body: hi}
"""
)

EXAMPLE_EVENT: dict[str, Any] = {
    "id": "evt_81",
    "type": "order_placed",
    "customer_id": "c_1",
    "at": "2026-03-01T10:00:00Z",
    "customer": {
        "email": "ann@example.com",
        "phone": "+15555550100",
        "first_name": "Ann",
        "timezone": "America/New_York",
        "email_consent": True,
        "sms_consent": True,
    },
    "data": {
        "order_id": "o_1",
        "total": 120.5,
        "currency": "USD",
        "items": [
            {"sku": "TEA-1", "name": "Green tea", "category": "tea", "quantity": 2, "price": 60.25}
        ],
    },
}


def problems(text: str, schema: str = "journey") -> list[tuple[int, int, str]]:
    doc = load_yaml_text(textwrap.dedent(text), "j.yaml")
    found = schema_problems(doc, schema)
    assert all(p.file == "j.yaml" and p.severity == "error" for p in found)
    return [(p.line, p.col, p.message) for p in found]


# ------------------------------------------------------------------ the schemas themselves


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_is_valid_2020_12_with_metadata(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://postflow.dev/schemas/{name}.schema.json"
    assert schema["title"] and schema["description"]
    assert schema["additionalProperties"] is False


def _objects(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if "properties" in node else []
        return found + [o for child in node.values() for o in _objects(child)]
    return [o for child in node for o in _objects(child)] if isinstance(node, list) else []


@pytest.mark.parametrize("name", ["journey", "config", "testfile"])
def test_every_mapping_is_closed(name: str) -> None:
    """A key the contract does not define is an error at that key, at every level."""
    open_ = [o for o in _objects(load_schema(name)) if o.get("additionalProperties") is not False]
    assert open_ == []


def test_journey_schema_has_every_contract_key() -> None:
    schema = load_schema("journey")
    defs = schema["$defs"]
    assert list(schema["properties"]) == [
        *("id", "name", "description", "trigger", "filter", "entry", "exit", "goal", "tags"),
        *("settings", "steps"),
    ]
    assert schema["required"] == ["id", "trigger", "steps"]
    event, cron = defs["trigger"]["oneOf"]
    assert set(event["properties"]) == {"event", "if"}
    assert set(cron["properties"]) == {"schedule", "timezone", "audience"}
    assert set(defs["entry"]["properties"]) == {"key", "reentry", "cooldown"}
    assert set(schema["properties"]["goal"]["properties"]) == {"event", "if", "within"}
    kinds = ["wait", "wait_for", "wait_until", "branch", "split", "email", "sms", "webhook"]
    kinds += ["set", "emit"]
    assert list(defs["step"]["properties"]) == ["id", "next", *kinds, "goto"]
    assert set(defs["wait_for"]["properties"]) == {
        *("event", "timeout", "on_timeout", "if"),
        *("events", "since"),  # §9
    }
    assert set(defs["wait_until"]["properties"]) == {"if", "timeout", "on_timeout", "check_every"}
    email = {"subject", "template", "body", "sendgrid_template_id", "to", "data", "transactional"}
    # + §9's frequency_cap, + on_skip (an addition, docs/language-v1.1.md)
    assert set(defs["email"]["properties"]) == {*email, "frequency_cap", "on_skip"}
    assert set(defs["sms"]["properties"]) == {
        *("body", "template", "to", "transactional", "frequency_cap", "on_skip")
    }
    assert set(defs["webhook"]["properties"]) == {"url", "method", "json", "headers"}
    for kind in [*kinds, "goto"]:
        assert defs["step"]["properties"][kind].get("description") or defs[kind]["description"]


def test_config_schema_has_every_contract_key() -> None:
    props = load_schema("config")["properties"]
    assert set(props) == {
        *("database", "journeys", "templates", "catalog", "timezone", "default_region"),
        *("purchase_event", "quiet_hours", "limits", "channels", "dispatch", "worker", "http"),
        *("log", "send_window", "history"),  # send_window, history: §9
    }
    channels = props["channels"]["properties"]
    assert set(channels["email"]["properties"]) == {
        *("provider", "path", "from", "reply_to", "unsubscribe_group_id", "base_url", "rate"),
        "timeout",  # an addition: how long to wait for SendGrid
    }
    assert set(channels["sms"]["properties"]) == {
        *("provider", "path", "help_text", "from", "messaging_service_sid", "base_url", "rate"),
        "timeout",  # an addition: how long to wait for Twilio
    }
    # Additions: webhooks can be printed or written to a file instead of called.
    assert set(channels["webhook"]["properties"]) == {"provider", "path", "timeout"}
    assert set(props["dispatch"]["properties"]) == {
        *("max_attempts", "backoff", "max_backoff", "concurrency")
    }
    assert set(props["worker"]["properties"]) == {"batch", "poll", "lease"}
    assert set(props["http"]["properties"]) == {"listen", "public_url", "max_body"}


def test_shared_definitions_do_not_drift() -> None:
    journey, config = load_schema("journey")["$defs"], load_schema("config")["$defs"]
    for name in ("duration", "time_of_day", "quiet_hours", "send_window", "weekdays"):
        assert journey[name] == config[name], name
    assert journey["step_id"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_-]*$"


# ---------------------------------------------------------------------- valid documents


@pytest.mark.parametrize(
    ("text", "schema"),
    [
        (EXAMPLE_JOURNEY, "journey"),
        (EVERY_KIND, "journey"),
        (EXAMPLE_CONFIG, "config"),
        (PROVIDERS_CONFIG, "config"),
        ("{}", "config"),
        (EXAMPLE_TEST, "testfile"),
    ],
)
def test_contract_examples_validate_clean(text: str, schema: str) -> None:
    assert problems(text, schema) == []


def test_contract_example_event_is_valid() -> None:
    assert explain(EXAMPLE_EVENT, "event") == []
    assert explain({"type": "a", "customer_id": "c"}, "event") == []


DURATIONS_OK = ["0s", "45s", "30m", "12h", "3d", "2w", "1d12h", "1w2d3h4m5s", "P3D", "PT12H"]
DURATIONS_OK += ["P1W", "P1DT2H30M", "PT0S", "PT90M"]
DURATIONS_BAD = ["", "3", "d", "3 d", "3days", "12h1d", "1.5h", "-1d", "P", "PT", "P1Y", "P1M"]
DURATIONS_BAD += ["P1DT", "p3d", "3D", "P1.5D", "+3d"]


@pytest.mark.parametrize("value", DURATIONS_OK + DURATIONS_BAD)
def test_duration_spellings(value: str) -> None:
    pattern = load_schema("journey")["$defs"]["duration"]["pattern"]
    assert bool(re.search(pattern, value)) == (value in DURATIONS_OK)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("09:00", True), ("23:59:59", True), ("00:00", True), ("24:00", False), ("9:00", False)]
    + [("12:60", False), ("12:00:60", False), ("noon", False)],
)
def test_time_of_day_spellings(value: str, ok: bool) -> None:
    pattern = load_schema("journey")["$defs"]["time_of_day"]["pattern"]
    assert bool(re.search(pattern, value)) == ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("2027-01-10T12:00:00Z", True), ("+3d", True), ("+1d12h", True), ("+PT30M", True)]
    + [("2027-01-10T12:00:00", False), ("+3", False), ("3d", False), ("tomorrow", False)],
)
def test_test_file_times(value: str, ok: bool) -> None:
    pattern = load_schema("testfile")["$defs"]["when"]["pattern"]
    assert bool(re.search(pattern, value)) == ok


# ----------------------------------------------------------------------- human messages


def test_unknown_key_with_a_close_match_at_the_key() -> None:
    text = "id: x\ntrigger: {event: a}\nstpes:\n  - {id: a, wait: 1d}\n"
    assert problems(text) == [(3, 1, "unknown key 'stpes' (did you mean 'steps'?)")]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    text = "id: x\ntrigger: {event: a}\nentry: {foo: 1}\nsteps: [{id: a, wait: 1d}]\n"
    assert problems(text) == [(3, 9, "unknown key 'foo' (allowed: key, reentry, cooldown)")]


def test_missing_required_key_at_the_mapping() -> None:
    text = "trigger: {event: a}\nsteps:\n  - id: a\n    wait_for: {event: b}\n"
    assert problems(text) == [
        (1, 1, "missing required key 'id'"),
        (4, 15, "missing required key 'timeout'"),
    ]


def test_several_missing_keys_are_one_message() -> None:
    assert problems("name: x\n") == [(1, 1, "missing required keys 'id', 'trigger' and 'steps'")]


def test_wrong_types_name_the_key_and_the_list_item() -> None:
    text = """\
    id: x
    trigger: order_placed
    steps:
      - {id: a, wait: 1d}
      - {id: b, goto: a}
      - wait 1d
    """
    assert problems(text) == [
        (2, 10, "'trigger' must be a mapping, not a string"),
        (6, 5, "steps[2] must be a mapping, not a string"),
    ]


def test_a_key_without_value() -> None:
    assert problems("id: x\ntrigger:\nsteps:\n") == [
        (2, 9, "'trigger' must be a mapping, but it has no value"),
        (3, 7, "'steps' must be a list, but it has no value"),
    ]


def test_unquoted_time_gets_a_quoting_hint() -> None:
    text = """\
    id: x
    trigger: {event: a}
    settings:
      quiet_hours: {start: 21:00, end: "09:00"}
    steps: [{id: a, wait: 1d}]
    """
    assert problems(text) == [
        (
            4,
            24,
            """'start' must be a string, not an integer (YAML reads 21:00 as an integer: \
write "21:00")""",
        )
    ]


def test_enum() -> None:
    text = "id: x\ntrigger: {event: a}\nentry:\n  reentry: sometimes\nsteps: [{id: a, wait: 1d}]\n"
    assert problems(text) == [
        (4, 12, "reentry must be one of never, after_exit, always (got 'sometimes')")
    ]


def test_pattern_messages_come_from_x_error_or_the_duration_parser() -> None:
    text = """\
    id: Review
    trigger: {event: a}
    entry: {cooldown: 3 days}
    steps:
      - {id: 1st, wait: P1M}
      - {id: b, wait: {for: 1d, at: "25:00"}}
    """
    assert problems(text) == [
        (
            1,
            5,
            "bad journey id 'Review': use lower-case letters, digits, _ and -, starting with a "
            "letter",
        ),
        (
            3,
            19,
            "bad duration '3 days': write 3d",
        ),
        (5, 10, "bad step id '1st': use letters, digits, _ and -, starting with a letter or _"),
        (
            5,
            21,
            "bad duration 'P1M': years and months have no fixed length; use days or weeks "
            "(e.g. 30d, P4W)",
        ),
        (6, 33, """bad time of day '25:00': use 24-hour HH:MM, like "09:00" or "21:30\""""),
    ]


def test_steps_must_not_be_empty() -> None:
    assert problems("id: x\ntrigger: {event: a}\nsteps: []\n") == [
        (3, 8, "'steps' must not be empty")
    ]


def test_step_without_kind() -> None:
    text = "id: x\ntrigger: {event: a}\nsteps:\n  - id: ask\n    next: end\n"
    assert problems(text) == [
        (
            4,
            5,
            "step 'ask' has no kind: add one of wait, wait_for, wait_until, branch, split, email, sms, "
            "webhook, set, emit, goto",
        )
    ]


def test_step_with_two_kinds_at_the_second() -> None:
    text = """\
    id: x
    trigger: {event: a}
    steps:
      - id: ask
        email: {subject: Hi, body: Hello}
        sms: {body: Hello}
    """
    assert problems(text) == [
        (6, 5, "step 'ask' has 2 kinds (email, sms): a step does exactly one thing")
    ]


def test_misspelt_kind_is_a_typo_not_a_missing_kind() -> None:
    text = "id: x\ntrigger: {event: a}\nsteps:\n  - id: ask\n    emial: {body: x}\n"
    assert problems(text) == [(5, 5, "unknown key 'emial' (did you mean 'email'?)")]


def test_exactly_one_body_for_email_and_sms() -> None:
    text = """\
    id: x
    trigger: {event: a}
    steps:
      - {id: a, email: {subject: Hi, template: t, body: b}}
      - {id: b, email: {to: x}}
      - {id: c, sms: {}}
      - {id: d, email: {sendgrid_template_id: d-1}}
    """
    assert problems(text) == [
        (4, 47, "'email' has template and body: use exactly one of them"),
        (5, 20, "'email' needs one of template, body, sendgrid_template_id"),
        (5, 20, "missing required key 'subject'"),
        (6, 18, "'sms' needs one of body, template"),
    ]


def test_one_of_picks_the_branch_by_type() -> None:
    text = """\
    id: x
    trigger: {event: a}
    steps:
      - {id: a, wait: 3}
      - {id: b, wait: {}}
      - {id: c, wait: 1 day}
      - {id: d, wait: {for: 1d, until: "x"}}
      - {id: e, wait: {unitl: "x"}}
    """
    assert problems(text) == [
        (4, 19, "'wait' must be a duration string or a mapping with for/at or until"),
        (5, 19, "'wait' must be a duration string or a mapping with for/at or until"),
        (
            6,
            19,
            "bad duration '1 day': write 1d",
        ),
        (7, 20, "'for' cannot be combined with 'until'"),
        (8, 20, "unknown key 'unitl' (did you mean 'until'?)"),
    ]


def test_trigger_is_an_event_or_a_schedule() -> None:
    def trigger(body: str) -> list[tuple[int, int, str]]:
        return problems(f"id: x\ntrigger: {body}\nsteps: [{{id: a, wait: 1d}}]\n")

    assert trigger("{event: a, schedule: '0 9 * * *'}") == [
        (2, 21, "'schedule' cannot be combined with 'event'")
    ]
    assert trigger("{schedule: '0 9 * * *'}") == [(2, 10, "missing required key 'audience'")]
    assert trigger("{schedule: '0 9 * * *', audience: x, if: y}") == [
        (2, 47, "'if' cannot be combined with 'schedule'")
    ]
    assert trigger("{evnt: a}") == [(2, 11, "unknown key 'evnt' (did you mean 'event'?)")]
    assert trigger("{}") == [
        (
            2,
            10,
            "'trigger' needs either event (with an optional if) or schedule and audience "
            "(with an optional timezone)",
        )
    ]


def test_quiet_hours_false_or_a_window() -> None:
    def quiet(body: str) -> list[tuple[int, int, str]]:
        text = f"id: x\ntrigger: {{event: a}}\nsettings: {{quiet_hours: {body}}}\nsteps: [{{id: a, goto: end}}]\n"
        return problems(text)

    assert quiet("false") == []
    assert quiet("true") == [
        (
            3,
            25,
            "'quiet_hours' must be false (to turn quiet hours off) or a mapping with start and end",
        )
    ]
    assert quiet("21-9") == [
        (
            3,
            25,
            "'quiet_hours' must be false (no quiet hours) or a mapping with start and end, "
            "not a string",
        )
    ]
    assert quiet("{start: '21:00', end: '09:00', channels: [sms, sms, push]}") == [
        (3, 72, "channels lists 'sms' twice"),
        (3, 77, "channels[2] must be one of email, sms (got 'push')"),
    ]


def test_other_step_details() -> None:
    text = """\
    id: x
    trigger: {event: a}
    steps:
      - {id: a, split: [{weight: 0, goto: b}, {goto: b}]}
      - {id: b, branch: []}
      - {id: c, webhook: {method: FETCH, headers: {X-N: 1}}}
      - {id: d, set: {tier: x, customer.n: {a: 1}, vars.e: ""}}
      - {id: e, emit: {data: {}}}
      - {id: f, goto: 3}
    """
    assert problems(text) == [
        (4, 30, "'weight' must be greater than 0 (got 0)"),
        (4, 43, "missing required key 'weight'"),
        (5, 21, "'branch' must not be empty"),
        (6, 22, "missing required key 'url'"),
        (6, 31, "method must be one of GET, POST, PUT, PATCH, DELETE (got 'FETCH')"),
        (6, 53, "'X-N' must be a string, not an integer"),
        (7, 19, "bad key 'tier': set keys are customer.NAME or vars.NAME"),
        (7, 40, "'customer.n' must be a string, a number, a boolean or null, not a mapping"),
        (
            7,
            56,
            "'vars.e' must not be empty: write an expression, or a number, true, false or null",
        ),
        (8, 19, "missing required key 'event'"),
        (9, 19, "'goto' must be a string, not an integer"),
    ]


def test_root_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == [(1, 1, "the journey must be a mapping, not a list")]


def test_config_messages() -> None:
    text = """\
    timezon: UTC
    limits: {email: {max: -1, per: 1d}, sms: {max: 1}}
    channels: {email: {provider: mailgun}}
    http: {max_body: 5mb, listen: localhost}
    log: {format: xml}
    """
    assert problems(text, "config") == [
        (1, 1, "unknown key 'timezon' (did you mean 'timezone'?)"),
        (2, 23, "'max' must be at least 0 (got -1)"),
        (2, 42, "missing required key 'per'"),
        (3, 30, "provider must be one of auto, console, file, sendgrid (got 'mailgun')"),
        (4, 18, "bad size '5mb': write it like 512KB or 5MB"),
        (4, 31, "bad listen address 'localhost': use HOST:PORT, like 127.0.0.1:8025"),
        (5, 15, "format must be one of text, json (got 'xml')"),
    ]


def test_test_file_messages() -> None:
    text = """\
    journeys: [Review]
    config: {limits: {email: {max: 2}}}
    cases:
      - name: x
        start: 2027-01-10T12:00:00
        events:
          - {type: a, customer_id: c, at: "+4 days"}
          - {customer_id: c, typ: a}
        expect:
          - {kind: mesage, stauts: sent}
      - name: y
        events: 3
      - events: []
    """
    assert problems(text, "testfile") == [
        (
            1,
            12,
            "bad journey id 'Review': use lower-case letters, digits, _ and -, starting with "
            "a letter",
        ),
        (2, 26, "missing required key 'per'"),
        (
            5,
            12,
            "bad timestamp '2027-01-10T12:00:00': write an ISO 8601 date-time with a UTC "
            "offset, like 2027-01-10T12:00:00Z",
        ),
        (
            7,
            39,
            "bad time '+4 days': write a timestamp with a UTC offset (2027-01-10T12:00:00Z) "
            "or +DURATION from start (+3d, +1d12h)",
        ),
        (8, 26, "unknown key 'typ' (did you mean 'type'?)"),
        (10, 16, "kind must be one of enter, message, goal, exit (got 'mesage')"),
        (10, 24, "unknown key 'stauts' (did you mean 'status'?)"),
        (12, 13, "'events' must be a list of events or the path of a JSON Lines file"),
        (13, 5, "missing required key 'name'"),
    ]


def test_subpath_validates_a_part_and_keeps_positions() -> None:
    doc = load_yaml_text("cases: []\nconfig:\n  log: {format: xml}\n", "t.yaml")
    [problem] = schema_problems(doc, "config", subpath=("config",))
    assert (problem.line, problem.col) == (3, 17)
    assert problem.message == "format must be one of text, json (got 'xml')"
    assert schema_problems(doc, "config", subpath=("nope",)) == []


def test_problems_are_sorted_and_one_per_node() -> None:
    text = "steps: [{id: a, wait: 1d}]\nid: 3\nfoo: 1\ntrigger: {event: ''}\n"
    found = problems(text)
    assert found == sorted(found)
    assert found == [
        (2, 5, "'id' must be a string, not an integer"),
        (
            3,
            1,
            "unknown key 'foo' (allowed: id, name, description, trigger, filter, entry, exit, "
            "goal, tags, settings, steps)",
        ),
        (4, 18, "'event' must name an event type, like order_placed"),
    ]


# -------------------------------------------------------------------------------- events


def test_event_messages_name_the_field() -> None:
    assert explain({"customer_id": "c"}, "event") == [((), "missing required key 'type'")]
    naive = dict(EXAMPLE_EVENT, at="2026-03-01T10:00:00")
    assert explain(naive, "event") == [
        (
            ("at",),
            "'at' '2026-03-01T10:00:00' has no UTC offset: add Z (UTC) or +HH:MM, like "
            "2026-03-01T10:00:00Z",
        )
    ]
    bad = {
        "type": 3,
        "customer_id": "",
        "at": "yesterday",
        "customer": {"email_consent": "yes", "loyalty": "gold"},
        "data": [],
        "extra": 1,
    }
    assert explain(bad, "event") == [
        (
            ("at",),
            "'at' 'yesterday' is not an ISO 8601 date-time: write it like 2026-03-01T10:00:00Z",
        ),
        (("customer", "email_consent"), "'email_consent' must be a boolean, not a string"),
        (("customer_id",), "'customer_id' must not be empty"),
        (("data",), "'data' must be a mapping, not a list"),
        (("extra",), "unknown key 'extra' (allowed: id, type, customer_id, at, customer, data)"),
        (("type",), "'type' must be a string, not an integer"),
    ]
    assert explain([], "event") == [((), "the event must be a mapping, not a list")]


def _events() -> list[Any]:
    good = [
        EXAMPLE_EVENT,
        {"type": "a", "customer_id": "c"},
        {"type": "a", "customer_id": "c", "at": "2026-03-01T10:00:00+02:00"},
        {"type": "a", "customer_id": "c", "at": "2026-03-01T10:00Z", "customer": {"x": [1]}},
        {"type": "a", "customer_id": "c", "at": "2026-03-01T10:00:00.123456-05:30"},
        {"type": "a", "customer_id": "c", "data": {}, "customer": {}, "id": "e1"},
    ]
    bad: list[Any] = [
        {},
        [],
        "event",
        None,
        {"type": "a"},
        {"customer_id": "c"},
        {"type": "", "customer_id": "c"},
        {"type": "a", "customer_id": ""},
        {"type": "a", "customer_id": 1},
        {"type": "a", "customer_id": "c", "id": ""},
        {"type": "a", "customer_id": "c", "at": "2026-03-01T10:00:00"},
        {"type": "a", "customer_id": "c", "at": "2026-03-01"},
        {"type": "a", "customer_id": "c", "at": "2026-13-01T10:00:00Z"},
        {"type": "a", "customer_id": "c", "at": "2026-03-01T10:00:00+0200"},
        {"type": "a", "customer_id": "c", "at": "2026-03-01 10:00:00Z"},
        {"type": "a", "customer_id": "c", "at": "2026-03-01t10:00:00z"},
        {"type": "a", "customer_id": "c", "at": 1767261600},
        {"type": "a", "customer_id": "c", "data": []},
        {"type": "a", "customer_id": "c", "customer": {"email_consent": "true"}},
        {"type": "a", "customer_id": "c", "customer": {"email": None}},
        {"type": "a", "customer_id": "c", "customer": {"timezone": ""}},
        {"type": "a", "customer_id": "c", "extra": 1},
    ]
    return [(e, True) for e in good] + [(e, False) for e in bad]


@pytest.mark.parametrize(("event", "valid"), _events())
def test_jsonschema_and_fastjsonschema_agree_on_events(event: Any, valid: bool) -> None:
    fast = fastjsonschema.compile(copy.deepcopy(load_schema("event")))
    try:
        fast(copy.deepcopy(event))
        fast_valid = True
    except fastjsonschema.JsonSchemaException:
        fast_valid = False
    assert Draft202012Validator(load_schema("event")).is_valid(event) == valid
    assert fast_valid == valid
    assert (explain(event, "event") == []) == valid


def test_event_schema_uses_only_keywords_draft_07_shares() -> None:
    shared = {"type", "properties", "required", "additionalProperties", "pattern", "minLength"}
    shared |= {"allOf", "enum", "items", "description", "title", "$schema", "$id", "x-error"}
    shared |= {"x-name"}

    def keywords(schema: dict[str, Any]) -> set[str]:
        found = set(schema)
        for key, child in schema.items():
            children = {"properties": list(child.values()) if key == "properties" else []}
            subschemas = children["properties"] or (child if key == "allOf" else [])
            if key in ("items", "additionalProperties") and isinstance(child, dict):
                subschemas = [child]
            for sub in subschemas:
                found |= keywords(sub)
        return found

    assert keywords(load_schema("event")) <= shared
