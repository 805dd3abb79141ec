"""RetryActor: makes one job's attempt and decides what it means; the dispatcher has the outcome recorded.

The dispatcher hands each in-flight job to its own RetryActor. Actors are reused for later jobs
once idle (starting an actor costs ~0.2 ms of CPU), so there is never an actor for a job that is
not in flight and their number is bounded by MAX_IN_FLIGHT.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pykka

from actors.base import Actor
from actors.outcomes import Decision, decide
from actors.transport import Response, Transport
from models import jobs, lifecycle, logs, telemetry, webhooks
from models.db import DatabaseOwner

log = logging.getLogger(__name__)

ATTEMPT_NUMBER_HEADER = "X-Attempt-Number"


@dataclass(frozen=True)
class RunAttempt:
    job: jobs.Job


@dataclass(frozen=True)
class AttemptDone:
    """An attempt's request is done (`decision` and `response` None if it failed before deciding): the
    dispatcher has its outcome written, and `actor` is free for the next job."""

    job: jobs.Job
    actor: pykka.ActorRef
    decision: Decision | None
    response: Response | None


def outbound_headers(job: jobs.Job, number: int) -> dict:
    headers = dict(job.headers or {})
    lowered = {name.lower() for name in headers}
    if "idempotency-key" not in lowered:
        headers["Idempotency-Key"] = job.id
    headers[ATTEMPT_NUMBER_HEADER] = str(number)
    headers["X-Job-Id"] = job.id
    return headers


def _observe_start(job: jobs.Job, started_at: float) -> None:
    if job.scheduled_at is None:
        return
    late = max(0.0, started_at - job.scheduled_at)
    if job.claimed_from == lifecycle.RETRYING:
        telemetry.JOB_RETRY_LATENESS.observe(late)
    elif job.claimed_from == lifecycle.PENDING:
        telemetry.JOB_FIRST_ATTEMPT_DELAY.observe(late)


class RetryActor(Actor):
    """Collaborators, given when started: the dispatcher to report to, the transport, and the database owner
    (for signing secrets). The outcome is written by the dispatcher's OutcomeWriter, many to a transaction."""

    def __init__(self, dispatcher: pykka.ActorRef, transport: Transport, db: DatabaseOwner):
        super().__init__()
        self.dispatcher = dispatcher
        self.transport = transport
        self.db = db

    def handle(self, message):
        if isinstance(message, RunAttempt):
            done = (None, None)
            job_id_token = logs.job_id.set(message.job.id)
            try:
                done = self._attempt(message.job)  # a failure is logged by Actor; the lease recovers the job
            finally:
                logs.job_id.reset(job_id_token)
                self.dispatcher.tell(AttemptDone(message.job, self.actor_ref, *done))

    def _attempt(self, job: jobs.Job) -> tuple[Decision, Response]:
        number = job.attempts
        body = bytes(job.body) if job.body is not None else None
        headers = outbound_headers(job, number)
        if job.sign_with:
            # Signed now, not at submission: a retry hours later must still pass the receiver's timestamp tolerance.
            headers = webhooks.signed(
                headers, self.db.call(webhooks.endpoint_secrets, job.sign_with), f"msg_{job.id}", body, time.time()
            )
        response = self.transport.send(job.method, job.url, headers, body, job.timeout_s)
        _observe_start(job, response.started_at)
        return decide(job, response, number), response
