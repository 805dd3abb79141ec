"""Request counters per token, endpoint and device, so tests can prove a client kept within its limits."""

from __future__ import annotations

import time

from .clock import iso_utc
from .metrics import BRAND_CALLS

INVALID_TOKEN = "<invalid>"


def _bucket():
    return {"requests": 0, "rate_limited": 0, "last_at": None}


class Stats:
    def __init__(self, wall=time.time):
        self._wall = wall
        self.reset()

    def reset(self) -> None:
        self.since = self._wall()
        self.requests = 0
        self.rate_limited = 0
        self.tokens: dict[str, dict[str, dict]] = {}
        self.devices: dict[str, dict] = {}

    def record(self, token: str, endpoint: str, serials=(), rate_limited: bool = False) -> None:
        stamp = iso_utc(self._wall())
        BRAND_CALLS.labels(endpoint, "rate_limited" if rate_limited else "answered").inc()
        self.requests += 1
        self.rate_limited += rate_limited
        for bucket in [self.tokens.setdefault(token, {}).setdefault(endpoint, _bucket())] + [
            self.devices.setdefault(s, _bucket()) for s in serials
        ]:
            bucket["requests"] += 1
            bucket["rate_limited"] += rate_limited
            bucket["last_at"] = stamp

    def snapshot(self) -> dict:
        return {
            "since": iso_utc(self.since),
            "totals": {"requests": self.requests, "rate_limited": self.rate_limited},
            "tokens": self.tokens,
            "devices": self.devices,
        }
