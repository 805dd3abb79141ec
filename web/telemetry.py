"""The web process's metrics: every request counted by route template, and `GET /metrics`."""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, request

from models import telemetry

bp = Blueprint("telemetry", __name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@bp.get("/metrics")
def metrics():
    body, content_type = telemetry.exposition()
    return Response(body, content_type=content_type)


def _started():
    g.request_started = time.perf_counter()


def _counted(response):
    started = g.get("request_started")
    if started is not None:
        # The rule's template (/jobs/<job_id>), never the raw path: one series per route, whatever the ids.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        telemetry.HTTP_REQUESTS.labels(route, method, telemetry.status_class(response.status_code)).inc()
        telemetry.HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)
    return response


def install(app) -> None:
    app.before_request(_started)
    app.after_request(_counted)
    app.register_blueprint(bp)
