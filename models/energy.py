"""Energy rollups: hourly and daily energy and power statistics per inverter, in its local time.

Raw readings are kept for READING_RETENTION_DAYS; their rollups are kept for good. The computation is
a pure function of readings, bucket bounds and the zone (`rollup`); the table and its queries sit below.

Energy is the trapezoid integral of each power between consecutive readings no further apart than
`max_gap_s` (a longer gap counts as no data, not as a straight line across it); a segment that crosses
a bucket boundary is split there by linear interpolation, so a day's energy is exactly the sum of its
hours. Buckets follow the inverter's wall clock: a day runs from local midnight to the next (23 or 25
hours on DST days), an hour from one local whole hour to the next (so in Asia/Kolkata hours start at
:30 UTC). A zone-less inverter counts in UTC.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime, timedelta
from datetime import time as Time
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import peewee

from models.base import BaseModel, JSONField, json_text, now
from models.db import database, sql
from models.inverters import Inverter, Reading

HOUR = "hour"
DAY = "day"
PERIODS = (HOUR, DAY)

# Energy quantity -> how its power (W) is read from a normalised reading.
QUANTITIES = {
    "pv": lambda d: d.get("pv_power_w"),
    "load": lambda d: d.get("load_power_w"),
    "import": lambda d: d.get("grid_import_w"),
    "export": lambda d: d.get("grid_export_w"),
    "charge": lambda d: None if d.get("battery_power_w") is None else max(d["battery_power_w"], 0.0),
    "discharge": lambda d: None if d.get("battery_power_w") is None else max(-d["battery_power_w"], 0.0),
}
# Powers whose min/max/avg each bucket keeps (battery signed: + charging).
POWER_FIELDS = ("pv_power_w", "ac_power_w", "load_power_w", "grid_import_w", "grid_export_w", "battery_power_w")
MAX_GAP_S = 15 * 60  # three times the brands' five-minute poll interval


def zone_of(name: str | None):
    if not name:
        return dt_timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt_timezone.utc


# -- bucket bounds -------------------------------------------------------------------------------
def local_midnight(day: Date, zone) -> float:
    """The first instant of `day` on the zone's wall clock, as epoch seconds."""
    return datetime.combine(day, Time(0), tzinfo=zone).timestamp()


def day_bounds(day: Date, zone) -> tuple[float, float]:
    return local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)


def local_date(ts: float, zone) -> Date:
    return datetime.fromtimestamp(ts, zone).date()


def hour_starts(start: float, end: float, zone) -> list[float]:
    """Every instant in [start, end) where the local clock shows a whole hour, plus `start` itself.

    Scanned in quarter hours because every zone's offset is a multiple of 15 minutes.
    """
    starts = [start]
    t = start - start % 900 + 900
    while t < end:
        if datetime.fromtimestamp(t, zone).minute == 0:
            starts.append(t)
        t += 900
    return starts


def bucket_bounds(period: str, first_day: Date, last_day: Date, zone) -> list[tuple[float, float]]:
    """(start, end) of every bucket of `period` in the local days first_day..last_day, in order."""
    bounds = []
    day = first_day
    while day <= last_day:
        start, end = day_bounds(day, zone)
        if period == DAY:
            bounds.append((start, end))
        else:
            starts = hour_starts(start, end, zone)
            bounds.extend(zip(starts, starts[1:] + [end]))
        day += timedelta(days=1)
    return bounds


# -- the computation -----------------------------------------------------------------------------
@dataclass
class Bucket:
    start: float
    end: float
    energy_wh: dict = field(default_factory=lambda: {q: 0.0 for q in QUANTITIES})
    samples: int = 0
    power: dict = field(default_factory=dict)  # field -> [min, max, sum, count]

    def add_sample(self, data: dict) -> None:
        self.samples += 1
        for name in POWER_FIELDS:
            value = data.get(name)
            if not isinstance(value, (int, float)):
                continue
            stats = self.power.get(name)
            if stats is None:
                self.power[name] = [value, value, value, 1]
            else:
                stats[0], stats[1] = min(stats[0], value), max(stats[1], value)
                stats[2] += value
                stats[3] += 1

    def power_stats(self) -> dict:
        return {
            name: {"min": mn, "max": mx, "avg": total / count} for name, (mn, mx, total, count) in self.power.items()
        }


def _powers(data: dict) -> dict:
    values = {}
    for quantity, read in QUANTITIES.items():
        value = read(data)
        values[quantity] = float(value) if isinstance(value, (int, float)) else None
    return values


def rollup(
    readings: list[tuple[float, dict]], bounds: list[tuple[float, float]], max_gap_s: float = MAX_GAP_S
) -> list[Bucket]:
    """Energy and power statistics per bucket from readings [(time, data)] sorted by time.

    `bounds` are contiguous, ordered (start, end) pairs. Readings just outside them (within max_gap_s)
    count for the part of their segment that falls inside.
    """
    buckets = [Bucket(start, end) for start, end in bounds]
    if not buckets:
        return buckets
    starts = [b.start for b in buckets]
    first, last = buckets[0].start, buckets[-1].end

    def index_of(t: float) -> int:
        return bisect_right(starts, t) - 1

    previous = None
    for t, data in readings:
        if first <= t < last:
            buckets[index_of(t)].add_sample(data)
        powers = _powers(data)
        if previous is not None:
            t0, p0 = previous
            if 0 < t - t0 <= max_gap_s and t > first and t0 < last:
                _integrate(buckets, index_of, t0, p0, t, powers, first, last)
        previous = (t, powers)
    return buckets


def _integrate(buckets, index_of, t0, p0, t1, p1, first, last) -> None:
    span = t1 - t0
    a = max(t0, first)
    while a < min(t1, last):
        i = index_of(a)
        b = min(t1, buckets[i].end)
        fa, fb = (a - t0) / span, (b - t0) / span
        for quantity, v0 in p0.items():
            v1 = p1[quantity]
            if v0 is None or v1 is None:
                continue
            pa, pb = v0 + (v1 - v0) * fa, v0 + (v1 - v0) * fb
            buckets[i].energy_wh[quantity] += (pa + pb) / 2 * (b - a) / 3600
        a = b


# -- the table -----------------------------------------------------------------------------------
class EnergyRollup(BaseModel):
    inverter = peewee.ForeignKeyField(Inverter, backref="rollups", on_delete="CASCADE", index=False)
    period = peewee.CharField(max_length=4)
    bucket_start = peewee.DoubleField()  # UTC epoch seconds
    bucket_end = peewee.DoubleField()
    local_start = peewee.CharField(max_length=32)  # the wall-clock start with its offset, ISO-8601
    samples = peewee.IntegerField()
    pv_wh = peewee.DoubleField()
    load_wh = peewee.DoubleField()
    import_wh = peewee.DoubleField()
    export_wh = peewee.DoubleField()
    charge_wh = peewee.DoubleField()
    discharge_wh = peewee.DoubleField()
    power = JSONField()  # {field: {min, max, avg}}
    computed_at = peewee.DoubleField(default=now)

    class Meta:
        indexes = ((("inverter", "period", "bucket_start"), True),)


def local_label(ts: float, zone) -> str:
    return datetime.fromtimestamp(ts, zone).isoformat(timespec="minutes")


def bucket_view(period: str, bucket: Bucket, zone) -> dict:
    return {
        "period": period,
        "start": bucket.start,
        "end": bucket.end,
        "local_start": local_label(bucket.start, zone),
        "samples": bucket.samples,
        **{f"{q}_wh": bucket.energy_wh[q] for q in QUANTITIES},
        "power": bucket.power_stats(),
    }


_READINGS = "SELECT time, data FROM reading WHERE inverter_id = ? AND time >= ? AND time < ? ORDER BY time"


def _readings(inverter_id: str, start: float, end: float) -> list[tuple[float, dict]]:
    rows = database.execute_sql(sql(_READINGS), (inverter_id, start, end)).fetchall()
    return [(t, json.loads(data)) for t, data in rows]


def compute(
    inverter_id: str, zone, period: str, first_day: Date, last_day: Date, fetch: Callable = lambda fn, *args: fn(*args)
) -> list[dict]:
    """Buckets with data of `period` over local days first_day..last_day, from the raw readings.

    `fetch` runs the query (a caller off the owner thread passes owner.call, so the arithmetic does
    not hold the database owner).
    """
    bounds = bucket_bounds(period, first_day, last_day, zone)
    readings = fetch(_readings, inverter_id, bounds[0][0] - MAX_GAP_S, bounds[-1][1] + MAX_GAP_S)
    return [bucket_view(period, b, zone) for b in rollup(readings, bounds) if b.samples]


_READINGS_SEEN = (
    "SELECT COUNT(*), MAX(time), SUM(CASE WHEN time <= ? THEN 1 ELSE 0 END), MAX(CASE WHEN time <= ? THEN time END)"
    " FROM reading WHERE inverter_id = ? AND time >= ? AND time < ?"
)


def _readings_seen(inverter_id: str, start: float, end: float, newest: float) -> tuple:
    """(count, newest time) of the readings in [start, end), then the same of those no newer than `newest`."""
    return tuple(database.execute_sql(sql(_READINGS_SEEN), (newest, newest, inverter_id, start, end)).fetchone())


@dataclass
class _LiveDays:
    """The buckets `compute` gave for some days, and which readings they were computed from."""

    views: list[dict]
    readings: int  # how many readings the computation read
    newest: float  # the newest of them


class LiveBuckets:
    """`compute` for the days not rolled up yet, kept between requests and brought up to date incrementally.

    Readings arrive newest last, and a reading newer than all before it only adds the segment from the
    previous newest reading onward, so every bucket ending at or before that reading stands. When the
    readings the kept buckets were computed from are still exactly there (same count up to the same newest
    time: readings are only inserted, never changed), only the buckets ending after it are computed again,
    from the readings since their start; otherwise (a late reading, a purge) the days are computed afresh.
    When nothing arrived at all, the kept buckets are the answer: one counting query.

    An hourly bucket takes about 2.8 KB, so an entry (an inverter's period over two or three days) up to
    about 200 KB; the least recently used entries beyond `max_entries` are dropped.
    """

    def __init__(self, max_entries: int = 256):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, _LiveDays] = OrderedDict()

    def compute(
        self, inverter_id: str, zone, period: str, first_day: Date, last_day: Date, fetch: Callable
    ) -> list[dict]:
        key = (inverter_id, zone, period, first_day, last_day)
        bounds = bucket_bounds(period, first_day, last_day, zone)
        low, high = bounds[0][0] - MAX_GAP_S, bounds[-1][1] + MAX_GAP_S
        kept = self._entries.get(key)
        seen = None if kept is None else fetch(_readings_seen, inverter_id, low, high, kept.newest)
        if kept is not None and seen[:2] == (kept.readings, kept.newest):
            self._entries.move_to_end(key)
            return list(kept.views)
        if kept is not None and seen[2:] == (kept.readings, kept.newest):
            views = [v for v in kept.views if v["end"] <= kept.newest]
            redo = [b for b in bounds if b[1] > kept.newest]
            readings = fetch(_readings, inverter_id, max(low, redo[0][0] - MAX_GAP_S), high) if redo else []
            newer = [t for t, _ in readings if t > kept.newest]
            views += [bucket_view(period, b, zone) for b in rollup(readings, redo) if b.samples]
            entry = _LiveDays(views, kept.readings + len(newer), max(newer, default=kept.newest))
        else:
            readings = fetch(_readings, inverter_id, low, high)
            views = [bucket_view(period, b, zone) for b in rollup(readings, bounds) if b.samples]
            entry = _LiveDays(views, len(readings), readings[-1][0]) if readings else None
        if entry is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return list(views)


live_buckets = LiveBuckets()  # per process: each web process keeps the days its requests asked for


_UPSERT_COLUMNS = (
    "inverter_id",
    "period",
    "bucket_start",
    "bucket_end",
    "local_start",
    "samples",
    "pv_wh",
    "load_wh",
    "import_wh",
    "export_wh",
    "charge_wh",
    "discharge_wh",
    "power",
    "computed_at",
)
_UPSERT = (
    f"INSERT INTO energy_rollup ({', '.join(_UPSERT_COLUMNS)}) VALUES ({', '.join('?' * len(_UPSERT_COLUMNS))})"
    " ON CONFLICT (inverter_id, period, bucket_start) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _UPSERT_COLUMNS[3:])
)


def store_day(inverter_id: str, zone, day: Date) -> int:
    """Recompute the local day `day` and its hours from the raw readings and upsert them; returns rows written.

    Idempotent: rolling a day up twice stores the same rows.
    """
    t = now()
    rows = []
    for period in PERIODS:
        for view in compute(inverter_id, zone, period, day, day):
            rows.append(
                (
                    inverter_id,
                    period,
                    view["start"],
                    view["end"],
                    view["local_start"],
                    view["samples"],
                    *(view[f"{q}_wh"] for q in QUANTITIES),
                    json_text(view["power"]),
                    t,
                )
            )
    if rows:
        database.cursor().executemany(sql(_UPSERT), rows)
    return len(rows)


_ROLLED_UP_UNTIL = "SELECT MAX(bucket_end) FROM energy_rollup WHERE inverter_id = ? AND period = ?"


def rolled_up_until(inverter_id: str) -> float | None:
    """End of the newest stored day rollup: readings before it are safe to delete."""
    return database.execute_sql(sql(_ROLLED_UP_UNTIL), (inverter_id, DAY)).fetchone()[0]


def first_reading_since(inverter_id: str, since: float | None) -> float | None:
    query = Reading.select(peewee.fn.MIN(Reading.time)).where(Reading.inverter == inverter_id)
    return (query if since is None else query.where(Reading.time >= since)).scalar()


_STORED = (
    "SELECT period, bucket_start, bucket_end, local_start, samples, "
    + ", ".join(f"{q}_wh" for q in QUANTITIES)
    + ", power FROM energy_rollup WHERE inverter_id = ? AND period = ? AND bucket_start >= ? AND bucket_start < ?"
    " ORDER BY bucket_start LIMIT ?"
)
_STORED_KEYS = ("period", "start", "end", "local_start", "samples", *(f"{q}_wh" for q in QUANTITIES))


def stored(inverter_id: str, period: str, since: float, until: float, limit: int) -> list[dict]:
    # Plain rows, not model instances: a month of hours is 721 rows and building models cost most of its time.
    rows = database.execute_sql(sql(_STORED), (inverter_id, period, since, until, limit)).fetchall()
    # One decode of all the rows' power texts: a fifth quicker than one per row, and decoding is most of this.
    powers = json.loads("[" + ",".join(row[-1] for row in rows) + "]")
    return [{**dict(zip(_STORED_KEYS, row)), "power": power} for row, power in zip(rows, powers)]


# Buckets not rolled up yet are computed from raw readings on request, over at most this many local
# days back from now: normally only yesterday (until it settles) and today are not rolled up.
LIVE_DAYS = 2


def buckets_between(
    fetch: Callable, inverter_id: str, zone, period: str, since: float, until: float, at: float, limit: int
) -> list[dict]:
    """Buckets of `period` starting in [since, until), oldest first, at most `limit`: the stored rollups,
    then the days after them computed from raw readings (the current one with `complete` false), kept
    between requests by `live_buckets`."""
    buckets = [{**row, "complete": True} for row in fetch(stored, inverter_id, period, since, until, limit)]
    watermark = fetch(rolled_up_until, inverter_id)
    live_from = max(since, watermark if watermark is not None else since, at - LIVE_DAYS * 86400)
    live_until = min(until, at)
    if live_from < live_until and len(buckets) < limit:
        for view in live_buckets.compute(
            inverter_id, zone, period, local_date(live_from, zone), local_date(live_until, zone), fetch
        ):
            if (
                live_from <= view["end"]
                and since <= view["start"] < live_until
                and (watermark is None or view["start"] >= watermark)
            ):
                buckets.append({**view, "complete": view["end"] <= at})
    return buckets[:limit]
