"""Webhook signature checks for SendGrid, Twilio and Shopify: pure functions, no I/O.

A webhook endpoint is open to the internet (no API token), so its provider's signature is
the only thing that tells a real callback from a forged one that would suppress addresses
or withdraw consent. Each check works on the exact bytes or parameters received, compares in
constant time where a secret is involved, and answers ``False`` for anything a sender controls
(missing header, bad base64, bad DER). Only our own misconfiguration raises
(:class:`SignatureConfigError`), because a server that cannot check anything must say so
rather than reject every callback in silence.

The algorithms follow the providers' SDKs (sendgrid 6.12.5 ``EventWebhook``, twilio 9.13
``RequestValidator``) so a signature they accept is accepted here, without their quirks:
the SendGrid helper raises on bad base64 and the Twilio one compares ``str`` in a Python loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SENDGRID_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"
_KEY_MESSAGE = f"{SENDGRID_KEY_ENV} is not a base64 DER P-256 public key"
_PEM_LINES = ("-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class SignatureConfigError(ValueError):
    """A secret or key in our configuration is unusable: a server error, not a bad request."""


def _b64decode(text: str) -> bytes:
    """Strict base64 after dropping whitespace (keys pasted into env files wrap lines)."""
    return base64.b64decode("".join(text.split()), validate=True)


@lru_cache(maxsize=16)
def _sendgrid_key(public_key_b64: str) -> ec.EllipticCurvePublicKey:
    """Parse the key once: verifying is cheap, DER parsing on every callback is not.

    The SendGrid console shows the key as bare base64; PEM armour around it is tolerated
    because that is what people paste from other tools. A failure is not cached (lru_cache
    does not store exceptions), so a corrected key takes effect without a restart."""
    text = public_key_b64
    for line in _PEM_LINES:
        text = text.replace(line, "")
    try:
        der = _b64decode(text)
    except (binascii.Error, ValueError):
        raise SignatureConfigError(f"{_KEY_MESSAGE}: not base64") from None
    if not der:
        raise SignatureConfigError(f"{_KEY_MESSAGE}: empty")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureConfigError(f"{_KEY_MESSAGE}: not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureConfigError(f"{_KEY_MESSAGE}: wrong key type or curve")
    return key


def sendgrid_key_problem(public_key_b64: str) -> str | None:
    """What is wrong with a configured SendGrid key, for ``postflow doctor``; None if usable."""
    try:
        _sendgrid_key(public_key_b64)
    except SignatureConfigError as exc:
        return str(exc)
    return None


def verify_sendgrid(
    public_key_b64: str, body: bytes, signature: str | None, timestamp: str | None
) -> bool:
    """True when ``signature`` (header ``X-Twilio-Email-Event-Webhook-Signature``, base64 DER
    ECDSA) signs ``timestamp`` (header ``X-Twilio-Email-Event-Webhook-Timestamp``) followed by
    the exact body bytes, with SHA-256 on P-256.

    The body is never decoded or re-serialised: SendGrid signs the bytes it sent, trailing
    ``\\r\\n`` included. The key is loaded first so a misconfigured key raises
    :class:`SignatureConfigError` on every request, not only on signed ones. No freshness
    check is made on the timestamp; replays are harmless because events de-duplicate by id.
    """
    key = _sendgrid_key(public_key_b64)
    if not signature or not timestamp:
        return False
    try:
        der = _b64decode(signature)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(der, timestamp.encode("utf-8", "replace") + body, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        return False
    return True


def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` for a form POST to ``url``: base64 HMAC-SHA1 with the auth token
    over the URL followed by ``name + value`` of every parameter, sorted by name, then value.

    This is ``RequestValidator.compute_signature`` for a multi-dict, including its handling of
    repeated keys: each name's values are de-duplicated and sorted (``sorted(set(values))``).
    Parameters are taken as received pairs, because Twilio may repeat a key (``MediaUrl``)
    and a plain dict would silently keep only one value and break the signature.
    """
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    text = url + "".join(
        name + value for name in sorted(grouped) for value in sorted(grouped[name])
    )
    mac = hmac.new(auth_token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URLs Twilio may have signed for ``url``: as given, and (as ``RequestValidator``
    does, because Twilio's signing is inconsistent about ports) with the scheme's default
    port added when there is none, or with the port removed when there is one."""
    variants = [url]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unparsable port: only the URL as given can match
        return variants
    variants.append(parts.geturl())
    netloc = parts.netloc
    if not parts.hostname:
        return list(dict.fromkeys(variants))
    if port is None:
        default = 443 if parts.scheme == "https" else 80
        variants.append(parts._replace(netloc=f"{netloc}:{default}").geturl())
    else:  # netloc ends with ":port" (an IPv6 host is bracketed, so rfind is safe)
        variants.append(parts._replace(netloc=netloc[: netloc.rfind(":")]).geturl())
    return list(dict.fromkeys(variants))


def verify_twilio(
    auth_token: str, url: str, params: Sequence[tuple[str, str]], signature: str | None
) -> bool:
    """True when ``signature`` is Twilio's for this URL and these form parameters (all of
    them: Twilio adds parameters without notice, so none may be dropped before checking).

    ``url`` must be the one Twilio called (``http.public_url`` + path behind a proxy). An
    empty auth token checks nothing, so it never validates."""
    if not auth_token or not signature:
        return False
    given = signature.strip().encode("utf-8", "replace")
    matched = False
    for candidate in _url_variants(url):
        expected = twilio_signature(auth_token, candidate, params).encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    return matched


def verify_shopify(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` (``X-Shopify-Hmac-Sha256``) is the base64 HMAC-SHA256 of the raw
    body with the app's client secret. Checked before the JSON is parsed, on the exact bytes.
    An empty secret never validates (anyone could compute that HMAC)."""
    if not secret or not header:
        return False
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))
