"""A connection's quota budget in Redis: every call is charged before it is sent, atomically, against every
window that counts it (models/brands/planner.py `charges`), so the budget survives a worker restart and a
lease handover: a worker restarted at 15:00 continues the day's count instead of starting a fresh one.

- Calendar windows: one hash per window and period, `quota:<connection>:<window>:<period start>`, field =
  the scope's instance ("" for the key, an endpoint, a site, a device), value = calls counted; it expires
  a day after its period ends (relative to the poll clock, which may run ahead of real time).
- Rolling windows: one sorted set per window and instance, `quota-roll:<connection>:<window>:<instance>`,
  a member per unit charged, scored by when; entries older than the (guarded) period are trimmed.
- `quota-state:<connection>`: the last throttling reply (when, why, how many so far) and the pause it set.

Times are the poll clock's epoch seconds (actors/schedule.py), which is real time outside benchmarks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from models.brands.planner import Charge, period_bounds, rolling_period
from models.brands.quota import Quota, Window
from models.channels import quota_calendar, quota_rolling, quota_state

# KEYS: one per charge. ARGV: now, token, then per charge: kind ("c" calendar | "r" rolling), field, limit,
# amount, and the period end (calendar) or period length (rolling) in seconds.
# Answers 0 when charged; else {index of the refusing charge (1-based), seconds until it would pass}.
_CHARGE = """
local now = tonumber(ARGV[1])
local token = ARGV[2]
local n = #KEYS
for i = 1, n do
  local base = 2 + (i - 1) * 5
  local kind, field = ARGV[base + 1], ARGV[base + 2]
  local limit, amount, period = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  if kind == 'c' then
    local used = tonumber(redis.call('HGET', KEYS[i], field) or '0')
    if used + amount > limit then return {i, tostring(period - now)} end
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. tostring(now - period))
    local used = redis.call('ZCARD', KEYS[i])
    if used + amount > limit then
      local nth = redis.call('ZRANGE', KEYS[i], used + amount - limit - 1, used + amount - limit - 1, 'WITHSCORES')
      return {i, tostring(tonumber(nth[2]) + period - now)}
    end
  end
end
for i = 1, n do
  local base = 2 + (i - 1) * 5
  local kind, field = ARGV[base + 1], ARGV[base + 2]
  local amount, period = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  if kind == 'c' then
    redis.call('HINCRBY', KEYS[i], field, amount)
    redis.call('EXPIRE', KEYS[i], math.ceil(period - now) + 86400)
  else
    for j = 1, amount do redis.call('ZADD', KEYS[i], now, token .. ':' .. j) end
    redis.call('EXPIRE', KEYS[i], math.ceil(period) + 1)
  end
end
return 0
"""


@dataclass(frozen=True)
class Refusal:
    window: str  # the window's name
    wait_s: float  # until the window would admit the call


@dataclass(frozen=True)
class WindowUsage:
    name: str
    limit: int
    used: int
    remaining: int
    resets_at: float | None


class QuotaBudget:
    """The budget of one connection under one quota."""

    def __init__(self, redis: redis_lib.Redis, connection_id: str, quota: Quota, guard_s: float = 0.0):
        self.redis = redis
        self.connection_id = connection_id
        self.quota = quota
        self.guard_s = guard_s
        self._script = redis.register_script(_CHARGE)
        self._tokens = 0

    def _key(self, index: int, window: Window, now: float, instance: str) -> tuple[str, str, str, float]:
        """(key, kind, field, period end or length) of one charge."""
        if window.calendar:
            start, end = period_bounds(window, now)
            return quota_calendar(self.connection_id, index, int(start)), "c", instance, end
        return quota_rolling(self.connection_id, index, instance), "r", "", rolling_period(window, self.guard_s)

    def charge(self, charges: Sequence[Charge], now: float, token: str) -> Refusal | None:
        """Charge every window of one call, or none of them: None when charged, else the window that refused."""
        keys: list[str] = []
        args: list[Any] = [repr(now), token]
        for charge in charges:
            window = self.quota.windows[charge.window]
            key, kind, field, period = self._key(charge.window, window, now, charge.instance)
            keys.append(key)
            args += [kind, field, window.limit, charge.amount, repr(period)]
        if not keys:
            return None
        answer = self._script(keys=keys, args=args)
        if answer == 0:
            return None
        index, wait = int(answer[0]), float(answer[1])
        return Refusal(self.quota.windows[charges[index - 1].window].name, max(0.0, wait))

    def calendar_used(self, now: float) -> dict[tuple[int, str], int]:
        """Calls counted in the current period of every calendar window, by (window index, instance)."""
        pipe = self.redis.pipeline(transaction=False)
        indexes = [i for i, w in enumerate(self.quota.windows) if w.calendar]
        for index in indexes:
            pipe.hgetall(
                quota_calendar(self.connection_id, index, int(period_bounds(self.quota.windows[index], now)[0]))
            )
        used: dict[tuple[int, str], int] = {}
        for index, values in zip(indexes, pipe.execute()):
            for field, value in values.items():
                used[(index, _text(field))] = int(value)
        return used

    def usage(self, now: float, instances: Mapping[int, Iterable[str]]) -> list[WindowUsage]:
        """Per window, the busiest instance's use: for GET /connections/<id>. `instances`: per rolling window,
        the instances a round charges (its sites or devices)."""
        calendar = self.calendar_used(now)
        pipe = self.redis.pipeline(transaction=False)
        asked: list[tuple[int, str]] = []
        for index, window in enumerate(self.quota.windows):
            if window.calendar:
                continue
            period = rolling_period(window, self.guard_s)
            for instance in instances.get(index, ()):
                key = quota_rolling(self.connection_id, index, instance)
                pipe.zcount(key, f"({now - period!r}", "+inf")
                pipe.zrangebyscore(key, f"({now - period!r}", "+inf", start=0, num=1, withscores=True)
                asked.append((index, instance))
        answers = pipe.execute()
        rolling: dict[int, tuple[int, float | None]] = defaultdict(lambda: (0, None))
        for n, (index, _instance) in enumerate(asked):
            count, oldest = int(answers[2 * n]), answers[2 * n + 1]
            if count > rolling[index][0]:
                period = rolling_period(self.quota.windows[index], self.guard_s)
                rolling[index] = (count, float(oldest[0][1]) + period if oldest else None)
        out = []
        for index, window in enumerate(self.quota.windows):
            if window.calendar:
                used = max((v for (i, _), v in calendar.items() if i == index), default=0)
                resets_at: float | None = period_bounds(window, now)[1]
            else:
                used, resets_at = rolling[index]
            out.append(WindowUsage(window.name, window.limit, used, max(0, window.limit - used), resets_at))
        return out

    # -- throttling --------------------------------------------------------------------------------
    def record_throttle(self, now: float, reason: str, paused_until: float) -> None:
        key = quota_state(self.connection_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={"throttled_at": repr(now), "throttled_reason": reason[:500], "paused_until": repr(paused_until)},
        )
        pipe.hincrby(key, "throttled_count", 1)
        pipe.expire(key, 31 * 86400)
        pipe.execute()

    def paused_until(self) -> float:
        value = self.redis.hget(quota_state(self.connection_id), "paused_until")
        return float(value) if value is not None else 0.0

    def throttle_record(self) -> dict[str, Any]:
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(quota_state(self.connection_id)).items()}
        if not raw:
            return {"throttled_at": None, "throttled_reason": None, "throttled_count": 0, "paused_until": None}
        return {
            "throttled_at": _number(raw.get("throttled_at")),
            "throttled_reason": raw.get("throttled_reason"),
            "throttled_count": int(raw.get("throttled_count") or 0),
            "paused_until": _number(raw.get("paused_until")),
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
