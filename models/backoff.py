"""Exponential backoff with jitter: the one home of the delay formulas.

For attempt n (1-based) with b = min(cap, base * multiplier**(n-1)):
  none          b
  full          uniform(0, b)
  equal         b/2 + uniform(0, b/2)
  decorrelated  min(cap, uniform(base, 3 * previous)), previous starting at base
A server's Retry-After is a floor on the delay, never beyond the cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

JITTER_KINDS = ("full", "equal", "decorrelated", "none")


@dataclass(frozen=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 3600.0
    multiplier: float = 2.0
    jitter: str = "full"

    def __post_init__(self) -> None:
        if self.jitter not in JITTER_KINDS:
            raise ValueError(f"jitter must be one of {', '.join(JITTER_KINDS)}")
        if not (self.base_s >= 0 and self.cap_s >= 0 and self.multiplier >= 1):
            raise ValueError("base_s and cap_s must be >= 0 and multiplier >= 1")

    def ceiling(self, attempt: int) -> float:
        """b for attempt n: the un-jittered exponential delay, capped."""
        exponent = max(attempt - 1, 0)
        # Grow in floats but stop early: multiplier**exponent overflows long before attempt 50.
        value = self.base_s
        for _ in range(exponent):
            value *= self.multiplier
            if value >= self.cap_s:
                return self.cap_s
        return min(self.cap_s, value)

    def delay(
        self,
        attempt: int,
        previous: float | None = None,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait after attempt `attempt` failed; `previous` is the last delay (decorrelated)."""
        uniform = (rng or random).uniform
        b = self.ceiling(attempt)
        if self.jitter == "none":
            delay = b
        elif self.jitter == "full":
            delay = uniform(0, b)
        elif self.jitter == "equal":
            delay = b / 2 + uniform(0, b / 2)
        else:
            prev = self.base_s if previous is None else previous
            upper = max(self.base_s, 3 * prev)
            delay = min(self.cap_s, uniform(self.base_s, upper))
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.cap_s)
        return max(0.0, delay)

    def to_dict(self) -> dict[str, Any]:
        return {"base_s": self.base_s, "cap_s": self.cap_s, "multiplier": self.multiplier, "jitter": self.jitter}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Backoff:
        return cls(**(data or {}))


# Pauses while Redis is unreachable (the poller's publisher, the recorder): 0.2 s doubling to 5 s,
# equal jitter.
REDIS_UNREACHABLE_BACKOFF = Backoff(base_s=0.2, cap_s=5.0, jitter="equal")

# Waiting for another process's SQLite write lock (models/db.py): 0.25-0.5 ms, doubling to 1-2 ms steps,
# short on purpose (see make_database).
SQLITE_BUSY_BACKOFF = Backoff(base_s=0.0005, cap_s=0.002, jitter="equal")
