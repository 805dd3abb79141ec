"""RetryActor: makes one job's attempt, decides what it means, and records it, fenced by the lease.

The dispatcher hands each in-flight job to its own RetryActor. Actors are reused for later jobs
once idle (starting an actor costs ~0.2 ms of CPU), so there is never an actor for a job that is
not in flight and their number is bounded by MAX_IN_FLIGHT.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pykka

from actors.base import Actor
from actors.outcome_writer import OutcomeWriter
from actors.outcomes import decide
from actors.transport import Transport
from models import jobs, lifecycle, logs, telemetry, webhooks
from models.db import DatabaseOwner

log = logging.getLogger(__name__)

ATTEMPT_NUMBER_HEADER = "X-Attempt-Number"


@dataclass(frozen=True)
class RunAttempt:
    job: jobs.Job


@dataclass(frozen=True)
class TakeSuccessor:
    """Asked of the dispatcher before an outcome is written: the next job waiting for this slot, if any.
    Its attempt is started in the same transaction as the outcome, so the dispatcher can send it the
    moment this attempt finishes, with no write of its own."""

    host: str
    job_id: str
    number: int


@dataclass(frozen=True)
class AttemptFinished:
    job_id: str
    number: int
    actor: pykka.ActorRef
    status: str | None  # the job's status now, None if the outcome was fenced off
    successor: jobs.Job | None = None
    successor_started: bool = False


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
    """Collaborators, given when started: the dispatcher to report to, the transport, the outcome writer, the
    database owner (for signing secrets), and `has_waiting(host)`: whether a job waits for a slot of that host
    (the dispatcher's HostSlots.has_waiting) -- when none does, asking for a successor would be a round trip
    for nothing."""

    def __init__(
        self,
        dispatcher: pykka.ActorRef,
        transport: Transport,
        outcomes: OutcomeWriter,
        db: DatabaseOwner,
        has_waiting: Callable[[str], bool] = lambda host: True,
    ):
        super().__init__()
        self.dispatcher = dispatcher
        self.transport = transport
        self.outcomes = outcomes
        self.db = db
        self.has_waiting = has_waiting
        self.successor: jobs.Job | None = None

    def handle(self, message):
        if isinstance(message, RunAttempt):
            self.successor, self.outcome = None, (None, False)
            job_id_token = logs.job_id.set(message.job.id)
            try:
                self.outcome = self._attempt(message.job)  # a failure is logged by Actor; the lease recovers the job
            finally:
                logs.job_id.reset(job_id_token)
                status, successor_started = self.outcome
                self.dispatcher.tell(
                    AttemptFinished(
                        message.job.id, message.job.attempts, self.actor_ref, status, self.successor, successor_started
                    )
                )

    def _attempt(self, job: jobs.Job) -> tuple[str | None, bool]:
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
        decision = decide(job, response, number)
        successor = None
        if self.has_waiting(job.host):
            try:
                self.successor = successor = self.dispatcher.ask(TakeSuccessor(job.host, job.id, number))
            except pykka.ActorDeadError:  # shutting down: the outcome still gets recorded
                successor = None
        try:
            updated, successor_started = self.outcomes.write(job, decision, response, successor)
        except jobs.StaleLease:
            log.warning("outcome fenced off: job=%s attempt=%d is no longer ours", job.id, number)
            return None, False
        return updated.status, successor_started
