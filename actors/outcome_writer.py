"""OutcomeWriter: stores what attempts decided, fenced by their leases, and tells whoever follows the jobs.

The dispatcher hands it the outcomes that finished meanwhile, many at once, and they are stored together
(models/jobs.record_outcomes): the jobs' next states one UPDATE fenced row by row (the RETURNING rows say whose
lease was still ours), the attempt rows of those that applied one executemany, all in one write through the database
owner (one trip to its thread, sharing the commit of whatever else is queued); the waiting jobs handed over as
those attempts' successors are started in that same transaction, one statement for all. Then the states are published
(`publish`, the worker's BatchedPublisher: many events a Redis round trip).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from actors.outcomes import Decision, attempt_response
from actors.transport import Response
from models import jobs, lifecycle, telemetry
from models.db import DatabaseOwner

log = logging.getLogger(__name__)

# The counter's child per outcome, looked up once: labels() takes a lock and builds a key on every call.
_ATTEMPTS_BY_OUTCOME = {outcome: telemetry.JOB_ATTEMPTS.labels(outcome) for outcome in lifecycle.OUTCOMES}


@dataclass(frozen=True)
class Outcome:
    """What an attempt brought back, and the waiting job (if any) to start in the same transaction."""

    job: jobs.ClaimedJob
    decision: Decision
    response: Response
    successor: jobs.ClaimedJob | None = None


@dataclass(frozen=True)
class Written:
    """The job's status after its outcome was written (None: fenced off, not ours any more, nothing written),
    and whether its successor's attempt was started."""

    status: str | None
    successor_started: bool


class OutcomeWriter:
    def __init__(
        self,
        db: DatabaseOwner,
        worker_id: str,
        publish: Callable[[jobs.OutcomeState], None],
        attempt_body_cap: int = 16 * 1024,
    ):
        self.db = db
        self.worker_id = worker_id
        self.publish = publish
        self.attempt_body_cap = attempt_body_cap

    def write(self, outcomes: list[Outcome]) -> list[Written]:
        """Record each attempt's outcome (fenced: only if this worker still holds that attempt's lease) and
        start its successor's attempt, all in one transaction; then publish the jobs' new states. An outcome
        fenced off writes nothing, not even its successor's start. Raises only if the transaction failed."""
        states = self.db.write_brief(self._record_all, outcomes)
        telemetry.JOB_OUTCOME_WRITES.inc()
        written = []
        for outcome, (updated, successor_started) in zip(outcomes, states):
            if updated is None:
                log.warning(
                    "outcome fenced off: job=%s attempt=%d is no longer ours",
                    outcome.job.id,
                    outcome.job.attempts,
                    extra={"job_id": outcome.job.id},
                )
                written.append(Written(None, False))
                continue
            self._observe(outcome, updated)
            self.publish(updated)
            written.append(Written(updated.status, successor_started))
        return written

    def _record_all(self, outcomes: list[Outcome]) -> list[tuple[jobs.OutcomeState | None, bool]]:
        # No savepoint per outcome: a fenced-off outcome changes nothing.
        states = jobs.record_outcomes(self.worker_id, [self._attempt_outcome(outcome) for outcome in outcomes])
        successors = [
            (outcome.successor.id, outcome.successor.attempts)
            for outcome, state in zip(outcomes, states)
            if state is not None and outcome.successor is not None
        ]
        started = jobs.start_attempts(self.worker_id, successors) if successors else set()
        return [
            (state, state is not None and outcome.successor is not None and outcome.successor.id in started)
            for outcome, state in zip(outcomes, states)
        ]

    def _attempt_outcome(self, outcome: Outcome) -> jobs.AttemptOutcome:
        job, decision, response = outcome.job, outcome.decision, outcome.response
        return jobs.AttemptOutcome(
            job.id,
            job.attempts,
            outcome=decision.outcome,
            status=decision.status,
            started_at=response.started_at,
            finished_at=response.finished_at,
            status_code=response.status_code,
            error=decision.error,
            result=decision.result,
            due_at=decision.due_at,
            delay_s=decision.delay_s,
            response=attempt_response(response, self.attempt_body_cap, decision.result),
        )

    def _observe(self, outcome: Outcome, updated: jobs.OutcomeState) -> None:
        decision, response = outcome.decision, outcome.response
        log.info(
            "job=%s attempt=%d outcome=%s status=%s code=%s%s",
            outcome.job.id,
            outcome.job.attempts,
            decision.outcome,
            updated.status,
            response.status_code,
            f" retry_in={decision.delay_s:.3f}s" if decision.delay_s is not None else "",
            extra={"job_id": outcome.job.id},  # written for many jobs at once, outside any one job's context
        )
        _ATTEMPTS_BY_OUTCOME[decision.outcome].inc()
        telemetry.JOB_ATTEMPT_DURATION.observe(max(0.0, response.finished_at - response.started_at))
        if updated.status == lifecycle.DEAD:
            telemetry.JOBS_DEAD.inc()
