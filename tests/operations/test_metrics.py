"""Prometheus metrics: the web process at /metrics, the worker on METRICS_PORT; labels never carry ids."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port, wait_until

FAST = {"base_s": 0.05, "cap_s": 0.1, "multiplier": 2, "jitter": "full"}


def scrape(url: str) -> dict:
    """{(sample name, frozenset(labels)): value} of one exposition."""
    reply = requests.get(url, timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_web_counts_submissions_and_requests_by_route_template(web, api):
    before = scrape(web.url + "/metrics")
    job_id = api.post("/jobs", json={"url": "http://127.0.0.1:9/x"}).json()["id"]
    api.post("/jobs/batch", json={"jobs": [{"url": "http://127.0.0.1:9/y"}, {"url": "ftp://no"}]})
    assert api.get(f"/jobs/{job_id}").status_code == 200
    assert api.get("/jobs/01ZZZZZZZZZZZZZZZZZZZZZZZZ").status_code == 404
    api.get("/no/such/page")
    after = scrape(web.url + "/metrics")

    assert value(after, "solar_relay_jobs_submitted_total") - value(before, "solar_relay_jobs_submitted_total") == 2
    assert (
        value(after, "solar_relay_http_requests_total", route="/jobs/<job_id>", method="GET", status_class="2xx") >= 1
    )
    assert (
        value(after, "solar_relay_http_requests_total", route="/jobs/<job_id>", method="GET", status_class="4xx") >= 1
    )
    assert value(after, "solar_relay_http_requests_total", route="unmatched", method="GET", status_class="4xx") >= 1
    assert value(after, "solar_relay_http_request_duration_seconds_count", route="/jobs", method="POST") >= 1
    text = requests.get(web.url + "/metrics", timeout=5).text
    assert job_id not in text and "/no/such/page" not in text


def test_worker_exposes_attempts_outcomes_lateness_and_queue_depth(services, env, api, partner):
    port = free_port()
    services.worker(env, role="jobs", METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    ok = api.post("/jobs", json={"url": partner.url + "/ok", "backoff": FAST}).json()["id"]
    flaky = api.post("/jobs", json={"url": partner.url + "/flaky/m?fail=1&status=503", "backoff": FAST}).json()["id"]
    bad = api.post("/jobs", json={"url": partner.url + "/status/400", "backoff": FAST}).json()["id"]
    for job_id, status in ((ok, "succeeded"), (flaky, "succeeded"), (bad, "dead")):
        wait_until(lambda: api.get(f"/jobs/{job_id}").json()["status"] == status, 10, 0.02, f"{job_id} {status}")

    def counted():
        samples = scrape(url)
        return samples if value(samples, "solar_relay_job_attempts_total", outcome="success") >= 2 else None

    samples = wait_until(counted, 5, 0.05, "the worker's attempt counts")
    assert value(samples, "solar_relay_job_attempts_total", outcome="retry") == 1
    assert value(samples, "solar_relay_job_attempts_total", outcome="dead") == 1
    assert value(samples, "solar_relay_jobs_dead_total") == 1
    assert value(samples, "solar_relay_job_attempt_duration_seconds_count") == 4
    assert value(samples, "solar_relay_job_first_attempt_delay_seconds_count") == 3
    assert value(samples, "solar_relay_job_retry_lateness_seconds_count") == 1
    assert ("solar_relay_jobs_due", frozenset()) in samples
    assert ("solar_relay_jobs_in_flight", frozenset()) in samples


def test_web_counts_open_streams_and_events_sent(services, env, account_key, client_for, partner):
    import socket

    web = services.web(env)
    api = client_for(web.url, account_key)
    job_id = api.post("/jobs", json={"url": "http://127.0.0.1:9/x", "run_at": "2099-01-01T00:00:00Z"}).json()["id"]
    before = scrape(web.url + "/metrics")
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=5)
    sock.sendall(f"GET /jobs/{job_id}/events HTTP/1.0\r\nAuthorization: Bearer {account_key}\r\n\r\n".encode())
    wait_until(lambda: value(scrape(web.url + "/metrics"), "solar_relay_sse_clients") == 1, 5, 0.05, "one stream")
    assert api.post(f"/jobs/{job_id}/cancel").status_code == 200  # an event on the open stream
    wait_until(
        lambda: (
            value(scrape(web.url + "/metrics"), "solar_relay_sse_events_sent_total")
            > value(before, "solar_relay_sse_events_sent_total")
        ),
        5,
        0.05,
        "the event counted as sent",
    )
    sock.close()
    wait_until(lambda: value(scrape(web.url + "/metrics"), "solar_relay_sse_clients") == 0, 5, 0.05, "no stream")
