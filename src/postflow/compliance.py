"""Who may be sent what: addresses, suppression, consent and frequency caps.

These are journey semantics, not channel code: they decide the records ``simulate`` prints,
so the engine consults them and the channels never do. A message step checks, in this order,
address, suppression, consent, frequency cap; the first failure is the record's reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers

from postflow.events import SUPPRESSED, UNSUPPRESSED
from postflow.state import Sent

HARD_REASONS = frozenset({"bounce", "dropped", "spamreport", "stop", "manual"})
"""Suppression reasons that block every message to the address."""
MARKETING_REASONS = frozenset({"unsubscribe", "group_unsubscribe"})
"""Suppression reasons that block marketing only (transactional mail still goes out)."""


_MAILBOX = re.compile(r"^[^@\s]+@[^@\s]+$")


def normalize_address(address: Any, region: str | None) -> str | None:
    """An email (contains ``@``) lower-cased, else a phone number in E.164. Anything
    unreadable is no address."""
    if isinstance(address, str) and "@" in address:
        return normalize_email(address)
    return normalize_phone(address, region)


def is_mailbox(address: str) -> bool:
    """``local@domain`` with both parts present and no spaces. The engine reads any text with
    an ``@`` as an address (contract §2); what people type and providers report is held to
    this before it lands on the suppression list."""
    return _MAILBOX.match(address) is not None


def normalize_email(address: Any) -> str | None:
    if not isinstance(address, str) or "@" not in address:
        return None
    return address.strip().lower() or None


@lru_cache(maxsize=65536)
def _phone(text: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(text: Any, region: str | None) -> str | None:
    """E.164; a number without ``+`` is read in ``region`` (e.g. US); unreadable: None."""
    if not isinstance(text, str) or not text.strip():
        return None
    return _phone(text.strip(), region)


def truthy(value: Any) -> bool:
    """Consent flags arrive from many systems: accept "true"/"yes"/"1" strings too."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "y", "on")
    return bool(value)


def blocked_by_suppression(reasons: frozenset[str], marketing: bool) -> bool:
    if not reasons:
        return False
    return not reasons.isdisjoint(HARD_REASONS) or (
        marketing and not reasons.isdisjoint(MARKETING_REASONS)
    )


def has_consent(channel: str, profile: Mapping[str, Any]) -> bool:
    """Email is opt-out (absent means yes); SMS is opt-in (absent means no)."""
    if channel == "email":
        consent = profile.get("email_consent")
        return consent is None or truthy(consent)
    return truthy(profile.get("sms_consent"))


def over_cap(
    sent: Sequence[Sent],
    channel: str,
    maximum: int,
    per: int,
    now: int,
    tag: str | None = None,
) -> bool:
    """Marketing messages decided ``sent`` on ``channel`` with ``at`` in ``(now - per, now]``
    (and, with ``tag``, sent by a journey version carrying it) already reach ``maximum``."""
    floor = now - per
    used = 0
    for entry in sent:
        if entry[0] == channel and floor < entry[1] <= now:
            if tag is not None and tag not in entry[2]:
                continue
            used += 1
            if used >= maximum:
                return True
    return maximum <= 0


@dataclass(frozen=True, slots=True)
class SuppressionChange:
    """One change to the suppression list, as an ``address_suppressed`` /
    ``address_unsuppressed`` event makes it: effective at ``at`` for every customer."""

    address: str
    at: int
    reason: str | None  # None: the address is unsuppressed
    seq: int = 0  # ingestion order, for changes with equal ``at``


def suppression_change(
    type_: str, data: Mapping[str, Any], at: int, region: str | None, seq: int = 0
) -> SuppressionChange | None:
    """The change a suppression event makes, or None for any other event (or an address that
    cannot be read). Ingestion calls this, in ``simulate`` and in the daemon alike, so the
    suppression list is built from the same rule everywhere."""
    if type_ != SUPPRESSED and type_ != UNSUPPRESSED:
        return None
    address = normalize_address(data.get("address"), region)
    if address is None:
        return None
    reason = None if type_ == UNSUPPRESSED else str(data.get("reason") or "manual")
    return SuppressionChange(address, at, reason, seq)
