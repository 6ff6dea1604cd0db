"""Acceptance: a shop made with ``postflow init --all``, its daemon taking Shopify's webhooks.

Guarantee (issue 14, "a Shopify store pointed at /webhooks/shopify drives the journeys"): the
real CLI creates a project from the library, the real daemon (``postflow run --http``, a
subprocess) receives an order, its fulfillment and the delivery update exactly as Shopify
posts them (signed with the shop's secret), and sends the library's notices through its
channel, addressed with what Shopify sent, while a delivery with a bad signature is refused
and changes nothing.

The fixtures are dated November 2026, before any day this test runs: the notices asserted on
are all due, whatever today's date, so the verdict does not depend on the clock.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from helpers import COMMAND, clean_env

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "shopify"
SECRET = "shpss_acceptance_0123456789abcdef"


def sign(body: bytes) -> str:
    import base64
    import hashlib
    import hmac

    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(client: httpx.Client, topic: str, name: str, *, signature: str | None = None) -> Any:
    raw = orjson.dumps(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))
    return client.post(
        "/webhooks/shopify",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature or sign(raw),
            "X-Shopify-Webhook-Id": f"{name}-1",
        },
    )


def sent(outbox: Path) -> list[dict[str, Any]]:
    if not outbox.exists():
        return []
    return [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines() if line]


def test_a_new_shop_takes_shopify_orders_to_its_journeys(tmp_path: Path) -> None:
    env = clean_env()
    shop = tmp_path / "shop"
    made = subprocess.run(
        [*COMMAND, "init", str(shop), "--all"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    # The shop's own configuration, sending to a file instead of the console.
    config = shop / "postflow.yaml"
    text = config.read_text(encoding="utf-8")
    text = re.sub(
        r"(?m)^  (email|sms): \{provider: auto,", r"  \1: {provider: file, path: out.jsonl,", text
    )
    config.write_text(text + "worker: {poll: 1s}\n", encoding="utf-8")
    assert text.count("provider: file") == 2

    port = free_port()
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [*COMMAND, "run", "--http", f"127.0.0.1:{port}"],
        cwd=shop,
        env={**env, "SHOPIFY_WEBHOOK_SECRET": SECRET},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    outbox = shop / "out.jsonl"
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
                time.sleep(0.2)
            forged = post(client, "orders/create", "orders_create", signature=sign(b"other"))
            assert forged.status_code == 403
            for topic, name in [
                ("orders/create", "orders_create"),
                ("fulfillments/create", "fulfillments_create"),
                ("fulfillments/update", "fulfillments_update"),
            ]:
                answer = post(client, topic, name)
                assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
            again = post(client, "orders/create", "orders_create")  # Shopify retries
            assert again.status_code == 200 and "accepted" not in again.json()

            wanted = {
                ("order-confirmation", "receipt"),
                ("order-confirmation", "receipt_sms"),
                ("shipping-confirmation", "shipped_email"),
                ("delivered-notice", "delivered_email"),
                ("thank-you-first-order", "note"),
            }
            deadline = time.monotonic() + 120
            while not wanted <= {(m["journey"], m["step"]) for m in sent(outbox)}:
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
                assert time.monotonic() < deadline, sent(outbox)
                time.sleep(0.5)
    finally:
        daemon.terminate()
        code = daemon.wait(timeout=60)
        log.close()
    assert code == 0

    messages = {(m["journey"], m["step"]): m for m in sent(outbox)}
    receipt = messages[("order-confirmation", "receipt")]
    assert receipt["to"] == "ann.lee@example.com"
    assert receipt["subject"] == "Order #1042 confirmed, Ann"
    assert messages[("order-confirmation", "receipt_sms")]["to"] == "+12125550143"
    shipped = messages[("shipping-confirmation", "shipped_email")]
    assert "1Z999AA10123456784" in json.dumps(shipped)
    # One order, one receipt: the forged delivery and Shopify's retry changed nothing.
    receipts = [m for m in sent(outbox) if m["step"] == "receipt"]
    assert len(receipts) == 1
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
