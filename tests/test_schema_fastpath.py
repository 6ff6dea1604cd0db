"""The fastjsonschema fast path for journeys agrees with jsonschema on every mutant.

``validate`` skips jsonschema when the compiled fastjsonschema validator accepts a journey.
fastjsonschema reads 2020-12 schemas as draft-07, so this test mutates a journey that uses
every key at every place (delete a key, add an unknown one, replace a value by each JSON
type) and checks the two validators give the same verdict on each mutant.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from postflow import loader

FULL = yaml.safe_load(
    """
id: review-request
name: Review
description: text
trigger: {event: order_delivered, if: "event.data.total > 0"}
entry: {key: "trigger.data.order_id", reentry: never, cooldown: 30d}
exit:
  - {event: order_placed, if: "event.data.order_id != trigger.data.order_id"}
goal: {event: order_placed, within: 14d, if: "true"}
settings:
  quiet_hours: {start: "21:00", end: "09:00", channels: [sms]}
steps:
  - {id: a, wait: 3d}
  - {id: b, wait: {for: 1d, at: "10:00"}}
  - {id: c, wait: {until: "now"}}
  - {id: d, email: {subject: "Hi", template: review_request, to: "x", data: {k: "v"}, transactional: true}}
  - {id: e, email: {subject: "Hi", body: "b"}}
  - {id: f, email: {sendgrid_template_id: "d-1"}}
  - {id: g, wait_for: {event: review, timeout: 7d, on_timeout: h, if: "true"}}
  - {id: h, branch: [{if: "true", goto: i}, {goto: end}]}
  - {id: i, sms: {body: "hello", transactional: false}, next: j}
  - {id: j, sms: {template: reminder, to: "+1555"}}
  - {id: k, webhook: {url: "https://x", method: POST, json: {a: [1, "b"]}, headers: {X-A: "1"}}}
  - {id: l, set: {customer.tier: "'gold'", vars.n: 3}}
  - {id: m, emit: {event: tier_changed, data: {tier: "customer.tier"}}}
  - {id: n, split: [{weight: 1, goto: o, name: control}, {weight: 2.5, goto: end}]}
  - {id: o, goto: end}
"""
)
SCHEDULED = {**FULL, "trigger": {"schedule": "0 9 * * *", "timezone": "UTC", "audience": "true"}}
REPLACEMENTS: list[Any] = [
    None,
    42,
    -1,
    0,
    2.5,
    True,
    "",
    "x",
    "3d",
    "10:00",
    [],
    {},
    ["x"],
    {"x": 1},
]


def mutants(value: Any) -> Iterator[Any]:
    """Every single-point mutation of a JSON tree."""
    yield from REPLACEMENTS
    if isinstance(value, dict):
        yield {**value, "bogus": 1}
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for inner in mutants(value[key]):
                yield {**value, key: inner}
    elif isinstance(value, list):
        yield value + value[:1]
        for i, item in enumerate(value):
            yield value[:i] + value[i + 1 :]
            for inner in mutants(item):
                yield value[:i] + [inner] + value[i + 1 :]


def test_fast_path_agrees_with_jsonschema() -> None:
    slow = Draft202012Validator(loader.load_schema("journey"))
    checked = disagreements = 0
    problems = []
    for base in (FULL, SCHEDULED):
        assert slow.is_valid(base)
        for mutant in mutants(copy.deepcopy(base)):
            checked += 1
            if slow.is_valid(mutant) != loader._fast_valid("journey", mutant):
                disagreements += 1
                problems.append(mutant)
    assert checked > 1000
    assert disagreements == 0, problems[:3]
