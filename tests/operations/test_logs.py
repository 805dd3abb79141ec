"""LOG_FORMAT=json: one JSON object per line, carrying the request id (echoed in X-Request-Id) and the job id."""

from __future__ import annotations

import json

from tests.app_on_own_database import app, new_app_key  # noqa: F401 - this module's tests use their own database
from tests.helpers import free_port, wait_until


def json_lines(service) -> list[dict]:
    lines = [line for line in service.logs().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_web_logs_json_lines_with_the_request_id_it_echoes(services, env, account_key, client_for):
    web = services.web(env, LOG_FORMAT="json")
    api = client_for(web.url, account_key)
    reply = api.post(
        "/inverters",
        headers={"X-Request-Id": "req-42"},
        json={
            "brand": "sandbox",
            "serial": "S1",
            "connection": {"base_url": f"http://127.0.0.1:{free_port()}", "api_key": "k"},
        },
    )
    assert reply.status_code == 502, reply.text
    assert reply.headers["X-Request-Id"] == "req-42"

    def refused_line():
        return next((r for r in json_lines(web) if "onboarding refused" in r["message"]), None)

    record = wait_until(refused_line, 5, 0.05, "the onboarding log line")
    assert record["request_id"] == "req-42"
    assert record["process"] == "web" and record["level"] == "INFO" and record["time"]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in json_lines(web))


def test_a_request_id_that_is_not_a_sane_token_is_replaced(client):
    generated = client.get("/jobs", headers={"X-Request-Id": "bad id\twith spaces"}).headers["X-Request-Id"]
    assert generated != "bad id\twith spaces" and len(generated) == 32
    assert client.get("/jobs").headers["X-Request-Id"] != generated


def test_worker_log_lines_carry_the_job_id(services, env, api, partner):
    worker = services.worker(env, role="jobs", LOG_FORMAT="json")
    job_id = api.post("/jobs", json={"url": partner.url + "/ok"}).json()["id"]
    record = wait_until(
        lambda: next((r for r in json_lines(worker) if r.get("job_id") == job_id), None),
        10,
        0.05,
        "a log line of the job",
    )
    assert "outcome=success" in record["message"]
