"""Request counters per token, endpoint and device, so tests can prove a client kept within its limits.

A refused (rate-limited) request also names the limit that refused it (`refused_by`: e.g.
"sandbox:latest per device: 1 per 300 s"), per endpoint and in the totals, in the metric
mock_inverter_brand_refusals and in the refusal's `X-Mock-Refused-By` header (app.py), so a benchmark's
violations say which window a client overran.
"""

from __future__ import annotations

import time

from flask import g, has_request_context

from .clock import iso_utc
from .metrics import BRAND_CALLS, BRAND_REFUSALS

INVALID_TOKEN = "<invalid>"


def _bucket():
    return {"requests": 0, "rate_limited": 0, "last_at": None, "refused_by": {}}


class Stats:
    def __init__(self, wall=time.time):
        self._wall = wall
        self.reset()

    def reset(self) -> None:
        self.since = self._wall()
        self.requests = 0
        self.rate_limited = 0
        self.refused_by: dict[str, int] = {}
        self.tokens: dict[str, dict[str, dict]] = {}
        self.devices: dict[str, dict] = {}

    def record(self, token: str, endpoint: str, serials=(), rate_limited: bool = False, window: str = "") -> None:
        """Count one request; `window` names the limit that refused it (rate_limited) ("" when unnamed)."""
        stamp = iso_utc(self._wall())
        BRAND_CALLS.labels(endpoint, "rate_limited" if rate_limited else "answered").inc()
        self.requests += 1
        self.rate_limited += rate_limited
        window = window or "unnamed"
        if rate_limited:
            BRAND_REFUSALS.labels(endpoint, window).inc()
            if has_request_context():
                g.refused_by = window
            self.refused_by[window] = self.refused_by.get(window, 0) + 1
        for bucket in [self.tokens.setdefault(token, {}).setdefault(endpoint, _bucket())] + [
            self.devices.setdefault(s, _bucket()) for s in serials
        ]:
            bucket["requests"] += 1
            bucket["rate_limited"] += rate_limited
            bucket["last_at"] = stamp
            if rate_limited:
                bucket["refused_by"][window] = bucket["refused_by"].get(window, 0) + 1

    def snapshot(self) -> dict:
        return {
            "since": iso_utc(self.since),
            "totals": {"requests": self.requests, "rate_limited": self.rate_limited, "refused_by": self.refused_by},
            "tokens": self.tokens,
            "devices": self.devices,
        }
