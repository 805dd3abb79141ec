"""Per token+endpoint and per token+device rate limits, in real (wall-clock) time by default.

Clients live in real time even when the simulation runs faster, so limits use a monotonic clock. With
`--limits-clock sim` they count on the simulation's clock instead (a benchmark whose client runs on the same
accelerated clock covers a simulated day or month of limits in minutes): rolling windows, calendar days
and months all follow the simulated time.
Rejected calls are not counted, so a client that backs off gets through at the next window.

Some brands (SolarEdge) count calendar-day budgets instead (per key and per site, reset at 00:00 UTC)
and cap the requests in progress per source address.
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
    "fast": {
        "list": Limit(10, 1.0),
        "latest": Limit(1000, 1.0),
        "v4:queryLastData": Limit(20, 1.0),
        "per_device_interval_s": 2.0,
    },
    "real": {
        "list": Limit(1, 5.0),
        "latest": Limit(10, 1.0),
        "v4:queryLastData": Limit(1, 5.0),
        "per_device_interval_s": 300.0,
    },
}

# FusionSolar (SmartPVMS northbound), per user: each list interface (stations, getStationList, getDevList)
# `list_per_day` + Roundup(plants/100) calls a day; getDevRealKpi `kpi_calls` + Roundup(devices of that
# type/100) calls per `kpi_window_s` per devTypeId; a session lives `session_ttl_s` after its last call.
FUSIONSOLAR = {
    "fast": {"list_per_day": 10000, "kpi_calls": 5, "kpi_window_s": 1.0, "session_ttl_s": 5.0},
    "real": {"list_per_day": 24, "kpi_calls": 0, "kpi_window_s": 300.0, "session_ttl_s": 1800.0},
}


# Daily budgets and concurrency caps per brand; "real" is the brand's documented figures.
BUDGET_PROFILES = {
    "fast": {"solaredge": {"daily_per_key": 100_000, "daily_per_site": 100_000, "concurrency": 20}},
    "real": {"solaredge": {"daily_per_key": 300, "daily_per_site": 300, "concurrency": 3}},
}
DAY_S = 86400


class RateLimits:
    def __init__(self, profile: str, overrides: dict[str, dict], monotonic=time.monotonic, wall=time.time):
        if profile not in PROFILES:
            raise ValueError(f"unknown rate-limit profile {profile!r}")
        self.profile = profile
        self._overrides = overrides
        self._monotonic = monotonic
        self._wall = wall
        self._calls: dict[tuple, deque] = {}
        self.plans = PlanLimits(profile, monotonic, wall)
        self._day = -1
        self._spent: dict[tuple, int] = {}
        self._in_progress: dict[tuple, int] = {}

    def now(self) -> float:
        """The limits' clock (monotonic real time, or the simulated time under `--limits-clock sim`)."""
        return self._monotonic()

    def budget(self, brand: str, name: str) -> int:
        """A brand's daily budget or concurrency cap: the fleet config's override, else the profile's."""
        return int(self._overrides.get(brand, {}).get(name, BUDGET_PROFILES[self.profile][brand][name]))

    def charge_daily(self, brand: str, buckets) -> tuple[float, str]:
        """Charge one call to each (scope, id) budget ("key" or "site"), all or nothing.

        (0, "") when charged; else (seconds until the budgets reset, the spent scope) and nothing is charged.
        """
        now = self._wall()
        day = int(now // DAY_S)
        if day != self._day:
            self._day, self._spent = day, {}
        for scope, ident in buckets:
            if self._spent.get((brand, scope, ident), 0) >= self.budget(brand, f"daily_per_{scope}"):
                return (day + 1) * DAY_S - now, scope
        for scope, ident in buckets:
            self._spent[(brand, scope, ident)] = self._spent.get((brand, scope, ident), 0) + 1
        return 0.0, ""

    def enter(self, brand: str, source: str) -> bool:
        """Count a request in progress from `source`; False (not counted) when the brand's cap is reached."""
        key = (brand, source)
        if self._in_progress.get(key, 0) >= self.budget(brand, "concurrency"):
            return False
        self._in_progress[key] = self._in_progress.get(key, 0) + 1
        return True

    def leave(self, brand: str, source: str) -> None:
        key = (brand, source)
        self._in_progress[key] = max(0, self._in_progress.get(key, 0) - 1)

    def endpoint_limit(self, brand: str, endpoint: str) -> Limit:
        custom = self._overrides.get(brand, {}).get(endpoint)
        if custom:
            return Limit(int(custom["limit"]), float(custom["window_s"]))
        base = PROFILES[self.profile]
        return base.get(endpoint) or base["list" if endpoint in LIST_ENDPOINTS else "latest"]

    def device_interval(self, brand: str) -> float:
        return float(
            self._overrides.get(brand, {}).get("per_device_interval_s", PROFILES[self.profile]["per_device_interval_s"])
        )

    def window_name(self, brand: str, endpoint: str, scope: str) -> str:
        """The limit a refusal of `check` (scope "endpoint" or "device") or `charge_daily` ("key", "site") names."""
        if scope == "endpoint":
            limit = self.endpoint_limit(brand, endpoint)
            return f"{endpoint} per token: {limit.limit} per {limit.window_s:g} s"
        if scope == "device":
            return f"{endpoint} per device: 1 per {self.device_interval(brand):g} s"
        return f"{brand} daily per {scope}: {self.budget(brand, f'daily_per_{scope}')}"

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

    def check_windows(self, windows: list[tuple[tuple, Limit]]) -> tuple[float, int]:
        """(0, -1) when every (key, limit) window has room, and the call is then counted in each; else (seconds
        to wait, the index of the window that refused)."""
        now = self._monotonic()
        calls = [(self._window(key, now, limit.window_s), limit) for key, limit in windows]
        waits = [
            (window[0] + limit.window_s - now, n)
            for n, (window, limit) in enumerate(calls)
            if len(window) >= limit.limit
        ]
        if waits:
            return max(waits)
        for window, _ in calls:
            window.append(now)
        return 0.0, -1

    def _window(self, key, now, window_s) -> deque:
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= now - window_s:
            calls.popleft()
        return calls

    def reset(self) -> None:
        # Requests in progress are live connections, not history: they stay counted until they answer.
        self._calls.clear()
        self._spent.clear()
        self.plans.reset()


# Enphase plans: calls per minute and per calendar month (UTC), per application API key, all endpoints together.
ENPHASE_PLANS = {"watt": (10, 1_000), "kilowatt": (50, 50_000), "megawatt": (100, 300_000), "demo": (600, 10_000_000)}


class PlanLimits:
    """Enphase's plan limits: a rolling minute and a calendar month (UTC) per API key.

    Under the fast profile every application is on the generous "demo" plan; under real, on its own plan.
    A refused call is not counted (it answers 429 and uses nothing up).
    """

    def __init__(self, profile: str, monotonic=time.monotonic, wall=time.time):
        self.profile = profile
        self._monotonic = monotonic
        self._wall = wall
        self._minute: dict[str, deque] = {}
        self._month: dict[str, tuple[tuple[int, int], int]] = {}

    def limits(self, plan: str, overrides: dict) -> tuple[int, int]:
        per_minute, per_month = ENPHASE_PLANS["demo" if self.profile == "fast" else plan]
        return overrides.get("per_minute", per_minute), overrides.get("per_month", per_month)

    def check(self, key: str, plan: str, overrides: dict | None = None) -> str:
        """ "" when the call may go ahead (it is then counted); else "minute" or "month"."""
        per_minute, per_month = self.limits(plan, overrides or {})
        now = self._monotonic()
        calls = self._minute.setdefault(key, deque())
        while calls and calls[0] <= now - 60.0:
            calls.popleft()
        wall = time.gmtime(self._wall())
        month = (wall.tm_year, wall.tm_mon)
        counted_month, used = self._month.get(key, (month, 0))
        used = used if counted_month == month else 0
        if used >= per_month:
            return "month"
        if len(calls) >= per_minute:
            return "minute"
        calls.append(now)
        self._month[key] = (month, used + 1)
        return ""

    def reset(self) -> None:
        self._minute.clear()
        self._month.clear()
