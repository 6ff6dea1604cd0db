"""The clock seam: where the daemon's logical "now" comes from.

The engine never reads a clock; the shells ask one of these. ``run`` uses the wall clock,
``run --once --now T`` a fixed time, and ``demo`` a scaled clock (about one simulated day
per real second), so the same daemon code can be watched at any speed. Leases and delivery
retries always use real time (:func:`postflow.store.sql.wall_us`): they are about processes,
not journeys.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """The logical time now, in epoch microseconds."""
        ...


class WallClock:
    def now(self) -> int:
        return time.time_ns() // 1000


class FixedClock:
    def __init__(self, at: int) -> None:
        self.at = at

    def now(self) -> int:
        return self.at


class ScaledClock:
    """Starts at ``start`` (µs) and runs ``factor`` times faster than real time."""

    def __init__(self, start: int, factor: float) -> None:
        self.start = start
        self.factor = factor
        self._origin = time.monotonic_ns() // 1000

    def now(self) -> int:
        elapsed = time.monotonic_ns() // 1000 - self._origin
        return self.start + int(elapsed * self.factor)
