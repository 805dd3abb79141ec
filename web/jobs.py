"""The jobs API: submit, inspect, list, cancel and re-queue outbound HTTP jobs."""
from __future__ import annotations

import base64
import re

from flask import Blueprint, current_app, g, jsonify, request, url_for

from models import jobs as queries
from models import lifecycle, telemetry, webhooks
from models.base import iso, parse_iso
from models.lifecycle import job_view
from models.db import owner
from models.events import DispatcherWaker, publish_job_event, publish_job_events
from models.ids import looks_like_id
from models.redis_client import redis_client
from web.auth import require_account
from web.errors import ApiError, not_found
from web.job_request import parse_job_request
from web.json_body import json_body, limit_param

bp = Blueprint("jobs", __name__)

# 1..255 characters, none a control character (a NUL would also be refused by PostgreSQL, as a 500).
_IDEMPOTENCY_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


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
        "response": attempt.response,
    }


def _job_or_404(job_id: str):
    job = owner().call(queries.get_job, g.account.id, job_id) if looks_like_id(job_id) else None
    if job is None:
        raise not_found("job")
    return job


def _idempotency_key(value, where: str) -> str | None:
    if value is not None and not (isinstance(value, str) and _IDEMPOTENCY_KEY.fullmatch(value)):
        raise ApiError(400, "invalid_idempotency_key",
                       f"{where} must be 1..255 characters, none of them control characters")
    return value


def _check_signer(spec: dict) -> dict:
    """A job may be signed only with one of its own account's endpoint secrets."""
    if spec.get("sign_with") and owner().call(webhooks.get_endpoint, g.account.id, spec["sign_with"]) is None:
        raise ApiError(422, "validation_failed", "sign_with: must be the id of one of your webhook endpoints",
                       {"field": "sign_with"})
    return spec


@bp.post("/jobs")
@require_account
def submit():
    spec = _check_signer(parse_job_request(json_body(), current_app.config["DESTINATION_POLICY"]))
    key = _idempotency_key(request.headers.get("Idempotency-Key"), "Idempotency-Key")
    try:
        job, created = owner().write(queries.insert_job, g.account.id, spec, key)
    except queries.IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc), {"job_id": exc.job_id}) from None
    if created:
        telemetry.JOBS_SUBMITTED.inc()
        current_app.extensions["dispatcher_waker"].wake()
        publish_job_event(redis_client(), job)
    response = jsonify(job_view(job))
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("jobs.show", job_id=job.id)
    return response


MAX_BATCH = 1000


def _batch_items(payload) -> list:
    items = payload.get("jobs") if isinstance(payload, dict) else None
    if not isinstance(items, list) or set(payload) != {"jobs"}:
        raise ApiError(422, "validation_failed", 'the body must be {"jobs": [<job>, ...]}', {"field": "jobs"})
    if not 1 <= len(items) <= MAX_BATCH:
        raise ApiError(422, "validation_failed", f"jobs: give 1 to {MAX_BATCH} jobs", {"field": "jobs"})
    return items


def _batch_item(item, policy) -> tuple[dict, str | None]:
    """One batch item's (spec, idempotency key), or ApiError exactly as POST /jobs would answer it."""
    if not isinstance(item, dict):
        raise ApiError(422, "validation_failed", "a job must be a JSON object", {"field": None})
    fields = dict(item)
    key = _idempotency_key(fields.pop("idempotency_key", None), "idempotency_key")
    return _check_signer(parse_job_request(fields, policy)), key


@bp.post("/jobs/batch")
@require_account
def submit_batch():
    """Each item is accepted or refused on its own; the accepted ones are committed in one transaction."""
    request.max_content_length = current_app.config["SETTINGS"].batch_body_limit
    items = _batch_items(json_body())
    policy = current_app.config["DESTINATION_POLICY"]
    results: list[dict | None] = [None] * len(items)
    accepted: list[tuple[int, dict, str | None]] = []
    for index, item in enumerate(items):
        try:
            spec, key = _batch_item(item, policy)
        except ApiError as exc:
            results[index] = {"index": index, "error": {"code": exc.code, "message": exc.message,
                                                        "details": exc.details}}
            continue
        accepted.append((index, spec, key))
    created_count, created_jobs = 0, []
    if accepted:
        stored = owner().write(queries.insert_jobs, g.account.id, [(spec, key) for _, spec, key in accepted])
        for (index, _, _), outcome in zip(accepted, stored):
            if isinstance(outcome, queries.IdempotencyConflict):
                results[index] = {"index": index, "error": {"code": "idempotency_conflict", "message": str(outcome),
                                                            "details": {"job_id": outcome.job_id}}}
            else:
                job, created = outcome
                created_count += created
                if created:
                    created_jobs.append(job)
                results[index] = {"index": index, "id": job.id, "created": created}
    if created_count:
        telemetry.JOBS_SUBMITTED.inc(created_count)
        current_app.extensions["dispatcher_waker"].wake()
        publish_job_events(redis_client(), created_jobs)
    return jsonify({"results": results})


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
    job_filter = job_filter_param()
    limit = limit_param(50, 500)
    cursor = request.args.get("cursor") or None
    if cursor is not None:
        try:
            cursor = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
        except Exception:
            cursor = ""
        if not looks_like_id(cursor):
            raise ApiError(400, "invalid_cursor", "cursor is not one this API returned", {"parameter": "cursor"})
    rows = owner().call(queries.list_jobs, g.account.id, job_filter, limit + 1, cursor)
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
    return jsonify(job_view(_transition(job_id, queries.cancel_job, "cancel", " or ".join(lifecycle.CANCELLABLE))))


@bp.post("/jobs/<job_id>/retry")
@require_account
def retry(job_id):
    job = _transition(job_id, queries.requeue_job, "retry", " or ".join(lifecycle.REQUEUEABLE))
    current_app.extensions["dispatcher_waker"].wake()
    return jsonify(job_view(job)), 202


# -- the list's filter, and bulk actions on it ------------------------------------------------------

BULK_ACTION_MAX = 1000
# q is a job id, a URL host or an idempotency key: the key's rules are the widest of the three.
SEARCH_TEXT = _IDEMPOTENCY_KEY


def _time_param(name: str) -> float | None:
    text = request.args.get(name) or None
    if text is None:
        return None
    try:
        return parse_iso(text)
    except (ValueError, OverflowError):
        raise ApiError(400, "invalid_parameter", f"{name} must be an ISO-8601 date-time such as 2026-11-28T10:00:00Z",
                       {"parameter": name}) from None


def job_filter_param(statuses: tuple[str, ...] = lifecycle.STATUSES) -> queries.JobFilter:
    """The filter of `GET /jobs` and the bulk actions from the query string: status, q (a job id, URL host or
    idempotency key), since and until (creation time, ISO-8601; a time without an offset is UTC)."""
    status = request.args.get("status") or None
    if status is not None and status not in statuses:
        raise ApiError(400, "invalid_parameter", f"status must be one of {', '.join(statuses)}",
                       {"parameter": "status"})
    search = request.args.get("q") or None
    if search is not None and not SEARCH_TEXT.fullmatch(search):
        raise ApiError(400, "invalid_parameter", "q must be 1..255 characters, none of them control characters",
                       {"parameter": "q"})
    since, until = _time_param("since"), _time_param("until")
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "invalid_parameter", "since must be before until", {"parameter": "until"})
    return queries.JobFilter(status=status, search=search, since=since, until=until)


def _bulk(action, allowed: tuple[str, ...]) -> list:
    changed = owner().write(action, g.account.id, job_filter_param(allowed), BULK_ACTION_MAX)
    publish_job_events(redis_client(), changed)
    return changed


@bp.post("/jobs/cancel")
@require_account
def cancel_matching():
    """Cancel the pending and retrying jobs the filter selects, at most BULK_ACTION_MAX a call."""
    changed = _bulk(queries.cancel_matching, lifecycle.CANCELLABLE)
    return jsonify({"affected": len(changed), "max_per_call": BULK_ACTION_MAX})


@bp.post("/jobs/retry")
@require_account
def retry_matching():
    """Queue again, each with a fresh budget, the dead and cancelled jobs the filter selects, at most
    BULK_ACTION_MAX a call."""
    changed = _bulk(queries.requeue_matching, lifecycle.REQUEUEABLE)
    if changed:
        current_app.extensions["dispatcher_waker"].wake()
    return jsonify({"affected": len(changed), "max_per_call": BULK_ACTION_MAX}), 202


def install(app) -> None:
    app.extensions["dispatcher_waker"] = DispatcherWaker(redis_client())
    app.register_blueprint(bp)
