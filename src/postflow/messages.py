"""Message steps: decide what happens to one email, SMS or webhook.

A message step checks, in the contract's order, address, suppression, consent and frequency
cap (the rules live in :mod:`postflow.compliance`), then renders. The first failure is the
record's reason; a message that passes becomes an :class:`OutboundMessage` for the outbox.
Called by the engine with its working context for the current input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postflow import compliance, expressions
from postflow.effects import OutboundMessage
from postflow.machine import Step, evaluate_tree
from postflow.state import Instance

if TYPE_CHECKING:
    from postflow.transitions import Transition


def queue(run: Transition, inst: Instance, step: Step, to: str, **content: Any) -> None:
    """Put a decided message in the outbox. Its id is ``{instance}:m{n}`` (the instance's n-th
    message): the same in every run, and passed to the provider so it can be traced."""
    inst.messages += 1
    count = inst.messages
    run.outcome.messages.append(
        OutboundMessage(
            message_id=f"{inst.id}:m{count}",
            customer_id=run.state.customer_id,
            instance=inst.id,
            journey=inst.journey,
            step=step.id,
            channel=step.kind,
            at=run.now,
            to=to,
            **content,
        )
    )


def webhook(run: Transition, inst: Instance, step: Step) -> None:
    scope = run.scope(inst)
    try:
        url = step.url(scope) if step.url else ""
        body = evaluate_tree(step.json_body, scope) if step.json_body is not None else None
        headers = tuple((k, t(scope)) for k, t in step.headers)
    except expressions.RenderError as exc:
        run.record(
            "message",
            inst,
            step=step.id,
            channel="webhook",
            status="failed",
            reason="render_error",
            error=str(exc),
        )
        return
    run.record("message", inst, step=step.id, channel="webhook", status="sent", to=url)
    queue(run, inst, step, url, transactional=True, method=step.method, json=body, headers=headers)


def gate(
    run: Transition, inst: Instance, step: Step, scope: dict[str, Any]
) -> tuple[str | None, str | None, str | None]:
    """(normalised address, reason it may not be sent or None, error text)."""
    channel = step.kind
    profile = run.state.profile
    raw_to: Any
    if step.to is not None:
        try:
            raw_to = step.to(scope)
        except expressions.RenderError as exc:
            return None, "render_error", str(exc)
    else:
        raw_to = profile.get("email" if channel == "email" else "phone")
    to: str | None
    if channel == "email":
        to = compliance.normalize_email(raw_to)
    else:
        to = compliance.normalize_phone(raw_to, run.settings.default_region)
    if not to:
        return None, "no_address", None
    marketing = not step.transactional
    if compliance.blocked_by_suppression(run.suppressed_reasons(to), marketing):
        return to, "suppressed", None
    if marketing:
        if not compliance.has_consent(channel, profile):
            return to, "no_consent", None
        if step.frequency_cap and _capped(run, channel, step.tags):
            return to, "frequency_cap", None
    return to, None, None


def _capped(run: Transition, channel: str, tags: tuple[str, ...]) -> bool:
    """The channel's cap, then each of the journey's tags' caps on that channel (§9)."""
    sent, now = run.state.sent, run.now
    limit = run.settings.limits.get(channel)
    if limit is not None and compliance.over_cap(sent, channel, limit.max, limit.per, now):
        return True
    for tag in tags:
        tag_limit = run.settings.tag_limits.get(tag, {}).get(channel)
        if tag_limit is not None and compliance.over_cap(
            sent, channel, tag_limit.max, tag_limit.per, now, tag
        ):
            return True
    return False


def message(run: Transition, inst: Instance, step: Step) -> bool:
    """Decide one email or SMS: address, suppression, consent, cap, then rendering; the
    first failure decides the record. True when it is sent (its ``on_skip`` is not taken)."""
    channel = step.kind
    scope = run.scope(inst)
    to, reason, error = gate(run, inst, step, scope)
    if reason is not None:
        status = "failed" if reason == "render_error" else "skipped"
        run.record(
            "message",
            inst,
            step=step.id,
            channel=channel,
            status=status,
            reason=reason,
            error=error,
            to=to,
        )
        return False
    assert to is not None
    marketing = not step.transactional
    try:
        data = None
        if step.data is not None:
            data = evaluate_tree(step.data, scope)
            scope = {**scope, "data": data}
        subject = step.subject(scope) if step.subject is not None else None
        text = step.text(scope) if step.text is not None else None
        html = step.html(scope) if step.html is not None else None
    except expressions.RenderError as exc:
        run.record(
            "message",
            inst,
            step=step.id,
            channel=channel,
            status="failed",
            reason="render_error",
            error=str(exc),
            to=to,
        )
        return False
    body = text if text is not None else html
    run.record(
        "message",
        inst,
        step=step.id,
        channel=channel,
        status="sent",
        to=to,
        subject=subject,
        body=body,
    )
    if marketing and (run.settings.limits or run.settings.tag_limits):
        run.state.sent.append((channel, run.now, step.tags))
    queue(
        run,
        inst,
        step,
        to,
        transactional=step.transactional,
        subject=subject,
        html=html,
        text=text,
        sendgrid_template_id=step.sendgrid_template_id,
        template_data=data,
    )
    return True
