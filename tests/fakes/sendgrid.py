"""Fake SendGrid v3 Mail Send endpoint for tests that drive the real `sendgrid` SDK.

Point the SDK at it with `SendGridAPIClient(fake.api_key, host=fake.base_url)`. Every
request is checked against the documented Mail Send contract so that a channel that builds
a wrong body fails its test here instead of in production; each problem is added to
`violations` and answered 400 (401 / 404 / 405 / 415 where SendGrid would use those) in
SendGrid's `{"errors": [...]}` shape. Valid sends take the next scripted answer.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .server import Answer, Fail, FakeServer, Incoming, Outcome, Reply

SEND_PATH = "/v3/mail/send"
BAD_KEY = "The provided authorization grant is invalid, expired, or revoked"
CONTENT_TYPES = ("text/plain", "text/html")

Problem = tuple[str | None, str]  # (field, message), as in SendGrid's error objects


class FakeSendGrid(FakeServer):
    """In-process stand-in for `POST https://api.sendgrid.com/v3/mail/send`."""

    def __init__(self, api_key: str = "SG.test-key") -> None:
        super().__init__()
        self.api_key = api_key

    def handle(self, request: Incoming) -> Outcome:
        if request.path != SEND_PATH:
            return _reject(request, 404, [(None, f"unknown path; only POST {SEND_PATH} exists")])
        if request.method != "POST":
            return _reject(request, 405, [(None, f"method {request.method} not allowed")])
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            got = request.headers.get("Authorization")
            return _reject(
                request,
                401,
                [(None, BAD_KEY)],
                f"Authorization is not 'Bearer <api_key>' (got {got!r})",
            )
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/json":
            problem = f"Content-Type must be application/json, got {content_type!r}"
            return _reject(request, 415, [(None, problem)])
        try:
            data = json.loads(request.body)
        except ValueError:
            return _reject(request, 400, [(None, "The request body is not valid JSON")])
        problems = mail_problems(data)
        if problems:
            return _reject(request, 400, problems, data=data)
        return _answer(self._next_answer(), data)


def _reject(
    request: Incoming,
    status: int,
    problems: list[Problem],
    note: str | None = None,
    data: Any = None,
) -> Outcome:
    """Answer in SendGrid's error shape and record every problem as a violation."""
    where = f"SendGrid {request.method} {request.path}"
    if note is not None:
        violations = (f"{where}: {note}",)
    else:
        violations = tuple(f"{where}: {f + ': ' if f else ''}{m}" for f, m in problems)
    errors = [{"message": m, "field": f, "help": None} for f, m in problems]
    return Outcome(Reply.of_json(status, {"errors": errors}), violations=violations, json=data)


def _answer(answer: Answer, data: Any) -> Outcome:
    if isinstance(answer, Fail):
        headers: dict[str, str] = {}
        if answer.status == 429:
            wait = answer.retry_after if isinstance(answer.retry_after, int | float) else 1
            headers["X-RateLimit-Limit"] = "600"
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(int(time.time() + wait))
        if answer.retry_after is not None:
            headers["Retry-After"] = str(answer.retry_after)
        body = {"errors": [{"message": answer.text, "field": None, "help": None}]}
        return Outcome(Reply.of_json(answer.status, body, headers), answer=answer, json=data)
    message_id = secrets.token_urlsafe(16)  # 22 url-safe chars, like SendGrid's ids
    reply = Reply(202, b"", {"X-Message-Id": message_id})
    return Outcome(reply, answer=answer, message_id=message_id, json=data)


def mail_problems(data: Any) -> list[Problem]:
    """Check a Mail Send body against the documented contract; [] when it is valid."""
    if not isinstance(data, dict):
        return [(None, "The request body must be a JSON object")]
    problems: list[Problem] = []
    personalizations = data.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(("personalizations", "must be a list of at least one personalization"))
        personalizations = []
    elif len(personalizations) > 1000:
        problems.append(("personalizations", "may not have more than 1000 personalizations"))
    seen: set[str] = set()
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict):
            problems.append((f"personalizations.{i}", "must be an object"))
            continue
        if not isinstance(p.get("to"), list) or not p["to"]:
            problems.append((f"personalizations.{i}.to", "must be a non-empty list of recipients"))
        for kind in ("to", "cc", "bcc"):
            recipients = p.get(kind, [])
            if not isinstance(recipients, list):
                if kind != "to":  # a bad `to` was reported above
                    problems.append((f"personalizations.{i}.{kind}", "must be a list"))
                continue
            for j, who in enumerate(recipients):
                field = f"personalizations.{i}.{kind}.{j}.email"
                email = who.get("email") if isinstance(who, dict) else None
                if not _is_email(email):
                    problems.append((field, "Does not contain a valid address."))
                elif email.lower() in seen:
                    problems.append((field, "Each email address must be unique."))
                else:
                    seen.add(email.lower())
        if "subject" in p and not isinstance(p["subject"], str):
            problems.append((f"personalizations.{i}.subject", "must be a string"))
        if "dynamic_template_data" in p and not isinstance(p["dynamic_template_data"], dict):
            problems.append((f"personalizations.{i}.dynamic_template_data", "must be an object"))
        problems += _custom_args_problems(p, f"personalizations.{i}.custom_args")
    if len(seen) > 1000:
        problems.append(("personalizations", "may not have more than 1000 recipients in total"))

    sender = data.get("from")
    if not isinstance(sender, dict) or not _is_email(sender.get("email")):
        problems.append(("from.email", "The from object must be provided with a valid email."))
    template_id = data.get("template_id")
    if template_id is not None and not isinstance(template_id, str):
        problems.append(("template_id", "must be a string"))
    problems += _content_problems(data.get("content"), has_template=template_id is not None)
    subject_everywhere = bool(personalizations) and all(
        isinstance(p, dict) and "subject" in p for p in personalizations
    )
    if template_id is None and not subject_everywhere:
        if not isinstance(data.get("subject"), str) or not data["subject"]:
            problems.append(("subject", "The subject is required unless a template is used."))
    if "dynamic_template_data" in data:
        problems.append(
            ("dynamic_template_data", "belongs inside each personalization, not at the top level")
        )
    problems += _custom_args_problems(data, "custom_args")
    categories = data.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or len(categories) > 10:
            problems.append(("categories", "must be a list of at most 10 categories"))
        elif any(not isinstance(c, str) or len(c) > 255 for c in categories):
            problems.append(("categories", "each category must be a string of <= 255 chars"))
        elif len(set(categories)) != len(categories):
            problems.append(("categories", "The categories cannot have duplicate values."))
    asm = data.get("asm")
    if asm is not None:
        group_id = asm.get("group_id") if isinstance(asm, dict) else None
        if not isinstance(group_id, int) or isinstance(group_id, bool):
            problems.append(("asm.group_id", "must be an integer"))
    reply_to = data.get("reply_to")
    if reply_to is not None and (
        not isinstance(reply_to, dict) or not _is_email(reply_to.get("email"))
    ):
        problems.append(("reply_to.email", "Does not contain a valid address."))
    if reply_to is not None and "reply_to_list" in data:
        problems.append(("reply_to_list", "reply_to and reply_to_list are mutually exclusive"))
    return problems


def _content_problems(content: Any, *, has_template: bool) -> list[Problem]:
    if content is None:
        if has_template:
            return []
        return [("content", "Unless a valid template_id is provided, content is required.")]
    if not isinstance(content, list) or not content:
        return [("content", "must be a list of at least one {type, value} block")]
    problems: list[Problem] = []
    types: list[str] = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") not in CONTENT_TYPES:
            problems.append((f"content.{i}.type", f"must be one of {', '.join(CONTENT_TYPES)}"))
            continue
        types.append(block["type"])
        if not isinstance(block.get("value"), str) or not block["value"]:
            problems.append((f"content.{i}.value", "must be a non-empty string"))
    if "text/plain" in types and types[0] != "text/plain":
        problems.append(("content.0.type", "The text/plain content type must be first."))
    return problems


def _custom_args_problems(holder: dict[str, Any], field: str) -> list[Problem]:
    if "custom_args" not in holder:
        return []
    args = holder["custom_args"]
    if not isinstance(args, dict):
        return [(field, f"Invalid type. Expected: object, given: {type(args).__name__}.")]
    bad = sorted(k for k, v in args.items() if not isinstance(v, str))
    if bad:
        return [(field, f"values must be strings (not for {', '.join(bad)})")]
    if len(json.dumps(args).encode()) > 10_000:
        return [(field, "may not exceed 10,000 bytes")]
    return []


def _is_email(value: Any) -> bool:
    return isinstance(value, str) and "@" in value.strip("@")
