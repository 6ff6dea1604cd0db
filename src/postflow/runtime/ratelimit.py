"""A token bucket: a provider's ``rate: {per_second, burst}`` as the dispatcher applies it.

Providers throttle an account (SendGrid's and Twilio's 429s); sending slower than they
allow avoids burning attempts on refusals. The bucket is per provider and per worker
process: with several workers, each gets the configured rate (docs/channels.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``per_second`` tokens a second, at most ``burst`` saved up; thread-safe."""

    def __init__(
        self,
        per_second: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.per_second = per_second
        self.burst = max(1, int(burst if burst is not None else max(1, round(per_second))))
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token and return how long to wait before using it (0: at once). Taking
        it now, even into debt, keeps concurrent callers in a fair queue."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            self._tokens -= 1
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.per_second

    def acquire(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait for a token; False when ``should_stop`` turned true while waiting."""
        wait = self.reserve()
        deadline = time.monotonic() + wait
        while wait > 0:
            if should_stop():
                return False
            time.sleep(min(wait, 0.2))
            wait = deadline - time.monotonic()
        return True
