"""Claims and fencing at the query level, on a real SQLite file (no worker process)."""

import pytest

from models import jobs
from models.accounts import create_account
from models.db import close_database, open_database
from models.ids import new_id
from models.schema import ensure_schema
from tests.helpers import job_spec


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, database_url):
    url = database_url if request.param == "sqlite" else request.getfixturevalue("postgres_server_url")
    owner = open_database(url)
    ensure_schema(owner)
    if request.param == "postgresql":
        owner.call(lambda: owner.db.execute_sql("TRUNCATE attempt, job, api_key, session, account CASCADE"))
    yield owner
    close_database()


def _outcome(db, job, worker, status=jobs.SUCCEEDED, outcome=jobs.SUCCESS):
    """The job's state after this outcome, as the engine stores it; None if the lease was fenced off."""
    [state] = db.write(
        jobs.record_outcomes,
        worker,
        [
            jobs.AttemptOutcome(
                job.id,
                job.attempts,
                outcome=outcome,
                status=status,
                started_at=1.0,
                finished_at=2.0,
                status_code=200,
                error=None,
                result={"status_code": 200},
                due_at=None,
                delay_s=None,
            )
        ],
    )
    return state


def test_a_claimed_job_is_not_claimed_again_while_its_lease_holds(db):
    account, _ = db.write(create_account, "a")
    db.write(jobs.insert_job, account.id, job_spec(), None)
    first = db.write(jobs.claim_due, "worker-a", 10, 30.0)
    second = db.write(jobs.claim_due, "worker-b", 10, 30.0)
    assert len(first) == 1 and second == []


def test_stale_worker_cannot_overwrite_a_newer_outcome(db):
    account, _ = db.write(create_account, "a")
    job, _ = db.write(jobs.insert_job, account.id, job_spec(), None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 30.0)
    # worker-a stalls past its lease; worker-b takes the job over.
    [b] = db.write(jobs.claim_due, "worker-b", 10, 30.0, at=a.due_at + 1)
    assert b.attempts == 2
    assert _outcome(db, a, "worker-a") is None, "fenced off"
    done = _outcome(db, b, "worker-b")
    assert done.status == jobs.SUCCEEDED
    attempts = db.call(jobs.list_attempts, job.id)
    assert [(x.number, x.outcome) for x in attempts] == [(1, jobs.ABANDONED), (2, jobs.SUCCESS)]


def test_lost_last_attempt_makes_the_job_dead_not_retried_forever(db):
    account, _ = db.write(create_account, "a")
    spec = job_spec(max_attempts=1)
    job, _ = db.write(jobs.insert_job, account.id, spec, None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 1.0)
    assert db.write(jobs.claim_due, "worker-b", 10, 1.0, at=a.due_at + 1) == []
    dead = db.call(jobs.Job.get_by_id, job.id)
    assert dead.status == jobs.DEAD and dead.due_at is None and dead.last_error["kind"] == "abandoned"


def test_release_gives_back_unstarted_claims(db):
    account, _ = db.write(create_account, "a")
    job, _ = db.write(jobs.insert_job, account.id, job_spec(), None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 30.0)
    assert db.write(jobs.release, "worker-a", [(a.id, a.attempts)]) == 1
    again = db.call(jobs.Job.get_by_id, job.id)
    assert (again.status, again.attempts, again.lease_owner) == (jobs.PENDING, 0, None)
    assert db.call(jobs.list_attempts, job.id) == []
    [b] = db.write(jobs.claim_due, "worker-b", 10, 30.0)
    assert b.attempts == 1


def _never_start(job):
    return False


def _rows(db, job_id):
    return [(x.number, x.outcome) for x in db.call(jobs.list_attempts, job_id)]


def test_a_claim_that_never_started_comes_back_uncharged_when_its_lease_expires(db):
    account, _ = db.write(create_account, "a")
    job, _ = db.write(jobs.insert_job, account.id, job_spec(max_attempts=1), None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 1.0, start_now=_never_start)
    assert a.started is False and _rows(db, job.id) == []
    # worker-a dies before a slot freed for it: the next worker gets the same, uncharged attempt.
    [b] = db.write(jobs.claim_due, "worker-b", 10, 30.0, at=a.due_at + 1)
    assert (b.attempts, b.started) == (1, True)
    assert _rows(db, job.id) == [(1, None)]
    assert _outcome(db, b, "worker-b").status == jobs.SUCCEEDED
    assert _rows(db, job.id) == [(1, jobs.SUCCESS)]


def test_an_attempt_started_after_its_claim_is_charged_when_lost(db):
    account, _ = db.write(create_account, "a")
    job, _ = db.write(jobs.insert_job, account.id, job_spec(max_attempts=1), None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 1.0, start_now=_never_start)
    assert db.write(jobs.start_attempts, "worker-a", [(a.id, a.attempts)]) == {a.id}
    assert db.write(jobs.claim_due, "worker-b", 10, 30.0, at=a.due_at + 1) == []
    dead = db.call(jobs.Job.get_by_id, job.id)
    assert (dead.status, dead.attempts) == (jobs.DEAD, 1)
    assert _rows(db, job.id) == [(1, jobs.ABANDONED)]


def test_a_worker_that_lost_the_lease_cannot_start_the_attempt(db):
    account, _ = db.write(create_account, "a")
    job, _ = db.write(jobs.insert_job, account.id, job_spec(), None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 1.0, start_now=_never_start)
    [b] = db.write(jobs.claim_due, "worker-b", 10, 30.0, at=a.due_at + 1, start_now=_never_start)
    assert b.attempts == a.attempts == 1
    assert db.write(jobs.start_attempts, "worker-a", [(a.id, a.attempts)]) == set()
    assert db.write(jobs.start_attempts, "worker-b", [(b.id, b.attempts)]) == {b.id}
    assert _rows(db, job.id) == [(1, None)] and db.call(jobs.Job.get_by_id, job.id).lease_owner == "worker-b"


def test_release_gives_back_a_started_but_unsent_attempt_and_a_taken_over_claim_uncharged(db):
    account, _ = db.write(create_account, "a")
    job, _ = db.write(jobs.insert_job, account.id, job_spec(), None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 1.0)
    assert db.write(jobs.release, "worker-a", [(a.id, a.attempts)]) == 1
    assert _rows(db, job.id) == [] and db.call(jobs.Job.get_by_id, job.id).attempts == 0
    # Taken over from an expired lease and given back at shutdown: claimable at once, still uncharged.
    [a] = db.write(jobs.claim_due, "worker-a", 10, 1.0, start_now=_never_start)
    [b] = db.write(jobs.claim_due, "worker-b", 10, 30.0, at=a.due_at + 1, start_now=_never_start)
    assert db.write(jobs.release, "worker-b", [(b.id, b.attempts)]) == 1
    [c] = db.write(jobs.claim_due, "worker-c", 10, 30.0, at=a.due_at + 1)
    assert c.attempts == 1 and _rows(db, job.id) == [(1, None)]


def test_claim_takes_due_jobs_in_due_order_and_leaves_future_ones(db):
    account, _ = db.write(create_account, "a")
    later, _ = db.write(jobs.insert_job, account.id, job_spec(run_at=4_000_000_000.0), None)
    now_job, _ = db.write(jobs.insert_job, account.id, job_spec(), None)
    claimed = db.write(jobs.claim_due, "w", 10, 30.0)
    assert [j.id for j in claimed] == [now_job.id]
    assert db.call(jobs.next_due_at) == pytest.approx(claimed[0].due_at)


def test_lease_renewal_only_extends_leases_still_held(db):
    account, _ = db.write(create_account, "a")
    db.write(jobs.insert_job, account.id, job_spec(), None)
    [a] = db.write(jobs.claim_due, "worker-a", 10, 1.0)
    db.write(jobs.claim_due, "worker-b", 10, 30.0, at=a.due_at + 1)
    assert db.write(jobs.renew_leases, "worker-a", [a.id], 30.0) == 0


def test_ids_are_monotonic_so_newest_first_holds():
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)


def _attempt_outcome(job, at: float, **changes) -> jobs.AttemptOutcome:
    fields = {
        "outcome": jobs.SUCCESS,
        "status": jobs.SUCCEEDED,
        "started_at": at + 0.5,
        "finished_at": at + 0.75,
        "status_code": 200,
        "error": None,
        "result": {"status_code": 200, "body": "ok"},
        "due_at": None,
        "delay_s": None,
    }
    fields.update(changes)
    fields.setdefault("response", fields["result"])
    return jobs.AttemptOutcome(job.id, job.attempts, **fields)


def test_outcomes_stored_together_are_fenced_one_by_one_with_their_times_and_json(db):
    account, _ = db.write(create_account, "a")
    spec = job_spec(headers={"X-Trace": "é"}, body=b'{"n":1}', body_kind="json")
    submitted = [db.write(jobs.insert_job, account.id, spec, None)[0] for _ in range(3)]
    at = max(job.due_at for job in submitted) + 1
    claimed = db.write(jobs.claim_due, "worker-a", 10, 30.0, at=at)
    # The claim's rows are what the worker sends: the request as submitted, the lease and the times it set.
    assert sorted(job.id for job in claimed) == sorted(job.id for job in submitted)
    for job in claimed:
        assert (job.headers, bytes(job.body), job.backoff) == (spec["headers"], spec["body"], spec["backoff"])
        assert (job.status, job.claimed_from, job.attempts, job.due_at) == (jobs.IN_FLIGHT, jobs.PENDING, 1, at + 30)
    lost, retried, given_up = claimed
    db.write(jobs.renew_leases, "worker-a", [retried.id, given_up.id], 100.0)
    [taken] = db.write(jobs.claim_due, "worker-b", 10, 30.0, at=lost.due_at + 1)
    assert taken.id == lost.id
    error = {"kind": "http_status", "status_code": 503, "message": "HTTP 503"}
    outcomes = [
        _attempt_outcome(lost, at),
        _attempt_outcome(
            retried,
            at,
            outcome=jobs.RETRY,
            status=jobs.RETRYING,
            status_code=503,
            error=error,
            result={"status_code": 503, "body": "busy"},
            due_at=at + 2.5,
            delay_s=2.5,
        ),
        _attempt_outcome(
            given_up,
            at,
            outcome=jobs.GIVE_UP,
            status=jobs.DEAD,
            status_code=400,
            error={**error, "status_code": 400},
            result={"status_code": 400, "body": "x" * 50, "body_truncated": False},
            response={"status_code": 400, "body": "x" * 10, "body_truncated": True},
        ),
    ]

    states = db.write(jobs.record_outcomes, "worker-a", outcomes)

    assert states[0] is None  # worker-b holds it now: nothing of worker-a's outcome was written
    assert [(s.id, s.status, s.attempts, s.due_at, s.updated_at) for s in states[1:]] == [
        (retried.id, jobs.RETRYING, 1, at + 2.5, outcomes[1].finished_at),
        (given_up.id, jobs.DEAD, 1, None, outcomes[2].finished_at),
    ]
    assert all(state.account_id == account.id for state in states[1:])
    lost_now = db.call(jobs.Job.get_by_id, lost.id)
    assert (lost_now.status, lost_now.lease_owner, lost_now.attempts, lost_now.result) == (
        jobs.IN_FLIGHT,
        "worker-b",
        2,
        None,
    )
    assert _rows(db, lost.id) == [(1, jobs.ABANDONED), (2, None)]
    for outcome in outcomes[1:]:
        job = db.call(jobs.Job.get_by_id, outcome.job_id)
        assert (job.status, job.due_at, job.lease_owner, job.updated_at) == (
            outcome.status,
            outcome.due_at,
            None,
            outcome.finished_at,
        )
        assert (job.last_error, job.result, job.last_delay_s) == (outcome.error, outcome.result, outcome.delay_s)
        [attempt] = db.call(jobs.list_attempts, outcome.job_id)
        assert (attempt.number, attempt.worker, attempt.scheduled_at, attempt.outcome) == (
            1,
            "worker-a",
            job.created_at,
            outcome.outcome,
        )
        assert (attempt.started_at, attempt.finished_at, attempt.duration_ms) == (at + 0.5, at + 0.75, 250.0)
        assert (attempt.status_code, attempt.error, attempt.response) == (
            outcome.status_code,
            outcome.error,
            outcome.response,
        )
