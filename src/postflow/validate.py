"""Semantic checks that JSON Schema cannot express: the step graph of one journey.

Schema validation proves the shape; these checks prove the journey can run: every step id is
unique, every reference (``next``, ``goto``, ``on_timeout``) names a step, every step can be
reached, and no loop can spin forever without a positive ``wait`` or a ``wait_for`` (the
engine would otherwise advance an instance endlessly at one logical instant). Expression,
template, duration, zone and cron problems are found by the compiler (``machine.py``).
"""

from __future__ import annotations

import difflib
from typing import Any

from postflow import durations, events
from postflow.loader import Document
from postflow.machine import END, STEP_KINDS
from postflow.problems import Problem

Path = tuple[str | int, ...]


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _breaks_loop(step: dict[str, Any]) -> bool:
    """A step that always lets logical time pass: a positive ``wait`` or a ``wait_for`` with a
    positive timeout (at 0s it times out at the same instant)."""
    wait = step.get("wait")
    waiting = step.get("wait_for", step.get("wait_until"))
    if waiting is not None:
        text = waiting.get("timeout") if isinstance(waiting, dict) else None
    elif isinstance(wait, str):
        text = wait
    elif isinstance(wait, dict):
        text = wait.get("for")
    else:
        return False
    if text is None:
        return False
    try:
        return durations.parse_duration(str(text)) > 0
    except durations.DurationError:
        return True  # reported elsewhere; do not pile a loop error on top


def _edges(step: dict[str, Any], index: int, following: str) -> list[tuple[str, Path]]:
    """Successors in file order, each with the path of the value that names it (or the step's
    id for the implicit flow to the following step)."""
    base: Path = ("steps", index)
    implicit: tuple[str, Path] = (
        (step["next"], (*base, "next")) if "next" in step else (following, (*base, "id"))
    )
    kind = next((k for k in STEP_KINDS if k in step), None)
    body: Any = step[kind] if kind else None
    if kind == "goto":
        return [(str(body), (*base, "goto"))]
    if kind == "branch":
        out = [(b["goto"], (*base, "branch", i, "goto")) for i, b in enumerate(body)]
        if all("if" in b for b in body):
            out.append(implicit)
        return out
    if kind == "split":
        return [(s["goto"], (*base, "split", i, "goto")) for i, s in enumerate(body)]
    if kind in ("wait_for", "wait_until"):
        events = body.get("events") if kind == "wait_for" else None
        if isinstance(events, list):
            out = [(e["goto"], (*base, kind, "events", i, "goto")) for i, e in enumerate(events)]
        else:
            out = [implicit]
        if "on_timeout" in body:
            out.append((body["on_timeout"], (*base, kind, "on_timeout")))
        elif isinstance(events, list):
            out.append(implicit)  # a timeout goes to the next step
        return out
    if kind in ("email", "sms") and isinstance(body, dict) and "on_skip" in body:
        return [implicit, (body["on_skip"], (*base, kind, "on_skip"))]
    return [implicit]


def _reserved_emits(doc: Document, steps: list[dict[str, Any]]) -> list[Problem]:
    """``emit`` of a type postflow raises itself (contract §1, §2): a journey that could fake
    a suppression or a delivery would corrupt compliance and reports."""
    return [
        doc.problem(
            ("steps", index, "emit", "event"),
            f"'{step['emit']['event']}' is a reserved event type (postflow raises it itself): "
            "a journey cannot emit it; emit a type of your own",
        )
        for index, step in enumerate(steps)
        if isinstance(step.get("emit"), dict) and step["emit"].get("event") in events.RESERVED_TYPES
    ]


def check_steps(doc: Document) -> list[Problem]:
    """Graph checks over a schema-valid journey document (and the reserved ``emit`` types)."""
    steps: list[dict[str, Any]] = doc.data["steps"]
    problems = _reserved_emits(doc, steps)
    first_at: dict[str, int] = {}
    for index, step in enumerate(steps):
        sid = step["id"]
        if sid == END:
            problems.append(
                doc.problem(
                    ("steps", index, "id"), "'end' is a reserved step id (it means: complete now)"
                )
            )
        elif sid in first_at:
            line, _ = doc.where(("steps", first_at[sid], "id"))
            problems.append(
                doc.problem(
                    ("steps", index, "id"), f"duplicate step id '{sid}' (first at line {line})"
                )
            )
        else:
            first_at[sid] = index
    known = list(first_at)

    graph: dict[str, list[tuple[str, Path]]] = {}
    for index, step in enumerate(steps):
        following = steps[index + 1]["id"] if index + 1 < len(steps) else END
        if following != END and first_at.get(following) != index + 1:
            following = END  # a duplicate id (reported above): no edge to its twin
        edges = _edges(step, index, following)
        checked = list(edges)
        if "next" in step and all(p[-1] != "next" for _, p in edges):
            # `next` on a goto, split or defaulted branch is never followed, but must still
            # name a step: a typo there is a typo.
            checked.append((step["next"], ("steps", index, "next")))
        for target, path in checked:
            if target != END and target not in first_at and path[-1] != "id":
                problems.append(
                    doc.problem(path, f"unknown step '{target}'{_did_you_mean(str(target), known)}")
                )
        if first_at.get(step["id"]) == index:
            graph[step["id"]] = [(t, p) for t, p in edges if t in first_at]

    breaking = {
        s["id"] for i, s in enumerate(steps) if first_at.get(s["id"]) == i and _breaks_loop(s)
    }
    start = steps[0]["id"]

    # Reachability over every edge.
    reached = {start}
    todo = [start]
    while todo:
        for target, _ in graph.get(todo.pop(), []):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for sid, index in first_at.items():
        if sid not in reached:
            problems.append(
                doc.problem(
                    ("steps", index, "id"), f"step '{sid}' is unreachable", severity="warning"
                )
            )

    # Loops: a cycle among steps that do not let time pass. Depth-first from the first step,
    # edges in file order; the walk restarts after each time-passing step.
    color: dict[str, int] = {}  # 1: on the stack, 2: done

    def walk(root: str) -> None:
        # Iterative (a journey may have thousands of steps in a row: no recursion limit).
        stack = [root]
        color[root] = 1
        edges = [iter(graph.get(root, []))]
        while edges:
            for target, path in edges[-1]:
                if target in breaking:
                    continue
                if color.get(target) == 1:
                    cycle = stack[stack.index(target) :] + [target]
                    problems.append(
                        doc.problem(
                            path,
                            "steps can loop without a positive wait or a wait_for: "
                            + " -> ".join(cycle),
                        )
                    )
                elif target not in color:
                    color[target] = 1
                    stack.append(target)
                    edges.append(iter(graph.get(target, [])))
                    break
            else:
                edges.pop()
                color[stack.pop()] = 2

    seen: set[str] = set()
    order = [start]
    while order:
        node = order.pop(0)
        if node in seen:
            continue
        seen.add(node)
        if node not in breaking and node not in color:
            walk(node)
        order.extend(t for t, _ in graph.get(node, []))
    return problems
