"""The poll clock: what the planner, the schedule and the budget call "now" (epoch seconds).

Real time in production. A ScaledClock runs N times faster, so a benchmark covers a simulated day in
minutes against the mock's accelerated clock, and tests run the brands' real quotas against the mock's
fast profile (POLL_CLOCK_SPEED, POLL_CLOCK_ANCHOR in models/settings.py). Both processes need it: the
pollers to schedule, the web process to plan and show a connection's budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """The poll clock: epoch seconds."""

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock last in real time (for timers)."""


class WallClock:
    def now(self) -> float:
        return time.time()

    def real_seconds(self, seconds: float) -> float:
        return seconds


@dataclass(frozen=True)
class ScaledClock:
    """Runs `speed` times faster than real time from `anchor` (epoch seconds): at real time `anchor` it reads
    `anchor`. With the mock's start time as anchor and its `--speed`, it reads the mock's simulated time."""

    anchor: float
    speed: float

    def now(self) -> float:
        return self.anchor + (time.time() - self.anchor) * self.speed

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed


def clock_from_settings(settings: object) -> Clock:
    speed = float(getattr(settings, "poll_clock_speed", 1.0))
    if speed == 1.0:
        return WallClock()
    return ScaledClock(float(getattr(settings, "poll_clock_anchor", 0.0)) or time.time(), speed)
