"""Delivery end to end: web and worker as real subprocesses, real HTTP partners on 127.0.0.1."""

from __future__ import annotations

import base64
import email.utils
import time
from datetime import datetime, timezone

import pytest

from tests.conftest import make_client
from tests.helpers import free_port, start_all, stop_all, wait_until, web_service, worker_service

FAST = {"base_s": 0.05, "cap_s": 0.2, "multiplier": 2, "jitter": "full"}


@pytest.fixture(scope="module")
def delivery_system(module_env):
    """One web and one worker for the module: each test has an account and a partner of its own, so
    tests never see each other's jobs, and no test pays for starting processes."""
    env, workdir = module_env
    web, worker = start_all(
        web_service(env, workdir, name="web-delivery"),
        worker_service(env, workdir, role="jobs", name="worker-delivery"),
    )
    yield web, worker
    stop_all((worker, web))


@pytest.fixture
def worker(delivery_system):
    return delivery_system[1]


@pytest.fixture
def api(delivery_system, new_key):
    """A fresh account on the module's web process (overrides the per-test one of tests/conftest.py)."""
    return make_client(delivery_system[0].url, new_key())


def own_system(services, env, account_key, **worker_settings):
    """A web process, and a worker with settings of this test's own, started side by side; a client of the
    web process signed in with the test's account."""
    web = services.web(env, ready=False)
    services.worker({**env, **worker_settings}, role="jobs", ready=False).wait_ready()
    return make_client(web.wait_ready().url, account_key)


def submit(api, **payload) -> str:
    payload.setdefault("backoff", FAST)
    reply = api.post("/jobs", json=payload)
    assert reply.status_code == 202, reply.text
    return reply.json()["id"]


def wait_job(api, job_id, *statuses, timeout=10.0) -> dict:
    def done():
        job = api.get(f"/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return wait_until(done, timeout, 0.02, f"job {job_id} to become {' or '.join(statuses)}")


def attempts_of(api, job_id) -> list[dict]:
    return api.get(f"/jobs/{job_id}/attempts").json()["attempts"]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_fails_n_times_then_succeeds(api, worker, partner):
    job_id = submit(api, url=partner.url + "/flaky/a?fail=2&status=503", json={"n": 1}, max_attempts=5)
    job = wait_job(api, job_id, "succeeded")
    assert job["attempts"] == 3
    assert job["last_error"] is None
    assert job["result"]["status_code"] == 200
    assert job["result"]["body"] == "recovered"
    rows = attempts_of(api, job_id)
    assert [row["number"] for row in rows] == [1, 2, 3]
    assert [row["outcome"] for row in rows] == ["retry", "retry", "success"]
    assert [row["status_code"] for row in rows] == [503, 503, 200]
    assert rows[0]["error"]["kind"] == "http_status"
    assert rows[2]["error"] is None
    for row in rows:
        assert row["duration_ms"] >= 0
        assert epoch(row["started_at"]) <= epoch(row["finished_at"])
    received = partner.received("/flaky/a")
    assert [r.headers["X-Attempt-Number"] for r in received] == ["1", "2", "3"]
    assert {r.headers["Idempotency-Key"] for r in received} == {job_id}
    assert {r.headers["X-Job-Id"] for r in received} == {job_id}
    assert {r.body for r in received} == {b'{"n":1}'}
    assert {r.headers["Content-Type"] for r in received} == {"application/json"}


def test_callers_idempotency_key_and_headers_are_sent_unchanged(api, worker, partner):
    job_id = submit(
        api,
        url=partner.url + "/flaky/k?fail=1",
        body="raw text",
        headers={"Idempotency-Key": "caller-42", "Content-Type": "text/plain", "X-Trace": "t"},
    )
    wait_job(api, job_id, "succeeded")
    received = partner.received("/flaky/k")
    assert len(received) == 2
    for r in received:
        assert r.headers["Idempotency-Key"] == "caller-42"
        assert r.headers["X-Trace"] == "t"
        assert r.headers["Content-Type"] == "text/plain"
        assert r.body == b"raw text"
    assert [r.headers["X-Attempt-Number"] for r in received] == ["1", "2"]


def test_delays_follow_the_backoff_formula(api, worker, partner):
    """With no jitter each attempt is scheduled exactly base * multiplier**(n-1) after the last finished."""
    job_id = submit(
        api,
        url=partner.url + "/status/500",
        max_attempts=4,
        backoff={"base_s": 0.1, "cap_s": 0.3, "multiplier": 2, "jitter": "none"},
    )
    job = wait_job(api, job_id, "dead")
    assert job["attempts"] == 4
    rows = attempts_of(api, job_id)
    gaps = [epoch(later["scheduled_at"]) - epoch(earlier["finished_at"]) for earlier, later in zip(rows, rows[1:])]
    assert gaps == pytest.approx([0.1, 0.2, 0.3], abs=0.002)
    for row in rows[1:]:
        # ...and started on time (not late by more than a little on this machine).
        assert epoch(row["started_at"]) - epoch(row["scheduled_at"]) < 0.5


def test_timeout_is_retried_with_kind_timeout(api, worker, partner):
    job_id = submit(api, url=partner.url + "/sleep?s=1.5", timeout_s=0.3, max_attempts=2)
    job = wait_job(api, job_id, "dead", timeout=15)
    assert job["last_error"]["kind"] == "timeout"
    rows = attempts_of(api, job_id)
    assert [row["outcome"] for row in rows] == ["retry", "dead"]
    assert [row["error"]["kind"] for row in rows] == ["timeout", "timeout"]
    assert all(row["status_code"] is None for row in rows)
    assert all(250 <= row["duration_ms"] < 1400 for row in rows), rows
    assert "gave up after 2 attempts" in job["last_error"]["message"]


def test_connection_reset_is_retried_with_kind_connection(api, worker, partner):
    job_id = submit(api, url=partner.url + "/reset", max_attempts=3)
    job = wait_job(api, job_id, "dead")
    rows = attempts_of(api, job_id)
    assert [row["outcome"] for row in rows] == ["retry", "retry", "dead"]
    assert {row["error"]["kind"] for row in rows} == {"connection"}
    assert job["last_error"]["kind"] == "connection"
    assert len(partner.received("/reset")) == 3


def test_connection_refused_is_retried_with_kind_connection(api, worker):
    job_id = submit(api, url=f"http://127.0.0.1:{free_port()}/nobody", max_attempts=2)
    job = wait_job(api, job_id, "dead")
    assert [row["outcome"] for row in attempts_of(api, job_id)] == ["retry", "dead"]
    assert job["last_error"]["kind"] == "connection"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_a_floor(api, worker, partner, status):
    job_id = submit(
        api,
        url=partner.url + f"/status/{status}?retry_after=1",
        max_attempts=2,
        backoff={"base_s": 0.05, "cap_s": 5, "multiplier": 2, "jitter": "full"},
    )
    job = wait_job(api, job_id, "dead")
    assert job["result"]["headers"]["Retry-After"] == "1"
    first, second = partner.received(f"/status/{status}")
    assert second.at - first.at >= 1.0
    assert second.at - first.at < 3.0
    rows = attempts_of(api, job_id)
    assert epoch(rows[1]["scheduled_at"]) - epoch(rows[0]["finished_at"]) == pytest.approx(1.0, abs=0.002)


def test_retry_after_http_date_is_a_floor(api, worker, partner):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    job_id = submit(
        api,
        url=partner.url + "/status/503?retry_after=" + when.replace(" ", "%20").replace(",", "%2C"),
        max_attempts=2,
        backoff={"base_s": 0.05, "cap_s": 5, "multiplier": 2, "jitter": "full"},
    )
    wait_job(api, job_id, "dead")
    first, second = partner.received("/status/503")
    # Not before the date; the date has whole seconds, so it is 1..2 s after submission (backoff alone: < 0.05 s).
    assert second.at >= email.utils.parsedate_to_datetime(when).timestamp() - 0.01
    assert 0.9 <= second.at - first.at < 3.5


def test_retry_after_never_beyond_the_cap(api, worker, partner):
    job_id = submit(
        api,
        url=partner.url + "/status/429?retry_after=3600",
        max_attempts=2,
        backoff={"base_s": 0.05, "cap_s": 0.3, "multiplier": 2, "jitter": "full"},
    )
    wait_job(api, job_id, "dead")
    first, second = partner.received("/status/429")
    assert second.at - first.at < 1.5
    rows = attempts_of(api, job_id)
    assert epoch(rows[1]["scheduled_at"]) - epoch(rows[0]["finished_at"]) == pytest.approx(0.3, abs=0.002)


def test_permanent_statuses_are_dead_after_exactly_one_attempt(api, worker, partner):
    permanent = [400, 401, 403, 404, 410, 422, 501, 505]
    ids = {code: submit(api, url=partner.url + f"/status/{code}", max_attempts=5) for code in permanent}
    # A retryable job submitted after them, finishing later: by then any wrongful retry would have shown.
    marker = submit(api, url=partner.url + "/flaky/marker?fail=2", max_attempts=5)
    for code, job_id in ids.items():
        job = wait_job(api, job_id, "dead")
        assert job["attempts"] == 1, code
        assert job["last_error"] == {"kind": "http_status", "status_code": code, "message": f"HTTP {code}"}
        assert job["result"]["status_code"] == code
        assert job["result"]["body"] == f"status {code}"
        assert [row["outcome"] for row in attempts_of(api, job_id)] == ["dead"]
    wait_job(api, marker, "succeeded")
    for code in permanent:
        assert len(partner.received(f"/status/{code}")) == 1, code


def test_retryable_statuses_are_retried_until_attempts_are_exhausted(api, worker, partner):
    retryable = [408, 425, 429, 500, 502, 503, 504, 599]
    ids = {code: submit(api, url=partner.url + f"/status/{code}", max_attempts=3) for code in retryable}
    for code, job_id in ids.items():
        job = wait_job(api, job_id, "dead")
        assert job["attempts"] == 3, code
        assert job["attempts_left"] == 0
        assert job["next_attempt_at"] is None
        assert job["last_error"]["kind"] == "http_status"
        assert job["last_error"]["status_code"] == code
        assert "gave up after 3 attempts" in job["last_error"]["message"]
        assert [row["outcome"] for row in attempts_of(api, job_id)] == ["retry", "retry", "dead"]
        assert len(partner.received(f"/status/{code}")) == 3


def test_redirect_is_dead_and_not_followed(api, worker, partner):
    job_id = submit(api, url=partner.url + "/redirect", max_attempts=5)
    job = wait_job(api, job_id, "dead")
    assert job["attempts"] == 1
    assert job["last_error"]["kind"] == "redirect"
    assert job["last_error"]["status_code"] == 301
    assert "/ok" in job["last_error"]["message"]
    assert job["result"]["headers"]["Location"] == "/ok"
    assert len(partner.received("/redirect")) == 1
    assert partner.received("/ok") == []


def test_run_at_in_the_future_delays_the_first_attempt(api, worker, partner):
    run_at = time.time() + 1.5
    iso = datetime.fromtimestamp(run_at, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    job_id = submit(api, url=partner.url + "/ok", run_at=iso)
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "pending"
    assert job["next_attempt_at"] == iso
    job = wait_job(api, job_id, "succeeded")
    [received] = partner.received("/ok")
    assert received.at >= round(run_at, 3) - 0.005
    assert received.at - run_at < 1.0


def test_run_at_in_the_past_runs_at_once(api, worker, partner):
    job_id = submit(api, url=partner.url + "/ok", run_at="2020-01-01T00:00:00Z")
    wait_job(api, job_id, "succeeded", timeout=3)


def test_cancel_a_retrying_job_stops_its_attempts(api, worker, partner):
    job_id = submit(
        api,
        url=partner.url + "/status/503",
        max_attempts=5,
        backoff={"base_s": 1.0, "cap_s": 1.0, "multiplier": 1, "jitter": "none"},
    )
    job = wait_job(api, job_id, "retrying")
    assert job["attempts"] == 1
    reply = api.post(f"/jobs/{job_id}/cancel")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "cancelled"
    # A job due after the cancelled one's next attempt would have been: once it is done, that time has passed.
    after = datetime.fromtimestamp(epoch(job["next_attempt_at"]) + 0.3, tz=timezone.utc).isoformat()
    marker = submit(api, url=partner.url + "/ok", run_at=after)
    wait_job(api, marker, "succeeded")
    assert len(partner.received("/status/503")) == 1
    job = api.get(f"/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert job["next_attempt_at"] is None
    assert [row["outcome"] for row in attempts_of(api, job_id)] == ["retry"]
    # Cancelled is terminal: cancelling again (or a finished job) is 409.
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 409
    assert api.post(f"/jobs/{marker}/cancel").status_code == 409


def test_retry_a_dead_job_gets_a_fresh_budget_and_keeps_its_history(api, worker, partner):
    job_id = submit(api, url=partner.url + "/flaky/r?fail=3", max_attempts=2)
    job = wait_job(api, job_id, "dead")
    assert job["attempts"] == 2
    reply = api.post(f"/jobs/{job_id}/retry")
    assert reply.status_code == 202, reply.text
    assert reply.json()["attempts_left"] == 2
    job = wait_job(api, job_id, "succeeded")
    assert job["attempts"] == 4
    rows = attempts_of(api, job_id)
    assert [row["number"] for row in rows] == [1, 2, 3, 4]
    assert [row["outcome"] for row in rows] == ["retry", "dead", "retry", "success"]
    assert [r.headers["X-Attempt-Number"] for r in partner.received("/flaky/r")] == ["1", "2", "3", "4"]
    assert api.post(f"/jobs/{job_id}/retry").status_code == 409


def test_retry_a_cancelled_job(api, worker, partner):
    job_id = submit(api, url=partner.url + "/ok", run_at="2099-01-01T00:00:00Z")
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 200
    assert api.post(f"/jobs/{job_id}/retry").status_code == 202
    job = wait_job(api, job_id, "succeeded")
    assert job["attempts"] == 1


def test_each_attempts_response_is_kept_with_a_capped_body(services, env, account_key, partner):
    api = own_system(services, env, account_key, ATTEMPT_BODY_CAP="4")
    flaky = submit(api, url=partner.url + "/flaky/kept?fail=1&status=503", max_attempts=3)
    wait_job(api, flaky, "succeeded")
    first, second = attempts_of(api, flaky)
    assert first["response"]["status_code"] == 503 and first["response"]["body"] == "not "
    assert first["response"]["body_truncated"] is True
    assert first["response"]["headers"]["Content-Type"] == "text/plain"
    assert second["response"]["status_code"] == 200 and second["response"]["body"] == "reco"
    # The job's result keeps the whole body (RESULT_BODY_CAP); a failure without a response keeps none.
    assert api.get(f"/jobs/{flaky}").json()["result"]["body"] == "recovered"
    refused = submit(api, url=f"http://127.0.0.1:{free_port()}/closed", max_attempts=1)
    wait_job(api, refused, "dead")
    [attempt] = attempts_of(api, refused)
    assert attempt["response"] is None and attempt["error"]["kind"] == "connection"


def test_result_body_is_truncated_at_the_cap(services, env, account_key, partner):
    api = own_system(services, env, account_key, RESULT_BODY_CAP="100")
    big = submit(api, url=partner.url + "/big?n=5000", method="GET")
    exact = submit(api, url=partner.url + "/big?n=100", method="GET")
    job = wait_job(api, big, "succeeded")
    assert job["result"]["body"] == "x" * 100
    assert job["result"]["body_truncated"] is True
    job = wait_job(api, exact, "succeeded")
    assert job["result"]["body"] == "x" * 100
    assert job["result"]["body_truncated"] is False


def test_a_2xx_with_a_non_utf8_body_is_kept_as_base64(api, worker, odd_partner):
    job_id = submit(api, url=odd_partner.url + "/binary", method="GET")
    job = wait_job(api, job_id, "succeeded")
    assert job["result"]["body_encoding"] == "base64"
    assert base64.b64decode(job["result"]["body"]) == b"\xff\xfe\x00\x81binary\xc3("
    assert job["result"]["body_truncated"] is False


@pytest.mark.parametrize(
    "path, duration_limit_ms",
    [
        ("/slow-body?s=3", 2000),
        # Each header line arrives well within the read timeout, but the attempt as a whole may not exceed it.
        ("/slow-headers", 1500),
    ],
    ids=["slow-body", "slow-headers"],
)
def test_a_response_slower_than_the_timeout_is_a_timeout(api, worker, odd_partner, path, duration_limit_ms):
    job_id = submit(api, url=odd_partner.url + path, method="GET", timeout_s=0.5, max_attempts=1)
    job = wait_job(api, job_id, "dead")
    assert job["last_error"]["kind"] == "timeout"
    [row] = attempts_of(api, job_id)
    assert row["duration_ms"] < duration_limit_ms


def test_methods(api, worker, partner):
    methods = ["HEAD", "PUT", "DELETE", "PATCH", "GET"]
    ids = {}
    for method in methods:
        payload = {"json": {"m": method}} if method in ("PUT", "PATCH") else {}
        ids[method] = submit(api, url=partner.url + f"/ok?m={method}", method=method, **payload)
    for method, job_id in ids.items():
        job = wait_job(api, job_id, "succeeded")
        assert job["result"]["body"] == ("" if method == "HEAD" else "ok")
    by_method = {r.method: r for r in partner.received("/ok")}
    assert sorted(by_method) == sorted(methods)
    for method, received in by_method.items():
        expected = f'{{"m":"{method}"}}'.encode() if method in ("PUT", "PATCH") else b""
        assert received.body == expected, method


def test_a_destination_the_worker_refuses_is_dead_with_blocked_destination(services, env, account_key, partner):
    """The worker checks the address it connects to, whatever the web process let through."""
    api = own_system(services, env, account_key, ALLOWED_TARGET_NETWORKS="")
    job_id = submit(api, url=partner.url + "/ok", max_attempts=5)
    job = wait_job(api, job_id, "dead")
    assert job["attempts"] == 1
    assert job["last_error"]["kind"] == "blocked_destination"
    assert "loopback" in job["last_error"]["message"]
    assert partner.received() == []
