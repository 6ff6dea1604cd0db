"""The waiting steps of language v1.1 (§9): ``wait_for`` with ``events`` and ``since: entry``,
``wait_until``, and when a held message may go out (send windows with quiet hours).

Functions over the engine's working context (:class:`~postflow.transitions.Transition`), as
:mod:`postflow.messages` is for message steps: the transition module decides when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postflow import durations
from postflow.machine import Machine, Step
from postflow.state import Instance

if TYPE_CHECKING:
    from postflow.transitions import Transition


def matching(run: Transition, inst: Instance, step: Step, view: dict[str, Any]) -> str | None:
    """Where an event resumes a waiting ``wait_for``: its ``next``, or with ``events`` the
    ``goto`` of the first entry it matches; None when it does not match."""
    etype = view.get("type")
    if step.alternatives:
        for event, condition, goto in step.alternatives:
            if event == etype and (condition is None or condition(run.scope(inst, view))):
                return goto
        return None
    if step.event == etype and (step.condition is None or step.condition(run.scope(inst, view))):
        return step.next
    return None


def already_happened(run: Transition, inst: Instance, step: Step) -> str | None:
    """``since: entry``: the newest event applied since entry (never the trigger, never
    one that resumed this instance) that matches goes on at once, as ``last_event``."""
    for index in range(len(inst.seen) - 1, -1, -1):
        view = inst.seen[index]
        goto = matching(run, inst, step, view)
        if goto is not None:
            del inst.seen[index]  # it has resumed this instance now
            inst.last_event = view
            return goto
    return None


def until_next(run: Transition, inst: Instance, step: Step) -> bool:
    """Block a ``wait_until`` until its next check or its timeout, whichever is first;
    False when the timeout is now (nothing to wait for)."""
    deadline = inst.step_started + step.timeout
    wake = deadline
    if step.check_every:
        elapsed = run.now - inst.step_started
        following = inst.step_started + (elapsed // step.check_every + 1) * step.check_every
        wake = min(wake, following)
    if wake <= run.now:
        return False
    inst.wake_at = wake
    inst.waiting = "wait_until"
    return True


def check_until(run: Transition, machine: Machine, inst: Instance, step: Step) -> None:
    """A ``wait_until`` timer: a scheduled check (the one on the timeout instant first),
    then the timeout."""
    deadline = inst.step_started + step.timeout
    checks = step.check_every and (run.now - inst.step_started) % step.check_every == 0
    if (checks or run.now < deadline) and step.condition is not None:
        if step.condition(run.scope(inst)):
            run.advance(machine, inst, step.next)
            return
    if run.now >= deadline or not until_next(run, inst, step):
        run.advance(machine, inst, step.on_timeout or step.next)


def held_until(run: Transition, machine: Machine, kind: str) -> int | None:
    """When a message decided now may go out: the first moment inside the send window
    and outside quiet hours (§9), or None when that is now."""
    quiet = machine.quiet_hours_for(run.settings.quiet_hours)
    window = machine.send_window_for(run.settings.send_window)
    if quiet is not None and kind not in quiet.channels:
        quiet = None
    if window is not None and kind not in window.channels:
        window = None
    zone = run.zone()
    moment = run.now
    for _ in range(16):  # each pass moves forward; both settle within a few
        moved = False
        if window is not None:
            opens = durations.window_release(moment, window.start, window.end, window.days, zone)
            if opens is not None:
                moment, moved = opens, True
        if quiet is not None:
            ends = durations.quiet_release(moment, quiet.start, quiet.end, zone)
            if ends is not None:
                moment, moved = ends, True
        if not moved:
            break
    return moment if moment != run.now else None
