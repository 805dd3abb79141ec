"""The quota planner: a brand's declared limits (quota.py), the fleet on one connection and the interval its
owner asks for in, the poll plan out. Pure: no clock, no I/O; `now` and the current usage are arguments.

A plan is one *round* of calls repeated every `interval_s`: each device is in exactly one call per round
(a bulk call carries several devices, or several sites, when the brand declares one), and the poll schedule
(actors/schedule.py) spreads a round's calls evenly over the interval. The interval is the slowest of:

- the interval asked for;
- per window and per counted instance of its scope (the key, an endpoint, a site, a device): a window of
  period P and limit L holding a round's charges C (in calls of at most m each, k calls) allows
  - for the key and endpoint scopes, whose calls the schedule spaces evenly: one call every P / floor(L / m),
    so interval >= k * P / floor(L / m);
  - for sites and devices (their calls are not evenly spaced): floor(L / C) rounds per P, so
    interval >= P / floor(L / C);
  - for a calendar window, also what is left of the current period: floor(remaining / C) rounds before it
    resets, so interval >= time left / floor(remaining / C) (a daily budget lasts until the brand's midnight);
- per documented minimum gap between calls of one endpoint: interval >= k * gap.

Rolling windows are widened by 2 % of their period (the brand's clock may run a little faster than ours) and
by `guard_s` for jitter between our send and the brand's count (`rolling_period`), except a device's own
window: the schedule sends a device's next call one interval after the previous one's answer came back, by
when the brand had counted it, so no jitter can bring two of them closer. The same charging rule (`charges`) is what the budget in Redis (models/brands/budget.py) counts, so
the plan and the gate agree on what a call costs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from models.brands.quota import DAY, Bulk, Quota, Window

#: The adapter's name for the call that fetches the latest data: the one call the poller makes.
LATEST = "latest"
#: Rolling windows are planned this much wider than declared, for clock jitter.
GUARD_FRACTION = 0.02
#: Calendar periods are planned a hair longer, so rounding never puts one call too many before a reset.
CALENDAR_GUARD = 1 + 1e-6


@dataclass(frozen=True)
class PlanDevice:
    id: str  # the inverter's id
    site: str  # the brand's site (plant) id, or the serial when the brand has none
    batch_key: str = ""  # devices with the same key may share a bulk call
    device_type: str = ""  # what quota.requests_per_latest prices


@dataclass(frozen=True)
class PlanCall:
    devices: tuple[str, ...]
    sites: tuple[str, ...]
    bulk: bool
    batch: str = ""  # the devices' batch key: the instance of a "batch" scope window
    requests: int = 1  # the brand's requests this call sends (quota.requests_per_latest)


@dataclass(frozen=True)
class Charge:
    window: int  # index into quota.windows
    instance: str  # "" for the key, the endpoint, the site or the device id
    amount: int


@dataclass(frozen=True)
class Plan:
    interval_s: float  # every device is polled once per interval
    min_interval_s: float  # the fastest interval the quota sustains now (what a 422 reports)
    calls: tuple[PlanCall, ...]
    binding: str | None  # the window (or "min interval <endpoint>") that sets min_interval_s
    valid_until: float | None  # plan again then (a calendar window resets)
    blocked_until: float | None = None  # a calendar budget is spent: nothing may be sent before then
    min_gap_s: float = 0.0  # between two sends: what the key's rolling windows and the endpoint's gap need

    @property
    def devices(self) -> int:
        return sum(len(c.devices) for c in self.calls)


def rolling_period(window: Window, guard_s: float) -> float:
    """The period a rolling window is planned and gated with (the budget in Redis uses the same)."""
    jitter = 0.0 if window.scope == "device" else guard_s
    return window.period_s * (1 + GUARD_FRACTION) + jitter


def latest_bulk(quota: Quota, endpoint: str = LATEST) -> Bulk | None:
    return next((b for b in quota.bulk if b.endpoint == endpoint), None)


def group_calls(
    quota: Quota, devices: Sequence[PlanDevice], batch_size: int = 1, endpoint: str = LATEST
) -> tuple[PlanCall, ...]:
    """One round's calls: a bulk call per batch key carries up to `size` devices (or whole sites), when the
    brand declares a bulk form of the endpoint; otherwise one device per call.

    A bulk call never costs more than the singles it replaces (charge "each" costs the same, "once" less),
    so a declared bulk is always used. Calls are ordered so that each site's calls are spread over the round.
    """
    bulk = latest_bulk(quota, endpoint)
    size = min(bulk.size, max(1, batch_size)) if bulk is not None else 1
    calls: list[PlanCall] = []
    if bulk is None or size == 1:
        for device in sorted(devices, key=lambda d: (d.site, d.id)):
            calls.append(
                PlanCall(
                    (device.id,), (device.site,), False, device.batch_key, quota.requests_for((device.device_type,))
                )
            )
        return _interleave_sites(calls)
    if bulk.charge == "each":
        # Charged per carried unit anyway: smaller lumps fill a key window closer to its limit (a lump of m
        # leaves at most m - 1 of the limit unused), so keep each at most a tenth of the tightest key window.
        keyed = [w.limit for w in quota.windows if w.counts(endpoint) and w.scope in ("key", "endpoint")]
        size = max(1, min([size] + [limit // 10 for limit in keyed]))
    by_key: dict[str, list[PlanDevice]] = defaultdict(list)
    for device in devices:
        by_key["" if bulk.per == "site" else device.batch_key].append(device)  # a site bulk carries whole sites
    for key in sorted(by_key):
        members = sorted(by_key[key], key=lambda d: (d.site, d.id))
        if bulk.per == "site":
            sites: dict[str, list[str]] = defaultdict(list)
            for device in members:
                sites[device.site].append(device.id)
            names = list(sites)
            even = math.ceil(len(names) / math.ceil(len(names) / size))  # equal lumps, none above size
            for start in range(0, len(names), even):
                chunk = names[start : start + even]
                types = {d.device_type for d in members if d.site in chunk}
                calls.append(
                    PlanCall(
                        tuple(i for s in chunk for i in sites[s]), tuple(chunk), True, key, quota.requests_for(types)
                    )
                )
        else:
            for start in range(0, len(members), size):
                chunk_devices = members[start : start + size]
                calls.append(
                    PlanCall(
                        tuple(d.id for d in chunk_devices),
                        tuple(dict.fromkeys(d.site for d in chunk_devices)),
                        True,
                        key,
                        quota.requests_for({d.device_type for d in chunk_devices}),
                    )
                )
    return tuple(calls)


def _interleave_sites(calls: list[PlanCall]) -> tuple[PlanCall, ...]:
    by_site: dict[str, list[PlanCall]] = defaultdict(list)
    for call in calls:
        by_site[call.sites[0]].append(call)
    queues = sorted(by_site.values(), key=len, reverse=True)
    out: list[PlanCall] = []
    for depth in range(len(queues[0]) if queues else 0):
        out.extend(q[depth] for q in queues if depth < len(q))
    return tuple(out)


def charges(quota: Quota, call: PlanCall, endpoint: str = LATEST) -> list[Charge]:
    """What one call costs in each window that counts it, per instance of the window's scope.

    Key and endpoint windows: 1 for a single call or a bulk charged once, one per carried site/device for a
    bulk charged each; a batch window: 1 to the call's batch key. Site and device windows: 1 per carried site
    and per carried device. Each of these is multiplied by the requests the call sends (`call.requests`).
    """
    bulk = latest_bulk(quota, endpoint) if call.bulk else None
    if bulk is None or bulk.charge == "once":
        key_amount = 1
    else:
        key_amount = len(call.sites) if bulk.per == "site" else len(call.devices)
    each = call.requests
    key_amount *= each
    out: list[Charge] = []
    for index, window in enumerate(quota.windows):
        if not window.counts(endpoint):
            continue
        if window.scope == "key":
            out.append(Charge(index, "", key_amount))
        elif window.scope == "endpoint":
            out.append(Charge(index, endpoint, key_amount))
        elif window.scope == "batch":
            out.append(Charge(index, call.batch, each))
        elif window.scope == "site":
            out.extend(Charge(index, site, each) for site in call.sites)
        else:
            out.extend(Charge(index, device, each) for device in call.devices)
    return out


def period_bounds(window: Window, now: float) -> tuple[float, float]:
    """The calendar period holding `now`: (start, end) in epoch seconds, in the window's time zone.

    A period of 28 days or more is a calendar month; a whole number of days starts at local midnight;
    shorter periods are aligned on local wall time (a minute window starts at a whole minute).
    """
    zone = ZoneInfo(window.timezone)
    local = datetime.fromtimestamp(now, zone)
    if window.period_s >= 28 * DAY:
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month)
    elif window.period_s >= DAY:
        days = max(1, round(window.period_s / DAY))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        ordinal = midnight.toordinal()
        start = midnight - timedelta(days=ordinal % days)
        start = datetime(start.year, start.month, start.day, tzinfo=zone)
        after = start + timedelta(days=days)
        end = datetime(after.year, after.month, after.day, tzinfo=zone)
    else:
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        into = (local - midnight).total_seconds()
        begin = math.floor(into / window.period_s) * window.period_s
        return midnight.timestamp() + begin, midnight.timestamp() + begin + window.period_s
    return start.timestamp(), end.timestamp()


@dataclass(frozen=True)
class _Load:
    calls: int  # calls charging the instance per round
    total: int  # units charged per round
    largest: int  # the largest single charge


def round_load(quota: Quota, calls: Iterable[PlanCall], endpoint: str = LATEST) -> dict[tuple[int, str], _Load]:
    load: dict[tuple[int, str], list[int]] = defaultdict(list)
    for call in calls:
        for charge in charges(quota, call, endpoint):
            load[(charge.window, charge.instance)].append(charge.amount)
    return {k: _Load(len(v), sum(v), max(v)) for k, v in load.items()}


def plan(
    quota: Quota,
    devices: Sequence[PlanDevice],
    requested_interval_s: float,
    now: float,
    used: Mapping[tuple[int, str], int] | None = None,
    batch_size: int = 1,
    guard_s: float = 0.0,
    endpoint: str = LATEST,
) -> Plan:
    """The poll plan for `devices` at `now`.

    `used`: calls already counted in the current period of each calendar window, by (window index,
    instance); rolling windows need none (the budget gate holds their recent past). `guard_s`: clock jitter
    to allow for on rolling windows, in the planner's seconds.
    """
    used = used or {}
    calls = group_calls(quota, devices, batch_size, endpoint)
    minimum, binding, window_gap, min_gap = 0.0, None, 0.0, 0.0
    valid_until: float | None = None
    blocked_until: float | None = None

    def bound(value: float, name: str) -> None:
        nonlocal minimum, binding
        if value > minimum:
            minimum, binding = value, name

    for (index, instance), load in round_load(quota, calls, endpoint).items():
        window = quota.windows[index]
        keyed = window.scope in ("key", "endpoint")
        if window.calendar:
            start, end = period_bounds(window, now)
            valid_until = end if valid_until is None else min(valid_until, end)
            period = window.period_s * CALENDAR_GUARD
            bound(_steady(window, period, load), window.name)
            remaining = window.limit - used.get((index, instance), 0)
            left = (
                Window(window.name, remaining, (end - now) * CALENDAR_GUARD, window.scope) if remaining >= 1 else None
            )
            if left is not None and (remaining >= load.total or remaining >= load.largest and keyed):
                bound(_steady(left, left.period_s, load), window.name)
            else:  # spent until the reset: the first round after it
                blocked_until = end if blocked_until is None else max(blocked_until, end)
            if keyed and window.limit >= load.largest:
                window_gap = max(window_gap, period / (window.limit // load.largest))
        else:
            period = rolling_period(window, guard_s)
            bound(_steady(window, period, load), window.name)
            if window.scope in ("key", "endpoint") and window.limit >= load.largest:
                window_gap = max(window_gap, period / (window.limit // load.largest))
    for name, gap in quota.min_interval_s.items():
        if name == endpoint:
            guarded = gap * (1 + GUARD_FRACTION) + guard_s
            min_gap = max(min_gap, guarded)
            bound(len(calls) * guarded, f"min interval {name}")
    if calls and math.isfinite(minimum):  # never ask for more spacing than the planned interval gives the calls
        min_gap = max(min_gap, min(window_gap, minimum / len(calls)))
    interval = max(requested_interval_s, minimum)
    return Plan(interval, minimum, calls, binding, valid_until, blocked_until, min_gap)


def _steady(window: Window, period: float, load: _Load) -> float:
    """The shortest interval at which a round's load on one instance stays inside the window, period after
    period: the better of two bounds that each suffice (whole rounds per period, whatever the order of the
    calls; and, for the key's rolling windows, one call every period / floor(limit / largest charge), which
    the schedule's even spacing and minimum gap keep)."""
    candidates = []
    rounds = window.limit // load.total
    if rounds >= 1:
        candidates.append(period / rounds)
    if window.scope in ("key", "endpoint") and window.limit >= load.largest:
        candidates.append(load.calls * period / (window.limit // load.largest))
    if candidates:
        return min(candidates)
    # More charges per round than the window holds: space rounds so the total fits on average (the budget
    # gate in Redis holds the exact line).
    return period * load.total / window.limit
