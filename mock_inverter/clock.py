"""Simulated time: real time by default, or from a chosen start, optionally N times faster."""

from __future__ import annotations

import time
from datetime import datetime, timezone


class SimClock:
    def __init__(self, start: float | None = None, speed: float = 1.0, monotonic=time.monotonic):
        self.start = time.time() if start is None else start
        self.speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()

    def now(self) -> float:
        """Simulated UTC epoch seconds."""
        return self.start + (self._monotonic() - self._origin) * self.speed


def parse_iso(text: str) -> float:
    """ISO-8601 to UTC epoch seconds; a time without offset is taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
