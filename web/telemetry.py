"""The web process's metrics: every request counted by route template, and `GET /metrics`."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, g

from models import telemetry
from web.extensions import this_request

bp = Blueprint("telemetry", __name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@bp.get("/metrics")
def metrics():
    body, content_type = telemetry.exposition()
    return Response(body, content_type=content_type)


def _started():
    g.request_started = time.perf_counter()


# (route, method, status) -> the two metrics' children: labels() takes a lock and validates its values on
# every call. Bounded: routes are the app's rule templates, methods and statuses fixed sets.
_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _counted(response):
    started = g.get("request_started")
    if started is not None:
        req = this_request()
        rule = req.url_rule
        # The rule's template (/jobs/<job_id>), never the raw path: one series per route, whatever the ids.
        route = rule.rule if rule is not None else "unmatched"
        method = req.method if req.method in _METHODS else "other"
        key = (route, method, response.status_code)
        children = _CHILDREN.get(key)
        if children is None:
            children = _CHILDREN[key] = (
                telemetry.HTTP_REQUESTS.labels(route, method, telemetry.status_class(response.status_code)),
                telemetry.HTTP_DURATION.labels(route, method),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
    return response


def install(app) -> None:
    app.before_request(_started)
    app.after_request(_counted)
    app.register_blueprint(bp)
