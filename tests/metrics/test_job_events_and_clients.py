"""Job state streams through the same hub, and the hub's handling of clients that go away or lag."""

from __future__ import annotations

import json

from models.redis_client import connect_redis
from tests.conftest import make_client
from tests.helpers import wait_until
from tests.metrics.conftest import onboard
from web.streams import Client


def test_job_events_stream_shows_each_state_change(services, metrics_env, web, api, account_key, partner, sse):
    services.worker(metrics_env, role="jobs")
    job = api.post(
        "/jobs",
        json={
            "url": partner.url + "/flaky/j1?fail=1&status=503",
            "run_at": "2099-01-01T00:00:00Z",
            "backoff": {"base_s": 0.2, "cap_s": 0.5, "jitter": "none"},
        },
    ).json()
    stream = sse(web.url, f"/jobs/{job['id']}/events", key=account_key)
    stream.wait_for(lambda events: len(events) >= 1, 10, "the current state first")
    assert stream.events[0].event == "job" and stream.events[0].data["status"] == "pending"
    # Cancel and re-queue it so it runs now: every change arrives live.
    assert api.post(f"/jobs/{job['id']}/cancel").status_code == 200
    assert api.post(f"/jobs/{job['id']}/retry").status_code == 202
    stream.wait_for(lambda events: events[-1].data["status"] == "succeeded", 15, "the job to succeed")
    statuses = [e.data["status"] for e in stream.events]
    assert statuses[:3] == ["pending", "cancelled", "pending"], statuses
    assert "retrying" in statuses and statuses[-1] == "succeeded"
    assert sse(web.url, f"/jobs/{job['id']}/events", key="sk_nobody").wait_status() == 401
    assert sse(web.url, "/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/events", key=account_key).wait_status() == 404


def test_a_client_that_goes_away_is_released_at_once(services, metrics_env, account_key, sse, mock):
    # Keepalive far away: only the socket watcher can notice the close this quickly.
    web = services.web({**metrics_env, "SSE_KEEPALIVE_S": "60"})
    api = make_client(web.url, account_key)
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    clients = [sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key) for _ in range(5)]
    wait_until(lambda: api.get("/streams/stats").json()["streams"] == 5, 10, 0.05, "five open streams")
    for client in clients:
        client.close()
    wait_until(lambda: api.get("/streams/stats").json()["streams"] == 0, 3, 0.05, "streams released")


def test_a_client_that_cannot_keep_up_is_disconnected_not_buffered():
    client = Client(("inverter:x",), maxlen=3)
    client.go_live()
    for n in range(1, 4):
        client.offer((n, 0), b"frame")
    assert not client.closed and len(client.queue) == 3
    client.offer((1, 0), b"duplicate")  # already queued: ignored, not counted
    assert not client.closed
    client.offer((4, 0), b"one too many")
    assert client.closed and client.reason == "slow" and not client.queue


def test_a_quiet_stream_gets_a_comment_at_least_every_keepalive_interval(services, metrics_env, account_key, sse, mock):
    # No poller runs, so nothing but the keepalive comments ever reaches these streams.
    web = services.web({**metrics_env, "SSE_KEEPALIVE_S": "0.6"})
    api = make_client(web.url, account_key)
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    single = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    multi = sse(web.url, f"/stream?inverters={inverter['id']}", key=account_key)
    assert single.wait_status() == 200 and multi.wait_status() == 200
    # Arrival times as each stream's reader thread read them: this test's own polling would add its delays.
    wait_until(
        lambda: all(len(stream.comment_times) >= 4 for stream in (single, multi)),
        6,
        0.05,
        "four keepalive comments on each stream",
    )
    for stream in (single, multi):
        times = stream.comment_times[:4]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) < 0.6 + 0.3, gaps  # the interval, plus scheduling slack on a busy machine
    assert single.events == [] and not single.ended.is_set()


def test_the_web_process_subscribes_to_a_job_channel_only_while_someone_streams_it(
    web, api, account_key, partner, sse, redis_url
):
    redis = connect_redis(redis_url)
    job = api.post("/jobs", json={"url": partner.url + "/ok", "run_at": "2099-01-01T00:00:00Z"}).json()
    own = f"job:{job['id']}"
    # Nobody streams: the web process receives none of its jobs' events (no job channel, no pattern matching one).
    assert redis.pubsub_channels("job:*") == []
    assert redis.publish(own, "{}") == 0

    streams = [sse(web.url, f"/jobs/{job['id']}/events", key=account_key) for _ in range(2)]
    jobs_list = sse(web.url, "/jobs/events", key=account_key)
    for stream in (*streams, jobs_list):
        stream.wait_for(lambda events: len(events) >= 1, 10, "the first frame")
    (account,) = redis.pubsub_channels("job:account:*")
    assert redis.pubsub_numsub(own, account) == [(own, 1), (account, 1)]  # one subscription however many streams
    assert api.post(f"/jobs/{job['id']}/cancel").status_code == 200
    for stream in (*streams, jobs_list):
        stream.wait_for(lambda events: events[-1].data.get("status") == "cancelled", 10, "the cancel, live")

    streams[0].close()
    wait_until(lambda: api.get("/streams/stats").json()["streams"] == 2, 5, 0.02, "one stream released")
    assert redis.pubsub_numsub(own) == [(own, 1)]
    streams[1].close()
    jobs_list.close()
    wait_until(lambda: redis.pubsub_channels("job:*") == [], 5, 0.02, "the last streams to unsubscribe")
    redis.close()


def test_a_submissions_event_is_published_before_the_wake_up_that_lets_a_worker_claim_it(web, api, partner, redis_url):
    redis = connect_redis(redis_url)
    pubsub = redis.pubsub()
    pubsub.psubscribe("job*")  # job:<id>, job:account:<id> and jobs:wakeup: received in the order published
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    for _ in range(3):
        job_id = api.post("/jobs", json={"url": partner.url + "/ok"}).json()["id"]
        got = [pubsub.get_message(timeout=5) for _ in range(3)]
        assert [m["channel"] for m in got][0] == f"job:{job_id}", got
        assert got[1]["channel"].startswith("job:account:") and got[2]["channel"] == "jobs:wakeup", got
        assert json.loads(got[0]["data"])["status"] == "pending"
    pubsub.close()
    redis.close()


def test_a_stream_opened_while_its_job_runs_ends_on_the_jobs_last_state(
    services, metrics_env, web, api, account_key, partner, sse
):
    # The web subscribes to a job's channel only when its stream opens: the stream reads the job's state once
    # Redis has confirmed that subscription, so an outcome committed before that read is in the state read,
    # and one committed after it is published to a subscribed channel. Streams opened at once after each
    # submission race attempts of 0 to 19 ms: none may miss its job's last event.
    services.worker(metrics_env, role="jobs")
    streams = []
    for n in range(80):
        job = api.post("/jobs", json={"url": f"{partner.url}/sleep?s={(n % 20) * 0.001}"}).json()
        streams.append(sse(web.url, f"/jobs/{job['id']}/events", key=account_key))
    for stream in streams:
        stream.wait_for(
            lambda events: bool(events) and events[-1].data["status"] == "succeeded", 20, "the job's last state"
        )
    assert all(stream.events[0].data["status"] in ("pending", "in_flight", "succeeded") for stream in streams)
