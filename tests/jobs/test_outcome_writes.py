"""How a worker groups the outcomes of attempts sent together into one write (actors/coalescing.py OutcomeHold):
a real worker process, a partner on 127.0.0.1 that holds a request until the test lets it go, the jobs
submitted through the app in this process before the worker starts, so that its first claim takes them together."""

from __future__ import annotations

import time

from tests.app_on_own_database import app, new_app_key  # noqa: F401 - the worker uses the test's own database
from tests.helpers import free_port, wait_until
from tests.operations.test_metrics import scrape, value

OUTCOME_WRITES = "solar_relay_job_outcome_writes_total"


def submit(client, url: str) -> str:
    reply = client.post("/jobs", json={"url": url, "method": "POST", "body": "{}"})
    assert reply.status_code == 202, reply.get_data(as_text=True)
    return reply.get_json()["id"]


def status(client, job_id: str) -> str:
    return client.get(f"/jobs/{job_id}").get_json()["status"]


def start_worker(services, env, **settings) -> str:
    """A jobs worker with these settings; the URL of its metrics."""
    port = free_port()
    services.worker(env, role="jobs", METRICS_PORT=str(port), **settings)
    return f"http://127.0.0.1:{port}/metrics"


def at_partner(partner, count: int) -> list:
    return wait_until(lambda: r if len(r := partner.received()) == count else None, 10, 0.01, f"{count} requests")


def test_the_outcome_of_an_attempt_waits_for_those_sent_with_it_and_they_share_one_write(
    client, services, env, partner
):
    quick = submit(client, f"{partner.url}/hold/quick")
    mate = submit(client, f"{partner.url}/hold/mate")
    metrics = start_worker(services, env, WAKE_COALESCE_MS="1000")
    at_partner(partner, 2)
    partner.let_go("quick")
    time.sleep(0.2)  # the mate answers 0.2 s after
    # The quick attempt is over, but its outcome waits for its mate's (the window is a second).
    assert status(client, quick) == status(client, mate) == "in_flight"
    partner.let_go("mate")
    wait_until(lambda: status(client, quick) == status(client, mate) == "succeeded", 10, 0.02, "both recorded")
    samples = scrape(metrics)
    assert value(samples, "solar_relay_job_attempts_total", outcome="success") == 2
    assert value(samples, OUTCOME_WRITES) == 1  # was 2: the quick one written alone, then its mate


def test_an_outcome_waits_no_longer_than_the_window_for_a_slow_attempt(client, services, env, partner):
    quick = submit(client, f"{partner.url}/ok")
    slow = submit(client, f"{partner.url}/hold/slow")
    metrics = start_worker(services, env, WAKE_COALESCE_MS="100")
    wait_until(lambda: status(client, quick) == "succeeded", 10, 0.02, "the quick job recorded")
    assert status(client, slow) == "in_flight"  # still held at the partner
    partner.let_go("slow")
    wait_until(lambda: status(client, slow) == "succeeded", 10, 0.02, "the slow job recorded")
    assert value(scrape(metrics), OUTCOME_WRITES) == 2


def test_an_outcome_held_for_its_mate_hands_its_slot_to_a_job_that_comes_to_wait(client, services, env, partner):
    # Two slots for the partner's host, both taken by attempts sent together; the first is over and its outcome
    # waits for its mate. A job submitted now waits for a slot: the held outcome hands it its own at once.
    submit(client, f"{partner.url}/hold/first")
    submit(client, f"{partner.url}/hold/mate")
    start_worker(services, env, WAKE_COALESCE_MS="1000", MAX_IN_FLIGHT_PER_HOST="2")
    at_partner(partner, 2)
    partner.let_go("first")
    time.sleep(0.1)  # the next job comes 0.1 s after; the first outcome is held until its mate is done
    submitted_at = time.time()  # the partner's clock
    submit(client, f"{partner.url}/ok")
    third = at_partner(partner, 3)[2]
    # Had the outcome gone on waiting for its mate, the third request would have come ~0.9 s after.
    assert third.path == "/ok"
    assert third.at - submitted_at < 0.5
    partner.let_go("mate")
