"""Contract rules a review found unguarded: for each test here, some wrong engine (a mutation
made by hand) passed the rest of the suite and fails this test. Everything goes through the
public path, journey YAML + events -> ``simulate`` records, so the tests keep holding while the
engine's internals change."""

from __future__ import annotations

from conftest import Project, pick

T0 = "2027-01-10T12:00:00Z"


def ev(type_: str, cid: str = "c1", at: str = T0, **extra: object) -> dict[str, object]:
    return {"type": type_, "customer_id": cid, "at": at, **extra}


# -- split: the first split an instance passes sets its variant ---------------------------------


def test_a_second_split_does_not_change_the_variant(proj: Project) -> None:
    proj.journey(
        "ab",
        """
        id: ab
        trigger: {event: signup}
        steps:
          - id: first
            split: [{weight: 1, goto: one, name: alpha}]
          - id: one
            email: {subject: "1 {{ instance.variant }}", body: "x"}
          - id: second
            split: [{weight: 1, goto: two, name: beta}]
          - id: two
            email: {subject: "2 {{ instance.variant }}", body: "x"}
        """,
    )
    records = proj.simulate([ev("signup", customer={"email": "a@x.com"})])
    assert pick(records, "kind", "subject", "variant") == [
        ("enter", None, None),
        ("message", "1 alpha", "alpha"),
        ("message", "2 alpha", "alpha"),
        ("exit", None, "alpha"),
    ]


# -- goals ----------------------------------------------------------------------------------

GOAL_WINDOW = """
id: {id}
trigger: {{event: enter}}
goal: {{event: bought, within: 1d}}
steps:
  - id: {step}
    {body}
"""


def test_goal_window_includes_entered_at_and_excludes_its_end(proj: Project) -> None:
    """``within: 1d`` counts in [entered_at, entered_at + 1d), while active and after the end."""
    proj.journey("active", GOAL_WINDOW.format(id="active", step="hold", body="wait: 30d"))
    proj.journey("ended", GOAL_WINDOW.format(id="ended", step="done", body="set: {vars.x: 1}"))
    buys = {
        "at_entry": T0,
        "last_us": "2027-01-11T11:59:59.999999Z",
        "at_end": "2027-01-11T12:00:00Z",
    }
    evts = [ev("enter", c) for c in buys]
    evts += [ev("bought", c, at=t) for c, t in buys.items()]
    records = proj.simulate(evts, until="2027-01-12T00:00:00Z")
    goals = pick(records, "customer_id", "journey", "at", "step", kind="goal")
    assert sorted(goals) == [
        ("at_entry", "active", T0, "hold"),
        ("at_entry", "ended", T0, None),
        ("last_us", "active", "2027-01-11T11:59:59.999999Z", "hold"),
        ("last_us", "ended", "2027-01-11T11:59:59.999999Z", None),
    ]


def test_goal_without_within_counts_only_while_active(proj: Project) -> None:
    proj.journey(
        "g",
        """
        id: g
        trigger: {event: enter}
        exit: [{event: stop}]
        goal: {event: bought}
        steps:
          - id: hold
            wait: 1d
        """,
    )
    records = proj.simulate(
        [
            ev("enter", "active"),
            ev("bought", "active", at="2027-01-11T11:59:59Z"),
            ev("enter", "completed"),
            ev("bought", "completed", at="2027-01-11T12:00:00Z"),  # the timer ended it first
            ev("bought", "completed", at="2027-01-12T12:00:00Z"),
            ev("enter", "exited"),
            ev("stop", "exited", at="2027-01-10T13:00:00Z"),
            ev("bought", "exited", at="2027-01-10T14:00:00Z"),
        ]
    )
    assert pick(records, "customer_id", "step", kind="goal") == [("active", "hold")]
    assert pick(records, "customer_id", "reason", kind="exit") == [
        ("exited", "exit_event"),
        ("active", "completed"),
        ("completed", "completed"),
    ]


def test_goal_is_checked_before_exit_and_wait_for_of_the_same_event(proj: Project) -> None:
    """Per event: each instance checks its goal, then its exits, then its ``wait_for``."""
    proj.journey(
        "quit",
        """
        id: quit
        trigger: {event: enter}
        exit: [{event: bought}]
        goal: {event: bought}
        steps:
          - id: hold
            wait: 1d
        """,
    )
    proj.journey(
        "resume",
        """
        id: resume
        trigger: {event: enter}
        goal: {event: bought}
        steps:
          - id: await
            wait_for: {event: bought, timeout: 1d}
          - id: after
            wait: 1d
        """,
    )
    records = proj.simulate([ev("enter"), ev("bought", at="2027-01-10T13:00:00Z")])
    assert pick(records, "journey", "kind", "step", "reason", at="2027-01-10T13:00:00Z") == [
        ("quit", "goal", "hold", None),
        ("quit", "exit", None, "exit_event"),
        ("resume", "goal", "await", None),
    ]


def test_the_entering_event_is_not_its_own_goal_and_goal_if_is_honoured(proj: Project) -> None:
    proj.journey(
        "again",
        """
        id: again
        trigger: {event: order_placed}
        goal: {event: order_placed, if: "event.data.total > 10"}
        steps:
          - id: hold
            wait: 7d
        """,
    )
    records = proj.simulate(
        [
            ev("order_placed", data={"total": 50}),
            ev("order_placed", at="2027-01-11T12:00:00Z", data={"total": 5}),
            ev("order_placed", at="2027-01-12T12:00:00Z", data={"total": 20}),
        ]
    )
    assert pick(records, "kind", "instance", "at") == [
        ("enter", "again:c1:1", T0),
        ("goal", "again:c1:1", "2027-01-12T12:00:00Z"),
        ("exit", "again:c1:1", "2027-01-17T12:00:00Z"),
    ]


# -- set customer.timezone: the new zone acts at once and afterwards --------------------------

TOKYO_SET = "set: {customer.timezone: \"'Asia/Tokyo'\"}"


def test_set_timezone_moves_a_following_wait_at_in_the_same_input(proj: Project) -> None:
    proj.journey(
        "move",
        f"""
        id: move
        trigger: {{event: signup}}
        steps:
          - id: tz
            {TOKYO_SET}
          - id: align
            wait: {{for: 1d, at: "10:00"}}
          - id: hello
            email: {{subject: "Morning", body: "x"}}
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
    # 1d later is 2027-03-02 23:00 in Tokyo (10:00 New York would be 15:00Z that day)
    assert pick(records, "at", kind="message") == [("2027-03-03T01:00:00Z",)]


def test_set_timezone_acts_at_later_inputs_and_in_other_journeys(proj: Project) -> None:
    proj.journey(
        "mover",
        """
        id: mover
        trigger: {event: moved}
        steps:
          - id: tz
            set: {customer.timezone: "trigger.data.tz"}
        """,
    )
    proj.journey(
        "daily",
        """
        id: daily
        trigger: {event: signup}
        steps:
          - id: pause
            wait: 1h
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
            ),
            ev("moved", at="2027-03-01T14:30:00Z", data={"tz": "Asia/Tokyo"}),
        ]
    )
    # the align step starts at 15:00Z (zone already Tokyo): 1d later is 00:00 on 03-03 Tokyo
    assert pick(records, "journey", "at", kind="message") == [("daily", "2027-03-03T01:00:00Z")]


def test_set_timezone_decides_quiet_hours_now_and_later(proj: Project) -> None:
    proj.config('timezone: UTC\nquiet_hours: {start: "21:00", end: "09:00", channels: [email]}\n')
    proj.journey(
        "now",
        f"""
        id: now
        trigger: {{event: signup}}
        steps:
          - id: tz
            {TOKYO_SET}
          - id: hello
            email: {{subject: "Now", body: "x"}}
          - id: pause
            wait: 12h
          - id: again
            email: {{subject: "Later", body: "x"}}
        """,
    )
    # 20:00Z is 15:00 in New York (not quiet) and 05:00 next day in Tokyo (quiet until 09:00)
    records = proj.simulate(
        [
            ev(
                "signup",
                at="2027-03-01T20:00:00Z",
                customer={"email": "a@x.com", "timezone": "America/New_York"},
            )
        ]
    )
    # held to 00:00Z; 12h later is 21:00 Tokyo (quiet again), held to 09:00 Tokyo = 00:00Z
    assert pick(records, "subject", "at", kind="message") == [
        ("Now", "2027-03-02T00:00:00Z"),
        ("Later", "2027-03-03T00:00:00Z"),
    ]


def test_set_timezone_moves_is_anniversary_in_the_same_input(proj: Project) -> None:
    proj.journey(
        "bday",
        f"""
        id: bday
        trigger: {{event: check}}
        steps:
          - id: tz
            {TOKYO_SET}
          - id: which
            branch:
              - if: "is_anniversary(customer.birthday)"
                goto: happy
          - id: plain
            email: {{subject: "Plain", body: "x"}}
            next: end
          - id: happy
            email: {{subject: "Happy birthday", body: "x"}}
        """,
    )
    # 20:00Z on 03-01 is still 03-01 in New York but already 03-02 in Tokyo
    records = proj.simulate(
        [
            ev(
                "check",
                at="2027-03-01T20:00:00Z",
                customer={
                    "email": "a@x.com",
                    "timezone": "America/New_York",
                    "birthday": "1990-03-02",
                },
            )
        ]
    )
    assert pick(records, "subject", kind="message") == [("Happy birthday",)]


# -- emit ids: {instance}:{step}:{n}, the step's n-th emit in that instance ---------------------

EMITTER = """
id: src
trigger: {event: go}
steps:
  - id: count
    set: {vars.n: "(vars.n or 0) + 1"}
  - id: e
    emit: {event: pinged}
  - id: f
    emit: {event: pinged}
  - id: pause
    wait: 1h
  - id: loop
    branch: [{if: "vars.n < 2", goto: count}]
"""
RECEIVER = """
id: dst
trigger: {event: pinged}
entry: {reentry: always}
steps:
  - id: tell
    email: {subject: "{{ trigger.id }}", body: "x"}
"""


def test_each_emit_of_a_step_gets_the_next_number(proj: Project) -> None:
    proj.journey("src", EMITTER)
    proj.journey("dst", RECEIVER)
    records = proj.simulate(
        [
            ev("go", customer={"email": "a@x.com"}),
            ev("go", at="2027-01-11T12:00:00Z"),
        ]
    )
    assert pick(records, "subject", "at", kind="message") == [
        ("src:c1:1:e:1", T0),
        ("src:c1:1:f:1", T0),
        ("src:c1:1:e:2", "2027-01-10T13:00:00Z"),
        ("src:c1:1:f:2", "2027-01-10T13:00:00Z"),
        ("src:c1:2:e:1", "2027-01-11T12:00:00Z"),
        ("src:c1:2:f:1", "2027-01-11T12:00:00Z"),
        ("src:c1:2:e:2", "2027-01-11T13:00:00Z"),
        ("src:c1:2:f:2", "2027-01-11T13:00:00Z"),
    ]


def test_an_emitted_event_whose_id_was_already_ingested_is_dropped(proj: Project) -> None:
    """Ids are global: the events file is stored before the clock starts, so it wins."""
    proj.journey("src", EMITTER)
    proj.journey("dst", RECEIVER)
    records = proj.simulate(
        [
            ev("go", customer={"email": "a@x.com"}),
            ev("noise", at="2027-02-01T00:00:00Z", id="src:c1:1:e:2"),
        ]
    )
    assert pick(records, "subject", kind="message") == [
        ("src:c1:1:e:1",),
        ("src:c1:1:f:1",),
        ("src:c1:1:f:2",),
    ]


# -- order at one instant --------------------------------------------------------------------


def test_emitted_events_come_after_events_already_stored_for_that_instant(proj: Project) -> None:
    proj.journey(
        "a",
        """
        id: a
        trigger: {event: go}
        steps:
          - id: raise
            emit: {event: pinged}
        """,
    )
    for name, event in (("p", "pinged"), ("o", "other")):
        proj.journey(
            name,
            f"""
            id: {name}
            trigger: {{event: {event}}}
            steps:
              - id: say
                email: {{subject: "{event}", body: "x"}}
            """,
        )
    records = proj.simulate([ev("go", customer={"email": "a@x.com"}), ev("other")])
    assert pick(records, "subject", kind="message") == [("other",), ("pinged",)]


def test_at_one_instant_timers_fire_before_cron_ticks_and_ticks_before_events(
    proj: Project,
) -> None:
    proj.journey(
        "mark",
        """
        id: mark
        trigger: {event: signup}
        steps:
          - id: pause
            wait: 1h
          - id: vip
            set: {customer.vip: true}
        """,
    )
    proj.journey(
        "hourly",
        """
        id: hourly
        trigger: {schedule: "0 * * * *", audience: "customer.vip == true"}
        entry: {reentry: never}
        steps:
          - id: hi
            wait: 1d
        """,
    )
    records = proj.simulate(
        [
            ev("signup", "by_timer"),
            ev("seen", "by_event"),
            ev("seen", "by_event", at="2027-01-10T13:00:00Z", customer={"vip": True}),
        ],
        until="2027-01-10T15:00:00Z",
    )
    assert pick(records, "customer_id", "at", kind="enter", journey="hourly") == [
        ("by_timer", "2027-01-10T13:00:00Z"),  # the 13:00 timer came before the tick
        ("by_event", "2027-01-10T14:00:00Z"),  # the 13:00 tick came before the event
    ]


# -- entry: keys, reentry and cooldown ----------------------------------------------------------


def test_after_exit_allows_one_active_instance_per_key(proj: Project) -> None:
    proj.journey(
        "k",
        """
        id: k
        trigger: {event: go}
        entry: {key: "trigger.data.k", reentry: after_exit}
        steps:
          - id: hold
            wait: 1d
        """,
    )
    records = proj.simulate(
        [
            ev("go", data={"k": "a"}),
            ev("go", data={"k": "b"}),
            ev("go", at="2027-01-10T18:00:00Z", data={"k": "a"}),
            ev("go", at="2027-01-11T12:00:00Z", data={"k": "a"}),
        ]
    )
    assert pick(records, "instance", "key", "at", kind="enter") == [
        ("k:c1:1", "a", T0),
        ("k:c1:2", "b", T0),
        ("k:c1:3", "a", "2027-01-11T12:00:00Z"),  # blocked entries do not count toward n
    ]


def test_cooldown_spans_keys_and_blocked_entries_leave_no_trace(proj: Project) -> None:
    proj.journey(
        "cool",
        """
        id: cool
        trigger: {event: go}
        entry: {key: "trigger.data.k", cooldown: 1d}
        steps:
          - id: hold
            wait: 1h
        """,
    )
    records = proj.simulate(
        [
            ev("go", data={"k": "a"}),
            ev("go", at="2027-01-10T14:00:00Z", data={"k": "b"}),
            ev("go", at="2027-01-11T12:00:00Z", data={"k": "c"}),
        ]
    )
    assert pick(records, "kind", "instance", "key", "at") == [
        ("enter", "cool:c1:1", "a", T0),
        ("exit", "cool:c1:1", None, "2027-01-10T13:00:00Z"),
        ("enter", "cool:c1:2", "c", "2027-01-11T12:00:00Z"),
        ("exit", "cool:c1:2", None, "2027-01-11T13:00:00Z"),
    ]


# -- frequency caps: marketing messages sent with at in (now - per, now] -----------------------


def test_frequency_cap_window_is_open_at_its_start_and_closed_at_now(proj: Project) -> None:
    proj.config("timezone: UTC\nlimits: {email: {max: 1, per: 1d}}\n")
    proj.journey(
        "promo",
        """
        id: promo
        trigger: {event: promo}
        entry: {reentry: always}
        steps:
          - id: offer
            email: {subject: "Offer", body: "x"}
        """,
    )
    proj.journey(
        "notice",
        """
        id: notice
        trigger: {event: shipped}
        entry: {reentry: always}
        steps:
          - id: note
            email: {subject: "Shipped", body: "x", transactional: true}
        """,
    )
    end = "2027-01-11T12:00:00Z"
    records = proj.simulate(
        [
            ev("shipped", customer={"email": "a@x.com"}),  # transactional: not counted
            ev("promo"),
            ev("promo"),  # the same instant is inside (now - per, now]
            ev("promo", at="2027-01-11T11:59:59.999999Z"),
            ev("promo", at=end),  # T0 is no longer inside (end - 1d, end]
            ev("promo", at="2027-01-11T13:00:00Z"),
        ]
    )
    assert pick(records, "journey", "at", "status", "reason", kind="message") == [
        ("notice", T0, "sent", None),
        ("promo", T0, "sent", None),
        ("promo", T0, "skipped", "frequency_cap"),
        ("promo", "2027-01-11T11:59:59.999999Z", "skipped", "frequency_cap"),
        ("promo", end, "sent", None),
        ("promo", "2027-01-11T13:00:00Z", "skipped", "frequency_cap"),
    ]


# -- quiet hours across DST, through the engine ----------------------------------------------


def test_quiet_hours_ending_in_a_spring_forward_gap_release_after_the_gap(
    proj: Project,
) -> None:
    proj.config(
        'timezone: America/New_York\nquiet_hours: {start: "22:00", end: "02:30", channels: [sms]}\n'
    )
    proj.journey(
        "night",
        """
        id: night
        trigger: {event: shipped}
        steps:
          - id: note
            sms: {body: "Shipped", transactional: true}
        """,
    )
    records = proj.simulate(
        [
            # 23:00 EST on 2027-03-13; 02:30 on 03-14 does not exist: it becomes 03:30 EDT
            ev("shipped", "gap", at="2027-03-14T04:00:00Z", customer={"phone": "+15555550100"}),
            # 01:00 EDT on 2027-03-15, an ordinary night: released at 02:30 EDT
            ev("shipped", "plain", at="2027-03-15T05:00:00Z", customer={"phone": "+15555550101"}),
        ]
    )
    assert pick(records, "customer_id", "at", kind="message") == [
        ("gap", "2027-03-14T07:30:00Z"),
        ("plain", "2027-03-15T06:30:00Z"),
    ]
