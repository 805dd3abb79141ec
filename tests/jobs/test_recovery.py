"""Workers that die or are stopped: leases bring killed workers' jobs back; SIGTERM lets attempts finish."""

from __future__ import annotations

from collections import Counter

from tests.helpers import wait_until
from tests.jobs.test_delivery import attempts_of, submit, wait_job


def test_sigkill_mid_batch_loses_nothing(services, env, api, partner):
    env = {**env, "LEASE_S": "1"}
    first = services.worker(env, role="jobs", name="worker-1")
    ids = [submit(api, url=partner.url + f"/sleep?s=1&n={n}", timeout_s=5, max_attempts=3) for n in range(8)]
    last_chance = submit(api, url=partner.url + "/sleep?s=1&n=last", timeout_s=5, max_attempts=1)
    wait_until(lambda: len(partner.received("/sleep")) == 9, 10, 0.01, "every attempt to be in flight")
    first.kill()
    waiting = submit(api, url=partner.url + "/ok")  # submitted while no worker runs
    services.worker(env, role="jobs", name="worker-2")

    for job_id in ids:
        job = wait_job(api, job_id, "succeeded", timeout=15)
        assert job["attempts"] == 2
        rows = attempts_of(api, job_id)
        assert [row["outcome"] for row in rows] == ["abandoned", "success"]
        assert rows[0]["error"]["kind"] == "abandoned"
    job = wait_job(api, last_chance, "dead", timeout=15)
    assert job["attempts"] == 1
    assert job["last_error"]["kind"] == "abandoned"
    assert [row["outcome"] for row in attempts_of(api, last_chance)] == ["abandoned"]
    wait_job(api, waiting, "succeeded")
    # At least once, and here exactly twice: the lost attempt and its replacement.
    per_job = Counter(r.headers["X-Job-Id"] for r in partner.received("/sleep"))
    assert per_job == Counter({**{job_id: 2 for job_id in ids}, last_chance: 1})
    numbers = {(r.headers["X-Job-Id"], r.headers["X-Attempt-Number"]) for r in partner.received("/sleep")}
    assert numbers == {(job_id, n) for job_id in ids for n in ("1", "2")} | {(last_chance, "1")}


def test_sigterm_lets_running_attempts_finish(services, env, api, partner):
    worker = services.worker(env, role="jobs")
    job_id = submit(api, url=partner.url + "/sleep?s=1", timeout_s=5)
    wait_until(lambda: partner.received("/sleep"), 5, 0.01, "the attempt to start")
    assert worker.stop(timeout=15) == 0
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert [row["outcome"] for row in attempts_of(api, job_id)] == ["success"]
    assert len(partner.received("/sleep")) == 1
