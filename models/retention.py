"""Retention: delete finished jobs and old raw readings in small batches, rolling readings up first.

Why small batches: every query of a process runs on its one database owner thread (models/db.py), so a
statement deleting a million rows would hold up every claim and insert behind it for seconds. Each
batch here is one short write transaction of at most `batch` rows; between batches the purge rests for
a multiple of the time the batch took, so claims and inserts queued meanwhile run first and the purge
takes a bounded share of the owner.

Jobs: terminal ones (succeeded, dead, cancelled) whose last change (`updated_at`, the finish time) is
older than the retention go with their attempts. Pending, retrying and in-flight jobs are never touched.

Readings: each inverter's complete local days are rolled up (models/energy.py) once they are an hour
old; raw readings go once they are older than the retention *and* their day has been rolled up. The
rollups are kept.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import gevent

from models import energy
from models.base import now
from models.db import DatabaseOwner, checkpoint_wal, database, is_sqlite, sql
from models.inverters import Inverter
from models.jobs import TERMINAL

log = logging.getLogger(__name__)

# A complete day is rolled up only this long after its end: readings reach the database through the
# ingest Stream, normally within seconds; an hour also covers a recorder restart.
ROLLUP_SETTLE_S = 3600.0
# Rest this many times as long as the last batch took before the next: the purge then takes at most
# about a tenth of the database owner, and a claim arriving meanwhile waits for one batch at most.
REST_FACTOR = 9.0
MIN_REST_S = 0.01

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '30d' to seconds; ValueError otherwise."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 12h or 30d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


# Literals, not parameters: only then can the planners (SQLite's and PostgreSQL's) see that the query
# implies the partial index job_finished's condition and walk it instead of scanning every job.
TERMINAL_LITERALS = ", ".join(f"'{status}'" for status in TERMINAL)


# -- one batch each (run through DatabaseOwner.write) -----------------------------------------------
def purge_jobs_batch(finished_before: float, limit: int) -> tuple[int, int]:
    """Delete up to `limit` terminal jobs finished before the cutoff, with their attempts: (jobs, attempts)."""
    lock = "" if is_sqlite() else " FOR UPDATE SKIP LOCKED"  # never wait for a job a worker is changing
    ids = [
        row[0]
        for row in database.execute_sql(
            sql(
                f"SELECT id FROM job WHERE status IN ({TERMINAL_LITERALS}) AND updated_at < ?"
                f" ORDER BY updated_at LIMIT ?{lock}"
            ),
            (finished_before, limit),
        ).fetchall()
    ]
    if not ids:
        return 0, 0
    marks = ", ".join("?" * len(ids))
    attempts = database.execute_sql(sql(f"DELETE FROM attempt WHERE job_id IN ({marks})"), ids).rowcount
    jobs = database.execute_sql(sql(f"DELETE FROM job WHERE id IN ({marks})"), ids).rowcount
    return jobs, attempts


def purge_readings_batch(inverter_id: str, before: float, limit: int) -> int:
    """Delete up to `limit` of an inverter's oldest readings older than `before`; returns how many."""
    return database.execute_sql(
        sql(
            "DELETE FROM reading WHERE id IN (SELECT id FROM reading WHERE inverter_id = ? AND time < ?"
            " ORDER BY time LIMIT ?)"
        ),
        (inverter_id, before, limit),
    ).rowcount


def _inverters() -> list[tuple[str, str | None]]:
    return [(i.id, i.timezone) for i in Inverter.select(Inverter.id, Inverter.timezone).order_by(Inverter.id)]


# -- a whole pass ----------------------------------------------------------------------------------
class Purge:
    """One pass of retention work through a database owner, resting between batches."""

    def __init__(
        self,
        owner: DatabaseOwner,
        batch: int = 1000,
        rest: Callable[[float], None] = gevent.sleep,
        rest_factor: float = REST_FACTOR,
        checkpoint: bool | None = None,
    ):
        self.owner = owner
        self.batch = batch
        self.rest = rest
        self.rest_factor = rest_factor
        self.batches = 0  # delete statements of the last jobs() or readings() call
        self.checkpoint = is_sqlite(owner.db) if checkpoint is None else checkpoint

    def _timed_write(self, fn, *args):
        started = time.perf_counter()
        try:
            result = self.owner.write(fn, *args)
            if self.checkpoint:
                # In the purge's own time: left to SQLite (or the owner's next interval), the pages a purge
                # dirtied would be written back during whichever commit comes next, often a claim's.
                self.owner.call(checkpoint_wal)
            return result
        finally:
            self.rest(max(MIN_REST_S, (time.perf_counter() - started) * self.rest_factor) if self.rest_factor else 0)

    def jobs(self, older_than_s: float) -> tuple[int, int]:
        cutoff = now() - older_than_s
        jobs = attempts = self.batches = 0
        while True:
            self.batches += 1
            deleted, their_attempts = self._timed_write(purge_jobs_batch, cutoff, self.batch)
            jobs, attempts = jobs + deleted, attempts + their_attempts
            if deleted < self.batch:
                return jobs, attempts

    def roll_up(self, inverter_id: str, zone, settled_before: float) -> int:
        """Roll up each complete local day after the last one rolled up, ending before `settled_before`."""
        days = 0
        watermark = self.owner.call(energy.rolled_up_until, inverter_id)
        while True:
            first = self.owner.call(energy.first_reading_since, inverter_id, watermark)
            if first is None:
                return days
            day = energy.local_date(first, zone)
            _, end = energy.day_bounds(day, zone)
            if end > settled_before:
                return days
            self._timed_write(energy.store_day, inverter_id, zone, day)
            days += 1
            watermark = end

    def readings(self, older_than_s: float) -> tuple[int, int]:
        """Roll up then delete old readings of every inverter: (readings deleted, days rolled up)."""
        t = now()
        deleted = days = self.batches = 0
        for inverter_id, zone_name in self.owner.call(_inverters):
            days += self.roll_up(inverter_id, energy.zone_of(zone_name), t - ROLLUP_SETTLE_S)
            rolled_until = self.owner.call(energy.rolled_up_until, inverter_id)
            if rolled_until is None:
                continue
            # Keep the readings just before the rollup's end: the next day's first segment starts there.
            before = min(t - older_than_s, rolled_until - energy.MAX_GAP_S)
            while True:
                self.batches += 1
                count = self._timed_write(purge_readings_batch, inverter_id, before, self.batch)
                deleted += count
                if count < self.batch:
                    break
        return deleted, days
