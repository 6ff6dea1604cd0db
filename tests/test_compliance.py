"""Address normalisation, suppression scope, consent and caps (pure rules)."""

from __future__ import annotations

import pytest

from postflow import compliance


@pytest.mark.parametrize(
    ("raw", "region", "want"),
    [
        ("+1 (555) 555-0100", None, "+15555550100"),
        ("555-555-0100", "US", "+15555550100"),
        ("030 1234567", "DE", "+49301234567"),
        ("555-555-0100", None, None),  # no + and no region: unreadable
        ("call me", "US", None),
        ("", "US", None),
        (None, "US", None),
    ],
)
def test_phone_numbers_normalise_to_e164(raw: object, region: str | None, want: str | None) -> None:
    assert compliance.normalize_phone(raw, region) == want


def test_addresses_compare_normalised() -> None:
    assert compliance.normalize_address("  Ann@Example.COM ", "US") == "ann@example.com"
    assert compliance.normalize_address("(555) 555-0100", "US") == "+15555550100"
    assert compliance.normalize_email("not-an-email") is None


@pytest.mark.parametrize(
    ("reasons", "marketing", "blocked"),
    [
        (frozenset(), True, False),
        (frozenset({"bounce"}), False, True),
        (frozenset({"stop"}), False, True),
        (frozenset({"unsubscribe"}), True, True),
        (frozenset({"group_unsubscribe"}), False, False),  # transactional still goes out
        (frozenset({"blocked"}), True, False),  # SendGrid soft bounce suppresses nothing
    ],
)
def test_suppression_scope(reasons: frozenset[str], marketing: bool, blocked: bool) -> None:
    assert compliance.blocked_by_suppression(reasons, marketing) is blocked


def test_consent_email_opt_out_sms_opt_in() -> None:
    assert compliance.has_consent("email", {})
    assert not compliance.has_consent("email", {"email_consent": False})
    assert not compliance.has_consent("sms", {})
    assert compliance.has_consent("sms", {"sms_consent": True})
    assert compliance.has_consent("sms", {"sms_consent": "yes"})
    assert not compliance.has_consent("sms", {"sms_consent": "no"})


def test_cap_window_is_half_open_on_the_left() -> None:
    day = 86_400_000_000
    sent = [("email", 0), ("email", day // 2), ("sms", day)]
    assert compliance.over_cap(sent, "email", 2, day, day - 1)  # both inside (now-1d, now]
    assert not compliance.over_cap(sent, "email", 2, day, day)  # the one at 0 has left
    assert not compliance.over_cap(sent, "sms", 2, day, day)
