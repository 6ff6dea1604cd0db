"""§9 ``wait_for`` with several events and ``since: entry``, and ``wait_until``.

A delivery that arrived before the shipping notice went out must not be missed (the
customer still gets the how-to, review and upsell mails); one wait branches on which of two
events came; a wait for a condition goes on as soon as it holds. Every case runs through
``simulate`` and the durable runtime, which must print the same records.
"""

from __future__ import annotations

from typing import Any

from conftest import Project, pick
from shells import both_ways

from postflow import project as project_module


def ev(kind: str, at: str, customer: str = "c_1", **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "customer_id": customer,
        "at": at,
        "customer": {"email": f"{customer}@example.com"},
        "data": data,
    }


SHIPPING = """
id: shipping
trigger: {event: order_shipped}
steps:
  - id: notice
    wait: 1d
  - id: shipped
    email: {subject: "Shipped", body: "On its way", transactional: true}
  - id: arrived
    wait_for: {event: order_delivered, timeout: 10d, since: SINCE, if: "event.data.order_id == trigger.data.order_id"}
  - id: howto
    email: {subject: "How to brew", body: "{{ last_event.data.order_id }}"}
"""


def test_since_entry_sees_a_delivery_that_came_before_the_step(proj: Project, db_url: str) -> None:
    proj.journey("shipping", SHIPPING.replace("SINCE", "entry"))
    records = both_ways(
        proj,
        db_url,
        [
            ev("order_shipped", "2027-03-01T10:00:00Z", order_id="o_1"),
            ev("order_delivered", "2027-03-01T18:00:00Z", order_id="o_2"),  # another order
            ev("order_delivered", "2027-03-01T20:00:00Z", order_id="o_1"),  # before the step
        ],
        "2027-03-20T00:00:00Z",
    )
    assert pick(records, "step", "at", "body", kind="message") == [
        ("shipped", "2027-03-02T10:00:00Z", "On its way"),
        ("howto", "2027-03-02T10:00:00Z", "o_1"),  # at once, at the step's time
    ]


def test_since_step_misses_it_and_times_out(proj: Project, db_url: str) -> None:
    proj.journey("shipping", SHIPPING.replace("SINCE", "step"))
    records = both_ways(
        proj,
        db_url,
        [
            ev("order_shipped", "2027-03-01T10:00:00Z", order_id="o_1"),
            ev("order_delivered", "2027-03-01T20:00:00Z", order_id="o_1"),
        ],
        "2027-03-20T00:00:00Z",
    )
    # Missed: it times out 10 days after the step (last_event is still the trigger).
    assert pick(records, "step", "at", kind="message")[1] == ("howto", "2027-03-12T10:00:00Z")


def test_the_trigger_itself_never_counts(proj: Project, db_url: str) -> None:
    proj.journey(
        "again",
        """
        id: again
        trigger: {event: order_placed}
        steps:
          - id: next_order
            wait_for: {event: order_placed, timeout: 5d, since: entry}
          - id: thanks
            email: {subject: "Twice!", body: "Hi"}
        """,
    )
    records = both_ways(
        proj, db_url, [ev("order_placed", "2027-03-01T10:00:00Z")], "2027-03-10T00:00:00Z"
    )
    assert pick(records, "kind", "at", "reason") == [
        ("enter", "2027-03-01T10:00:00Z", None),
        ("message", "2027-03-06T10:00:00Z", None),  # the timeout, not the trigger
        ("exit", "2027-03-06T10:00:00Z", "completed"),
    ]


NPS = """
id: nps
trigger: {event: order_delivered}
steps:
  - id: answer
    wait_for:
      timeout: 7d
      on_timeout: nudge
      since: SINCE
      events:
        - {event: nps_answered, if: "event.data.score >= 9", goto: promoter}
        - {event: nps_answered, goto: other}
        - {event: review_submitted, goto: promoter}
  - id: other
    email: {subject: "Tell us more", body: "{{ last_event.data.score }}"}
    next: end
  - id: promoter
    email: {subject: "Refer a friend", body: "Thanks"}
    next: end
  - id: nudge
    email: {subject: "Two minutes?", body: "Please"}
"""


def test_events_branch_on_which_came_and_the_first_entry_wins(proj: Project, db_url: str) -> None:
    proj.journey("nps", NPS.replace("SINCE", "step"))
    records = both_ways(
        proj,
        db_url,
        [
            ev("order_delivered", "2027-03-01T10:00:00Z", "c_1"),
            ev("order_delivered", "2027-03-01T10:00:00Z", "c_2"),
            ev("order_delivered", "2027-03-01T10:00:00Z", "c_3"),
            ev("nps_answered", "2027-03-02T10:00:00Z", "c_1", score=10),  # matches 1 and 2
            ev("nps_answered", "2027-03-02T10:00:00Z", "c_2", score=4),
        ],
        "2027-03-20T00:00:00Z",
    )
    assert pick(records, "customer_id", "step", "at", kind="message") == [
        ("c_1", "promoter", "2027-03-02T10:00:00Z"),
        ("c_2", "other", "2027-03-02T10:00:00Z"),
        ("c_3", "nudge", "2027-03-08T10:00:00Z"),
    ]


def test_events_with_since_entry_take_the_newest_prior_match(proj: Project, db_url: str) -> None:
    proj.journey(
        "nps",
        NPS.replace("SINCE", "entry").replace(
            "steps:\n  - id: answer", "steps:\n  - id: pause\n    wait: 1d\n  - id: answer"
        ),
    )
    records = both_ways(
        proj,
        db_url,
        [
            ev("order_delivered", "2027-03-01T10:00:00Z"),
            ev("nps_answered", "2027-03-01T11:00:00Z", score=10),
            ev("nps_answered", "2027-03-01T12:00:00Z", score=3),  # the newest: "other"
        ],
        "2027-03-20T00:00:00Z",
    )
    assert pick(records, "step", "at", "body", kind="message") == [
        ("other", "2027-03-02T10:00:00Z", "3")
    ]


UNTIL = """
id: vip
trigger: {event: order_placed}
steps:
  - id: reach
    wait_until: {if: "customer.orders_count >= 3", timeout: 30d, on_timeout: late, check_every: 1d}
  - id: welcome
    email: {subject: "Welcome to VIP", body: "Hi"}
    next: end
  - id: late
    email: {subject: "Still here?", body: "Hi"}
"""


def order(at: str, customer: str = "c_1") -> dict[str, Any]:
    return {
        "type": "order_placed",
        "customer_id": customer,
        "at": at,
        "customer": {"email": f"{customer}@example.com"},
        "data": {"total": 10},
    }


def test_wait_until_true_at_arrival_goes_on_at_once(proj: Project, db_url: str) -> None:
    proj.journey("vip", UNTIL.replace(">= 3", ">= 1"))
    records = both_ways(proj, db_url, [order("2027-03-01T10:00:00Z")])
    assert pick(records, "step", "at", kind="message") == [("welcome", "2027-03-01T10:00:00Z")]


def test_wait_until_made_true_by_a_later_event(proj: Project, db_url: str) -> None:
    proj.journey(
        "vip", UNTIL.replace("trigger: {event: order_placed}", "trigger: {event: signed_up}")
    )
    signup = {
        "type": "signed_up",
        "customer_id": "c_1",
        "at": "2027-03-01T00:00:00Z",
        "customer": {"email": "c_1@example.com"},
    }
    records = both_ways(
        proj,
        db_url,
        [
            signup,
            order("2027-03-02T10:00:00Z"),
            order("2027-03-03T10:00:00Z"),
            order("2027-03-04T15:30:00Z"),
        ],
        "2027-04-10T00:00:00Z",
    )
    assert pick(records, "step", "at", kind="message") == [("welcome", "2027-03-04T15:30:00Z")]


def test_wait_until_times_out(proj: Project, db_url: str) -> None:
    proj.journey("vip", UNTIL)
    records = both_ways(proj, db_url, [order("2027-03-01T10:00:00Z")], "2027-04-10T00:00:00Z")
    assert pick(records, "step", "at", kind="message") == [("late", "2027-03-31T10:00:00Z")]


def test_wait_until_checks_every_period_and_on_the_timeout_first(
    proj: Project, db_url: str
) -> None:
    """A profile change made by another journey's set is seen at the next check; a check on
    the timeout instant comes before the timeout."""
    proj.journey(
        "vip",
        UNTIL.replace('"customer.orders_count >= 3"', '"customer.vip == true"').replace(
            "30d", "3d"
        ),
    )
    proj.journey(
        "promote",
        """
        id: promote
        trigger: {event: order_placed}
        steps:
          - id: wait
            wait: 3d
          - id: flag
            set: {customer.vip: true}
        """,
    )
    records = both_ways(proj, db_url, [order("2027-03-01T10:00:00Z")], "2027-04-10T00:00:00Z")
    assert pick(records, "journey", "step", "at", kind="message") == [
        ("vip", "welcome", "2027-03-04T10:00:00Z")
    ]


def test_new_keys_are_checked_with_locations(proj: Project) -> None:
    proj.journey(
        "bad",
        """
        id: bad
        trigger: {event: order_placed}
        steps:
          - id: a
            wait_until: {if: "customer.x", timeout: 1d, check_every: 30m}
          - id: b
            wait_for:
              timeout: 1d
              events:
                - {event: x, goto: nowhere}
          - id: c
            wait_for: {event: x, events: [{event: y, goto: a}], timeout: 1d}
        """,
    )
    loaded = project_module.load_journeys([proj.root / "journeys"], proj.root / "templates")
    found = [(p.line, p.message) for p in loaded.errors]
    assert (6, "check_every must be at least 1h") in found
    assert any(line == 11 and "nowhere" in m for line, m in found), found
    assert any(line == 13 and "has event and events: use only one" in m for line, m in found), found


def test_graph_draws_each_event_as_a_labelled_edge(proj: Project) -> None:
    from postflow import graph

    proj.journey("nps", NPS.replace("SINCE", "entry"))
    (machine,) = project_module.require_journeys(
        [proj.root / "journeys"], proj.root / "templates"
    ).values()
    answer = [
        (target, label) for source, target, label in graph.edges(machine) if source == "answer"
    ]
    assert answer == [
        ("promoter", "nps_answered if event.data.score >= 9"),
        ("other", "nps_answered"),
        ("promoter", "review_submitted"),
        ("nudge", "timeout"),
    ]
    proj.journey("vip", UNTIL)
    machines = project_module.require_journeys([proj.root / "journeys"], proj.root / "templates")
    reach = [(t, label) for s, t, label in graph.edges(machines["vip"]) if s == "reach"]
    assert reach == [("welcome", "condition holds"), ("late", "timeout")]
