"""Job state-change events: one shape, published by whichever process changed the job."""
from __future__ import annotations

import json
import logging

from models.base import iso
from models.channels import JOBS_WAKEUP, job_channel

log = logging.getLogger(__name__)


def job_event(job) -> dict:
    return {
        "id": job.id,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": iso(job.next_attempt_at),
        "updated_at": iso(job.updated_at),
        "last_error": job.last_error,
        "result_status_code": (job.result or {}).get("status_code"),
    }


def publish_job_event(redis, job) -> None:
    """Tell anyone streaming this job; a Redis outage must not fail the change already committed."""
    try:
        redis.publish(job_channel(job.id), json.dumps(job_event(job), separators=(",", ":")))
    except Exception as exc:
        log.warning("could not publish state of job=%s: %s", job.id, exc)


def wake_dispatchers(redis, due_at: float) -> None:
    try:
        redis.publish(JOBS_WAKEUP, repr(due_at))
    except Exception as exc:
        # The dispatcher's fallback timer still finds the job; it just starts later.
        log.warning("could not wake dispatchers: %s", exc)
