"""Purger: every PURGE_INTERVAL_S, one retention pass (models/retention.py) in small, spaced batches.

One per worker process, doing the jobs' part where the process runs the jobs role and the readings' part
(roll up, then delete) where it runs the pollers role. Several workers purging at once is harmless: a
deleted row is deleted once, and a rollup is an upsert of the same values.
"""

from __future__ import annotations

import logging
import random

import gevent

from actors.base import Actor
from models.retention import Purge

log = logging.getLogger(__name__)


class Purger(Actor):
    def __init__(self, settings, db, jobs: bool, readings: bool):
        super().__init__()
        self.purge = Purge(db, settings.purge_batch)
        self.interval_s = settings.purge_interval_s
        self.jobs_older_than_s = settings.job_retention_days * 86400 if jobs else None
        self.readings_older_than_s = settings.reading_retention_days * 86400 if readings else None
        self.loop = None

    def on_start(self):
        self.loop = gevent.spawn(self._run)

    def on_stop(self):
        if self.loop is not None:
            self.loop.kill(block=True, timeout=5)

    def _run(self):
        # A first pass soon after start, spread so workers started together do not purge in step.
        gevent.sleep(random.uniform(0.5, 1.0) * min(self.interval_s, 30.0))
        while True:
            try:
                self.pass_once()
            except Exception as exc:  # the database refused: try again next interval
                log.error("purge pass failed: %s", exc)
            gevent.sleep(self.interval_s)

    def pass_once(self):
        if self.jobs_older_than_s is not None:
            jobs, attempts = self.purge.jobs(self.jobs_older_than_s)
            if jobs:
                log.info("purged %d finished jobs and %d attempts in %d batches", jobs, attempts, self.purge.batches)
        if self.readings_older_than_s is not None:
            readings, days = self.purge.readings(self.readings_older_than_s)
            if readings or days:
                log.info("rolled up %d days; purged %d readings in %d batches", days, readings, self.purge.batches)
