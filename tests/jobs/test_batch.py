"""POST /jobs/batch: each item accepted or refused on its own, accepted ones committed together."""

from __future__ import annotations

import pytest

from tests.conftest import make_client
from tests.jobs.test_api_validation import assert_error, assert_nothing_stored
from tests.jobs.test_delivery import FAST, wait_job

OK_URL = "http://127.0.0.1:9/hook"  # never called in the API tests: no worker runs for them


@pytest.fixture
def batch_api(shared_web, new_key):
    return make_client(shared_web.url, new_key())


def post_batch(api, jobs):
    return api.post("/jobs/batch", json={"jobs": jobs})


def test_results_in_item_order_with_errors_per_item(batch_api):
    reply = post_batch(
        batch_api,
        [
            {"url": OK_URL, "json": {"n": 0}},
            {"url": "ftp://example.com/"},
            {"url": OK_URL, "method": "GET", "idempotency_key": "k-1"},
            "not an object",
            {"url": "http://10.0.0.1/"},
            {"url": OK_URL, "idempotency_key": ""},
        ],
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert "id" in results[0] and "error" not in results[0]
    assert results[1]["error"]["code"] == "validation_failed"
    assert results[1]["error"]["details"]["field"] == "url"
    assert "id" in results[2]
    assert results[3]["error"]["code"] == "validation_failed"
    assert results[4]["error"]["code"] == "blocked_destination"
    assert results[5]["error"]["code"] == "invalid_idempotency_key"
    listed = batch_api.get("/jobs").json()["jobs"]
    assert sorted(job["id"] for job in listed) == sorted([results[0]["id"], results[2]["id"]])
    assert {job["status"] for job in listed} == {"pending"}
    assert batch_api.get(f"/jobs/{results[0]['id']}").json()["request"]["json"] == {"n": 0}


def test_idempotency_key_per_item(batch_api):
    first = post_batch(batch_api, [{"url": OK_URL, "body": "a", "idempotency_key": "order-1"}]).json()["results"]
    again = post_batch(
        batch_api,
        [
            {"url": OK_URL, "body": "a", "idempotency_key": "order-1"},
            {"url": OK_URL, "body": "b", "idempotency_key": "order-1"},
            {"url": OK_URL, "body": "c", "idempotency_key": "order-2"},
            {"url": OK_URL, "body": "c", "idempotency_key": "order-2"},
            {"url": OK_URL, "body": "d", "idempotency_key": "order-2"},
        ],
    ).json()["results"]
    assert again[0] == {"index": 0, "id": first[0]["id"], "created": False}
    assert again[1]["error"]["code"] == "idempotency_conflict"
    assert again[1]["error"]["details"]["job_id"] == first[0]["id"]
    assert again[2]["created"] is True
    assert again[3] == {"index": 3, "id": again[2]["id"], "created": False}
    assert again[4]["error"]["code"] == "idempotency_conflict"
    # The single-job header and the batch item share one key space.
    single = batch_api.post("/jobs", json={"url": OK_URL, "body": "c"}, headers={"Idempotency-Key": "order-2"})
    assert single.status_code == 200 and single.json()["id"] == again[2]["id"]
    assert len(batch_api.get("/jobs").json()["jobs"]) == 2


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"jobs": {}},
        {"jobs": []},
        {"jobs": [{"url": OK_URL}], "extra": 1},
        {"items": [{"url": OK_URL}]},
        {"jobs": [{"url": OK_URL}] * 1001},
    ],
)
def test_malformed_batch_stores_nothing(batch_api, body):
    assert_error(batch_api.post("/jobs/batch", json=body), 422, "validation_failed")
    assert_nothing_stored(batch_api)


def test_batch_over_its_body_limit_is_413(batch_api):
    big = "x" * (17 * 1024 * 1024 // 1000)
    reply = post_batch(batch_api, [{"url": OK_URL, "body": big}] * 1000)
    assert_error(reply, 413, "payload_too_large")
    assert_nothing_stored(batch_api)


def test_batch_larger_than_one_job_limit_is_accepted(batch_api):
    # 1,000 jobs of 2 KiB: twice the single-job REQUEST_BODY_LIMIT, within the batch's own limit.
    reply = post_batch(batch_api, [{"url": OK_URL, "body": "y" * 2048}] * 1000)
    assert reply.status_code == 200, reply.text[:300]
    assert all("id" in r for r in reply.json()["results"])
    assert batch_api.get("/jobs/stats").json()["counts"]["pending"] == 1000


def test_batch_needs_a_key(shared_web):
    reply = make_client(shared_web.url, None).post("/jobs/batch", json={"jobs": [{"url": OK_URL}]})
    assert_error(reply, 401, "unauthorized")


def test_batched_jobs_are_delivered(services, env, api, partner):
    services.worker(env, role="jobs")
    reply = post_batch(api, [{"url": f"{partner.url}/ok/{n}", "json": {"n": n}, "backoff": FAST} for n in range(50)])
    ids = [r["id"] for r in reply.json()["results"]]
    for job_id in ids:
        assert wait_job(api, job_id, "succeeded")["attempts"] == 1
    assert sorted(r.path for r in partner.received("/ok/")) == sorted(f"/ok/{n}" for n in range(50))
