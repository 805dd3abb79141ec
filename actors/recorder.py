"""Recorder: stores every published reading in the database, losing none across restarts.

Choice: one ingest Stream (`readings:ingest`) that the publish script appends every reading to, read
by the consumer group `recorder` with XREADGROUP. An entry is acknowledged (XACK, then XDEL to keep the
Stream small) only after its batch is committed, so a recorder killed mid-batch leaves its entries
pending; the next recorder (or another worker's) takes them over with XAUTOCLAIM once they have been
idle for RECORDER_CLAIM_IDLE_S. Readings are unique per (inverter, time) in the database, so storing a
redelivered entry again is harmless. A Redis restart (which may drop the group) recreates the group.
The Stream is capped at INGEST_MAXLEN entries as a safety valve if no recorder runs for a long time.
"""

from __future__ import annotations

import json
import logging
import time

import gevent
import redis as redis_lib

from actors.base import Actor
from models import inverters, telemetry
from models.backoff import REDIS_UNREACHABLE_BACKOFF, Backoff
from models.channels import READINGS_INGEST, RECORDER_GROUP

log = logging.getLogger(__name__)

BLOCK_MS = 1000
# Pauses after consecutive failures, jittered: REDIS_UNREACHABLE_BACKOFF while Redis is unreachable,
# this one (un-jittered, 0.4 s doubling to 5 s) after Redis or the database refused.
REFUSED_BACKOFF = Backoff(base_s=0.4, cap_s=5.0, jitter="equal")


class Recorder(Actor):
    def __init__(self, settings, db, redis):
        super().__init__()
        self.db = db
        self.redis = redis
        self.batch = settings.recorder_batch
        self.consumer = settings.worker_id
        self.claim_idle_ms = int(settings.recorder_claim_idle_s * 1000)
        self.claim_every_s = min(5.0, settings.recorder_claim_idle_s)
        self.stored = 0
        self.loop = None

    def on_start(self):
        self.loop = gevent.spawn(self._run)
        log.info("recorder started consumer=%s stream=%s group=%s", self.consumer, READINGS_INGEST, RECORDER_GROUP)

    def on_stop(self):
        if self.loop is not None:
            self.loop.kill(block=True, timeout=5)
        log.info("recorder stopped after storing %d readings", self.stored)

    # -- the loop (a greenlet of this actor; it only blocks on Redis and the database owner) ----------
    def _run(self):
        failures = 0
        group_ready = False
        next_claim = 0.0
        while True:
            try:
                if not group_ready:
                    self._ensure_group()
                    group_ready = True
                entries = []
                if time.monotonic() >= next_claim:
                    entries = self._claim_stale()
                    next_claim = time.monotonic() + self.claim_every_s
                if not entries:
                    reply = self.redis.xreadgroup(
                        RECORDER_GROUP, self.consumer, {READINGS_INGEST: ">"}, count=self.batch, block=BLOCK_MS
                    )
                    entries = reply[0][1] if reply else []
                if entries:
                    self._store(entries)
                else:
                    telemetry.RECORDER_LAG.set(0)
                if failures:
                    log.info("recorder reading again after %d failures", failures)
                failures = 0
            except redis_lib.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    group_ready = False  # Redis restarted without its data: make the group again
                    continue
                failures += 1
                log.error("recorder: Redis refused a command: %s", exc)
                gevent.sleep(REFUSED_BACKOFF.delay(failures))
            except (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError) as exc:
                failures += 1
                group_ready = False
                if failures == 1 or failures % 20 == 0:
                    log.warning("recorder cannot reach Redis (%s); retrying", exc)
                gevent.sleep(REDIS_UNREACHABLE_BACKOFF.delay(failures))
            except Exception as exc:  # the database refused a batch: keep it pending and try again
                failures += 1
                log.error("recorder could not store a batch: %s", exc)
                gevent.sleep(REFUSED_BACKOFF.delay(failures))

    def _ensure_group(self):
        try:
            # From id 0, so readings appended before the group existed are stored too.
            self.redis.xgroup_create(READINGS_INGEST, RECORDER_GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _claim_stale(self) -> list:
        """Entries another (dead) consumer read but never acknowledged."""
        reply = self.redis.xautoclaim(
            READINGS_INGEST,
            RECORDER_GROUP,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=self.batch,
        )
        return [entry for entry in reply[1] if entry[1]] if reply else []

    def _store(self, entries: list):
        rows, ids = [], []
        for entry_id, fields in entries:
            ids.append(entry_id)
            try:
                rows.append(
                    {
                        "inverter_id": fields["inverter_id"],
                        "time": float(fields["time"]),
                        "event_id": fields.get("event_id"),
                        "data": json.loads(fields["data"]),
                    }
                )
            except (KeyError, ValueError) as exc:
                log.error("recorder skipping unreadable ingest entry %s: %s", entry_id, exc)
        if rows:
            self.db.write(inverters.store_readings, rows)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(READINGS_INGEST, RECORDER_GROUP, *ids)
        pipe.xdel(READINGS_INGEST, *ids)
        pipe.execute()
        self.stored += len(rows)
        telemetry.READINGS_RECORDED.inc(len(rows))
        # An ingest entry's id starts with the millisecond Redis appended it: how far behind we are.
        telemetry.RECORDER_LAG.set(max(0.0, time.time() - int(ids[0].split("-", 1)[0]) / 1000))
        log.debug("recorder stored %d readings", len(rows))
