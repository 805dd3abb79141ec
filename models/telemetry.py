"""Prometheus metrics: every family the service exposes, declared once, and how a process serves them.

Each process keeps its own registry (the default one) and exposes it itself: the web process at
`GET /metrics`, the worker on `METRICS_PORT`. Several processes of one kind are scraped one by one
(one target each); Prometheus sums them. Labels never carry ids, accounts or URLs: only bounded sets
(an outcome, a brand, a route template, a status class).

A family is registered in every process that imports this module, so a process shows the families
it does not update as zero (or without samples): harmless, and it keeps dashboards' queries simple.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)

P = "solar_relay_"

# Latency buckets from a millisecond to a minute: first attempts are milliseconds, retries wait seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# -- jobs ---------------------------------------------------------------------------------------------
JOBS_SUBMITTED = Counter(P + "jobs_submitted", "Jobs accepted by POST /jobs and POST /jobs/batch (web)")
JOB_ATTEMPTS = Counter(P + "job_attempts", "Attempts finished, by outcome (worker)", ["outcome"])
JOB_ATTEMPT_DURATION = Histogram(
    P + "job_attempt_duration_seconds",
    "From sending an attempt's request to its outcome (worker)",
    buckets=LATENCY_BUCKETS,
)
JOB_FIRST_ATTEMPT_DELAY = Histogram(
    P + "job_first_attempt_delay_seconds",
    "From a job's due time (its submission, or run_at) to its first attempt's start (worker)",
    buckets=LATENCY_BUCKETS,
)
JOB_RETRY_LATENESS = Histogram(
    P + "job_retry_lateness_seconds", "A retry's start minus its next_attempt_at (worker)", buckets=LATENCY_BUCKETS
)
JOBS_DEAD = Counter(P + "jobs_dead", "Jobs that ended dead (worker)")
JOB_OUTCOME_WRITES = Counter(
    P + "job_outcome_writes",
    "Writes of attempts' outcomes, one transaction each (worker): job_attempts over it is the outcomes a write carried",
)

# -- streams ------------------------------------------------------------------------------------------
SSE_CLIENTS = Gauge(P + "sse_clients", "Open Server-Sent-Events streams (web)")
SSE_EVENTS_SENT = Counter(P + "sse_events_sent", "Events written to SSE streams (web)")
SSE_CLIENTS_DROPPED = Counter(P + "sse_clients_dropped", "Streams closed by the server, by reason (web)", ["reason"])

# -- pollers ------------------------------------------------------------------------------------------
BRAND_REQUESTS = Counter(
    P + "brand_requests", "Calls to brand APIs, by brand and outcome (worker)", ["brand", "outcome"]
)
BRAND_RATE_LIMITED = Counter(P + "brand_rate_limited", "Brand replies that said we call too often (worker)", ["brand"])
QUOTA_DEFERRED = Counter(
    P + "quota_deferred", "Calls held back because a quota window in Redis was full (worker)", ["brand"]
)
POLL_LAG = Histogram(
    P + "poll_lag_seconds", "A poll's start minus its planned time (worker)", ["brand"], buckets=LATENCY_BUCKETS
)
READINGS_PUBLISHED = Counter(P + "readings_published", "Normalised readings published on Redis (worker)")
READINGS_RECORDED = Counter(P + "readings_recorded", "Readings stored in the database by the recorder (worker)")
RECORDER_LAG = Gauge(
    P + "recorder_lag_seconds", "Age of the newest reading the recorder stored, when it stored it (worker)"
)
ALERT_ENGINE_EVENTS = Counter(P + "alert_engine_events", "Inverter events the alert engine evaluated (worker)")
ALERT_ENGINE_LAG = Gauge(
    P + "alert_engine_lag_seconds", "How long the last event the alert engine handled waited in its queue (worker)"
)
ALERT_ENGINE_QUEUE = Gauge(P + "alert_engine_queue", "Events waiting in the alert engine's queue (worker)")
ALERTS_CHANGED = Counter(P + "alerts", "Alert episodes opened and cleared (worker)", ["phase"])

# -- HTTP (web) ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    P + "http_requests", "HTTP requests answered (web), by route template", ["route", "method", "status_class"]
)
HTTP_DURATION = Histogram(
    P + "http_request_duration_seconds",
    "Time to answer (for a stream: to its headers), by route template",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class QueueDepth(Collector):
    """jobs_due and jobs_in_flight, counted in the database at scrape time (cached for `ttl_s`).

    Counted where they are true for every worker at once: one process's own view would miss the others'.
    """

    def __init__(self, count: Callable[[], tuple[int, int]], ttl_s: float = 1.0):
        self.count = count
        self.ttl_s = ttl_s
        self._cached: tuple[float, tuple[int, int]] | None = None

    def collect(self):
        at = time.monotonic()
        if self._cached is None or at - self._cached[0] > self.ttl_s:
            try:
                self._cached = (at, self.count())
            except Exception as exc:  # a scrape must answer even while the database does not
                log.warning("cannot count jobs for metrics: %s", exc)
                return
        due, in_flight = self._cached[1]
        yield GaugeMetricFamily(P + "jobs_due", "Jobs due and not yet claimed", value=due)
        yield GaugeMetricFamily(P + "jobs_in_flight", "Jobs claimed by a worker (all workers)", value=in_flight)


def register_queue_depth(count: Callable[[], tuple[int, int]]) -> QueueDepth:
    collector = QueueDepth(count)
    REGISTRY.register(collector)
    return collector


def exposition() -> tuple[bytes, str]:
    """(body, content type) of this process's metrics."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve(host: str, port: int) -> Any:
    """Serve this process's metrics on host:port with gevent's server (the worker's METRICS_PORT)."""
    from gevent.pywsgi import WSGIServer

    server = WSGIServer((host, port), make_wsgi_app(REGISTRY), log=None, error_log=log)
    server.start()
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server
