"""Production serving: gunicorn with two gevent workers (gunicorn.conf.py), as real processes."""

from __future__ import annotations

import os
import signal

import redis as redis_lib
import requests

from models.channels import inverter_log
from tests.conftest import make_client
from tests.helpers import gunicorn_service, wait_until
from tests.metrics.conftest import onboard


def test_two_workers_serve_sessions_jobs_and_streams_and_a_graceful_restart_resumes_without_gaps(
    services, metrics_env, mock, account_key, sse, redis_url, tmp_path
):
    gunicorn = gunicorn_service(metrics_env, tmp_path, workers=2).start()
    try:
        api = make_client(gunicorn.url, account_key)
        # Requests land on either worker: a session made on one is good on the other, and so is every job.
        session = requests.Session()
        assert session.post(gunicorn.url + "/session", json={"api_key": account_key}, timeout=5).status_code == 201
        for _ in range(10):
            assert session.get(gunicorn.url + "/inverters", timeout=5).status_code == 200
        job_ids = [api.post("/jobs", json={"url": "http://127.0.0.1:9/x"}).json()["id"] for _ in range(10)]
        assert all(api.get(f"/jobs/{job_id}").status_code == 200 for job_id in job_ids)
        assert api.get("/ui/jobs", cookies=session.cookies).status_code == 200
        # Both workers answered: two processes' worth of server pids logged as booted.
        assert gunicorn.logs().count("Booting worker") >= 2

        inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
        services.worker(metrics_env, role="pollers")
        first = sse(gunicorn.url, f"/inverters/{inverter['id']}/stream", key=account_key)
        assert first.wait_status() == 200
        first.wait_for(lambda events: len([e for e in events if e.event == "reading"]) >= 2, 20, "two readings")

        # A graceful restart of every worker (SIGHUP): open streams end at once instead of hanging.
        os.kill(gunicorn.proc.pid, signal.SIGHUP)
        assert first.ended.wait(15), "the stream was ended by the restarting worker"
        resume_from = [e.id for e in first.events if e.id][-1]
        log = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        wait_until(
            lambda: len(log.xrange(inverter_log(inverter["id"]), min="(" + resume_from)) >= 2,
            20,
            0.05,
            "readings published during the restart",
        )
        second = wait_until(
            lambda: _reconnected(sse, gunicorn.url, inverter["id"], account_key, resume_from),
            15,
            0.1,
            "a new worker to answer the stream",
        )
        second.wait_for(lambda events: len([e for e in events if e.id]) >= 3, 20, "replay then live readings")
        received = [e.id for e in second.events if e.id]
        logged = [i for i, _ in log.xrange(inverter_log(inverter["id"]), min="(" + resume_from, max=received[-1])]
        assert received == logged, "no gap and no duplicate across the restart"
    finally:
        assert gunicorn.stop(timeout=20) == 0


def _reconnected(sse, url, inverter_id, key, last_event_id):
    client = sse(url, f"/inverters/{inverter_id}/stream", key=key, last_event_id=last_event_id)
    return client if client.wait_status() == 200 else None
