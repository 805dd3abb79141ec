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
    return db.write(
        jobs.record_outcome,
        job.id,
        job.attempts,
        worker,
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
    with pytest.raises(jobs.StaleLease):
        _outcome(db, a, "worker-a")
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
