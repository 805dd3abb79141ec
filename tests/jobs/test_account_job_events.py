"""GET /jobs/events: one stream of every job event of the caller's account, for the jobs list. A real web
process (the stream hub runs only under gevent) and a worker, real Redis."""

from __future__ import annotations

import json
import queue
import threading

import pytest
import requests

from tests.conftest import make_client
from tests.helpers import start_all, stop_all, wait_until, web_service, worker_service


@pytest.fixture(scope="module")
def jobs_system(module_env):
    env, workdir = module_env
    web, worker = start_all(
        web_service(env, workdir, name="web-account-events"),
        worker_service(env, workdir, role="jobs", name="worker-account-events"),
    )
    yield web
    stop_all((worker, web))


def _read_events(url: str, key: str, into: queue.Queue, stop: threading.Event) -> None:
    with requests.get(
        url + "/jobs/events", headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=(5, 30)
    ) as reply:
        into.put(("status", reply.status_code))
        event = None
        for line in reply.iter_lines(decode_unicode=True):
            if stop.is_set():
                return
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                into.put((event, json.loads(line[len("data: ") :])))


def _next(events: queue.Queue, kind: str, timeout: float = 10.0) -> dict:
    def found():
        while True:
            try:
                got_kind, data = events.get(timeout=0.05)
            except queue.Empty:
                return None
            if got_kind == kind:
                return data

    return wait_until(found, timeout, 0.01, f"a {kind} event")


def test_the_account_stream_carries_its_jobs_from_submission_to_the_end_and_no_one_elses(jobs_system, new_key, partner):
    key, other_key = new_key(), new_key()
    api, other = make_client(jobs_system.url, key), make_client(jobs_system.url, other_key)
    events, stop = queue.Queue(), threading.Event()
    reader = threading.Thread(target=_read_events, args=(jobs_system.url, key, events, stop), daemon=True)
    reader.start()
    try:
        assert _next(events, "status") == 200
        counts = _next(events, "counts")["counts"]
        assert counts["pending"] == 0 and set(counts) >= {"pending", "retrying", "dead", "cancelled"}
        other.post("/jobs", json={"url": partner.url + "/ok"})  # another account's: never on this stream
        job_id = api.post("/jobs", json={"url": partner.url + "/ok"}).json()["id"]
        seen = []
        while not seen or seen[-1]["status"] != "succeeded":
            seen.append(_next(events, "job"))
        assert {event["id"] for event in seen} == {job_id}
        assert seen[0]["status"] == "pending" and seen[0]["attempts"] == 0  # the submission itself
        waiting = api.post("/jobs", json={"url": partner.url + "/ok", "run_at": "2099-01-01T00:00:00Z"}).json()["id"]
        assert _next(events, "job")["id"] == waiting
        assert api.post("/jobs/cancel").json()["affected"] == 1
        cancelled = _next(events, "job")
        assert (cancelled["id"], cancelled["status"]) == (waiting, "cancelled")
    finally:
        stop.set()
