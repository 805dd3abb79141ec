"""The jobs API: submit, inspect, list, cancel and re-queue outbound HTTP jobs."""

from __future__ import annotations

import base64
from typing import Any, Literal

from flask import Blueprint, current_app, g, jsonify, request, url_for
from pydantic import Field, SkipValidation

from models import jobs, lifecycle, telemetry, webhooks
from models.base import iso, parse_iso
from models.events import DispatcherWaker
from models.ids import looks_like_id
from models.lifecycle import job_view
from web.auth import require_account
from web.errors import ApiError, not_found
from web.extensions import app_settings, collaborators_of, destination_policy, on_shutdown, owner
from web.job_request import IDEMPOTENCY_KEY_TEXT, JobRequest, idempotency_key
from web.json_body import ApiModel, RequestModel, body_as, limit_param, validated
from web.openapi import header, operation, query

bp = Blueprint("jobs", __name__)
TAG = "jobs"
MAX_BATCH = 1000
Status = Literal[lifecycle.STATUSES]  # type: ignore[valid-type]


class RequestView(ApiModel):
    """The job's request as stored; sensitive header values are masked as ***."""

    url: str
    method: str
    headers: dict[str, str]
    timeout_s: float
    backoff: dict[str, Any]
    run_at: str | None = Field(json_schema_extra={"format": "date-time"})
    json_body: Any = Field(None, alias="json", description="present when the body was given as json")
    body: str | None = Field(None, description="present when the body was given as text")


class JobView(ApiModel):
    id: str
    status: Status
    attempts: int
    max_attempts: int
    next_attempt_at: str | None = Field(json_schema_extra={"format": "date-time"})
    updated_at: str | None = Field(json_schema_extra={"format": "date-time"})
    last_error: str | None
    attempts_left: int
    lease_expires_at: str | None = Field(json_schema_extra={"format": "date-time"})
    created_at: str | None = Field(json_schema_extra={"format": "date-time"})
    request: RequestView
    result: dict[str, Any] | None


class JobList(ApiModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="give as cursor for the next page; null on the last")


class AttemptView(ApiModel):
    number: int
    scheduled_at: str | None = Field(json_schema_extra={"format": "date-time"})
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(json_schema_extra={"format": "date-time"})
    duration_ms: float | None
    status_code: int | None
    error: str | None
    outcome: str | None


class AttemptList(ApiModel):
    job_id: str
    attempts: list[AttemptView]


class JobStats(ApiModel):
    counts: dict[str, int] = Field(description="jobs by status")


class BatchJobRequest(JobRequest):
    """One job of a batch: POST /jobs's body, and its Idempotency-Key as a field."""

    idempotency_key: str | None = Field(None, min_length=1, max_length=255)

    @classmethod
    def rules(cls, data, context: dict):
        if not isinstance(data, dict):
            raise ApiError(422, "validation_failed", "a job must be a JSON object", {"field": None})
        fields = dict(data)
        key = idempotency_key(fields.pop("idempotency_key", None), "idempotency_key")
        return JobRequest.rules(fields, context), key


class BatchRequest(RequestModel):
    # Each job is checked on its own (submit_batch): one bad job does not refuse the others.
    jobs: list[SkipValidation[BatchJobRequest]] = Field(min_length=1, max_length=MAX_BATCH)

    @classmethod
    def rules(cls, data, context: dict):
        items = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(items, list) or set(data) != {"jobs"}:
            raise ApiError(422, "validation_failed", 'the body must be {"jobs": [<job>, ...]}', {"field": "jobs"})
        if not 1 <= len(items) <= MAX_BATCH:
            raise ApiError(422, "validation_failed", f"jobs: give 1 to {MAX_BATCH} jobs", {"field": "jobs"})
        return items


class BatchError(ApiModel):
    index: int
    error: dict[str, Any] = Field(description="the error envelope's inner object: code, message, details")


class BatchCreated(ApiModel):
    index: int
    id: str
    created: bool = Field(description="false: an existing job with the same idempotency key")


class BatchResults(ApiModel):
    results: list[BatchCreated | BatchError] = Field(description="one per job, in order")


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
    job = owner().call_brief(jobs.get_job, g.account.id, job_id) if looks_like_id(job_id) else None
    if job is None:
        raise not_found("job")
    return job


def _check_signer(spec: dict) -> dict:
    """A job may be signed only with one of its own account's endpoint secrets."""
    if spec.get("sign_with") and owner().call_brief(webhooks.get_endpoint, g.account.id, spec["sign_with"]) is None:
        raise ApiError(
            422,
            "validation_failed",
            "sign_with: must be the id of one of your webhook endpoints",
            {"field": "sign_with"},
        )
    return spec


@bp.post("/jobs")
@operation(
    "Submit a job",
    {202: JobView, 200: JobView},
    body=JobRequest,
    errors=(409,),
    tag=TAG,
    params=(
        header(
            "Idempotency-Key",
            {"type": "string", "minLength": 1, "maxLength": 255},
            "a resubmission with the same key answers 200 with the first job",
        ),
    ),
)
@require_account
def submit():
    spec = _check_signer(body_as(JobRequest, policy=destination_policy()))
    key = idempotency_key(request.headers.get("Idempotency-Key"), "Idempotency-Key")
    try:
        job, created = owner().write_brief(jobs.insert_job, g.account.id, spec, key)
    except jobs.IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc), {"job_id": exc.job_id}) from None
    if created:
        telemetry.JOBS_SUBMITTED.inc()
        # Published before the answer, not queued with the coalesced wake-up: a cancel or a worker's
        # event published meanwhile would otherwise overtake it, and a stream would end on "pending".
        _events().publish_and_wake([job])
    response = jsonify(job_view(job))
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("jobs.show", job_id=job.id)
    return response


@bp.post("/jobs/batch")
@operation(
    "Submit up to 1000 jobs; each is accepted or refused on its own", {200: BatchResults}, body=BatchRequest, tag=TAG
)
@require_account
def submit_batch():
    """Each item is accepted or refused on its own; the accepted ones are committed in one transaction."""
    request.max_content_length = app_settings().batch_body_limit
    items = body_as(BatchRequest)
    policy = destination_policy()
    results: list[dict | None] = [None] * len(items)
    accepted: list[tuple[int, dict, str | None]] = []
    for index, item in enumerate(items):
        try:
            spec, key = validated(BatchJobRequest, item, policy=policy)
            _check_signer(spec)
        except ApiError as exc:
            results[index] = {
                "index": index,
                "error": {"code": exc.code, "message": exc.message, "details": exc.details},
            }
            continue
        accepted.append((index, spec, key))
    created_count, created_jobs = 0, []
    if accepted:
        stored = owner().write(jobs.insert_jobs, g.account.id, [(spec, key) for _, spec, key in accepted])
        for (index, _, _), outcome in zip(accepted, stored):
            if isinstance(outcome, jobs.IdempotencyConflict):
                results[index] = {
                    "index": index,
                    "error": {
                        "code": "idempotency_conflict",
                        "message": str(outcome),
                        "details": {"job_id": outcome.job_id},
                    },
                }
            else:
                job, created = outcome
                created_count += created
                if created:
                    created_jobs.append(job)
                results[index] = {"index": index, "id": job.id, "created": created}
    if created_count:
        telemetry.JOBS_SUBMITTED.inc(created_count)
        _events().publish_and_wake(created_jobs)  # before the answer, as for one job
    return jsonify({"results": results})


@bp.get("/jobs/<job_id>")
@operation("A job", {200: JobView}, errors=(404,), tag=TAG)
@require_account
def show(job_id):
    return jsonify(job_view(_job_or_404(job_id)))


@bp.get("/jobs/<job_id>/attempts")
@operation("A job's attempts", {200: AttemptList}, errors=(404,), tag=TAG)
@require_account
def attempts(job_id):
    job = _job_or_404(job_id)
    rows = owner().call(jobs.list_attempts, job.id)
    return jsonify({"job_id": job.id, "attempts": [attempt_view(a) for a in rows]})


@bp.get("/jobs")
@operation(
    "The caller's jobs, newest first",
    {200: JobList},
    errors=(400,),
    tag=TAG,
    params=(
        query("status", {"type": "string", "enum": list(lifecycle.STATUSES)}),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        query("cursor", {"type": "string"}, "next_cursor of the previous page"),
    ),
)
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
    rows = owner().call(jobs.list_jobs, g.account.id, job_filter, limit + 1, cursor)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = base64.urlsafe_b64encode(rows[-1].id.encode()).decode().rstrip("=")
    return jsonify({"jobs": [job_view(job) for job in rows], "next_cursor": next_cursor})


@bp.get("/jobs/stats")
@operation("The caller's jobs counted by status", {200: JobStats}, tag=TAG)
@require_account
def stats():
    return jsonify({"counts": owner().call(jobs.count_by_status, g.account.id)})


def _transition(job_id: str, action, verb: str, allowed: str):
    if not looks_like_id(job_id):
        raise not_found("job")
    try:
        job = owner().write_brief(action, g.account.id, job_id)
    except LookupError:
        raise not_found("job") from None
    except ValueError as exc:
        raise ApiError(
            409, "invalid_state", f"cannot {verb} a job that is {exc}; only {allowed} jobs", {"status": str(exc)}
        ) from None
    _events().publish([job])
    return job


@bp.post("/jobs/<job_id>/cancel")
@operation("Cancel a pending or retrying job", {200: JobView}, errors=(404, 409), tag=TAG)
@require_account
def cancel(job_id):
    return jsonify(job_view(_transition(job_id, jobs.cancel_job, "cancel", " or ".join(lifecycle.CANCELLABLE))))


@bp.post("/jobs/<job_id>/retry")
@operation("Queue a dead or cancelled job again", {202: JobView}, errors=(404, 409), tag=TAG)
@require_account
def retry(job_id):
    job = _transition(job_id, jobs.requeue_job, "retry", " or ".join(lifecycle.REQUEUEABLE))
    _events().wake()
    return jsonify(job_view(job)), 202


# -- the list's filter, and bulk actions on it ------------------------------------------------------

BULK_ACTION_MAX = 1000
# q is a job id, a URL host or an idempotency key: the key's rules are the widest of the three.
SEARCH_TEXT = IDEMPOTENCY_KEY_TEXT


def _time_param(name: str) -> float | None:
    text = request.args.get(name) or None
    if text is None:
        return None
    try:
        return parse_iso(text)
    except (ValueError, OverflowError):
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name} must be an ISO-8601 date-time such as 2026-11-28T10:00:00Z",
            {"parameter": name},
        ) from None


def job_filter_param(statuses: tuple[str, ...] = lifecycle.STATUSES) -> jobs.JobFilter:
    """The filter of `GET /jobs` and the bulk actions from the query string: status, q (a job id, URL host or
    idempotency key), since and until (creation time, ISO-8601; a time without an offset is UTC)."""
    status = request.args.get("status") or None
    if status is not None and status not in statuses:
        raise ApiError(
            400, "invalid_parameter", f"status must be one of {', '.join(statuses)}", {"parameter": "status"}
        )
    search = request.args.get("q") or None
    if search is not None and not SEARCH_TEXT.fullmatch(search):
        raise ApiError(
            400, "invalid_parameter", "q must be 1..255 characters, none of them control characters", {"parameter": "q"}
        )
    since, until = _time_param("since"), _time_param("until")
    if since is not None and until is not None and since >= until:
        raise ApiError(400, "invalid_parameter", "since must be before until", {"parameter": "until"})
    return jobs.JobFilter(status=status, search=search, since=since, until=until)


def _bulk(action, allowed: tuple[str, ...]) -> list:
    changed = owner().write(action, g.account.id, job_filter_param(allowed), BULK_ACTION_MAX)
    _events().publish(changed)
    return changed


@bp.post("/jobs/cancel")
@require_account
def cancel_matching():
    """Cancel the pending and retrying jobs the filter selects, at most BULK_ACTION_MAX a call."""
    changed = _bulk(jobs.cancel_matching, lifecycle.CANCELLABLE)
    return jsonify({"affected": len(changed), "max_per_call": BULK_ACTION_MAX})


@bp.post("/jobs/retry")
@require_account
def retry_matching():
    """Queue again, each with a fresh budget, the dead and cancelled jobs the filter selects, at most
    BULK_ACTION_MAX a call."""
    changed = _bulk(jobs.requeue_matching, lifecycle.REQUEUEABLE)
    if changed:
        _events().wake()
    return jsonify({"affected": len(changed), "max_per_call": BULK_ACTION_MAX}), 202


def _events() -> DispatcherWaker:
    """The app's publisher of job events and wake-ups: every job event of this app goes through it, in order."""
    return current_app.extensions["dispatcher_waker"]


def install(app) -> None:
    waker = app.extensions["dispatcher_waker"] = DispatcherWaker(collaborators_of(app).redis)
    on_shutdown(app, waker.close)
    app.register_blueprint(bp)
