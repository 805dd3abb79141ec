"""The engine across a Redis restart and outage: real web and worker processes on a redis-server of the test's
own (started and stopped by it), so that its restart touches no other test.

Job events and wake-ups go out on connections that ask Redis for no replies (models/events.py NoReplyPublisher):
what was written into a connection as its server died is lost unseen. The engine must not depend on it: a
wake-up lost is made up by the dispatchers' timers, a job stream open across the restart is closed (its browser
reads the state again), and what is published after the restart reaches streams opened after it.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import RedisServer, make_client
from tests.helpers import create_account, sqlite_url, system_env, wait_until
from tests.metrics.conftest import SSEClient

# A job the dispatcher leaves alone: it is streamed, then cancelled.
FAR = "2099-01-01T00:00:00Z"


@pytest.fixture
def own_redis(tmp_path):
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir).start()
    yield server
    server.stop()


@pytest.fixture
def engine(own_redis, services, tmp_path):
    env = system_env(sqlite_url(tmp_path), own_redis.url)
    web, worker = services.web(env, ready=False), services.worker(env, role="jobs", ready=False)
    web.wait_ready(), worker.wait_ready()
    key = create_account(env)
    return web, key, make_client(web.url, key)


def _status(api, job_id: str) -> str:
    return api.get(f"/jobs/{job_id}").json()["status"]


def _stream(web, key: str, job_id: str) -> SSEClient:
    """A job stream that got its first frame (the web's subscription may still be coming back: try again)."""

    def opened():
        stream = SSEClient(web.url, f"/jobs/{job_id}/events", key=key)
        if wait_until(lambda: stream.events or stream.ended.is_set(), 10, 0.02, "a first frame or the end"):
            if stream.events:
                return stream
        stream.close()
        return None

    return wait_until(opened, 15, 0.1, "a job stream with its first frame")


def test_jobs_are_delivered_and_streamed_across_a_redis_restart(own_redis, engine, partner):
    web, key, api = engine
    job = api.post("/jobs", json={"url": partner.url + "/ok"}).json()
    wait_until(lambda: _status(api, job["id"]) == "succeeded", 15, 0.05, "a job before the restart")
    waiting = api.post("/jobs", json={"url": partner.url + "/ok", "run_at": FAR}).json()
    before = _stream(web, key, waiting["id"])

    own_redis.restart()  # nothing kept; every connection of web and worker now reads an end of file
    # The open job stream is closed: what was published while its subscription was down is gone.
    wait_until(before.ended.is_set, 15, 0.05, "the job stream open across the restart to close")

    # The first publishes after the restart go out on fresh connections: a job submitted now is delivered
    # (woken, or found by the dispatcher's timer), and its stream, and the waiting job's, see every change.
    started = time.monotonic()
    job = api.post("/jobs", json={"url": partner.url + "/sleep?s=0.3"}).json()
    stream = _stream(web, key, job["id"])
    again = _stream(web, key, waiting["id"])
    assert api.post(f"/jobs/{waiting['id']}/cancel").status_code == 200
    stream.wait_for(lambda events: events[-1].data["status"] == "succeeded", 15, "the job's stream to end on succeeded")
    again.wait_for(lambda events: events[-1].data["status"] == "cancelled", 10, "the cancel, live")
    assert time.monotonic() - started < 10  # well within the dispatcher's idle timer (5 s) and the web's backoff
    for open_stream in (before, stream, again):
        open_stream.close()


def test_a_job_submitted_while_redis_is_down_is_delivered_by_the_dispatchers_timer(own_redis, engine, partner):
    web, key, api = engine
    job = api.post("/jobs", json={"url": partner.url + "/ok"}).json()
    wait_until(lambda: _status(api, job["id"]) == "succeeded", 15, 0.05, "a job with Redis up")
    own_redis.stop()
    # The commit is the answer: its event and wake-up are lost (logged), the dispatcher polls while Redis is down.
    response = api.post("/jobs", json={"url": partner.url + "/ok"})
    assert response.status_code == 202
    wait_until(lambda: _status(api, response.json()["id"]) == "succeeded", 10, 0.05, "the job, without Redis")
    own_redis.start()
    job = api.post("/jobs", json={"url": partner.url + "/ok"}).json()
    wait_until(lambda: _status(api, job["id"]) == "succeeded", 10, 0.05, "a job once Redis is back")
