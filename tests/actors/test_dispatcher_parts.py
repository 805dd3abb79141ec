"""The dispatcher's pieces in process: HostSlots, WakeDelay and OutcomeHold (pure), the Claimer on a real SQLite
file, and the OutcomeWriter on a real SQLite file publishing to a real Redis."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import redis as redis_lib

from actors.claimer import Claimer
from actors.coalescing import OutcomeHold, WakeDelay
from actors.outcome_writer import Outcome, OutcomeWriter, Written
from actors.outcomes import decide
from actors.slots import HostSlots
from actors.transport import Response
from models import jobs
from models.accounts import create_account
from models.channels import job_channel
from models.events import publish_job_event
from tests.helpers import job_spec, wait_until


def job(job_id: str, host: str = "a.test", attempts: int = 1):
    return SimpleNamespace(id=job_id, host=host, attempts=attempts)


# -- WakeDelay -------------------------------------------------------------------------------------


def test_a_lone_submission_is_claimed_at_once_and_a_stream_of_them_waits_the_window():
    now = [100.0]
    delay = WakeDelay(0.02, clock=lambda: now[0])
    assert delay.for_submission() == 0.0  # the first one heard
    now[0] += 0.010
    assert delay.for_submission() == 0.02  # 10 ms after another: a stream, whose jobs then share a claim
    now[0] += 0.019
    assert delay.for_submission() == 0.02
    now[0] += 0.5
    assert delay.for_submission() == 0.0  # quiet for longer than the window: alone again


def test_no_window_never_waits():
    now = [0.0]
    delay = WakeDelay(0.0, clock=lambda: now[0])
    assert [delay.for_submission() for _ in range(3)] == [0.0, 0.0, 0.0]


# -- OutcomeHold ------------------------------------------------------------------------------------


def test_an_outcome_waits_for_the_attempts_sent_with_it_and_no_longer():
    now = [100.0]
    hold = OutcomeHold(0.02, clock=lambda: now[0])
    hold.sent(["a", "b", "c"])
    hold.finished("a", outcome_waiting=True)
    assert hold.wait_s() == pytest.approx(0.02)  # b and c are still on their way
    now[0] += 0.005
    hold.finished("b", outcome_waiting=True)
    assert hold.wait_s() == pytest.approx(0.015)  # the window counts from the first that waited
    hold.finished("c", outcome_waiting=True)
    assert hold.wait_s() == 0.0  # all three are in: one write for them
    hold.written()


def test_the_window_bounds_the_wait_for_a_slow_attempt():
    now = [0.0]
    hold = OutcomeHold(0.02, clock=lambda: now[0])
    hold.sent(["fast", "slow"])
    hold.finished("fast", outcome_waiting=True)
    assert hold.wait_s() > 0
    now[0] += 0.02
    assert hold.wait_s() == 0.0
    hold.written()
    now[0] += 1.0
    hold.finished("slow", outcome_waiting=True)
    assert hold.wait_s() == 0.0  # nothing left on its way that went out with it


def test_an_attempt_sent_alone_or_with_others_already_done_is_written_at_once():
    hold = OutcomeHold(0.02, clock=lambda: 0.0)
    hold.sent(["alone"])
    hold.finished("alone", outcome_waiting=True)
    assert hold.wait_s() == 0.0
    hold.written()
    hold.sent(["x", "y"])
    hold.finished("x", outcome_waiting=False)  # failed before deciding: nothing of it to write
    hold.finished("y", outcome_waiting=True)
    assert hold.wait_s() == 0.0


def test_outcomes_wait_only_for_their_own_sending():
    hold = OutcomeHold(0.02, clock=lambda: 0.0)
    hold.sent(["first"])
    hold.sent(["second", "its-mate"])
    hold.finished("first", outcome_waiting=True)
    assert hold.wait_s() == 0.0  # the attempts still out went with another claim


def test_no_window_never_holds_an_outcome():
    hold = OutcomeHold(0.0, clock=lambda: 0.0)
    hold.sent(["a", "b"])
    hold.finished("a", outcome_waiting=True)
    assert hold.wait_s() == 0.0


# -- HostSlots -------------------------------------------------------------------------------------


def test_slots_count_per_host_and_free_only_what_they_hold():
    slots = HostSlots(max_in_flight=10, per_host=2)
    slots.take(job("1"))
    slots.take(job("2", "b.test"))
    assert slots.free_slots() == {"a.test": 1, "b.test": 1}
    assert slots.free(("1", 1)) == "a.test"
    assert slots.free(("1", 1)) is None
    assert slots.free_slots() == {"b.test": 1}


def test_a_retry_of_the_same_job_holds_its_own_slot():
    slots = HostSlots(max_in_flight=10, per_host=2)
    slots.take(job("1", attempts=1))
    slots.take(job("1", attempts=2))
    assert slots.free_slots() == {"a.test": 0}
    slots.free(("1", 1))
    assert slots.free_slots() == {"a.test": 1}


def test_a_claim_wants_what_can_start_plus_one_hosts_worth_of_waiting_jobs():
    slots = HostSlots(max_in_flight=100, per_host=2)
    slots.take(job("1"))
    slots.take(job("2"))
    # Host full: no free slot, room for two waiting jobs.
    assert slots.wanted(claim_batch=50, free_slots=slots.free_slots()) == 2
    slots.wait(job("3"))
    assert slots.wanted(claim_batch=50, free_slots=slots.free_slots()) == 1
    assert slots.wanted(claim_batch=50, free_slots={"a.test": 0, "b.test": 2}) == 3
    assert slots.wanted(claim_batch=1, free_slots={"b.test": 2}) == 1


def test_a_claim_never_takes_the_worker_beyond_max_in_flight():
    slots = HostSlots(max_in_flight=3, per_host=64)
    slots.take(job("1"))
    slots.take(job("2", "b.test"))
    assert slots.wanted(claim_batch=50, free_slots=slots.free_slots()) == 1


def test_freed_slots_go_to_waiting_jobs_in_order_and_are_started_by_the_next_claim():
    slots = HostSlots(max_in_flight=10, per_host=1)
    slots.take(job("1"))
    slots.wait(job("2"))
    slots.wait(job("3"))
    slots.promote("a.test")
    assert slots.take_to_start() == []  # the host is still full
    slots.free(("1", 1))
    slots.promote("a.test")
    assert [j.id for j in slots.take_to_start()] == ["2"]
    assert slots.take_to_start() == []
    assert slots.free_slots() == {"a.test": 0}
    assert slots.waiting_count == 1 and slots.has_waiting("a.test") and not slots.has_waiting("b.test")


def test_a_successor_is_taken_only_by_a_running_attempt_of_a_host_with_waiting_jobs():
    slots = HostSlots(max_in_flight=10, per_host=1)
    slots.take(job("1"))
    assert slots.take_successor("a.test", ("1", 1)) is None  # nothing waits
    slots.wait(job("2"))
    assert slots.take_successor("a.test", ("9", 1)) is None  # not a running attempt
    successor = slots.take_successor("a.test", ("1", 1))
    assert successor.id == "2" and slots.waiting_count == 0 and not slots.has_waiting("a.test")
    assert "2" in slots.held_ids()  # its lease is still renewed
    assert slots.successor_of(("1", 1)) is successor
    assert slots.successor_of(("1", 1)) is None


def test_giving_up_unstarted_jobs_returns_the_waiting_and_to_start_ones_and_frees_their_slots():
    slots = HostSlots(max_in_flight=10, per_host=1)
    slots.take(job("run"))
    slots.wait(job("succ"))
    slots.take_successor("a.test", ("run", 1))
    slots.wait(job("wait"))
    slots.take(job("start", "b.test"))
    slots.to_start.append(job("start", "b.test"))
    # The successor's fate is its outcome write's to say (it may be started in it).
    assert sorted(slots.give_up_unstarted()) == [("start", 1), ("wait", 1)]
    assert slots.held_ids() == ["run", "succ"]
    assert slots.stats() == {"running": 1, "waiting": 0, "starting": 0, "successors": 1}


# -- Claimer and OutcomeWriter on a real database ----------------------------------------------------


@pytest.fixture
def db(database):
    return database


def _submit(db, account_id: str, hosts: list[str]) -> list:
    return [db.write(jobs.insert_job, account_id, job_spec(f"http://{host}/x", host), None)[0] for host in hosts]


def _attempt_rows(db, job_id: str) -> list[tuple]:
    return [(a.number, a.outcome) for a in db.call(jobs.list_attempts, job_id)]


def test_a_claim_starts_only_the_jobs_that_fit_a_free_slot(db):
    account, _ = db.write(create_account, "a")
    submitted = _submit(db, account.id, ["a.test", "a.test", "a.test", "b.test"])
    claimer = Claimer(db, "worker-a", lease_s=30.0, per_host_cap=2)
    result = claimer.claim(10, [], {"a.test": 1})
    assert sorted(j.id for j in result.jobs) == sorted(j.id for j in submitted)
    started = {j.id for j in result.jobs if j.started}
    assert len([j for j in result.jobs if j.started and j.host == "a.test"]) == 1
    assert submitted[3].id in started  # a host with nothing running has every slot free
    for j in submitted:
        assert _attempt_rows(db, j.id) == ([(1, None)] if j.id in started else [])
    # It came back short of what was wanted: the next due time (the leases' expiry) came with it.
    assert result.next_due_at is not None and result.next_due_at > max(j.created_at for j in submitted)


def test_a_claim_starts_the_waiting_jobs_it_is_given_unless_their_lease_was_lost(db):
    account, _ = db.write(create_account, "a")
    first, second = _submit(db, account.id, ["a.test", "a.test"])
    claimer = Claimer(db, "worker-a", lease_s=30.0, per_host_cap=1)
    waiting = [j for j in claimer.claim(10, [], {"a.test": 0}).jobs if not j.started]
    assert len(waiting) == 2
    # worker-b takes one of them over after worker-a's lease ran out.
    [taken] = db.write(jobs.claim_due, "worker-b", 1, 30.0, at=waiting[0].due_at + 1)
    result = claimer.claim(0, waiting, {})
    assert result.jobs == [] and result.next_due_at is None
    assert result.started_ids == {j.id for j in waiting} - {taken.id}


def test_released_jobs_go_back_uncharged(db):
    account, _ = db.write(create_account, "a")
    [submitted] = _submit(db, account.id, ["a.test"])
    claimer = Claimer(db, "worker-a", lease_s=30.0, per_host_cap=1)
    [claimed] = claimer.claim(1, [], {"a.test": 0}).jobs
    assert not claimed.started
    assert claimer.release([(claimed.id, claimed.attempts)]) == 1
    again = db.call(jobs.get_job, account.id, submitted.id)
    assert (again.status, again.attempts, again.lease_owner) == (jobs.PENDING, 0, None)


def _response(status_code: int) -> Response:
    return Response(started_at=10.0, finished_at=10.5, status_code=status_code, headers={}, body=b"ok")


def test_an_outcome_is_written_with_its_successor_started_and_its_event_published(db, redis_url):
    account, _ = db.write(create_account, "a")
    _submit(db, account.id, ["a.test", "a.test"])
    first, successor = Claimer(db, "worker-a", lease_s=30.0, per_host_cap=1).claim(2, [], {"a.test": 1}).jobs
    assert first.started and not successor.started
    redis = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    events = redis.pubsub(ignore_subscribe_messages=True)
    events.subscribe(job_channel(first.id))
    writer = OutcomeWriter(db, "worker-a", lambda state: publish_job_event(redis, state))

    [written] = writer.write([Outcome(first, decide(first, _response(200), 1), _response(200), successor)])

    assert written == Written(jobs.SUCCEEDED, successor_started=True)
    assert _attempt_rows(db, first.id) == [(1, jobs.SUCCESS)]
    assert _attempt_rows(db, successor.id) == [(1, None)]
    message = wait_until(lambda: events.get_message(timeout=0.2), timeout=5)
    assert json.loads(message["data"])["status"] == jobs.SUCCEEDED
    events.close()
    redis.close()


def test_outcomes_written_together_are_fenced_one_by_one(db):
    account, _ = db.write(create_account, "a")
    _submit(db, account.id, ["a.test", "a.test", "a.test"])
    lost, kept, successor = Claimer(db, "worker-a", lease_s=30.0, per_host_cap=2).claim(3, [], {"a.test": 2}).jobs
    assert lost.started and kept.started and not successor.started
    db.write(jobs.renew_leases, "worker-a", [kept.id, successor.id], 100.0)
    [taken] = db.write(jobs.claim_due, "worker-b", 3, 30.0, at=lost.due_at + 1)  # worker-b took `lost` over
    assert taken.id == lost.id
    published = []
    writer = OutcomeWriter(db, "worker-a", published.append)

    written = writer.write(
        [
            Outcome(lost, decide(lost, _response(200), 1), _response(200), successor),
            Outcome(kept, decide(kept, _response(503), 1), _response(503)),
        ]
    )

    # The fenced-off outcome wrote nothing, not even its successor's start; the other one was written.
    assert written == [Written(None, False), Written(jobs.RETRYING, False)]
    assert [state.id for state in published] == [kept.id]
    assert _attempt_rows(db, lost.id) == [(1, jobs.ABANDONED), (2, None)]
    assert _attempt_rows(db, kept.id) == [(1, jobs.RETRY)]
    assert _attempt_rows(db, successor.id) == []
