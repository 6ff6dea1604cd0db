"""Webhook signatures, computed the providers' way and cross-checked against their SDKs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from sendgrid import EventWebhook
from twilio.request_validator import RequestValidator

from postflow.http import signatures
from postflow.http.signatures import (
    SignatureConfigError,
    sendgrid_key_problem,
    twilio_signature,
    verify_sendgrid,
    verify_shopify,
    verify_twilio,
)

# --- SendGrid --------------------------------------------------------------------------------

# The known-good vector from sendgrid-python's own suite (test/unit/test_eventwebhook.py).
SG_PUBLIC_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
SG_OTHER_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
SG_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SG_TIMESTAMP = "1600112502"
SG_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
)


def _der_b64(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def sg_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, _der_b64(private.public_key())


def _sign(private: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """What SendGrid does: ECDSA P-256/SHA-256 over timestamp + raw body, base64 DER."""
    return base64.b64encode(
        private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    ).decode()


BODY = b'[{"email":"ann@example.com","event":"delivered","sg_event_id":"e1","timestamp":1}]\r\n'


def test_sendgrid_known_good_vector() -> None:
    assert verify_sendgrid(SG_PUBLIC_KEY, SG_PAYLOAD.encode(), SG_SIGNATURE, SG_TIMESTAMP)
    assert not verify_sendgrid(SG_OTHER_KEY, SG_PAYLOAD.encode(), SG_SIGNATURE, SG_TIMESTAMP)
    assert not verify_sendgrid(SG_PUBLIC_KEY, b"payload", SG_SIGNATURE, SG_TIMESTAMP)
    assert not verify_sendgrid(SG_PUBLIC_KEY, SG_PAYLOAD.encode(), SG_SIGNATURE, "timestamp")
    # without the trailing CRLF the bytes differ, so the signature does too
    assert not verify_sendgrid(
        SG_PUBLIC_KEY, SG_PAYLOAD.strip().encode(), SG_SIGNATURE, SG_TIMESTAMP
    )


def test_sendgrid_round_trip_agrees_with_sdk(sg_key: tuple[Any, str]) -> None:
    private, public = sg_key
    signature = _sign(private, "1700000000", BODY)
    assert verify_sendgrid(public, BODY, signature, "1700000000")
    assert EventWebhook(public).verify_signature(BODY.decode(), signature, "1700000000")


def test_sendgrid_rejects_tampering(sg_key: tuple[Any, str]) -> None:
    private, public = sg_key
    signature = _sign(private, "1700000000", BODY)
    tampered = BODY.replace(b"delivered", b"bounce")
    assert not verify_sendgrid(public, tampered, signature, "1700000000")
    assert not EventWebhook(public).verify_signature(tampered.decode(), signature, "1700000000")
    assert not verify_sendgrid(public, BODY, signature, "1700000001")
    assert not verify_sendgrid(public, BODY + b" ", signature, "1700000000")
    other = ec.generate_private_key(ec.SECP256R1())
    assert not verify_sendgrid(public, BODY, _sign(other, "1700000000", BODY), "1700000000")


@pytest.mark.parametrize(
    "signature, timestamp",
    [
        (None, "1700000000"),
        ("", "1700000000"),
        ("SIG", None),
        ("SIG", ""),
        ("not base64 at all!", "1700000000"),
        (base64.b64encode(b"not a DER signature").decode(), "1700000000"),
        (base64.b64encode(b"").decode() + "=", "1700000000"),
    ],
)
def test_sendgrid_missing_or_garbled_headers_are_false(
    sg_key: tuple[Any, str], signature: str | None, timestamp: str | None
) -> None:
    private, public = sg_key
    if signature == "SIG":
        signature = _sign(private, "1700000000", BODY)
    assert verify_sendgrid(public, BODY, signature, timestamp) is False


def test_sendgrid_signs_exact_bytes_even_non_utf8(sg_key: tuple[Any, str]) -> None:
    private, public = sg_key
    body = b'[{"x":"\xff"}]\r\n'
    assert verify_sendgrid(public, body, _sign(private, "5", body), "5")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not base64!",
        base64.b64encode(b"junk that is no DER").decode(),
        _der_b64(ec.generate_private_key(ec.SECP384R1()).public_key()),
        _der_b64(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()),
    ],
)
def test_malformed_public_key_is_a_configuration_error(key: str) -> None:
    with pytest.raises(SignatureConfigError, match="SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64"):
        verify_sendgrid(key, BODY, "c2ln", "1")
    problem = sendgrid_key_problem(key)
    assert problem is not None
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER P-256 public key" in problem


def test_key_problem_none_and_tolerated_forms(sg_key: tuple[Any, str]) -> None:
    private, public = sg_key
    assert sendgrid_key_problem(public) is None
    assert sendgrid_key_problem(SG_PUBLIC_KEY) is None
    wrapped = "\n".join(public[i : i + 40] for i in range(0, len(public), 40)) + "\n"
    pem = f"-----BEGIN PUBLIC KEY-----\n{wrapped}-----END PUBLIC KEY-----\n"
    signature = _sign(private, "9", BODY)
    assert verify_sendgrid(wrapped, BODY, signature, "9")
    assert verify_sendgrid(pem, BODY, signature, "9")


def test_sendgrid_key_is_parsed_once(sg_key: tuple[Any, str]) -> None:
    private, public = sg_key
    signature = _sign(private, "9", BODY)
    verify_sendgrid(public, BODY, signature, "9")
    hits = signatures._sendgrid_key.cache_info().hits
    verify_sendgrid(public, BODY, signature, "9")
    assert signatures._sendgrid_key.cache_info().hits == hits + 1


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=200), timestamp=st.from_regex(r"\A[0-9]{1,12}\Z"))
def test_sendgrid_property(sg_key: tuple[Any, str], body: bytes, timestamp: str) -> None:
    private, public = sg_key
    signature = _sign(private, timestamp, body)
    assert verify_sendgrid(public, body, signature, timestamp)
    assert not verify_sendgrid(public, body + b"x", signature, timestamp)


# --- Twilio ----------------------------------------------------------------------------------

TOKEN = "12345"
URL = "https://mycompany.com/webhooks/twilio/inbound"
PARAMS = [
    ("MessageSid", "SM123"),
    ("From", "+15555550100"),
    ("To", "+15555550199"),
    ("Body", "STOP"),
    ("NumMedia", "0"),
    ("Empty", ""),
]


class _MultiDict(dict[str, list[str]]):
    """Flask's MultiDict as RequestValidator sees it: iterating gives names, getall values."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def _multi(pairs: list[tuple[str, str]]) -> _MultiDict:
    out = _MultiDict()
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def test_twilio_signature_matches_sdk() -> None:
    sdk = RequestValidator(TOKEN).compute_signature(URL, dict(PARAMS))
    assert twilio_signature(TOKEN, URL, PARAMS) == sdk
    assert twilio_signature(TOKEN, URL, list(reversed(PARAMS))) == sdk
    assert twilio_signature(TOKEN, URL, []) == RequestValidator(TOKEN).compute_signature(URL, {})


def test_twilio_repeated_keys_like_sdk() -> None:
    pairs = [
        ("MediaUrl", "https://b"),
        ("MediaUrl", "https://a"),
        ("Body", "x"),
        ("MediaUrl", "https://a"),
    ]
    expected = RequestValidator(TOKEN).compute_signature(URL, _multi(pairs))
    assert twilio_signature(TOKEN, URL, pairs) == expected
    # values are sorted and de-duplicated per name, as the SDK does
    dedup = [("Body", "x"), ("MediaUrl", "https://a"), ("MediaUrl", "https://b")]
    assert twilio_signature(TOKEN, URL, dedup) == expected
    assert twilio_signature(TOKEN, URL, pairs[:2]) != twilio_signature(TOKEN, URL, pairs[:1])


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=8),
    url=st.sampled_from([URL, "http://h/x?a=1", "https://h:8443/p"]),
)
def test_twilio_signature_property(pairs: list[tuple[str, str]], url: str) -> None:
    assert twilio_signature(TOKEN, url, pairs) == RequestValidator(TOKEN).compute_signature(
        url, _multi(pairs)
    )


def test_verify_twilio() -> None:
    signature = RequestValidator(TOKEN).compute_signature(URL, dict(PARAMS))
    assert verify_twilio(TOKEN, URL, PARAMS, signature)
    assert verify_twilio(TOKEN, URL, PARAMS, f" {signature} ")
    assert not verify_twilio(TOKEN, URL, [*PARAMS[:-1], ("Empty", "x")], signature)
    assert not verify_twilio(TOKEN, URL, PARAMS[1:], signature)  # a parameter dropped
    assert not verify_twilio(TOKEN, URL, [*PARAMS, ("Extra", "1")], signature)
    assert not verify_twilio("54321", URL, PARAMS, signature)
    assert not verify_twilio(TOKEN, URL + "x", PARAMS, signature)
    assert not verify_twilio(TOKEN, URL, PARAMS, None)
    assert not verify_twilio(TOKEN, URL, PARAMS, "")
    assert not verify_twilio(TOKEN, URL, PARAMS, "ünïcode")
    assert not verify_twilio("", URL, PARAMS, twilio_signature("", URL, PARAMS))


@pytest.mark.parametrize(
    "signed, received",
    [
        ("https://ex.com/webhooks/twilio/inbound", "https://ex.com:443/webhooks/twilio/inbound"),
        ("https://ex.com:443/webhooks/twilio/inbound", "https://ex.com/webhooks/twilio/inbound"),
        ("http://ex.com/cb?x=1", "http://ex.com:80/cb?x=1"),
        ("http://ex.com:80/cb?x=1", "http://ex.com/cb?x=1"),
        ("https://ex.com:8443/cb", "https://ex.com:8443/cb"),
        ("https://ex.com/cb", "https://ex.com:8443/cb"),  # RequestValidator strips any port
        ("https://ex.com:8443/cb", "https://ex.com/cb"),
        ("https://ex.com:80/cb", "https://ex.com/cb"),
        ("http://ex.com/cb", "https://ex.com/cb"),
        ("https://ex.com/cb", "https://other.com/cb"),
    ],
)
def test_verify_twilio_ports_agree_with_sdk(signed: str, received: str) -> None:
    signature = twilio_signature(TOKEN, signed, PARAMS)
    expected = RequestValidator(TOKEN).validate(received, dict(PARAMS), signature)
    assert verify_twilio(TOKEN, received, PARAMS, signature) is expected


def test_verify_twilio_port_variants_outcomes() -> None:
    with_port = twilio_signature(TOKEN, "https://ex.com:443/cb", PARAMS)
    assert verify_twilio(TOKEN, "https://ex.com/cb", PARAMS, with_port)
    without = twilio_signature(TOKEN, "http://ex.com/cb", PARAMS)
    assert verify_twilio(TOKEN, "http://ex.com:80/cb", PARAMS, without)
    # the default port of the other scheme is not added
    assert not verify_twilio(
        TOKEN, "https://ex.com/cb", PARAMS, twilio_signature(TOKEN, "https://ex.com:80/cb", PARAMS)
    )


def test_verify_twilio_unparsable_port_checks_url_as_given() -> None:
    url = "https://ex.com:port/cb"
    assert verify_twilio(TOKEN, url, PARAMS, twilio_signature(TOKEN, url, PARAMS))
    assert not verify_twilio(
        TOKEN, url, PARAMS, twilio_signature(TOKEN, "https://ex.com/cb", PARAMS)
    )


# --- Shopify ---------------------------------------------------------------------------------

SHOPIFY_BODY = b'{"id":820982911946154508,"email":"jon@doe.ca"}'
SHOPIFY_HMAC = "cErMfPB2ezG5HfNhiWmAt2R4j9LvW1/VXSXb0Yuq62M="


def test_shopify_vector() -> None:
    assert verify_shopify("shpss_test", SHOPIFY_BODY, SHOPIFY_HMAC)
    assert verify_shopify("shpss_test", SHOPIFY_BODY, SHOPIFY_HMAC + "\n")


@pytest.mark.parametrize(
    "secret, body, header",
    [
        ("shpss_test", SHOPIFY_BODY + b" ", SHOPIFY_HMAC),
        ("shpss_test", SHOPIFY_BODY.replace(b"jon", b"jan"), SHOPIFY_HMAC),
        ("other", SHOPIFY_BODY, SHOPIFY_HMAC),
        ("shpss_test", SHOPIFY_BODY, None),
        ("shpss_test", SHOPIFY_BODY, ""),
        ("shpss_test", SHOPIFY_BODY, "nöt ascii"),
        ("shpss_test", SHOPIFY_BODY, SHOPIFY_HMAC.lower()),
        ("", SHOPIFY_BODY, SHOPIFY_HMAC),
    ],
)
def test_shopify_rejects(secret: str, body: bytes, header: str | None) -> None:
    assert verify_shopify(secret, body, header) is False
