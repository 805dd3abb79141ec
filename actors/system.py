"""The one place that starts and stops the actor system of a worker process."""

from __future__ import annotations

import logging
import time

import pykka

from actors.dispatcher import Drain, JobDispatcher, Stats
from actors.purger import Purger
from actors.transport import Transport
from models import jobs, telemetry
from models.db import close_database, open_database
from models.events import BatchedPublisher
from models.net.policy import DestinationPolicy
from models.redis_client import redis_client
from models.schema import ensure_schema

log = logging.getLogger(__name__)

ROLES = ("jobs", "pollers", "all")


class ActorSystem:
    def __init__(self, settings, role: str = "all"):
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.settings = settings
        self.role = role
        self.dispatcher: pykka.ActorRef | None = None
        self.transport: Transport | None = None
        self.stoppers: list = []
        self.metrics_server = None

    def start(self) -> ActorSystem:
        db = open_database(self.settings.database_url)
        ensure_schema(db)
        if self.role in ("jobs", "all"):
            self.transport = Transport(
                DestinationPolicy.from_settings(self.settings),
                body_cap=self.settings.result_body_cap,
                pool_per_host=self.settings.max_in_flight_per_host,
            )
            redis = redis_client()
            self.dispatcher = JobDispatcher.start(
                self.settings, db, self.transport, publisher=BatchedPublisher(redis), wakeups=redis
            )
        if self.role in ("pollers", "all"):
            from actors.metrics import start_metrics_actors

            self.stoppers.append(start_metrics_actors(self.settings, db, redis_client()))
            from actors.alerts import AlertEngine

            AlertEngine.start(self.settings, db, redis_client())
        Purger.start(self.settings, db, jobs=self.role in ("jobs", "all"), readings=self.role in ("pollers", "all"))
        self._serve_metrics(db)
        log.info("actor system up role=%s worker=%s", self.role, self.settings.worker_id)
        return self

    def _serve_metrics(self, db) -> None:
        if not self.settings.metrics_port:
            return
        if self.role in ("jobs", "all"):
            telemetry.register_queue_depth(lambda: db.call(jobs.queue_depth))
        try:
            self.metrics_server = telemetry.serve(self.settings.host, self.settings.metrics_port)
        except OSError as exc:
            # Metrics are not worth stopping deliveries for; the log says why the scrape target is missing.
            log.error(
                "metrics: cannot listen on %s:%d (%s); running without a metrics endpoint",
                self.settings.host,
                self.settings.metrics_port,
                exc.strerror or exc,
            )

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming, let running attempts finish within the grace period, then stop every actor."""
        grace_s = self.settings.shutdown_grace_s if grace_s is None else grace_s
        for stop in self.stoppers:
            try:
                stop()
            except Exception as exc:
                log.error("stopping metrics actors: %s", exc)
        if self.dispatcher is not None:
            try:
                summary = self.dispatcher.ask(Drain(grace_s), timeout=30)
                log.info(
                    "draining: released %d unstarted jobs, waiting for %d running attempts",
                    summary["released"],
                    summary["running"],
                )
                deadline = time.monotonic() + grace_s + 1
                while time.monotonic() < deadline:
                    stats = self.dispatcher.ask(Stats(), timeout=5)
                    if not stats["running"] and not stats["claiming"]:
                        break
                    time.sleep(0.05)
            except (pykka.ActorDeadError, pykka.Timeout) as exc:
                log.error("dispatcher did not drain cleanly: %s", exc)
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        if self.metrics_server is not None:
            self.metrics_server.stop(timeout=1)
        if self.transport is not None:
            self.transport.close()
        close_database()  # opened by start(); closed here, not left to the interpreter's exit
        log.info("actor system stopped")
