"""The bundled JSON Schema and the compiler read exactly the same keys, place by place.

If someone adds a key to one and not the other, a journey would either be rejected although
the engine supports it, or accepted and silently ignored. This test keeps them in lockstep.
"""

from __future__ import annotations

from typing import Any

import pytest

from postflow import loader, machine

SCHEMA = loader.load_schema("journey")


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def keys(node: dict[str, Any]) -> set[str]:
    """Every property name an object schema allows, across oneOf/anyOf branches."""
    node = resolve(node)
    if node.get("type") == "array" and "items" in node:
        return keys(node["items"])
    found = set(node.get("properties", {}))
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        found |= keys(branch)
    return found


def at(*path: str) -> dict[str, Any]:
    node: dict[str, Any] = SCHEMA
    for name in path:
        node = resolve(resolve(node)["properties"][name])
    return node


STEP = SCHEMA["$defs"]["step"]


@pytest.mark.parametrize(
    ("schema_node", "compiler_keys"),
    [
        (SCHEMA, machine.JOURNEY_KEYS),
        (at("trigger"), machine.TRIGGER_KEYS),
        (at("entry"), machine.ENTRY_KEYS),
        (at("exit"), machine.EXIT_KEYS),
        (at("goal"), machine.GOAL_KEYS),
        (at("settings"), machine.SETTINGS_KEYS),
        (at("settings", "quiet_hours"), machine.QUIET_HOURS_KEYS),
        (STEP, machine.STEP_KEYS),
        (STEP["properties"]["wait"], machine.WAIT_KEYS),
        (STEP["properties"]["wait_for"], machine.WAIT_FOR_KEYS),
        (STEP["properties"]["wait_until"], machine.WAIT_UNTIL_KEYS),
        (STEP["properties"]["branch"], machine.BRANCH_KEYS),
        (STEP["properties"]["split"], machine.SPLIT_KEYS),
        (STEP["properties"]["email"], machine.EMAIL_KEYS),
        (STEP["properties"]["sms"], machine.SMS_KEYS),
        (STEP["properties"]["webhook"], machine.WEBHOOK_KEYS),
        (STEP["properties"]["emit"], machine.EMIT_KEYS),
    ],
)
def test_schema_and_compiler_keys_are_the_same(
    schema_node: dict[str, Any], compiler_keys: frozenset[str]
) -> None:
    assert keys(schema_node) == set(compiler_keys)


def test_every_step_kind_is_a_schema_property() -> None:
    assert set(machine.STEP_KINDS) == keys(STEP) - {"id", "next"}
