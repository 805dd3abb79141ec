"""The polling pipeline under load and failure: brand limits, viewers, the recorder, Redis restarts (real
mock inverter, web and worker processes, real Redis). Poller leases and brand backoff are in
test_poller_takeover.py: a module is one pytest-xdist unit, and together they made the suite's longest."""

from __future__ import annotations

import pytest
import redis as redis_lib
import requests

from models.channels import inverter_log
from tests.helpers import wait_until
from tests.metrics.conftest import INTERVAL_S, START, mock_stats, onboard, wait_seconds_of_polling

INTERVAL = INTERVAL_S


def fleet_serials(mock) -> dict:
    sandbox = requests.get(
        mock.url + "/sandbox/v1/devices", headers={"X-API-Key": "demo-sandbox-key"}, timeout=5
    ).json()["devices"]
    growatt, page = [], 1
    while True:
        rows = requests.post(
            mock.url + "/v4/new-api/queryDeviceList",
            data={"page": page},
            headers={"token": "demo-growatt-token"},
            timeout=5,
        ).json()["data"]["data"]
        if not rows:
            break
        growatt += rows
        page += 1
    return {"sandbox": [d["serial"] for d in sandbox], "growatt_v4": [d["deviceSn"] for d in growatt]}


def measure(mock, seconds: float) -> dict:
    requests.post(mock.url + "/admin/stats/reset", timeout=5).raise_for_status()
    wait_seconds_of_polling(seconds)
    return mock_stats(mock)


@pytest.fixture
def fleet_mock_starting(services, metrics_env):
    """A mock inverter with a generated fleet of 280 devices, launched but not yet ready: a test that asks for
    it before `web` has the two start side by side."""
    return services.mock_inverter(
        metrics_env, "--generate-fleet", "280", "--start", START, "--speed", "60", ready=False
    )


def test_pollers_stay_within_brand_limits_and_viewers_add_no_upstream_requests(
    fleet_mock_starting, services, metrics_env, api, web, account_key, sse
):
    mock = fleet_mock_starting.wait_ready()
    serials = fleet_serials(mock)
    assert len(serials["sandbox"]) >= 100 and len(serials["growatt_v4"]) >= 150
    inverters = [onboard(api, mock, brand, serial) for brand, group in serials.items() for serial in group]
    services.worker(metrics_env, role="pollers")
    every = {s for group in serials.values() for s in group}
    wait_until(lambda: every <= set(mock_stats(mock)["devices"]), 20, 0.2, "every device polled once")

    window = 4 * INTERVAL
    quiet = measure(mock, window)
    # 91 viewers of one account: within its STREAMS_PER_ACCOUNT (100) on this web process.
    sse_clients = [
        sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
        for inverter in inverters[:10]
        for _ in range(9)
    ]
    sse_clients.append(sse(web.url, "/stream?inverters=" + ",".join(i["id"] for i in inverters[:40]), key=account_key))
    for client in sse_clients:
        assert client.wait_status() == 200
    watched = measure(mock, window)
    assert all(len(client.of("reading")) >= 1 for client in sse_clients)

    for stats in (quiet, watched):
        assert stats["totals"]["rate_limited"] == 0, stats["totals"]
        per_device = [stats["devices"].get(s, {}).get("requests", 0) for s in every]
        # Each device polled once per interval, as configured (a call straddling the window edge aside).
        assert min(per_device) >= int(window / INTERVAL) - 1 and max(per_device) <= int(window / INTERVAL) + 1, sorted(
            per_device
        )
        batches = stats["tokens"]["demo-growatt-token"]["v4:queryLastData"]["requests"]
        assert batches <= (window / INTERVAL + 1) * 4 * 2, "growatt devices go up to 100 per call, by type"
    assert abs(watched["totals"]["requests"] - quiet["totals"]["requests"]) <= 0.1 * quiet["totals"]["requests"]


def test_recorder_stores_every_published_reading_across_a_worker_crash(
    services, metrics_env, mock, web, api, redis_url
):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    worker = services.worker(metrics_env, role="pollers")
    log = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: len(log.xrange(inverter_log(inverter["id"]))) >= 3, 20, 0.05, "three readings published")
    worker.kill()  # SIGKILL: whatever it read from the ingest stream but did not acknowledge stays pending
    services.worker(metrics_env, role="pollers", name="worker2")
    wait_until(lambda: len(log.xrange(inverter_log(inverter["id"]))) >= 6, 20, 0.05, "more readings published")

    def stored_ids():
        readings = api.get(f"/inverters/{inverter['id']}/readings?limit=1000").json()["readings"]
        return [r["event_id"] for r in readings]

    logged = [entry_id for entry_id, fields in log.xrange(inverter_log(inverter["id"])) if fields["event"] == "reading"]
    wait_until(lambda: set(logged) <= set(stored_ids()), 15, 0.1, "every logged reading stored")
    stored = api.get(f"/inverters/{inverter['id']}/readings?limit=2").json()
    first = stored["readings"][0]
    assert first["inverter_id"] == inverter["id"] and first["pv_power_w"] is not None
    assert stored["next_since"] is not None
    since = api.get(f"/inverters/{inverter['id']}/readings", params={"since": stored["next_since"], "limit": 1})
    assert since.json()["readings"][0]["time"] == stored["next_since"]
    assert api.get(f"/inverters/{inverter['id']}/readings?since=yesterday").status_code == 400
    latest = api.get(f"/inverters/{inverter['id']}/latest").json()
    assert latest["status"] == "online" and latest["reading"]["event_id"]


def test_redis_restart_streams_and_pollers_recover_without_losing_readings(
    services, metrics_env, mock, web, api, account_key, sse, redis_server, redis_url
):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    services.worker(metrics_env, role="pollers")
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    stream.wait_for(lambda events: len(events) >= 2, 20, "readings before the restart")
    before = len(stream.of("reading"))

    redis_server.restart()  # without persistence: logs, leases and the consumer group are gone

    stream.wait_for(
        lambda events: len([e for e in events if e.event == "reading"]) >= before + 3,
        30,
        "readings after the restart on the same open stream",
    )
    ids = [e.id for e in stream.of("reading")]
    assert len(ids) == len(set(ids))
    assert [tuple(map(int, i.split("-"))) for i in ids] == sorted(tuple(map(int, i.split("-"))) for i in ids)
    # Everything logged since the restart reached the client, and the recorder stores again.
    log = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    logged = [
        entry_id for entry_id, f in log.xrange(inverter_log(inverter["id"]), max=ids[-1]) if f["event"] == "reading"
    ]
    assert logged and set(logged) <= set(ids)
    wait_until(
        lambda: (
            logged[-1]
            in {r["event_id"] for r in api.get(f"/inverters/{inverter['id']}/readings?limit=1000").json()["readings"]}
        ),
        15,
        0.1,
        "stored after restart",
    )
