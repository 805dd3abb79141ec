"""The poll schedule of one connection: which calls are due now and when the next one is. Pure and
clock-injected: every method takes `now` (the poll clock's epoch seconds), nothing sleeps or does I/O, so
tests drive it with a fake clock. The BrandPoller asks it and does the I/O.

A plan's calls (models/brands/planner.py) are spread evenly over its interval; a call is next due one
interval after its answer came back, so no device is asked sooner than the plan allows: the brand counts a
call when it arrives, which may be any time between our send and its answer, and a slow answer followed by
a quick one would otherwise land two calls closer than the interval (the planner's clock-jitter guard is
no bound on a slow answer). Consecutive sends are at
least `plan.min_gap_s` apart (the key's rolling windows and the endpoint's documented minimum gap), and at
most `concurrency` calls are in flight. A new inverter gets one call of its own at once (its owner sees data
at once); its place in the plan comes one interval after that. A throttling reply pauses everything until
a given time; a spent calendar budget blocks sends until the period resets.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from models.brands.clock import Clock, ScaledClock, WallClock, clock_from_settings
from models.brands.planner import Plan, PlanCall

__all__ = ["Clock", "Entry", "PollSchedule", "ScaledClock", "WallClock", "clock_from_settings"]


@dataclass(eq=False)
class Entry:
    call: PlanCall
    due: float | None  # None while in flight
    urgent: bool = False  # a new inverter's first poll: sent once, not rescheduled
    id: int = field(default=0)


class PollSchedule:
    def __init__(self, plan: Plan, now: float, last_sent: Mapping[str, float] | None = None, concurrency: int = 16):
        self.concurrency = max(1, concurrency)
        self.plan = plan
        self.entries: dict[int, Entry] = {}
        self.heap: list[tuple[float, int]] = []
        self.ids = itertools.count(1)
        self.in_flight = 0
        self.next_send_at = 0.0
        self.paused_until = 0.0
        self.last_sent: dict[str, float] = dict(last_sent or {})
        self._place(plan.calls, now, spread=True)

    # -- the plan -------------------------------------------------------------------------------
    def replan(self, plan: Plan, now: float, new_devices: Iterable[str] = ()) -> None:
        """Switch to a new plan (the fleet, the interval or the budget changed). Devices keep their rhythm
        (next due one new interval after they were last sent); `new_devices` are polled once at once."""
        new = set(new_devices)
        in_flight = {d for e in self.entries.values() if e.due is None for d in e.call.devices}
        self.entries = {i: e for i, e in self.entries.items() if e.due is None}  # in flight: finish, then drop
        for entry in self.entries.values():
            entry.urgent = True  # not rescheduled when it comes back: its devices are in the new plan's calls
        self.heap = []
        self.plan = plan
        for device in sorted(new):
            self._push(Entry(first_call(plan, device), now, urgent=True))
        self._place(plan.calls, now, spread=False, fresh=new | in_flight)

    def _place(self, calls: Iterable[PlanCall], now: float, spread: bool, fresh: set[str] | None = None) -> None:
        """Give each call its due time: one interval after its devices were last sent (a lease taken over, a
        re-plan), one interval after now for a call with a new device (it has its own call now), otherwise
        a slot spreading the calls evenly over the interval."""
        calls = list(calls)
        interval = self.plan.interval_s
        for n, call in enumerate(calls):
            known = [self.last_sent[d] for d in call.devices if d in self.last_sent]
            if fresh and any(d in fresh for d in call.devices):
                due = now + interval
            elif known and (len(known) == len(call.devices) or not spread):
                due = max(now, max(known) + interval)
            else:
                due = now + interval * n / len(calls)
            self._push(Entry(call, due))

    def _push(self, entry: Entry) -> None:
        entry.id = next(self.ids)
        self.entries[entry.id] = entry
        assert entry.due is not None
        heapq.heappush(self.heap, (entry.due, entry.id))

    # -- asking -----------------------------------------------------------------------------------
    def _earliest(self) -> tuple[float, Entry] | None:
        while self.heap:
            due, entry_id = self.heap[0]
            entry = self.entries.get(entry_id)
            if entry is None or entry.due != due:
                heapq.heappop(self.heap)  # stale: replaced, in flight, or rescheduled
                continue
            return due, entry
        return None

    def next_at(self) -> float | None:
        """When the next call may leave (None: nothing to do until a call comes back)."""
        if self.in_flight >= self.concurrency:
            return None
        head = self._earliest()
        if head is None:
            return None
        return max(head[0], self.paused_until, self.next_send_at, self.plan.blocked_until or 0.0)

    def due(self, now: float) -> list[Entry]:
        """The calls to send now, marked in flight; the caller reports each back with `finished` or `deferred`."""
        out: list[Entry] = []
        while True:
            at = self.next_at()
            if at is None or at > now:
                return out
            head = self._earliest()
            assert head is not None
            _, entry = head
            heapq.heappop(self.heap)
            entry.due = None
            self.in_flight += 1
            self.next_send_at = now + self.plan.min_gap_s
            out.append(entry)

    # -- answers ----------------------------------------------------------------------------------
    def finished(self, entry: Entry, sent_at: float, answered_at: float) -> None:
        """The call was sent at `sent_at` and its answer came back at `answered_at` (whatever its outcome)."""
        self.in_flight = max(0, self.in_flight - 1)
        for device in entry.call.devices:
            self.last_sent[device] = max(self.last_sent.get(device, answered_at), answered_at)
        if entry.urgent or self.entries.get(entry.id) is not entry:
            self.entries.pop(entry.id, None)
            # A first poll, or a call of the plan before: its devices' calls in the plan wait a whole interval
            # from this answer too.
            self._not_before(entry.call.devices, max(sent_at, answered_at) + self.plan.interval_s)
            return
        entry.due = max(sent_at, answered_at) + self.plan.interval_s
        heapq.heappush(self.heap, (entry.due, entry.id))

    def _not_before(self, devices: Iterable[str], at: float) -> None:
        devices = set(devices)
        for other in self.entries.values():
            if other.due is not None and other.due < at and devices.intersection(other.call.devices):
                other.due = at
                heapq.heappush(self.heap, (at, other.id))

    def deferred(self, entry: Entry, until: float) -> None:
        """The call was not sent (the budget refused it, or it had nothing to send): due again at `until`."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.entries.get(entry.id) is not entry:
            return
        entry.due = until
        heapq.heappush(self.heap, (until, entry.id))

    def pause(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)


def first_call(plan: Plan, device: str) -> PlanCall:
    """A new device's call of its own, charged as its call in the plan would be: the same batch key (a window
    per device type) and requests, and its site when that call carries one site only."""
    home = next((c for c in plan.calls if device in c.devices), None)
    if home is None:
        return PlanCall((device,), ("",), False)
    return PlanCall((device,), home.sites if len(home.sites) == 1 else ("",), False, home.batch, home.requests)
