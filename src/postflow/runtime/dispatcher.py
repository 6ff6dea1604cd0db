"""The outbox dispatcher: hands queued messages to their channels and records the outcome.

``status: sent`` in a record is the engine's decision; the dispatcher records the delivery
attempt separately, on the outbox row. A transient failure is retried after ``backoff ×
2^(attempt−1)`` with jitter, capped at ``max_backoff``, never sooner than the provider's
``Retry-After``; after ``max_attempts`` the message fails with ``provider_error``. A refusal
that cannot succeed fails at once. Compliance (consent, suppression, caps, quiet hours) is
journey semantics and never happens here.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from postflow.channels.base import Channel, Delivery
from postflow.store.outbox import Outbox, Queued
from postflow.store.sql import wall_us

log = logging.getLogger("postflow.dispatch")

US = 1_000_000
FLUSH_COUNT = 100
FLUSH_SECONDS = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_us: int = 30 * US
    max_backoff_us: int = 3600 * US

    def delay_us(self, attempt: int, retry_after: float | None, rand: float) -> int:
        """The wait before attempt ``attempt + 1`` after ``attempt`` failed: exponential with
        ±20% jitter, capped, and never sooner than ``Retry-After``."""
        base = min(self.backoff_us * (2 ** max(attempt - 1, 0)), self.max_backoff_us)
        delay = int(base * (0.8 + 0.4 * rand))
        delay = min(delay, self.max_backoff_us)
        if retry_after is not None:
            delay = max(delay, int(retry_after * US))
        return delay


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        channels: Mapping[str, Channel],
        owner: str,
        *,
        policy: RetryPolicy | None = None,
        batch: int = 500,
        lease_us: int = 60 * US,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self.channels = channels
        self.owner = owner
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.lease_us = lease_us
        self.rand = rand
        self._done: list[tuple[str, str, str | None]] = []
        self._first: float | None = None

    def drain(self, *, should_stop: Callable[[], bool] = lambda: False) -> DispatchStats:
        """Deliver every message due now, batch after batch. The lease on a claimed batch is
        renewed as sending goes on, and a message whose lease was lost (another worker may
        have it) is never sent; a stop request gives the unsent rest back. Deliveries are
        recorded in small groups (:data:`FLUSH_COUNT` messages or :data:`FLUSH_SECONDS`,
        whichever comes first): the duplicate window after a crash is that group."""
        total = DispatchStats()
        while not should_stop():
            claimed = self.outbox.claim(self.owner, self.batch, self.lease_us)
            if not claimed:
                break
            pending = deque(claimed)
            renewed = time.monotonic()
            try:
                while pending:
                    if should_stop():
                        self.flush()
                        self.outbox.release(self.owner, [q.message.message_id for q in pending])
                        return total
                    if time.monotonic() - renewed > self.lease_us / US / 3:
                        self.flush()
                        ids = [q.message.message_id for q in pending]
                        held = self.outbox.renew(self.owner, ids, self.lease_us)
                        pending = deque(q for q in pending if q.message.message_id in held)
                        renewed = time.monotonic()
                        continue
                    self.deliver(pending.popleft(), total)
            finally:
                self.flush()
        return total

    def flush(self) -> None:
        """Record the deliveries not yet recorded."""
        done, self._done = self._done, []
        self._first = None
        for mid in self.outbox.sent(self.owner, done):
            log.warning("message %s was sent after its lease ran out", mid)

    def _sent(self, message_id: str, provider: str, provider_id: str | None) -> None:
        self._done.append((message_id, provider, provider_id))
        now = time.monotonic()
        if self._first is None:
            self._first = now
        if len(self._done) >= FLUSH_COUNT or now - self._first >= FLUSH_SECONDS:
            self.flush()

    def deliver(self, item: Queued, stats: DispatchStats) -> None:
        message = item.message
        channel = self.channels.get(message.channel)
        if channel is None:
            self.outbox.failed(
                self.owner,
                message.message_id,
                "none",
                f"no channel configured for {message.channel}",
            )
            stats.failed += 1
            return
        try:
            delivery = channel.send(message)
        except Exception as exc:  # a channel bug must not stop the dispatcher
            log.exception("channel %s raised on %s", message.channel, message.message_id)
            delivery = Delivery("retry", getattr(channel, "name", "?"), error=f"{exc!r}")
        attempt = item.attempts + 1
        if delivery.status == "sent":
            self._sent(message.message_id, delivery.provider, delivery.provider_id)
            stats.sent += 1
        elif delivery.status == "retry" and attempt < self.policy.max_attempts:
            delay = self.policy.delay_us(attempt, delivery.retry_after, self.rand())
            self.outbox.retry(
                self.owner,
                message.message_id,
                delivery.provider,
                delivery.error or "transient failure",
                wall_us() + delay,
            )
            stats.retried += 1
        else:
            self.outbox.failed(
                self.owner,
                message.message_id,
                delivery.provider,
                delivery.error or "delivery failed",
            )
            log.warning("message %s failed: %s", message.message_id, delivery.error)
            stats.failed += 1
