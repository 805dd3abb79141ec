"""The job lifecycle, said once: statuses, the moves between them, the attempt budget, and the job's public shape.

Every other place (the claim and outcome SQL in models/jobs.py, decide() in actors/outcomes.py, the
API views, job events, the dashboard) asks this module instead of spelling a rule out again.

    pending ──claim──> in_flight ──2xx──────────────────> succeeded
       ^                 │  │ └──retryable, budget left──> retrying ──claim──> in_flight
       │                 │  └────permanent, or budget spent──> dead
       │                 └──released unstarted──> (back to where it was claimed from)
    cancel: pending | retrying ──> cancelled          retry: dead | cancelled ──> pending (fresh budget)

When does a job die? When an attempt fails permanently, or when a retryable failure (or an attempt
lost with its worker) used the last attempt of the budget: `budget_spent()`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from models.base import iso

PENDING = "pending"
IN_FLIGHT = "in_flight"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
DEAD = "dead"
CANCELLED = "cancelled"
STATUSES = (PENDING, IN_FLIGHT, RETRYING, SUCCEEDED, DEAD, CANCELLED)
TERMINAL = (SUCCEEDED, DEAD, CANCELLED)
WAITING = (PENDING, RETRYING)  # due_at is when the next attempt is due
CANCELLABLE = (PENDING, RETRYING)  # what POST /jobs/<id>/cancel accepts
REQUEUEABLE = (DEAD, CANCELLED)  # what POST /jobs/<id>/retry accepts

# An attempt's outcome (the attempt row's `outcome`; NULL while it runs).
SUCCESS = "success"
RETRY = "retry"
GIVE_UP = "dead"
ABANDONED = "abandoned"
OUTCOMES = (SUCCESS, RETRY, GIVE_UP, ABANDONED)

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({IN_FLIGHT, CANCELLED}),
    RETRYING: frozenset({IN_FLIGHT, CANCELLED}),
    # An unstarted claim given back returns to where it came from (pending or retrying).
    IN_FLIGHT: frozenset({SUCCEEDED, RETRYING, DEAD, PENDING}),
    DEAD: frozenset({PENDING}),
    CANCELLED: frozenset({PENDING}),
    SUCCEEDED: frozenset(),
}


def may_move(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


# -- the attempt budget ----------------------------------------------------------------------------


def attempts_used(attempts: int, budget_start: int) -> int:
    """Attempts counted against the current budget (a manual retry starts a fresh one at budget_start)."""
    return attempts - budget_start


def budget_spent(used: int, max_attempts: int) -> bool:
    """True when no attempt is left: the job dies instead of being retried."""
    return used >= max_attempts


def attempts_left(attempts: int, budget_start: int, max_attempts: int) -> int:
    return max(0, max_attempts - attempts_used(attempts, budget_start))


def after_failure(retryable: bool, used: int, max_attempts: int) -> tuple[str, str]:
    """(attempt outcome, job status) after a failed attempt that was the `used`-th of its budget."""
    if retryable and not budget_spent(used, max_attempts):
        return RETRY, RETRYING
    return GIVE_UP, DEAD


# -- the public shape --------------------------------------------------------------------------------


class JobState(Protocol):
    id: str
    status: str
    attempts: int
    max_attempts: int
    due_at: float | None
    updated_at: float
    last_error: Any
    result: Any


_SENSITIVE = ("authorization", "proxy-authorization", "cookie", "set-cookie")
_SENSITIVE_PARTS = ("token", "secret", "password", "api-key", "apikey", "api_key", "signature", "auth")
_SENSITIVE_PART = re.compile("|".join(re.escape(part) for part in _SENSITIVE_PARTS))  # one scan, not eight


def masked_headers(headers: dict[str, str] | None) -> dict[str, str]:
    def mask(name: str, value: str) -> str:
        lowered = name.lower()
        if lowered in _SENSITIVE or _SENSITIVE_PART.search(lowered):
            return "***"
        return value

    return {name: mask(name, value) for name, value in (headers or {}).items()}


def next_attempt_at(job: JobState) -> float | None:
    return job.due_at if job.status in WAITING else None


def lease_expires_at(job: JobState) -> float | None:
    return job.due_at if job.status == IN_FLIGHT else None


def state_view(job: JobState) -> dict[str, Any]:
    """What every view of a job shows about its state: the API, the dashboard and each job event."""
    return {
        "id": job.id,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": iso(next_attempt_at(job)),
        "updated_at": iso(job.updated_at),
        "last_error": job.last_error,
    }


def event_view(job: JobState) -> dict[str, Any]:
    """A job event (`GET /jobs/<id>/events`, the dashboard): the state and the result's status code."""
    return {**state_view(job), "result_status_code": (job.result or {}).get("status_code")}


def request_view(job: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "url": job.url,
        "method": job.method,
        "headers": masked_headers(job.headers),
        "timeout_s": job.timeout_s,
        "backoff": job.backoff,
        "run_at": iso(job.run_at),
        "sign_with": getattr(job, "sign_with", None),
    }
    body = bytes(job.body) if job.body is not None else None
    if job.body_kind == "json" and body is not None:
        view["json"] = json.loads(body)
    elif body is not None:
        view["body"] = body.decode("utf-8", "replace")
    return view


def job_view(job: Any) -> dict[str, Any]:
    """The job as the API answers it: its state, its budget, the request (secrets masked) and the result."""
    return {
        **state_view(job),
        "attempts_left": attempts_left(job.attempts, job.budget_start, job.max_attempts),
        "lease_expires_at": iso(lease_expires_at(job)),
        "created_at": iso(job.created_at),
        "request": request_view(job),
        "result": job.result,
    }
