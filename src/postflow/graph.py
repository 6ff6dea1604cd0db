"""Draw a compiled journey as a diagram (Mermaid or Graphviz DOT).

The diagram is drawn from the compiled :class:`~postflow.machine.Machine`, not from the YAML,
so it shows exactly the transitions the engine will follow: implicit "next step" flows,
branch defaults, split weights and ``wait_for`` timeouts included.
"""

from __future__ import annotations

from postflow import durations
from postflow.machine import END, Machine, Step

START = "-start"  # no step id can start with "-": the trigger node never collides


def _summary(step: Step) -> str:
    if step.kind == "wait":
        if step.until is not None:
            return f"wait until {step.until.source}"
        text = f"wait {durations.format_duration(step.duration)}"
        if step.at is None:
            return text
        at = step.at.strftime("%H:%M")
        if step.days is not None and len(step.days) < 7:
            at += " on " + "/".join(durations.WEEKDAYS[d] for d in sorted(step.days))
        return f"{text} then {at} local" if step.duration else f"wait until {at} local"
    if step.kind == "wait_for":
        what = step.event or " | ".join(e for e, _, _ in step.alternatives)
        since = ", since entry" if step.since == "entry" else ""
        return f"wait for {what} ({durations.format_duration(step.timeout)}{since})"
    if step.kind == "wait_until":
        source = step.condition.source if step.condition is not None else ""
        return f"wait until {source} ({durations.format_duration(step.timeout)})"
    if step.kind == "email":
        subject = step.subject.source if step.subject is not None else step.sendgrid_template_id
        return f"email: {subject}"
    if step.kind == "sms":
        return f"sms: {step.text.source if step.text is not None else ''}"
    if step.kind == "webhook":
        return f"webhook {step.method} {step.url.source if step.url else ''}"
    if step.kind == "set":
        return "set " + ", ".join(f"{t}.{n}" for t, n, _ in step.assignments)
    if step.kind == "emit":
        return f"emit {step.event}"
    return step.kind


def edges(machine: Machine) -> list[tuple[str, str, str]]:
    """(source, target, label) for every transition, in step order."""
    trig = machine.trigger
    if trig.event is not None:
        start_label = trig.event + (f" if {trig.condition.source}" if trig.condition else "")
    else:
        schedule = trig.schedule.expr if trig.schedule else ""
        audience = f" if {trig.audience.source}" if trig.audience else ""
        start_label = f"schedule {schedule}{audience}"
    if trig.local:
        start_label += " (customer's time)"
    if machine.filter is not None:  # §9: re-checked before each message too
        start_label += f" · filter {machine.filter.source}"
    out: list[tuple[str, str, str]] = [(START, machine.first, start_label)]
    for sid in machine.order:
        step = machine.steps[sid]
        if step.kind == "branch":
            for condition, goto in step.branches:
                out.append((sid, goto, condition.source if condition is not None else "else"))
            if all(c is not None for c, _ in step.branches):
                out.append((sid, step.next, "else"))
        elif step.kind == "split":
            total = sum(w for w, _, _ in step.splits)
            for weight, goto, name in step.splits:
                out.append((sid, goto, f"{name} {weight / total:.0%}"))
        elif step.kind == "goto":
            out.append((sid, step.goto or END, ""))
        elif step.kind == "wait_for" and step.alternatives:
            for event, condition, goto in step.alternatives:
                label = event + (f" if {condition.source}" if condition is not None else "")
                out.append((sid, goto, label))
            out.append((sid, step.on_timeout or step.next, "timeout"))
        elif step.kind == "wait_for":
            out.append((sid, step.next, str(step.event)))
            out.append((sid, step.on_timeout or step.next, "timeout"))
        elif step.kind == "wait_until":
            out.append((sid, step.next, "condition holds"))
            out.append((sid, step.on_timeout or step.next, "timeout"))
        elif step.on_skip is not None:
            out.append((sid, step.next, "sent"))
            out.append((sid, step.on_skip, "not sent"))
        else:
            out.append((sid, step.next, ""))
    return out


def _clip(text: str, width: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def mermaid(machine: Machine) -> str:
    def esc(text: str) -> str:
        return _clip(text).replace('"', "#quot;")

    def node(name: str) -> str:
        return "end_" if name == END else "trigger_" if name == START else f"s_{name}"

    lines = ["flowchart TD", f'  trigger_(["{esc(machine.id)}"])']
    for sid in machine.order:
        lines.append(f'  s_{sid}["{esc(sid)}<br/>{esc(_summary(machine.steps[sid]))}"]')
    lines.append("  end_((end))")
    for source, target, label in edges(machine):
        arrow = f'-->|"{esc(label)}"|' if label else "-->"
        lines.append(f"  {node(source)} {arrow} {node(target)}")
    return "\n".join(lines) + "\n"


def dot(machine: Machine) -> str:
    def esc(text: str) -> str:
        return _clip(text).replace("\\", "\\\\").replace('"', '\\"')

    lines = [
        f'digraph "{esc(machine.id)}" {{',
        "  rankdir=TB;",
        '  node [shape=box, style=rounded, fontname="Helvetica"];',
        f'  "{START}" [label="{esc(machine.id)}", shape=oval];',
    ]
    for sid in machine.order:
        lines.append(f'  "{esc(sid)}" [label="{esc(sid)}\\n{esc(_summary(machine.steps[sid]))}"];')
    lines.append(f'  "{END}" [label="end", shape=doublecircle];')
    for source, target, label in edges(machine):
        attr = f' [label="{esc(label)}"]' if label else ""
        lines.append(f'  "{esc(source)}" -> "{esc(target)}"{attr};')
    lines.append("}")
    return "\n".join(lines) + "\n"
