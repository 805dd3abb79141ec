"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify

from web.errors import error_response
from web.extensions import owner, redis_client
from web.json_body import ApiModel
from web.openapi import ErrorEnvelope, operation

bp = Blueprint("health", __name__)


class Health(ApiModel):
    status: str


@bp.get("/healthz")
@operation("Liveness: the process answers", {200: Health}, auth=False, tag="health")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@operation("Readiness: the database and Redis answer", {200: Health, 503: ErrorEnvelope}, auth=False, tag="health")
def readyz():
    problems = {}
    try:
        database = owner()  # read here: the query runs on the owner's thread, outside this request
        database.call(lambda: database.db.execute_sql("SELECT 1").fetchone())
    except Exception as exc:
        problems["database"] = str(exc) or exc.__class__.__name__
    try:
        redis_client().ping()
    except Exception as exc:
        problems["redis"] = str(exc) or exc.__class__.__name__
    if problems:
        return error_response(503, "not_ready", "dependencies unreachable: " + ", ".join(problems), problems)
    return jsonify({"status": "ready"})
