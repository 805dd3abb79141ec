"""The jobs API: submit, inspect, list, cancel and re-queue outbound HTTP jobs."""
from __future__ import annotations

import base64
import json
import re

from flask import Blueprint, current_app, g, jsonify, request, url_for

from models import jobs as queries
from models.base import iso
from models.db import owner
from models.events import DispatcherWaker, publish_job_event
from models.ids import looks_like_id
from models.redis_client import redis_client
from web.auth import require_account
from web.errors import ApiError, not_found
from web.job_request import parse_job_request
from web.json_body import json_body, limit_param

bp = Blueprint("jobs", __name__)

_IDEMPOTENCY_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_SENSITIVE = ("authorization", "proxy-authorization", "cookie", "set-cookie")
_SENSITIVE_PARTS = ("token", "secret", "password", "api-key", "apikey", "api_key", "signature", "auth")


def masked_headers(headers: dict) -> dict:
    def mask(name, value):
        lowered = name.lower()
        if lowered in _SENSITIVE or any(part in lowered for part in _SENSITIVE_PARTS):
            return "***"
        return value
    return {name: mask(name, value) for name, value in (headers or {}).items()}


def _request_view(job) -> dict:
    view = {"url": job.url, "method": job.method, "headers": masked_headers(job.headers),
            "timeout_s": job.timeout_s, "backoff": job.backoff, "run_at": iso(job.run_at)}
    body = bytes(job.body) if job.body is not None else None
    if job.body_kind == "json" and body is not None:
        view["json"] = json.loads(body)
    elif body is not None:
        view["body"] = body.decode("utf-8", "replace")
    return view


def job_view(job) -> dict:
    return {
        "id": job.id,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "attempts_left": max(0, job.max_attempts - (job.attempts - job.budget_start)),
        "next_attempt_at": iso(job.next_attempt_at),
        "lease_expires_at": iso(job.lease_expires_at),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "request": _request_view(job),
        "result": job.result,
        "last_error": job.last_error,
    }


def attempt_view(attempt) -> dict:
    return {
        "number": attempt.number,
        "scheduled_at": iso(attempt.scheduled_at),
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "outcome": attempt.outcome,
    }


def _job_or_404(job_id: str):
    job = owner().call(queries.get_job, g.account.id, job_id) if looks_like_id(job_id) else None
    if job is None:
        raise not_found("job")
    return job


@bp.post("/jobs")
@require_account
def submit():
    spec = parse_job_request(json_body(), current_app.config["DESTINATION_POLICY"])
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        # A NUL would also be refused by PostgreSQL, as a 500.
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1..255 characters, none of them "
                       "control characters")
    try:
        job, created = owner().write(queries.insert_job, g.account.id, spec, key)
    except queries.IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc), {"job_id": exc.job_id}) from None
    if created:
        current_app.extensions["dispatcher_waker"].wake()
    response = jsonify(job_view(job))
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("jobs.show", job_id=job.id)
    return response


@bp.get("/jobs/<job_id>")
@require_account
def show(job_id):
    return jsonify(job_view(_job_or_404(job_id)))


@bp.get("/jobs/<job_id>/attempts")
@require_account
def attempts(job_id):
    job = _job_or_404(job_id)
    rows = owner().call(queries.list_attempts, job.id)
    return jsonify({"job_id": job.id, "attempts": [attempt_view(a) for a in rows]})


@bp.get("/jobs")
@require_account
def index():
    status = request.args.get("status") or None
    if status is not None and status not in queries.STATUSES:
        raise ApiError(400, "invalid_parameter", f"status must be one of {', '.join(queries.STATUSES)}",
                       {"parameter": "status"})
    limit = limit_param(50, 500)
    cursor = request.args.get("cursor") or None
    if cursor is not None:
        try:
            cursor = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
        except Exception:
            cursor = ""
        if not looks_like_id(cursor):
            raise ApiError(400, "invalid_cursor", "cursor is not one this API returned", {"parameter": "cursor"})
    rows = owner().call(queries.list_jobs, g.account.id, status, limit + 1, cursor)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = base64.urlsafe_b64encode(rows[-1].id.encode()).decode().rstrip("=")
    return jsonify({"jobs": [job_view(job) for job in rows], "next_cursor": next_cursor})


@bp.get("/jobs/stats")
@require_account
def stats():
    return jsonify({"counts": owner().call(queries.count_by_status, g.account.id)})


def _transition(job_id: str, action, verb: str, allowed: str):
    if not looks_like_id(job_id):
        raise not_found("job")
    try:
        job = owner().write(action, g.account.id, job_id)
    except LookupError:
        raise not_found("job") from None
    except ValueError as exc:
        raise ApiError(409, "invalid_state", f"cannot {verb} a job that is {exc}; only {allowed} jobs",
                       {"status": str(exc)}) from None
    publish_job_event(redis_client(), job)
    return job


@bp.post("/jobs/<job_id>/cancel")
@require_account
def cancel(job_id):
    return jsonify(job_view(_transition(job_id, queries.cancel_job, "cancel", " or ".join(queries.CANCELLABLE))))


@bp.post("/jobs/<job_id>/retry")
@require_account
def retry(job_id):
    job = _transition(job_id, queries.requeue_job, "retry", " or ".join(queries.REQUEUEABLE))
    current_app.extensions["dispatcher_waker"].wake()
    return jsonify(job_view(job)), 202


def install(app) -> None:
    app.extensions["dispatcher_waker"] = DispatcherWaker(redis_client())
    app.register_blueprint(bp)
