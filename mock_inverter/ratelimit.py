"""Per token+endpoint and per token+device rate limits, in real (wall-clock) time.

Clients live in real time even when the simulation runs faster, so limits use a monotonic clock.
Rejected calls are not counted, so a client that backs off gets through at the next window.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

# Endpoint names are shared with stats and the README: "<dialect>:<endpoint>".
LIST_ENDPOINTS = ("sandbox:devices", "v1:plant/list", "v1:device/list", "v4:queryDeviceList")
LATEST_ENDPOINTS = ("sandbox:latest", "v1:last_data", "v4:queryLastData")


@dataclass(frozen=True)
class Limit:
    limit: int
    window_s: float


PROFILES = {
    "fast": {"list": Limit(10, 1.0), "latest": Limit(1000, 1.0), "v4:queryLastData": Limit(20, 1.0),
             "per_device_interval_s": 2.0},
    "real": {"list": Limit(1, 5.0), "latest": Limit(10, 1.0), "v4:queryLastData": Limit(1, 5.0),
             "per_device_interval_s": 300.0},
}

# FusionSolar (SmartPVMS northbound), per user: each list interface (stations, getStationList, getDevList)
# `list_per_day` + Roundup(plants/100) calls a day; getDevRealKpi `kpi_calls` + Roundup(devices of that
# type/100) calls per `kpi_window_s` per devTypeId; a session lives `session_ttl_s` after its last call.
FUSIONSOLAR = {
    "fast": {"list_per_day": 10000, "kpi_calls": 5, "kpi_window_s": 1.0, "session_ttl_s": 5.0},
    "real": {"list_per_day": 24, "kpi_calls": 0, "kpi_window_s": 300.0, "session_ttl_s": 1800.0},
}


class RateLimits:
    def __init__(self, profile: str, overrides: dict[str, dict], monotonic=time.monotonic):
        if profile not in PROFILES:
            raise ValueError(f"unknown rate-limit profile {profile!r}")
        self.profile = profile
        self._overrides = overrides
        self._monotonic = monotonic
        self._calls: dict[tuple, deque] = {}

    def endpoint_limit(self, brand: str, endpoint: str) -> Limit:
        custom = self._overrides.get(brand, {}).get(endpoint)
        if custom:
            return Limit(int(custom["limit"]), float(custom["window_s"]))
        base = PROFILES[self.profile]
        return base.get(endpoint) or base["list" if endpoint in LIST_ENDPOINTS else "latest"]

    def device_interval(self, brand: str) -> float:
        return float(self._overrides.get(brand, {}).get("per_device_interval_s",
                                                        PROFILES[self.profile]["per_device_interval_s"]))

    def check(self, brand: str, token: str, endpoint: str, serials: list[str] = ()) -> tuple[float, str]:
        """(0, "") when the call may go ahead (it is then counted); else (seconds to wait, "endpoint"|"device")."""
        now = self._monotonic()
        limit = self.endpoint_limit(brand, endpoint)
        endpoint_calls = self._window(("endpoint", token, endpoint), now, limit.window_s)
        if len(endpoint_calls) >= limit.limit:
            return endpoint_calls[0] + limit.window_s - now, "endpoint"
        interval = self.device_interval(brand)
        device_calls = [self._window(("device", token, endpoint, s), now, interval) for s in serials]
        busy = [calls[0] + interval - now for calls in device_calls if calls]
        if busy:
            return max(busy), "device"
        endpoint_calls.append(now)
        for calls in device_calls:
            calls.append(now)
        return 0.0, ""

    def fusionsolar(self, name: str) -> float:
        return float(self._overrides.get("fusionsolar", {}).get(name, FUSIONSOLAR[self.profile][name]))

    def check_windows(self, windows: list[tuple[tuple, Limit]]) -> float:
        """0 when every (key, limit) window has room, and the call is then counted in each; else seconds to wait."""
        now = self._monotonic()
        calls = [(self._window(key, now, limit.window_s), limit) for key, limit in windows]
        waits = [window[0] + limit.window_s - now for window, limit in calls if len(window) >= limit.limit]
        if waits:
            return max(waits)
        for window, _ in calls:
            window.append(now)
        return 0.0

    def _window(self, key, now, window_s) -> deque:
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= now - window_s:
            calls.popleft()
        return calls

    def reset(self) -> None:
        self._calls.clear()
