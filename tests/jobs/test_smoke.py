from tests.helpers import wait_until


def test_job_is_delivered_and_result_stored(services, env, api, partner):
    services.worker(env, role="jobs")
    reply = api.post("/jobs", json={"url": partner.url + "/ok", "json": {"hello": "world"}})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    assert reply.headers["Location"] == f"/jobs/{job_id}"
    job = wait_until(lambda: (j := api.get(f"/jobs/{job_id}").json())["status"] == "succeeded" and j, 10)
    assert job["result"]["status_code"] == 200
    assert job["result"]["body"] == "ok"
    [received] = partner.received("/ok")
    assert received.headers["Idempotency-Key"] == job_id
    assert received.headers["X-Attempt-Number"] == "1"
