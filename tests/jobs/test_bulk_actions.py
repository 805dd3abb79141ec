"""The jobs list's filter (status, search, creation window) and the bulk actions on it, POST /jobs/cancel and
POST /jobs/retry: the app in this process on real SQLite and Redis. No worker runs, so jobs stay where the
test puts them (run_at far ahead keeps them pending)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from urllib.parse import quote

import redis as redis_lib

from models.channels import JOBS_WAKEUP, job_channel
from models.db import owner
from models.jobs import Job
from tests.helpers import wait_until

LATER = "2099-01-01T00:00:00Z"


def _submit(client, url="http://127.0.0.1:9/hook", key=None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    reply = client.post("/jobs", json={"url": url, "run_at": LATER}, headers=headers)
    assert reply.status_code == 202, reply.get_json()
    return reply.get_json()["id"]


def _make_dead(*job_ids) -> None:
    owner().write(
        lambda: Job.update(status="dead", due_at=None, attempts=2, max_attempts=2).where(Job.id.in_(job_ids)).execute()
    )


def _ids(client, query="") -> set[str]:
    reply = client.get(f"/jobs?limit=500&{query}")
    assert reply.status_code == 200, reply.get_json()
    return {job["id"] for job in reply.get_json()["jobs"]}


def _envelope(reply, status: int, parameter: str) -> None:
    assert reply.status_code == status, reply.get_json()
    error = reply.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["details"] == {"parameter": parameter}
    assert error["message"]


def test_the_list_is_searched_by_job_id_url_host_and_idempotency_key(client):
    first = _submit(client, "http://alpha.localhost:9/a", key="order-17")
    second = _submit(client, "http://127.0.0.1:9/b")
    assert _ids(client) == {first, second}
    assert _ids(client, f"q={first}") == {first}
    assert _ids(client, "q=ALPHA.localhost") == {first}
    assert _ids(client, "q=127.0.0.1") == {second}
    assert _ids(client, "q=order-17") == {first}
    assert _ids(client, "q=order-18") == set()


def test_the_list_is_filtered_by_creation_time(client):
    first = _submit(client)
    time.sleep(0.01)  # creation times a little apart, for a boundary between them
    second = _submit(client)
    created = owner().call(lambda: [Job.get_by_id(job_id).created_at for job_id in (first, second)])
    boundary = datetime.fromtimestamp(sum(created) / 2, tz=timezone.utc).isoformat()
    assert _ids(client, f"until={quote(boundary)}") == {first}
    assert _ids(client, f"since={quote(boundary)}") == {second}
    assert _ids(client, f"since={quote(boundary)}&status=pending") == {second}
    assert _ids(client, "since=2099-01-01T00:00:00") == set()  # no offset: UTC


def test_bad_filters_are_refused_with_the_envelope(client):
    _envelope(client.get("/jobs?since=yesterday"), 400, "since")
    _envelope(client.get("/jobs?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z"), 400, "until")
    _envelope(client.get("/jobs?q=%00"), 400, "q")
    _envelope(client.get("/jobs?q=" + "x" * 256), 400, "q")
    _envelope(client.get("/jobs?status=lost"), 400, "status")
    # The bulk actions take only the statuses they can change.
    _envelope(client.post("/jobs/retry?status=pending"), 400, "status")
    _envelope(client.post("/jobs/cancel?status=dead"), 400, "status")
    _envelope(client.post("/jobs/cancel?until=soon"), 400, "until")


def test_bulk_cancel_cancels_the_waiting_jobs_of_the_filter_and_publishes_each(client, redis_server):
    kept = _submit(client, "http://alpha.localhost:9/a")
    matching = [_submit(client, "http://127.0.0.1:9/b") for _ in range(3)]
    _make_dead(matching[2])
    events = redis_lib.Redis.from_url(redis_server.url, decode_responses=True).pubsub()
    events.subscribe(*(job_channel(job_id) for job_id in [kept, *matching]))
    try:
        reply = client.post("/jobs/cancel?q=127.0.0.1")
        assert reply.status_code == 200
        assert reply.get_json() == {"affected": 2, "max_per_call": 1000}
        statuses = {job["id"]: job["status"] for job in client.get("/jobs").get_json()["jobs"]}
        assert statuses == {kept: "pending", matching[0]: "cancelled", matching[1]: "cancelled", matching[2]: "dead"}
        published = []
        while len(published) < 2:
            message = wait_until(lambda: events.get_message(ignore_subscribe_messages=True, timeout=0.1), 5)
            published.append(json.loads(message["data"]))
        assert {(e["id"], e["status"]) for e in published} == {(matching[0], "cancelled"), (matching[1], "cancelled")}
        assert events.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
        # Nothing left to cancel: 0, not an error.
        assert client.post("/jobs/cancel?q=127.0.0.1").get_json()["affected"] == 0
    finally:
        events.close()


def test_bulk_retry_requeues_dead_jobs_with_a_fresh_budget_and_wakes_the_dispatcher(client, redis_server):
    dead = [_submit(client) for _ in range(2)]
    pending = _submit(client)
    _make_dead(*dead)
    wakeups = redis_lib.Redis.from_url(redis_server.url, decode_responses=True).pubsub()
    wakeups.subscribe(JOBS_WAKEUP)
    try:
        wait_until(lambda: wakeups.get_message(timeout=0.1), 5)  # the subscription is confirmed
        reply = client.post("/jobs/retry?status=dead")
        assert reply.status_code == 202
        assert reply.get_json()["affected"] == 2
        assert wait_until(lambda: wakeups.get_message(ignore_subscribe_messages=True, timeout=0.1), 5)
    finally:
        wakeups.close()
    for job_id in dead:
        job = client.get(f"/jobs/{job_id}").get_json()
        assert job["status"] == "pending" and job["attempts"] == 2 and job["attempts_left"] == 2
        assert job["next_attempt_at"] is not None
    assert client.get(f"/jobs/{pending}").get_json()["status"] == "pending"


def test_bulk_actions_touch_only_the_callers_jobs_and_at_most_the_maximum(client, app, new_app_key, monkeypatch):
    other = app.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {new_app_key()}"
    theirs = _submit(other)
    mine = [_submit(client) for _ in range(3)]
    import web.jobs

    monkeypatch.setattr(web.jobs, "BULK_ACTION_MAX", 2)
    assert client.post("/jobs/cancel").get_json() == {"affected": 2, "max_per_call": 2}
    assert client.post("/jobs/cancel").get_json()["affected"] == 1
    assert {job["status"] for job in client.get("/jobs").get_json()["jobs"]} == {"cancelled"}
    assert other.get(f"/jobs/{theirs}").get_json()["status"] == "pending"
    # Oldest first: the first call took the first two submitted.
    assert client.post("/jobs/retry").get_json()["affected"] == 2
    statuses = {job_id: client.get(f"/jobs/{job_id}").get_json()["status"] for job_id in mine}
    assert statuses == {mine[0]: "pending", mine[1]: "pending", mine[2]: "cancelled"}
