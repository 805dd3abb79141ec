"""Alerts across a worker's SIGKILL: the restarted engine loads the open episode, resumes an offline timer or a
production_low count where the killed one saved it, and sends each alert once. Real processes: web, workers,
mock inverter, a receiver on 127.0.0.1. (A module of its own so that these and tests/metrics/test_alerts.py,
each a few tests of real-time waits, run side by side under pytest-xdist.)"""

from __future__ import annotations

import time
from datetime import datetime

import redis
from standardwebhooks.webhooks import Webhook

from models.channels import ALERT_BELOW_SINCE, ALERT_LAST_SEEN
from tests.helpers import wait_until
from tests.metrics.conftest import onboard, set_faults
from tests.metrics.test_alerts import OFFLINE_DELAY_S, OFFLINE_MINUTES, _by_type, _site, _verified


def test_a_worker_killed_mid_episode_and_restarted_sends_neither_a_duplicate_nor_nothing(
    services, metrics_env, mock, web, api, partner
):
    inverter = onboard(api, mock, "sandbox", "SBX-LOS-0001")
    path = "/ok/alerts"
    endpoint = api.post(
        "/webhook-endpoints", json={"url": partner.url + path, "event_types": ["inverter.offline", "inverter.online"]}
    ).json()
    assert (
        api.post(
            "/alert-rules",
            json={"inverter_id": inverter["id"], "kind": "offline", "params": {"minutes": OFFLINE_MINUTES}},
        ).status_code
        == 201
    )
    worker = services.worker(metrics_env, role="all", name="first")
    wait_until(lambda: api.get(f"/inverters/{inverter['id']}/latest").json().get("reading"), 20, 0.1, "a reading")
    set_faults(mock, offline=["SBX-LOS-0001"])
    wait_until(lambda: _by_type(partner.received(path), "inverter.offline"), 60, 0.1, "the offline alert")
    worker.kill()  # SIGKILL mid-episode: the device is still offline

    second = services.worker(metrics_env, role="all", name="second")
    wait_until(lambda: "1 open episodes" in second.logs(), 20, 0.1, "the new engine to load the open episode")
    # Let the new engine's own offline delay pass with the device still offline (an absence takes time to show).
    time.sleep(OFFLINE_DELAY_S + 2)
    assert len(_by_type(partner.received(path), "inverter.offline")) == 1
    set_faults(mock, offline=[])
    wait_until(lambda: _by_type(partner.received(path), "inverter.online"), 60, 0.1, "the back-online alert")
    received = partner.received(path)
    assert len(_by_type(received, "inverter.offline")) == 1 and len(_by_type(received, "inverter.online")) == 1
    verifier = Webhook(endpoint["secret"])
    for request in received:
        verifier.verify(request.body, {k.lower(): v for k, v in request.headers.items()})


def test_a_device_silent_before_a_kill_gets_its_offline_alert_after_the_restart_on_the_timer_it_had(
    services, metrics_env, mock, web, api, partner
):
    """The worker is killed while the device's silence is counted but the alert not yet due: the restarted
    engine resumes the timer (it does not start a fresh one, nor forget it), and sends the alert once."""
    client = redis.Redis.from_url(metrics_env["REDIS_URL"], decode_responses=True)
    inverter = onboard(api, mock, "sandbox", "SBX-LOS-0001")
    path = "/ok/resumed"
    endpoint = api.post(
        "/webhook-endpoints", json={"url": partner.url + path, "event_types": ["inverter.offline", "inverter.online"]}
    ).json()
    rule = {"inverter_id": inverter["id"], "kind": "offline", "params": {"minutes": OFFLINE_MINUTES}}
    assert api.post("/alert-rules", json=rule).status_code == 201
    worker = services.worker(metrics_env, role="all", name="first")
    wait_until(lambda: client.hget(ALERT_LAST_SEEN, inverter["id"]), 30, 0.1, "the engine to save when it heard it")

    set_faults(mock, offline=["SBX-LOS-0001"])
    delay_s = OFFLINE_DELAY_S

    def silent_since() -> float:
        """The offline timer's start as the engine saved it ("<silent since> <heard at>")."""
        return float(client.hget(ALERT_LAST_SEEN, inverter["id"]).split()[0])

    def silent_for() -> float:
        return time.time() - silent_since()

    # Two thirds of the delay gone (as the engine saved it), the alert not due yet: kill -9.
    wait_until(lambda: silent_for() >= delay_s * 2 / 3, 30, 0.05, "two thirds of the offline delay")
    worker.kill()
    assert silent_for() < delay_s and not partner.received(path), "killed before the alert was due"
    last_seen = silent_since()

    restarted_at = time.time()
    second = services.worker(metrics_env, role="all", name="second")
    wait_until(lambda: _by_type(partner.received(path), "inverter.offline"), 60, 0.1, "the offline alert")
    (alert,) = _verified(endpoint, _by_type(partner.received(path), "inverter.offline"))
    opened_at = datetime.fromisoformat(alert["data"]["opened_at"].replace("Z", "+00:00")).timestamp()
    assert "resumed 1 offline timers" in second.logs()
    assert opened_at - last_seen >= delay_s, "never before the device was silent for the whole delay"
    # A fresh timer would open no sooner than delay_s after the new engine started (after restarted_at).
    assert opened_at - restarted_at < delay_s - 2, (opened_at - restarted_at, second.logs()[-2000:])

    set_faults(mock, offline=[])
    wait_until(lambda: _by_type(partner.received(path), "inverter.online"), 60, 0.1, "the back-online alert")
    received = partner.received(path)
    assert len(_by_type(received, "inverter.offline")) == 1 and len(_by_type(received, "inverter.online")) == 1
    _verified(endpoint, received)


def test_a_device_shaded_before_a_kill_gets_its_production_low_alert_on_the_count_it_had(
    services, metrics_env, mock, web, api, partner
):
    """The worker is killed while a shaded device's "below for N minutes" count runs: the restarted engine
    resumes the count the first one saved in Redis (it does not start a fresh one), and sends the alert once.
    (When it comes is tested in process, tests/metrics/test_alert_engine_restart.py: here the mock's clock
    runs 60 times real time, so a restart lasts minutes of the device's time.)"""
    client = redis.Redis.from_url(metrics_env["REDIS_URL"], decode_responses=True)
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    path = "/ok/resumed-production"
    endpoint = api.post(
        "/webhook-endpoints", json={"url": partner.url + path, "event_types": ["production.low"]}
    ).json()
    # 5 device minutes (5 s here): the count is saved at the first shaded reading and the worker killed at once,
    # long before the next reading (2.3 minutes on); a restart slower than that finds the resumed count due.
    params = {**_site("SBX-AMS-0001"), "below_pct": 25, "clear_above_pct": 30, "minutes": 5}
    rule = api.post("/alert-rules", json={"inverter_id": inverter["id"], "kind": "production_low", "params": params})
    assert rule.status_code == 201, rule.text
    set_faults(mock, shaded={"SBX-AMS-0001": 0.05})
    worker = services.worker(metrics_env, role="all", name="first")
    count = f"{rule.json()['id']} {inverter['id']}"
    wait_until(lambda: client.hget(ALERT_BELOW_SINCE, count), 30, 0.05, "the engine to save the running count")
    worker.kill()
    assert not partner.received(path), "killed before the alert was due"

    second = services.worker(metrics_env, role="all", name="second")
    wait_until(lambda: _by_type(partner.received(path), "production.low"), 60, 0.1, "the production_low alert")
    assert "and 1 production_low counts" in second.logs(), second.logs()[-2000:]
    (alert,) = _verified(endpoint, _by_type(partner.received(path), "production.low"))
    assert alert["data"]["inverter_id"] == inverter["id"]
    assert alert["data"]["values"]["pv_power_w"] < 0.25 * alert["data"]["values"]["expected_w"]
