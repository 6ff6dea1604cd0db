"""The outbox dispatcher: hands queued messages to their channels and records the outcome.

``status: sent`` in a record is the engine's decision; the dispatcher records the delivery
attempt separately, on the outbox row. A transient failure is retried after ``backoff ×
2^(attempt−1)`` with jitter, capped at ``max_backoff``, never sooner than the provider's
``Retry-After``; after ``max_attempts`` the message fails with ``provider_error``. A refusal
that cannot succeed fails at once. Compliance (consent, suppression, caps, quiet hours) is
journey semantics and never happens here.

Two kinds of channel (docs/runtime.md, "Dispatch"):

- local ones (console, file) run inline and their deliveries are recorded in small groups;
- network ones (SendGrid, Twilio, webhooks) each get a lane: a pool of ``concurrency``
  threads behind the provider's token bucket, and every acceptance is committed the moment
  the provider returns it. The duplicate window after a crash is then the messages in
  flight, at most ``concurrency`` per provider. A lane that keeps failing transiently (an
  outage) stops calling its provider for the rest of the drain and defers what it holds, so
  one provider down costs seconds, not a timeout per queued message.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from postflow.channels.base import Channel, Delivery
from postflow.effects import OutboundMessage
from postflow.runtime.ratelimit import TokenBucket
from postflow.store.outbox import Outbox, Queued
from postflow.store.sql import wall_us

log = logging.getLogger("postflow.dispatch")

US = 1_000_000
FLUSH_COUNT = 100
FLUSH_SECONDS = 0.1
OUTAGE_STREAK = 4
"""Consecutive transient failures (per concurrent slot) after which a lane is taken out of
the current drain."""

Suppressor = Callable[[OutboundMessage, str], None]


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
    deferred: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class Lane:
    """One network channel's pool, token bucket and outage streak."""

    def __init__(self, channel: Channel, concurrency: int) -> None:
        self.channel = channel
        self.concurrency = concurrency
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"send-{channel.name}")
        rate = getattr(channel, "rate", None)
        self.bucket = TokenBucket(rate[0], rate[1]) if rate else None
        self.streak = 0
        self.down = False
        self.retry_after: float | None = None  # the longest Retry-After seen in the streak
        self.lock = threading.Lock()

    def outcome(self, delivery: Delivery) -> None:
        """Count transient failures in a row; any other answer means the provider is up."""
        with self.lock:
            if delivery.status == "retry":
                self.streak += 1
                if delivery.retry_after is not None:
                    self.retry_after = max(self.retry_after or 0.0, delivery.retry_after)
                if self.streak >= OUTAGE_STREAK * self.concurrency and not self.down:
                    self.down = True
                    log.warning(
                        "%s keeps failing (%s): deferring its messages until the next pass",
                        self.channel.name,
                        delivery.error,
                    )
            else:
                self.streak, self.retry_after = 0, None


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
        concurrency: int = 4,
        suppress: Suppressor | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self.channels = channels
        self.owner = owner
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.lease_us = lease_us
        self.suppress = suppress
        self.rand = rand
        self._lanes: dict[int, Lane] = {
            id(c): Lane(c, concurrency)
            for c in channels.values()
            if getattr(c, "concurrent", False)
        }
        self._done: list[tuple[str, str, str | None]] = []
        self._first: float | None = None
        self._open: set[str] = set()
        self._lock = threading.Lock()
        self._renewed = time.monotonic()

    def close(self) -> None:
        """Stop the lanes' threads (after the sends in flight return)."""
        for lane in self._lanes.values():
            lane.pool.shutdown(wait=True)

    def drain(self, *, should_stop: Callable[[], bool] = lambda: False) -> DispatchStats:
        """Deliver every message due now, batch after batch. The lease on a claimed batch is
        renewed as sending goes on, and a message whose lease was lost (another worker may
        have it) is never sent; a stop request gives the unsent rest back."""
        total = DispatchStats()
        for lane in self._lanes.values():
            lane.streak, lane.down, lane.retry_after = 0, False, None
        while not should_stop():
            claimed = self.outbox.claim(self.owner, self.batch, self.lease_us)
            if not claimed:
                break
            with self._lock:
                self._open = {q.message.message_id for q in claimed}
            self._renewed = time.monotonic()
            futures: list[Future[None]] = []
            try:
                inline: deque[Queued] = deque()
                for q in claimed:
                    target = self._lane_of(q)
                    if target is None:
                        inline.append(q)
                    else:
                        job = target.pool.submit(self._pooled, q, target, total, should_stop)
                        futures.append(job)
                while inline and not should_stop():
                    self._renew_if_due()
                    item = inline.popleft()
                    if self._holds(item.message.message_id):
                        self._inline(item, total)
                self.flush()
                self._wait(futures)
            finally:
                # Sends already running finish and record themselves before anything is given
                # back; those not started are cancelled and released with the rest.
                for future in futures:
                    future.cancel()
                wait(futures)
                self.flush()
                with self._lock:
                    unsent, self._open = list(self._open), set()
                if unsent:
                    self.outbox.release(self.owner, unsent)
        return total

    def _lane_of(self, item: Queued) -> Lane | None:
        """The lane of a network channel; None for local channels (and unknown ones, which
        fail inline)."""
        channel = self.channels.get(item.message.channel)
        return None if channel is None else self._lanes.get(id(channel))

    def _wait(self, futures: list[Future[None]]) -> None:
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=self.lease_us / US / 3, return_when=FIRST_COMPLETED)
            self._renew_if_due()

    def _renew_if_due(self) -> None:
        if time.monotonic() - self._renewed <= self.lease_us / US / 3:
            return
        self.flush()
        with self._lock:
            ids = list(self._open)
        held = self.outbox.renew(self.owner, ids, self.lease_us) if ids else set()
        with self._lock:
            self._open &= held
        self._renewed = time.monotonic()

    def _holds(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._open

    def _finish(self, message_id: str) -> None:
        with self._lock:
            self._open.discard(message_id)

    def flush(self) -> None:
        """Record the inline deliveries not yet recorded."""
        done, self._done = self._done, []
        self._first = None
        for mid in self.outbox.sent(self.owner, done):
            log.warning("message %s was sent after its lease ran out", mid)

    def _inline(self, item: Queued, stats: DispatchStats) -> None:
        delivery = self._send(item.message)
        self._finish(item.message.message_id)
        if delivery is None:
            stats.add("failed")
            return
        if delivery.status == "sent":
            self._done.append((item.message.message_id, delivery.provider, delivery.provider_id))
            stats.add("sent")
            now = time.monotonic()
            if self._first is None:
                self._first = now
            if len(self._done) >= FLUSH_COUNT or now - self._first >= FLUSH_SECONDS:
                self.flush()
        else:
            self._record_failure(item, delivery, stats)

    def _pooled(
        self, item: Queued, lane: Lane, stats: DispatchStats, should_stop: Callable[[], bool]
    ) -> None:
        """One network send, recorded at once (runs in the lane's pool). An error here (the
        database went away) is logged; the row stays leased and is retried after the lease."""
        try:
            self._pooled_send(item, lane, stats, should_stop)
        except Exception:
            log.exception("recording message %s failed", item.message.message_id)

    def _pooled_send(
        self, item: Queued, lane: Lane, stats: DispatchStats, should_stop: Callable[[], bool]
    ) -> None:
        mid = item.message.message_id
        if should_stop() or not self._holds(mid):
            return  # given back (or lost) with the rest of the batch
        if lane.down:
            self._finish(mid)
            after = lane.retry_after or 0.0
            self.outbox.defer(
                self.owner, mid, wall_us() + max(self.policy.backoff_us, int(after * US))
            )
            stats.add("deferred")
            return
        if lane.bucket is not None and not lane.bucket.acquire(should_stop):
            return
        if not self._holds(mid):
            return
        delivery = self._send(item.message)
        self._finish(mid)
        if delivery is None:
            return
        lane.outcome(delivery)
        if delivery.status == "sent":
            for lost in self.outbox.sent(
                self.owner, [(mid, delivery.provider, delivery.provider_id)]
            ):
                log.warning("message %s was sent after its lease ran out", lost)
            stats.add("sent")
        else:
            self._record_failure(item, delivery, stats)

    def _send(self, message: OutboundMessage) -> Delivery | None:
        channel = self.channels.get(message.channel)
        if channel is None:
            error = f"no channel configured for {message.channel}"
            self.outbox.failed(self.owner, message.message_id, "none", error)
            return None
        try:
            return channel.send(message)
        except Exception as exc:  # a channel bug must not stop the dispatcher
            log.exception("channel %s raised on %s", message.channel, message.message_id)
            return Delivery("retry", getattr(channel, "name", "?"), error=f"{exc!r}")

    def _record_failure(self, item: Queued, delivery: Delivery, stats: DispatchStats) -> None:
        message = item.message
        attempt = item.attempts + 1
        if delivery.status == "retry" and attempt < self.policy.max_attempts:
            delay = self.policy.delay_us(attempt, delivery.retry_after, self.rand())
            self.outbox.retry(
                self.owner,
                message.message_id,
                delivery.provider,
                delivery.error or "transient failure",
                wall_us() + delay,
            )
            stats.add("retried")
            return
        error = delivery.error or "delivery failed"
        self.outbox.failed(self.owner, message.message_id, delivery.provider, error)
        log.warning("message %s failed: %s", message.message_id, error)
        stats.add("failed")
        if delivery.suppress and self.suppress is not None:
            try:
                self.suppress(message, delivery.suppress)
            except Exception:
                log.exception("could not suppress %s after %s", message.to, error)
