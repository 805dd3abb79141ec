"""Jobs and attempts: the tables and every query the retry engine runs on them.

Scheduling rests on one column, `due_at`: for a pending or retrying job it is when the next attempt
is due; for an in-flight job it is when the lease expires (a future time as a self-healing lock);
for a finished job it is NULL. So "claim what is due" is one indexed range scan, and a crashed
worker's jobs become due again by themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import peewee

from models.accounts import Account
from models.base import BaseModel, JSONField, json_text, now
from models.db import built_sql, chunks, database, is_sqlite, sql
from models.ids import new_id
from models.lifecycle import (  # noqa: F401
    ABANDONED,
    CANCELLABLE,
    CANCELLED,
    DEAD,
    GIVE_UP,
    IN_FLIGHT,
    PENDING,
    REQUEUEABLE,
    RETRY,
    RETRYING,
    STATUSES,
    SUCCEEDED,
    SUCCESS,
    TERMINAL,
    attempts_used,
    budget_spent,
    lease_expires_at,
    next_attempt_at,
)


class Job(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=26, default=new_id)
    account = peewee.ForeignKeyField(Account, backref="jobs", on_delete="CASCADE", index=False)
    idempotency_key = peewee.CharField(max_length=255, null=True)
    request_hash = peewee.CharField(max_length=64)
    status = peewee.CharField(max_length=12)
    url = peewee.TextField()
    host = peewee.CharField(max_length=255)
    method = peewee.CharField(max_length=8)
    headers = JSONField()
    body = peewee.BlobField(null=True)
    body_kind = peewee.CharField(max_length=8, default="none")  # none | text | json
    timeout_s = peewee.DoubleField()
    max_attempts = peewee.IntegerField()
    backoff = JSONField()
    run_at = peewee.DoubleField(null=True)
    attempts = peewee.IntegerField(default=0)
    # Attempt number at which the current attempt budget began (a manual retry starts a new one).
    budget_start = peewee.IntegerField(default=0)
    last_delay_s = peewee.DoubleField(null=True)
    due_at = peewee.DoubleField(null=True)
    lease_owner = peewee.CharField(max_length=128, null=True)
    # Written by the claim from the row's values before the update (SET sees the old row).
    claimed_from = peewee.CharField(max_length=12, null=True)
    scheduled_at = peewee.DoubleField(null=True)
    result = JSONField(null=True)
    last_error = JSONField(null=True)
    created_at = peewee.DoubleField(default=now)
    updated_at = peewee.DoubleField(default=now)
    # A webhook endpoint whose secrets sign each attempt (models/webhooks.py); NULL: unsigned.
    sign_with = peewee.CharField(max_length=26, null=True)

    class Meta:
        indexes = (
            (("account", "idempotency_key"), True),
            (("account", "id"), False),
            (("account", "status", "id"), False),
        )

    @property
    def next_attempt_at(self):
        return next_attempt_at(self)

    @property
    def lease_expires_at(self):
        return lease_expires_at(self)


Job.add_index(Job.index(Job.due_at, where=Job.due_at.is_null(False), name="job_due_at"))


class Attempt(BaseModel):
    job = peewee.ForeignKeyField(Job, backref="attempt_rows", on_delete="CASCADE", index=False)
    number = peewee.IntegerField()
    worker = peewee.CharField(max_length=128)
    scheduled_at = peewee.DoubleField(null=True)
    started_at = peewee.DoubleField()
    finished_at = peewee.DoubleField(null=True)
    duration_ms = peewee.DoubleField(null=True)
    status_code = peewee.IntegerField(null=True)
    error = JSONField(null=True)
    outcome = peewee.CharField(max_length=10, null=True)  # NULL while the attempt runs
    # What the receiver answered (status_code, headers, body capped at ATTEMPT_BODY_CAP, body_encoding,
    # body_truncated); NULL while it runs, when no response came, and for attempts made before it was kept.
    response = JSONField(null=True)

    class Meta:
        indexes = ((("job", "number"), True),)


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""

    def __init__(self, job_id):
        super().__init__("this Idempotency-Key was used with a different request")
        self.job_id = job_id


def request_fingerprint(spec: dict) -> str:
    text = json.dumps(
        spec,
        sort_keys=True,
        separators=(",", ":"),
        default=lambda value: value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value),
    )
    return hashlib.sha256(text.encode()).hexdigest()


# -- submission ----------------------------------------------------------------------------------


def _same_request(account_id: str, idempotency_key: str, fingerprint: str) -> Job | None:
    existing = Job.get_or_none((Job.account == account_id) & (Job.idempotency_key == idempotency_key))
    if existing is not None and existing.request_hash != fingerprint:
        raise IdempotencyConflict(existing.id)
    return existing


_INSERT_JOB = (
    "INSERT INTO job (id, account_id, idempotency_key, request_hash, status, url, host, method, headers, body,"
    " body_kind, timeout_s, max_attempts, backoff, run_at, attempts, budget_start, due_at, created_at, updated_at,"
    " sign_with) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?)"
)


def _new_row(account_id: str, spec: dict, idempotency_key: str | None, fingerprint: str, t: float) -> dict:
    run_at = spec.get("run_at")
    return {
        "id": new_id(),
        "account_id": account_id,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "status": PENDING,
        "url": spec["url"],
        "host": spec["host"],
        "method": spec["method"],
        "headers": spec["headers"],
        "body": spec["body"],
        "body_kind": spec["body_kind"],
        "timeout_s": spec["timeout_s"],
        "max_attempts": spec["max_attempts"],
        "backoff": spec["backoff"],
        "run_at": run_at,
        "attempts": 0,
        "budget_start": 0,
        "due_at": max(t, run_at) if run_at is not None else t,
        "created_at": t,
        "updated_at": t,
        "sign_with": spec.get("sign_with"),
    }


def _insert_params(row: dict) -> list:
    return [
        row["id"],
        row["account_id"],
        row["idempotency_key"],
        row["request_hash"],
        PENDING,
        row["url"],
        row["host"],
        row["method"],
        json_text(row["headers"]),
        row["body"],
        row["body_kind"],
        row["timeout_s"],
        row["max_attempts"],
        json_text(row["backoff"]),
        row["run_at"],
        row["due_at"],
        row["created_at"],
        row["updated_at"],
        row["sign_with"],
    ]


def _job_from_row(row: dict) -> Job:
    job = Job(**{k if k != "account_id" else "account": v for k, v in row.items()})
    job._dirty.clear()
    return job


def insert_job(account_id: str, spec: dict, idempotency_key: str | None) -> tuple[Job, bool]:
    """Store a validated job spec; return (job, created). Run inside a write transaction.

    A repeat of the same Idempotency-Key with the same request returns the first job; with a
    different request it raises IdempotencyConflict.
    """
    fingerprint = request_fingerprint(spec)
    if idempotency_key is not None:
        existing = _same_request(account_id, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    row = _new_row(account_id, spec, idempotency_key, fingerprint, now())
    if idempotency_key is None:
        database.execute_sql(sql(_INSERT_JOB), _insert_params(row))
    else:
        # Another process (PostgreSQL has no database-wide write lock) may have inserted the same
        # key since our look-up: the unique index decides, and the loser answers like a repeat.
        try:
            with database.atomic():
                database.execute_sql(sql(_INSERT_JOB), _insert_params(row))
        except peewee.IntegrityError:
            existing = _same_request(account_id, idempotency_key, fingerprint)
            if existing is None:
                raise
            return existing, False
    return _job_from_row(row), True


class NewJob(NamedTuple):
    """A validated job spec made ready to store (id, fingerprint, columns), before any transaction."""

    row: dict
    params: list
    job: Job


def new_jobs(account_id: str, items: list[tuple[dict, str | None]]) -> list[NewJob]:
    """Build what insert_new_jobs stores, outside the write transaction: a caller writing many jobs (a storm of
    alerts) keeps the database's one writer busy only for the statements."""
    t = now()
    made = []
    for spec, key in items:
        row = _new_row(account_id, spec, key, request_fingerprint(spec), t)
        made.append(NewJob(row, _insert_params(row), _job_from_row(row)))
    return made


def insert_jobs(account_id: str, items: list[tuple[dict, str | None]]) -> list[tuple[Job, bool] | IdempotencyConflict]:
    """Store several validated job specs in the caller's one transaction; per item (job, created) or its conflict."""
    return insert_new_jobs(account_id, new_jobs(account_id, items))


def insert_new_jobs(account_id: str, made: list[NewJob]) -> list[tuple[Job, bool] | IdempotencyConflict]:
    """Store jobs built by new_jobs in the caller's one transaction; per item (job, created) or its conflict.

    Set-based: the keys already used are read in one query per chunk, the new jobs inserted with one
    statement per chunk. A key repeated within the batch answers like a repeat of its first item.
    """
    results: list = [None] * len(made)
    keys = [new.row["idempotency_key"] for new in made]
    used = _jobs_by_key(account_id, {key for key in keys if key is not None})
    unkeyed: list[NewJob] = []
    keyed: dict[str, NewJob] = {}  # key -> its first item in this batch
    repeats: list[int] = []
    for index, (new, key) in enumerate(zip(made, keys)):
        if key is not None and (key in used or key in keyed):
            repeats.append(index)
            continue
        if key is None:
            unkeyed.append(new)
        else:
            keyed[key] = new
        results[index] = (new.job, True)
    if unkeyed:
        database.cursor().executemany(sql(_INSERT_JOB), [new.params for new in unkeyed])
    lost = _insert_keyed(list(keyed.values()))
    if lost:
        # Another process (PostgreSQL has no database-wide write lock) inserted these keys since our look-up:
        # the unique index decided, and our items answer like repeats of its jobs.
        used.update(_jobs_by_key(account_id, lost))
        for index, key in enumerate(keys):
            if key in lost and results[index] is not None and results[index][1]:
                results[index] = None
                repeats.append(index)
        repeats.sort()
    for index in repeats:
        key = keys[index]
        assert key is not None
        first = used.get(key)
        if first is None:
            if key in lost:  # taken by a job deleted since: nothing to answer with
                raise peewee.IntegrityError(f"idempotency key {key!r} was taken by a job that no longer exists")
            first = keyed[key].job
        same = first.request_hash == made[index].row["request_hash"]
        results[index] = (first, False) if same else IdempotencyConflict(first.id)
    return results


#: Rows per statement: 19 parameters each, well under SQLite's and PostgreSQL's limits.
_CHUNK = 500


def _jobs_by_key(account_id: str, keys) -> dict[str, Job]:
    found: dict[str, Job] = {}
    for chunk in chunks(sorted(keys), _CHUNK):
        for job in Job.select().where((Job.account == account_id) & Job.idempotency_key.in_(chunk)):
            found[job.idempotency_key] = job
    return found


def _insert_keyed(made: list[NewJob]) -> set[str]:
    """Insert keyed jobs, a chunk per statement; the keys some other transaction took meanwhile."""
    lost: set[str] = set()
    columns = _INSERT_JOB[: _INSERT_JOB.index(" VALUES ")]
    one = _INSERT_JOB[_INSERT_JOB.index(" VALUES ") + len(" VALUES ") :]
    for chunk in chunks(made, _CHUNK):
        text = (
            f"{columns} VALUES {', '.join([one] * len(chunk))}"
            " ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING id"
        )
        params = [value for new in chunk for value in new.params]
        inserted = {job_id for (job_id,) in database.execute_sql(built_sql(text), params).fetchall()}
        lost.update(new.row["idempotency_key"] for new in chunk if new.row["id"] not in inserted)
    return lost


# -- claiming ------------------------------------------------------------------------------------


@dataclass(slots=True)
class ClaimedJob:
    """A claimed job as the worker needs it (the request, its budget, how it was claimed): a plain row, not a
    model instance, because building a peewee instance per claimed row cost more than the claim itself."""

    id: str
    claimed_from: str
    scheduled_at: float | None
    attempts: int
    budget_start: int
    max_attempts: int
    url: str
    host: str
    method: str
    headers: dict
    body: bytes | None
    timeout_s: float
    backoff: dict
    last_delay_s: float | None
    due_at: float  # when this claim's lease expires
    sign_with: str | None
    started: bool = True  # whether its attempt was started by the claim (else: start_attempts)
    status: str = IN_FLIGHT


# An expired in-flight job is charged an attempt only if its current attempt had started (has a row).
_CHARGE_UNLESS_NEVER_STARTED = (
    f"CASE WHEN job.status = '{IN_FLIGHT}' AND NOT EXISTS"
    " (SELECT 1 FROM attempt WHERE attempt.job_id = job.id AND attempt.number = job.attempts) THEN 0 ELSE 1 END"
)
# One statement, written once: peewee built it anew for every claim. `{lock}` is PostgreSQL's row lock.
_CLAIM_DUE = (
    f"UPDATE job SET claimed_from = status, scheduled_at = due_at, status = '{IN_FLIGHT}', lease_owner = ?,"
    f" due_at = ?, attempts = attempts + {_CHARGE_UNLESS_NEVER_STARTED}, updated_at = ?"
    " WHERE id IN (SELECT id FROM job WHERE due_at <= ? ORDER BY due_at LIMIT ?{lock}) AND due_at <= ?"
    " RETURNING id, claimed_from, scheduled_at, attempts, budget_start, max_attempts, url, host, method, headers,"
    " body, timeout_s, backoff, last_delay_s, due_at, sign_with"
)
_CLAIM_DUE_SQLITE = _CLAIM_DUE.format(lock="")
_CLAIM_DUE_POSTGRESQL = _CLAIM_DUE.format(lock=" FOR UPDATE SKIP LOCKED")
_INSERT_STARTED_ATTEMPT = (
    "INSERT INTO attempt (job_id, number, worker, scheduled_at, started_at) VALUES (?, ?, ?, ?, ?)"
)


def _claimed_job(row) -> ClaimedJob:
    job = ClaimedJob(*row)
    job.headers = json.loads(job.headers)
    job.backoff = json.loads(job.backoff)
    return job


class ClaimBatch(list):
    """The jobs a claim took to run, and what it found of attempts lost with a dead worker: how many it
    recorded abandoned, and how many jobs that made dead (the lost attempt was their last)."""

    abandoned: int = 0
    dead: int = 0


def claim_due(
    worker: str,
    limit: int,
    lease_s: float,
    at: float | None = None,
    start_now: Callable[[ClaimedJob], bool] | None = None,
) -> list[ClaimedJob]:
    """Atomically take up to `limit` due jobs for `worker`. Run inside a write transaction.

    Due means pending/retrying whose time has come, or in flight whose lease has expired (its
    worker died). An attempt exists (has a row) only once it started: a lost started attempt is
    recorded as abandoned and counts against the budget; a claim that never started costs nothing,
    and its job keeps its attempt number. Each returned job has `started`: whether its attempt was
    started here (all of them unless `start_now` says otherwise); the others need start_attempts().
    """
    t = now() if at is None else at
    text = _CLAIM_DUE_SQLITE if is_sqlite() else _CLAIM_DUE_POSTGRESQL
    rows = database.execute_sql(sql(text), (worker, t + lease_s, t, t, limit, t)).fetchall()
    if not rows:
        return ClaimBatch()
    claimed = [_claimed_job(row) for row in rows]
    batch = ClaimBatch()
    reclaimed = [job.id for job in claimed if job.claimed_from == IN_FLIGHT]
    if reclaimed:
        batch.abandoned = (
            Attempt.update(
                outcome=ABANDONED,
                finished_at=t,
                error={"kind": "abandoned", "message": "the worker's lease expired before an outcome was recorded"},
            )
            .where(Attempt.job.in_(reclaimed) & Attempt.outcome.is_null())
            .execute()
        )
    runnable, exhausted = [], []
    for job in claimed:
        # The claim already counted the attempt it starts; the lost one before it was the last if
        # the budget was spent without it.
        lost_the_last = budget_spent(attempts_used(job.attempts - 1, job.budget_start), job.max_attempts)
        (exhausted if lost_the_last else runnable).append(job)
    batch.dead = len(exhausted)
    if exhausted:
        (
            Job.update(
                status=DEAD,
                due_at=None,
                lease_owner=None,
                attempts=Job.attempts - 1,
                updated_at=t,
                last_error={
                    "kind": "abandoned",
                    "message": "attempts exhausted: the last attempt was lost with its worker",
                    "status_code": None,
                },
            )
            .where(Job.id.in_([job.id for job in exhausted]))
            .execute()
        )
    for job in runnable:
        job.started = start_now is None or start_now(job)
    started = [job for job in runnable if job.started]
    if started:
        database.cursor().executemany(
            sql(_INSERT_STARTED_ATTEMPT), [(job.id, job.attempts, worker, job.scheduled_at, t) for job in started]
        )
    batch.extend(runnable)
    return batch


def start_attempts(worker: str, jobs: list[tuple[str, int]], at: float | None = None) -> set[str]:
    """Record that the claimed attempts (job id, number) start now; returns the ids this worker still
    holds, the only ones it may send. Run inside a write transaction, before any request goes out."""
    if not jobs:
        return set()
    t = now() if at is None else at
    text = built_sql(
        "INSERT INTO attempt (job_id, number, worker, scheduled_at, started_at)"
        " SELECT id, attempts, ?, scheduled_at, ? FROM job"
        # A join, not `(id, attempts) IN (VALUES …)`: SQLite scans the whole table for that one.
        f" JOIN (VALUES {', '.join(['(?, ?)'] * len(jobs))}) AS wanted"
        " ON job.id = wanted.column1 AND job.attempts = wanted.column2"
        f" WHERE lease_owner = ? AND status = '{IN_FLIGHT}'"
        # A row for that number means it was started already (a claim of our own after our lease ran out).
        " ON CONFLICT (job_id, number) DO NOTHING RETURNING job_id"
    )
    params = [worker, t, *(value for job in jobs for value in job), worker]
    return {job_id for (job_id,) in database.execute_sql(text, params).fetchall()}


def renew_leases(worker: str, job_ids, lease_s: float) -> int:
    """Push back the lease of the jobs this worker still holds; returns how many it still holds."""
    held = 0
    for chunk in chunks(job_ids, 500):
        held += (
            Job.update(due_at=now() + lease_s)
            .where(Job.id.in_(chunk) & (Job.lease_owner == worker) & (Job.status == IN_FLIGHT))
            .execute()
        )
    return held


def release(worker: str, jobs: list[tuple[str, int]]) -> int:
    """Give back claimed attempts (job id, number) that were never sent, uncharged (shutdown).

    A job claimed from pending/retrying goes back as if never claimed; one taken over from an
    expired lease stays in flight, due now, with no row for that attempt, so it is not charged.
    """
    released = 0
    t = now()
    for job_id, number in jobs:
        held = (Job.id == job_id) & (Job.lease_owner == worker) & (Job.attempts == number) & (Job.status == IN_FLIGHT)
        count = (
            Job.update(
                status=Job.claimed_from,
                due_at=Job.scheduled_at,
                lease_owner=None,
                attempts=Job.attempts - 1,
                updated_at=t,
            )
            .where(held & Job.claimed_from.in_([PENDING, RETRYING]))
            .execute()
        )
        count = count or (
            Job.update(due_at=t, lease_owner=None, updated_at=t).where(held & (Job.claimed_from == IN_FLIGHT)).execute()
        )
        if count:
            Attempt.delete().where((Attempt.job == job_id) & (Attempt.number == number)).execute()
            released += count
    return released


def expire_leases(worker: str, job_ids: list[str]) -> int:
    """Make this worker's in-flight jobs claimable now (shutdown after the grace period)."""
    return (
        Job.update(due_at=now())
        .where(Job.id.in_(job_ids) & (Job.lease_owner == worker) & (Job.status == IN_FLIGHT))
        .execute()
    )


def queue_depth(at: float | None = None) -> tuple[int, int]:
    """(jobs due and not claimed, jobs in flight) across every worker, for the metrics."""
    t = now() if at is None else at
    due = Job.select().where((Job.due_at <= t) & Job.status.in_([PENDING, RETRYING])).count()
    in_flight = Job.select().where(Job.status == IN_FLIGHT).count()
    return due, in_flight


def next_due_at() -> float | None:
    return database.execute_sql("SELECT MIN(due_at) FROM job WHERE due_at IS NOT NULL").fetchone()[0]


# -- outcomes ------------------------------------------------------------------------------------

# A job cancelled while its attempt ran stays cancelled; the attempt's outcome is still recorded. One statement for
# a batch of outcomes: `{values}` is one `(?, ?, ?, ?, ?, ?, ?, ?)` row per outcome (job id, attempt number, status,
# due_at, updated_at, last_error, result, last_delay_s); the casts give PostgreSQL the column types a VALUES list
# of NULLs and literals would not. Fenced per row: a row applies only if this worker holds that attempt's lease.
_RECORD_JOB_OUTCOMES = (
    f"UPDATE job SET status = CASE WHEN job.status = '{CANCELLED}' THEN job.status ELSE outcome.column3 END,"
    f" due_at = CASE WHEN job.status = '{CANCELLED}' THEN NULL ELSE CAST(outcome.column4 AS DOUBLE PRECISION) END,"
    " lease_owner = NULL, updated_at = CAST(outcome.column5 AS DOUBLE PRECISION), last_error = outcome.column6,"
    " result = COALESCE(outcome.column7, job.result),"
    " last_delay_s = COALESCE(CAST(outcome.column8 AS DOUBLE PRECISION), job.last_delay_s)"
    " FROM (VALUES {values}) AS outcome"
    " WHERE job.id = outcome.column1 AND job.attempts = CAST(outcome.column2 AS INTEGER) AND job.lease_owner = ?"
    f" AND job.status IN ('{IN_FLIGHT}', '{CANCELLED}')"
    " RETURNING job.id, job.status, job.attempts, job.max_attempts, job.due_at, job.updated_at, job.account_id"
)
#: Outcomes per statement: 8 parameters each, well under SQLite's and PostgreSQL's limits.
_OUTCOMES_CHUNK = 500
_RECORD_ATTEMPT_OUTCOME = (
    "UPDATE attempt SET started_at = ?, finished_at = ?, duration_ms = ?, status_code = ?, error = ?, outcome = ?,"
    " response = ? WHERE job_id = ? AND number = ?"
)


@dataclass(slots=True)
class OutcomeState:
    """A job's state after an outcome, not its request: a lifecycle.JobState (what lifecycle.event_view turns
    into the job event), stored as plain slots because the worker makes one per attempt."""

    id: str
    status: str
    attempts: int
    max_attempts: int
    due_at: float | None
    updated_at: float
    account_id: str
    last_error: dict | None = None
    result: dict | None = None


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt (job id, number) ended with, and the job's next state, as record_outcomes stores them."""

    job_id: str
    number: int
    outcome: str
    status: str
    started_at: float
    finished_at: float
    status_code: int | None
    error: dict | None
    result: dict | None
    due_at: float | None
    delay_s: float | None
    response: dict | None = None


def record_outcomes(worker: str, outcomes: list[AttemptOutcome]) -> list[OutcomeState | None]:
    """Store attempts' outcomes and their jobs' next states. Run inside a write transaction.

    Fenced: an outcome is stored only if `worker` holds the lease for that attempt number; one that is not
    writes nothing and gets None. The jobs' states are one statement (up to 500 a statement), fenced row by row,
    whose returned rows say which applied; the attempt rows of those that did are one executemany.
    """
    applied: dict[tuple[str, int], tuple] = {}
    texts = [(json_text(item.error), json_text(item.result)) for item in outcomes]
    for chunk in chunks(list(zip(outcomes, texts)), _OUTCOMES_CHUNK):
        text = _RECORD_JOB_OUTCOMES.format(values=", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)))
        params = [
            value
            for item, (error_text, result_text) in chunk
            for value in (
                item.job_id,
                item.number,
                item.status,
                item.due_at,
                item.finished_at,
                error_text,
                result_text,
                item.delay_s,
            )
        ]
        rows = database.execute_sql(built_sql(text), [*params, worker]).fetchall()
        applied.update(((row[0], row[2]), row) for row in rows)
    states: list[OutcomeState | None] = []
    attempt_rows = []
    for item, (error_text, result_text) in zip(outcomes, texts):
        row = applied.get((item.job_id, item.number))
        if row is None:
            states.append(None)
            continue
        states.append(OutcomeState(*row, last_error=item.error, result=item.result))
        # An attempt's response is the job's result unless the body cap cut it: one JSON text for both.
        response_text = (
            result_text if item.response is item.result or item.response == item.result else json_text(item.response)
        )
        attempt_rows.append(
            (
                item.started_at,
                item.finished_at,
                round((item.finished_at - item.started_at) * 1000, 3),
                item.status_code,
                error_text,
                item.outcome,
                response_text,
                item.job_id,
                item.number,
            )
        )
    if attempt_rows:
        database.cursor().executemany(sql(_RECORD_ATTEMPT_OUTCOME), attempt_rows)
    return states


# -- caller actions ------------------------------------------------------------------------------


def get_job(account_id: str, job_id: str) -> Job | None:
    return Job.get_or_none((Job.id == job_id) & (Job.account == account_id))


def list_attempts(job_id: str) -> list[Attempt]:
    return list(Attempt.select().where(Attempt.job == job_id).order_by(Attempt.number))


@dataclass(frozen=True)
class JobFilter:
    """What the jobs list, its counts and the bulk actions select: a status, a search and a creation window."""

    status: str | None = None
    # A job id, a URL host or an idempotency key, matched exactly (a host case-insensitively).
    search: str | None = None
    since: float | None = None  # created at or after
    until: float | None = None  # created before

    def condition(self, account_id: str):
        condition = Job.account == account_id
        if self.status:
            condition &= Job.status == self.status
        if self.search:
            condition &= (
                (Job.id == self.search) | (Job.host == self.search.lower()) | (Job.idempotency_key == self.search)
            )
        if self.since is not None:
            condition &= Job.created_at >= self.since
        if self.until is not None:
            condition &= Job.created_at < self.until
        return condition


def list_jobs(account_id: str, job_filter: JobFilter, limit: int, before: str | None) -> list[Job]:
    query = Job.select().where(job_filter.condition(account_id))
    if before:
        query = query.where(Job.id < before)
    return list(query.order_by(Job.id.desc()).limit(limit))


def count_by_status(account_id: str) -> dict[str, int]:
    rows = (
        Job.select(Job.status, peewee.fn.COUNT(Job.id).alias("n"))
        .where(Job.account == account_id)
        .group_by(Job.status)
        .tuples()
    )
    counts = {status: 0 for status in STATUSES}
    counts.update({status: n for status, n in rows})
    return counts


def _change_state(account_id: str, job_id: str, allowed_from: list[str], changes: dict) -> Job:
    """Apply `changes` if the job is in one of `allowed_from`; LookupError if unknown, ValueError(status) if not."""
    changed = (
        Job.update({Job.updated_at: now(), **changes})
        .where((Job.id == job_id) & (Job.account == account_id) & Job.status.in_(allowed_from))
        .execute()
    )
    job = get_job(account_id, job_id)
    if job is None:
        raise LookupError(job_id)
    if not changed:
        raise ValueError(job.status)
    return job


def cancel_job(account_id: str, job_id: str) -> Job:
    """Cancel a pending or retrying job."""
    return _change_state(account_id, job_id, CANCELLABLE, {Job.status: CANCELLED, Job.due_at: None})


def requeue_job(account_id: str, job_id: str) -> Job:
    """Queue a dead or cancelled job again with a fresh attempt budget; history is kept."""
    return _change_state(
        account_id,
        job_id,
        REQUEUEABLE,
        {Job.status: PENDING, Job.due_at: now(), Job.budget_start: Job.attempts, Job.last_delay_s: None},
    )


# -- bulk actions --------------------------------------------------------------------------------

# What a job event needs (lifecycle.event_view), returned by the bulk statements.
_EVENT_COLUMNS = (
    Job.id,
    Job.account,
    Job.status,
    Job.attempts,
    Job.max_attempts,
    Job.due_at,
    Job.updated_at,
    Job.last_error,
    Job.result,
)


def _change_matching(
    account_id: str, job_filter: JobFilter, allowed_from: tuple[str, ...], changes: dict, most: int
) -> list[Job]:
    """One UPDATE of up to `most` of the filter's jobs that are in `allowed_from`, oldest first; their new state."""
    matching = (
        Job.select(Job.id)
        .where(job_filter.condition(account_id) & Job.status.in_(allowed_from))
        .order_by(Job.id)
        .limit(most)
    )
    # The status is checked again on the row itself: a job claimed or changed since the sub-select is left alone.
    return list(
        Job.update({Job.updated_at: now(), **changes})
        .where(Job.id.in_(matching) & Job.status.in_(allowed_from))
        .returning(*_EVENT_COLUMNS)
        .execute()
    )


def cancel_matching(account_id: str, job_filter: JobFilter, most: int) -> list[Job]:
    """Cancel up to `most` pending or retrying jobs of the filter (POST /jobs/cancel)."""
    return _change_matching(account_id, job_filter, CANCELLABLE, {Job.status: CANCELLED, Job.due_at: None}, most)


def requeue_matching(account_id: str, job_filter: JobFilter, most: int) -> list[Job]:
    """Queue up to `most` dead or cancelled jobs of the filter again, each with a fresh budget (POST /jobs/retry)."""
    return _change_matching(
        account_id,
        job_filter,
        REQUEUEABLE,
        {Job.status: PENDING, Job.due_at: now(), Job.budget_start: Job.attempts, Job.last_delay_s: None},
        most,
    )
