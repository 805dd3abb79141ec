"""Claims, leases and fencing on a real SQLite file, in-process (the queries the worker runs)."""
from __future__ import annotations

import time

import pytest

from models import jobs as J
from models.accounts import create_account
from models.db import close_database, open_database
from models.ids import new_id
from models.schema import ensure_schema


@pytest.fixture
def db(database_url):
    owner = open_database(database_url)
    ensure_schema(owner)
    yield owner
    close_database()


def spec(**overrides):
    base = {"url": "http://127.0.0.1:9/", "host": "127.0.0.1", "method": "POST", "headers": {}, "body": None,
            "body_kind": "none", "timeout_s": 1.0, "max_attempts": 3,
            "backoff": {"base_s": 0.1, "cap_s": 1, "multiplier": 2, "jitter": "none"}, "run_at": None}
    return {**base, **overrides}


def outcome(db, job_id, number, worker, **kw):
    t = time.time()
    args = dict(outcome="success", status="succeeded", started_at=t, finished_at=t, status_code=200, error=None,
                result={"status_code": 200}, due_at=None, delay_s=None)
    args.update(kw)
    return db.write(J.record_outcome, job_id, number, worker, **args)


def test_a_stale_worker_cannot_overwrite_a_newer_outcome(db):
    account, _ = db.write(create_account, "fencing")
    job, _ = db.write(J.insert_job, account.id, spec(), None)
    [claimed] = db.write(J.claim_due, "worker-a", 10, 0.0)  # a lease that has already expired
    assert (claimed.id, claimed.attempts) == (job.id, 1)
    [reclaimed] = db.write(J.claim_due, "worker-b", 10, 30.0, at=time.time() + 0.01)
    assert reclaimed.attempts == 2
    with pytest.raises(J.StaleLease):
        outcome(db, job.id, 1, "worker-a")
    done = outcome(db, job.id, 2, "worker-b")
    assert done.status == "succeeded"
    with pytest.raises(J.StaleLease):
        outcome(db, job.id, 2, "worker-b")  # and only once
    rows = db.call(J.list_attempts, job.id)
    assert [(row.number, row.outcome) for row in rows] == [(1, "abandoned"), (2, "success")]


def test_a_held_lease_is_not_claimed_twice(db):
    account, _ = db.write(create_account, "leases")
    ids = [db.write(J.insert_job, account.id, spec(url=f"http://127.0.0.1:9/{n}"), None)[0].id for n in range(5)]
    first = db.write(J.claim_due, "worker-a", 3, 30.0)
    second = db.write(J.claim_due, "worker-b", 10, 30.0)
    assert len(first) == 3 and len(second) == 2
    assert {job.id for job in first} | {job.id for job in second} == set(ids)
    assert db.write(J.claim_due, "worker-c", 10, 30.0) == []
    assert db.write(J.renew_leases, "worker-a", [job.id for job in first], 30.0) == 3
    assert db.write(J.renew_leases, "worker-c", [job.id for job in first], 30.0) == 0


def test_release_gives_back_an_unstarted_claim(db):
    account, _ = db.write(create_account, "release")
    job, _ = db.write(J.insert_job, account.id, spec(), None)
    [claimed] = db.write(J.claim_due, "worker-a", 10, 30.0)
    assert db.write(J.release, "worker-a", [(claimed.id, claimed.attempts)]) == 1
    again = db.call(J.Job.get_by_id, job.id)
    assert (again.status, again.attempts, again.lease_owner) == ("pending", 0, None)
    assert db.call(J.list_attempts, job.id) == []


def test_ids_are_monotonic_so_newest_first_holds():
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)
