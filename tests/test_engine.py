"""The engine's semantics, step kind by step kind, through the library API (virtual time)."""

from __future__ import annotations

from hashlib import sha256

from conftest import Project, pick

from postflow import durations, engine, events
from postflow.state import CustomerState

T0 = "2027-01-10T12:00:00Z"


def ev(type_: str, cid: str = "c1", at: str = T0, **extra: object) -> dict[str, object]:
    return {"type": type_, "customer_id": cid, "at": at, **extra}


def test_wait_then_email_then_completed(proj: Project) -> None:
    proj.journey(
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: pause
            wait: 1d12h
          - id: hello
            email: {subject: "Hi {{ customer.first_name }}", body: "Welcome"}
        """,
    )
    records = proj.simulate([ev("signup", customer={"email": "A@X.com", "first_name": "Ann"})])
    assert pick(records, "kind", "at") == [
        ("enter", T0),
        ("message", "2027-01-12T00:00:00Z"),
        ("exit", "2027-01-12T00:00:00Z"),
    ]
    message = records[1]
    assert message["to"] == "a@x.com"
    assert message["subject"] == "Hi Ann"
    assert message["body"] == "Welcome"
    assert "reason" not in message
    assert records[2]["reason"] == "completed"


def test_wait_for_at_uses_customer_local_time(proj: Project) -> None:
    proj.journey(
        "j",
        """
        id: j
        trigger: {event: signup}
        steps:
          - id: align
            wait: {for: 1d, at: "10:00"}
          - id: hello
            email: {subject: "Morning", body: "x"}
        """,
    )
    records = proj.simulate(
        [
            ev(
                "signup",
                at="2027-03-01T14:00:00Z",
                customer={"email": "a@x.com", "timezone": "America/New_York"},
            )
        ]
    )
    assert pick(records, "at", kind="message") == [("2027-03-02T15:00:00Z",)]


def test_wait_until_expression(proj: Project) -> None:
    proj.journey(
        "j",
        """
        id: j
        trigger: {event: booked}
        steps:
          - id: until
            wait: {until: "trigger.data.when"}
          - id: hello
            email: {subject: "Now", body: "x"}
        """,
    )
    records = proj.simulate(
        [
            ev(
                "booked",
                "future",
                data={"when": "2027-02-01T08:00:00Z"},
                customer={"email": "f@x.com"},
            ),
            ev(
                "booked",
                "past",
                data={"when": "2020-01-01T00:00:00Z"},
                customer={"email": "p@x.com"},
            ),
            ev("booked", "none", data={}, customer={"email": "n@x.com"}),
            ev("booked", "bad", data={"when": 42}, customer={"email": "b@x.com"}),
        ]
    )
    assert pick(records, "at", kind="message", customer_id="future") == [("2027-02-01T08:00:00Z",)]
    assert pick(records, "at", kind="message", customer_id="past") == [(T0,)]
    assert pick(records, "at", kind="message", customer_id="none") == [(T0,)]
    bad = [r for r in records if r["customer_id"] == "bad"]
    assert [r["kind"] for r in bad] == ["enter", "exit"]
    assert bad[1]["reason"] == "error" and "int" in bad[1]["error"]


REVIEW = """
id: review
trigger: {event: delivered}
steps:
  - id: await
    wait_for: {event: review, timeout: 2d, on_timeout: remind, if: "event.data.order == trigger.data.order"}
  - id: by_rating
    branch:
      - if: "last_event.data.rating >= 4"
        goto: thanks
  - id: sorry
    email: {subject: "Sorry about {{ last_event.data.rating }} stars", body: "x"}
    next: end
  - id: thanks
    email: {subject: "Thanks for {{ last_event.data.rating }} stars", body: "x"}
    next: end
  - id: remind
    email: {subject: "Reminder", body: "x"}
"""


def test_wait_for_resumes_branches_and_times_out(proj: Project) -> None:
    proj.journey("review", REVIEW)
    c = {"email": "a@x.com"}
    records = proj.simulate(
        [
            ev("delivered", "happy", data={"order": "o1"}, customer=c),
            ev("delivered", "sad", data={"order": "o2"}, customer=c),
            ev("delivered", "silent", data={"order": "o3"}, customer=c),
            ev("review", "happy", at="2027-01-11T00:00:00Z", data={"order": "other", "rating": 1}),
            ev("review", "happy", at="2027-01-11T12:00:00Z", data={"order": "o1", "rating": 5}),
            ev("review", "sad", at="2027-01-11T12:00:00Z", data={"order": "o2", "rating": 2}),
            ev("review", "silent", at="2027-01-12T12:00:00Z", data={"order": "o3", "rating": 5}),
        ]
    )
    assert pick(records, "step", "subject", "at", kind="message") == [
        ("thanks", "Thanks for 5 stars", "2027-01-11T12:00:00Z"),
        ("sorry", "Sorry about 2 stars", "2027-01-11T12:00:00Z"),
        ("remind", "Reminder", "2027-01-12T12:00:00Z"),  # the timer wins the tie
    ]


def test_split_is_the_contract_hash_and_sets_variant_after(proj: Project) -> None:
    proj.journey(
        "ab",
        """
        id: ab
        trigger: {event: signup}
        steps:
          - id: pick
            split:
              - {weight: 1, goto: a, name: control}
              - {weight: 1, goto: b}
          - id: a
            email: {subject: "A", body: "x"}
            next: end
          - id: b
            email: {subject: "B", body: "x"}
        """,
    )
    customers = [f"s{i}" for i in range(40)]
    records = proj.simulate([ev("signup", c, customer={"email": f"{c}@x.com"}) for c in customers])
    for c in customers:
        u = int(sha256(f"ab\0pick\0{c}".encode()).hexdigest()[:16], 16) / 2**64
        want = ("control", "A") if u < 0.5 else ("b", "B")
        mine = [r for r in records if r["customer_id"] == c]
        assert "variant" not in mine[0]
        assert (mine[1]["variant"], mine[1]["subject"]) == want
        assert mine[2]["variant"] == want[0]
    assert {r["subject"] for r in records if r["kind"] == "message"} == {"A", "B"}


def test_set_updates_profile_and_vars_and_emit_triggers(proj: Project) -> None:
    proj.journey(
        "main",
        """
        id: main
        trigger: {event: order_placed}
        steps:
          - id: mark
            set:
              customer.tier: "'gold' if trigger.data.total >= 100 else 'silver'"
              vars.greeting: "'Hello'"
              customer.obsolete: "none"
          - id: tell
            emit: {event: tier_changed, data: {tier: "customer.tier"}}
          - id: confirm
            email: {subject: "{{ vars.greeting }} {{ customer.tier }}", body: "x"}
        """,
    )
    proj.journey(
        "tier",
        """
        id: tier
        trigger: {event: tier_changed, if: "customer.tier == 'gold' and customer.obsolete is none"}
        steps:
          - id: perk
            email: {subject: "{{ trigger.data.tier }} via {{ trigger.id }}", body: "x"}
        """,
    )
    records = proj.simulate(
        [ev("order_placed", data={"total": 150}, customer={"email": "a@x.com", "obsolete": 1})]
    )
    assert pick(records, "journey", "subject", kind="message") == [
        ("main", "Hello gold"),
        ("tier", "gold via main:c1:1:tell:1"),
    ]


def test_more_than_32_chained_emits_end_with_error(proj: Project) -> None:
    proj.journey(
        "loop",
        """
        id: loop
        trigger: {event: ping}
        entry: {reentry: always}
        steps:
          - id: again
            emit: {event: ping}
        """,
    )
    records = proj.simulate([ev("ping")])
    exits = [r for r in records if r["kind"] == "exit"]
    assert len(exits) == 33
    assert [r["reason"] for r in exits[:32]] == ["completed"] * 32
    assert exits[32]["reason"] == "error" and "32" in exits[32]["error"]


def test_webhook_ignores_consent_and_goto_jumps(proj: Project) -> None:
    proj.journey(
        "hook",
        """
        id: hook
        trigger: {event: signup}
        steps:
          - id: jump
            goto: call
          - id: skipped
            email: {subject: "never", body: "x"}
          - id: call
            webhook:
              url: "https://crm.example/{{ trigger.customer_id }}"
              json: {email: "{{ customer.email }}"}
        """,
    )
    records = proj.simulate([ev("signup", customer={"email": "a@x.com", "email_consent": False})])
    assert pick(records, "step", "channel", "status", "to", kind="message") == [
        ("call", "webhook", "sent", "https://crm.example/c1")
    ]


def test_reentry_rules_and_cooldown(proj: Project) -> None:
    for name, entry in {
        "never": "{key: 'trigger.data.k', reentry: never}",
        "after": "{reentry: after_exit}",
        "always": "{key: 'trigger.data.k', reentry: always}",
        "cool": "{cooldown: 2d}",
    }.items():
        proj.journey(
            name,
            f"""
            id: {name}
            trigger: {{event: go_{name}}}
            entry: {entry}
            steps:
              - id: hold
                wait: 1d
            """,
        )
    day = "2027-01-1{}T12:00:00Z".format
    records = proj.simulate(
        [
            ev("go_never", at=day(0), data={"k": "a"}),
            ev("go_never", at=day(2), data={"k": "a"}),
            ev("go_never", at=day(3), data={"k": "b"}),
            ev("go_after", at=day(0)),
            ev("go_after", at="2027-01-10T18:00:00Z"),
            ev("go_after", at=day(1)),
            ev("go_always", at=day(0), data={"k": "p"}),
            ev("go_always", at=day(0), data={"k": "p"}),
            ev("go_cool", at=day(0)),
            ev("go_cool", at="2027-01-12T11:59:59Z"),
            ev("go_cool", at=day(2)),
        ]
    )
    enters = {
        name: pick(records, "instance", "key", "at", kind="enter", journey=name)
        for name in ("never", "after", "always", "cool")
    }
    assert enters["never"] == [("never:c1:1", "a", day(0)), ("never:c1:2", "b", day(3))]
    # the timer ending the first instance fires before the event at the same instant
    assert enters["after"] == [("after:c1:1", "c1", day(0)), ("after:c1:2", "c1", day(1))]
    assert enters["always"] == [("always:c1:1", "p#1", day(0)), ("always:c1:2", "p#2", day(0))]
    assert [e[2] for e in enters["cool"]] == [day(0), day(2)]


def test_exit_and_goal(proj: Project) -> None:
    proj.journey(
        "follow",
        """
        id: follow
        trigger: {event: delivered}
        exit:
          - {event: order_placed, if: "event.data.order_id != trigger.data.order_id"}
        goal: {event: order_placed, within: 3d}
        steps:
          - id: w
            wait: 1d
          - id: ask
            email: {subject: "How?", body: "x"}
        """,
    )
    records = proj.simulate(
        [
            ev("delivered", "g1", data={"order_id": "o1"}, customer={"email": "a@x.com"}),
            ev("order_placed", "g1", at="2027-01-10T13:00:00Z", data={"order_id": "o1"}),
            ev("order_placed", "g1", at="2027-01-10T14:00:00Z", data={}),
            ev("delivered", "g2", data={"order_id": "o2"}, customer={"email": "b@x.com"}),
            ev("order_placed", "g2", at="2027-01-12T12:00:00Z", data={"order_id": "o9"}),
            ev("order_placed", "g2", at="2027-01-13T11:00:00Z", data={"order_id": "o9"}),
        ]
    )
    assert pick(records, "kind", "step", "reason", customer_id="g1")[1:] == [
        ("goal", "w", None),
        ("exit", None, "exit_event"),
    ]
    g2 = pick(records, "kind", "step", "at", customer_id="g2")
    assert ("goal", None, "2027-01-12T12:00:00Z") in g2  # after completion, inside the window
    assert sum(1 for r in g2 if r[0] == "goal") == 1  # at most once


def test_quiet_hours_hold_until_local_end_and_exit_drops_message(proj: Project) -> None:
    proj.config(
        'timezone: America/Chicago\nquiet_hours: {start: "21:00", end: "09:00", channels: [sms]}\n'
    )
    proj.journey(
        "ship",
        """
        id: ship
        trigger: {event: shipped}
        exit: [{event: cancelled}]
        steps:
          - id: notice
            sms: {body: "Shipped", transactional: true}
          - id: later
            wait: 1h
          - id: tip
            email: {subject: "Tip", body: "x"}
        """,
    )
    records = proj.simulate(
        [
            ev(
                "shipped",
                "n",
                at="2027-11-07T03:00:00Z",
                customer={"phone": "+15555550100", "email": "n@x.com"},
            ),
            ev("shipped", "x", at="2027-11-07T03:00:00Z", customer={"phone": "555-555-0101"}),
            ev("cancelled", "x", at="2027-11-07T05:00:00Z"),
        ]
    )
    # 22:00 CDT is held until 09:00 CST (the day DST ends); the next steps count from then
    assert pick(records, "step", "at", "to", kind="message", customer_id="n") == [
        ("notice", "2027-11-07T15:00:00Z", "+15555550100"),
        ("tip", "2027-11-07T16:00:00Z", "n@x.com"),
    ]
    assert pick(records, "kind", customer_id="x") == [("enter",), ("exit",)]


def test_message_checks_in_contract_order(proj: Project) -> None:
    proj.config("timezone: UTC\nlimits: {email: {max: 1, per: 1d}}\n")
    proj.journey(
        "promo",
        """
        id: promo
        trigger: {event: promo}
        entry: {reentry: always}
        steps:
          - id: offer
            email: {subject: "Hi {{ customer.nickname }}", body: "x"}
        """,
    )
    records = proj.simulate(
        [
            {
                "type": "address_suppressed",
                "customer_id": "s",
                "at": T0,
                "data": {"address": "S@x.com", "reason": "bounce"},
            },
            ev("promo", "none"),
            ev("promo", "s", customer={"email": "s@X.com", "email_consent": False}),
            ev("promo", "optout", customer={"email": "o@x.com", "email_consent": False}),
            ev("promo", "capped", customer={"email": "c@x.com", "nickname": "C"}),
            ev("promo", "capped", at="2027-01-10T13:00:00Z"),
            ev("promo", "render", customer={"email": "r@x.com"}),
        ]
    )
    got = {
        r["customer_id"]: (r["status"], r.get("reason"))
        for r in records
        if r["kind"] == "message" and r["at"] == T0
    }
    assert got == {
        "none": ("skipped", "no_address"),
        "s": ("skipped", "suppressed"),
        "optout": ("skipped", "no_consent"),
        "capped": ("sent", None),
        "render": ("failed", "render_error"),
    }
    assert pick(records, "reason", kind="message", customer_id="capped")[1] == ("frequency_cap",)
    render = next(r for r in records if r.get("reason") == "render_error")
    assert "nickname" in render["error"]


def test_entry_key_error_ends_instance_with_error(proj: Project) -> None:
    proj.journey(
        "k",
        """
        id: k
        trigger: {event: go}
        entry: {key: "trigger.data.missing"}
        steps:
          - id: s
            email: {subject: "x", body: "x"}
        """,
    )
    records = proj.simulate([ev("go", customer={"email": "a@x.com"})])
    assert pick(records, "kind", "reason") == [("enter", None), ("exit", "error")]
    assert "key" in records[1]["error"]


def test_audience_journey_enters_on_cron_ticks(proj: Project) -> None:
    proj.journey(
        "winback",
        """
        id: winback
        trigger:
          schedule: "0 9 * * 1"
          timezone: Europe/Berlin
          audience: "days_since(customer.last_order_at) >= 10"
        entry: {key: "'lapse-' ~ customer.orders_count", reentry: never}
        steps:
          - id: miss
            email: {subject: "Miss you ({{ trigger.type }})", body: "x"}
        """,
    )
    records = proj.simulate(
        [
            ev(
                "order_placed",
                at="2027-01-04T10:00:00Z",
                data={"total": 5},
                customer={"email": "a@x.com"},
            ),
            ev("page_viewed", "other", at="2027-02-01T00:00:00Z"),
        ]
    )
    # Mondays 09:00 Berlin (08:00Z); 10 days after Jan 4 is first met on Jan 18
    assert pick(records, "kind", "at", "key", customer_id="c1")[0] == (
        "enter",
        "2027-01-18T08:00:00Z",
        "lapse-1",
    )
    assert pick(records, "subject", kind="message") == [("Miss you (schedule)",)]


def test_purchase_facts_before_journeys(proj: Project) -> None:
    proj.journey(
        "first",
        """
        id: first
        trigger: {event: order_placed, if: "customer.orders_count == 1"}
        steps:
          - id: hi
            email: {subject: "#{{ customer.orders_count }} {{ customer.total_spent }} {{ customer.last_order_at }}", body: "x"}
        """,
    )
    records = proj.simulate(
        [
            ev("order_placed", data={"total": 40}, customer={"email": "a@x.com"}),
            ev("order_placed", at="2027-01-11T12:00:00Z", data={"total": 2.5}),
        ]
    )
    assert pick(records, "subject", kind="message") == [("#1 40 2027-01-10T12:00:00Z",)]


def _world(proj: Project) -> engine.World:
    proj.journey(
        "j",
        """
        id: j
        trigger: {event: go}
        steps:
          - id: hi
            email: {subject: "x", body: "x"}
        """,
    )
    return proj.world()


def test_engine_is_pure_and_late_events_take_processed_time(proj: Project) -> None:
    world = _world(proj)
    state = CustomerState("c1", processed_at=durations.parse_instant("2027-01-10T15:00:00Z"))
    late = events.parse_event(ev("go", customer={"email": "a@x.com"}))
    processed = durations.parse_instant("2027-01-10T15:00:00Z")
    outcome = engine.advance(world, state, processed, events=[late])
    assert state.profile == {} and state.instances == []  # input untouched
    assert {r["at"] for r in outcome.records} == {processed}
    assert outcome.state.profile["email"] == "a@x.com"
    again = engine.advance(world, state, processed, events=[late])
    assert again.records == outcome.records  # same inputs, same outputs


def test_record_fields_come_in_the_contract_order(proj: Project) -> None:
    from postflow.simulate import FIELD_ORDER

    proj.journey("review", REVIEW)
    records = proj.simulate(
        [
            ev("delivered", "a", data={"order": "o1"}, customer={"email": "a@x.com"}),
            ev("review", "a", at="2027-01-11T00:00:00Z", data={"order": "o1", "rating": 1}),
            ev("delivered", "b", data={"order": "o2"}),
        ]
    )
    kinds = {r["kind"] for r in records}
    assert kinds == {"enter", "message", "exit"}
    for record in records:
        keys = list(record)
        assert keys == [k for k in FIELD_ORDER if k in record], keys


def test_sent_messages_reach_the_outbox_with_stable_ids(proj: Project) -> None:
    from postflow import simulate

    proj.template("hello.html", "<p>Hi {{ customer.first_name }} & co</p>")
    proj.template("hello.txt", "Hi {{ customer.first_name }}")
    proj.journey(
        "j",
        """
        id: j
        trigger: {event: go}
        steps:
          - id: mail
            email: {subject: "Hello {{ data.code }}", template: hello, data: {code: "{{ trigger.data.code }}"}}
          - id: text
            sms: {body: "Code {{ trigger.data.code }}", transactional: true}
          - id: skipped
            email: {subject: "x", body: "x", to: "{{ customer.nowhere | default('') }}"}
          - id: hook
            webhook: {url: "https://h.example/x", method: PUT, json: {c: "{{ trigger.data.code }}"}}
        """,
    )
    outbox: list[engine.OutboundMessage] = []
    sim = simulate.Simulation(proj.world(), outbox=outbox)
    sim.ingest(
        [
            events.parse_event(
                ev(
                    "go",
                    data={"code": "K9"},
                    customer={"email": "a@x.com", "phone": "+15555550100", "first_name": "Ann <3"},
                )
            )
        ]
    )
    records = sim.run()
    assert [m.message_id for m in outbox] == ["j:c1:1:m1", "j:c1:1:m2", "j:c1:1:m3"]
    mail, text, hook = outbox
    assert (mail.html, mail.text, mail.template_data) == (
        "<p>Hi Ann &lt;3 & co</p>",  # HTML templates escape values, text ones do not
        "Hi Ann <3",
        {"code": "K9"},
    )
    assert records[1]["body"] == "Hi Ann <3"  # the text part is the record's body
    assert mail.subject == "Hello K9"  # email.data is template data
    assert (text.channel, text.to, text.text, text.transactional) == (
        "sms",
        "+15555550100",
        "Code K9",
        True,
    )
    assert (hook.channel, hook.method, hook.json) == ("webhook", "PUT", {"c": "K9"})
    assert pick(records, "step", "reason", kind="message")[2] == ("skipped", "no_address")


def test_simulate_stops_timers_five_years_after_the_last_event(proj: Project) -> None:
    proj.journey(
        "slow",
        """
        id: slow
        trigger: {event: go}
        steps:
          - id: soon
            wait: 1826d
          - id: a
            email: {subject: "after five years less a day", body: "x"}
          - id: later
            wait: 1d
          - id: b
            email: {subject: "too late", body: "x"}
        """,
    )
    # 2028-02-29 + 1826 days is 2033-02-28; five calendar years end on 2033-02-28 too.
    records = proj.simulate([ev("go", at="2028-02-29T12:00:00Z", customer={"email": "a@x.com"})])
    assert pick(records, "subject", "at", kind="message") == [
        ("after five years less a day", "2033-02-28T12:00:00Z")
    ]
    assert [r["kind"] for r in records] == ["enter", "message"]  # still waiting, not lost


def test_a_loop_at_one_instant_ends_with_error_instead_of_hanging(proj: Project) -> None:
    """validate rejects this journey; the engine must still never spin forever."""
    from postflow import config, loader, machine, simulate

    doc = loader.load_yaml_text(
        """
id: spin
trigger: {event: go}
steps:
  - id: a
    set: {vars.n: "(vars.n or 0) + 1"}
  - id: b
    wait_for: {event: never, timeout: 0s, on_timeout: a}
""",
        "spin.yaml",
    )
    compiled, problems = machine.compile_journey(doc, proj.root / "templates")
    assert compiled is not None and problems == []
    world = engine.World.build({"spin": compiled}, config.load_settings(None))
    records = simulate.simulate(world, [events.parse_event(ev("go"))])
    assert [r["kind"] for r in records] == ["enter", "exit"]
    assert records[1]["reason"] == "error" and "10000 steps" in records[1]["error"]


def facts_subject(proj: Project, subject: str, orders: list[dict[str, object]], at: str) -> str:
    """The subject a `check` event's email renders after some orders: profile facts in text."""
    proj.journey(
        "facts",
        f"""
        id: facts
        trigger: {{event: check}}
        steps:
          - id: s
            email: {{subject: "{subject}", body: "x"}}
        """,
    )
    records = proj.simulate([*orders, ev("check", at=at)])
    [(text,)] = pick(records, "subject", kind="message")
    return str(text)


def test_first_and_last_order_compare_as_instants(proj: Project) -> None:
    orders = [
        ev("order_placed", at="2027-01-01T10:00:00Z", customer={"email": "a@x.com"}),
        ev("order_placed", at="2027-01-01T10:00:00.500Z"),
    ]
    subject = "{{ customer.first_order_at }} {{ customer.last_order_at }}"
    assert facts_subject(proj, subject, orders, "2027-01-02T00:00:00Z") == (
        "2027-01-01T10:00:00Z 2027-01-01T10:00:00.500000Z"
    )


def test_totals_add_up_without_binary_noise_and_times_print_as_iso(proj: Project) -> None:
    orders = [
        ev("order_placed", data={"total": 10.1}, customer={"email": "a@x.com"}),
        ev("order_placed", data={"total": 20.2}),
    ]
    subject = "{{ customer.total_spent }} {{ now }}"
    assert facts_subject(proj, subject, orders, "2027-01-10T12:30:00Z") == (
        "30.3 2027-01-10T12:30:00Z"
    )
