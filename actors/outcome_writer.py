"""OutcomeWriter: stores what an attempt decided, fenced by the lease, and tells whoever follows the job.

The outcome and the job's next state are one fenced write (models/jobs.record_outcome) through the database
owner, so outcomes written meanwhile by other attempts share its commit (group commit); a waiting job handed
over as the attempt's successor is started in that same write. Then the state is published (`publish`,
the worker's BatchedPublisher: many events a Redis round trip).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from actors.outcomes import Decision, attempt_response
from actors.transport import Response
from models import jobs, lifecycle, telemetry
from models.db import DatabaseOwner

log = logging.getLogger(__name__)


class OutcomeWriter:
    def __init__(
        self, db: DatabaseOwner, worker_id: str, publish: Callable[[jobs.Job], None], attempt_body_cap: int = 16 * 1024
    ):
        self.db = db
        self.worker_id = worker_id
        self.publish = publish
        self.attempt_body_cap = attempt_body_cap

    def write(
        self, job: jobs.Job, decision: Decision, response: Response, successor: jobs.Job | None = None
    ) -> tuple[jobs.Job, bool]:
        """Record attempt `job.attempts`'s outcome and start `successor`'s attempt in the same transaction;
        returns (the job's new state, whether the successor was started). Raises jobs.StaleLease (and writes
        nothing) if this worker no longer holds that attempt's lease."""
        number = job.attempts
        updated, successor_started = self.db.write(
            self._record,
            job.id,
            number,
            successor,
            outcome=decision.outcome,
            status=decision.status,
            started_at=response.started_at,
            finished_at=response.finished_at,
            status_code=response.status_code,
            error=decision.error,
            result=decision.result,
            due_at=decision.due_at,
            delay_s=decision.delay_s,
            response=attempt_response(response, self.attempt_body_cap),
        )
        log.info(
            "job=%s attempt=%d outcome=%s status=%s code=%s%s",
            job.id,
            number,
            decision.outcome,
            updated.status,
            response.status_code,
            f" retry_in={decision.delay_s:.3f}s" if decision.delay_s is not None else "",
        )
        telemetry.JOB_ATTEMPTS.labels(decision.outcome).inc()
        telemetry.JOB_ATTEMPT_DURATION.observe(max(0.0, response.finished_at - response.started_at))
        if updated.status == lifecycle.DEAD:
            telemetry.JOBS_DEAD.inc()
        self.publish(updated)
        return updated, successor_started

    def _record(self, job_id: str, number: int, successor: jobs.Job | None, **outcome) -> tuple[jobs.Job, bool]:
        updated = jobs.record_outcome(job_id, number, self.worker_id, **outcome)
        started = successor is not None and bool(
            jobs.start_attempts(self.worker_id, [(successor.id, successor.attempts)])
        )
        return updated, started
