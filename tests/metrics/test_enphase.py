"""The Enphase adapter against the mock over real HTTP, per device type (PV-only micros, encharges), its OAuth
token handling (refresh before expiry, one refresh for concurrent calls, a 401 refreshes once and retries, the
rotated tokens handed over for storage), its error kinds; and onboarding plus polling through the service."""

from __future__ import annotations

import ipaddress
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from models.brands import ADAPTERS
from models.brands.base import AUTH, RATE_LIMITED, UNKNOWN_DEVICE, BrandError, PolledDevice
from models.net.policy import DestinationPolicy
from tests.helpers import wait_until
from tests.metrics.conftest import mock_stats, set_faults
from tests.mock_inverter.mockinv_support import MockProcess

LOOPBACK_ALLOWED = DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")])
APP = {
    "client_id": "demo-enphase-client",
    "client_secret": "demo-enphase-secret",
    "api_key": "demo-enphase-key",
    "refresh_token": "demo-enphase-refresh",
}


def token_calls(mock) -> int:
    return mock_stats(mock)["tokens"].get("demo-enphase-key", {}).get("enphase:token", {}).get("requests", 0)


@pytest.fixture
def mock(shared_mock):
    """The refresh token rotates when used: each test starts from the mock's demo application state (the
    module's mock, reset, with the used refresh tokens forgotten)."""
    requests.post(shared_mock.url + "/admin/tokens/reset", timeout=5).raise_for_status()
    return shared_mock


@pytest.fixture
def stored():
    """What the adapter handed over for storage, newest last."""
    return []


@pytest.fixture
def enphase(mock, stored):
    adapter = ADAPTERS["enphase"](mock.url + "/enphase", {**APP, "plan": "demo"}, LOOPBACK_ALLOWED, 3, stored.append)
    yield adapter
    adapter.close()


def test_each_device_type_maps_to_a_reading(enphase, stored):
    devices = enphase.list_devices()
    assert set(devices) == {"4001", "4002"} and devices["4002"].timezone == "Europe/Berlin"
    micros, encharges = enphase.found(devices, "4001"), enphase.found(devices, "4002")
    assert (micros.device_type, encharges.device_type) == ("micros", "encharges")
    pv = enphase.fetch_latest([PolledDevice("4001", "micros")]).readings["4001"]
    assert pv.status == "normal" and pv.pv_power_w > 0 and pv.battery_soc_pct is None and pv.battery_power_w is None
    assert pv.energy_total_wh >= pv.energy_today_wh >= 0 and pv.time > 1.7e9
    battery = enphase.fetch_latest([PolledDevice("4002", "encharges")]).readings["4002"]
    assert 0 <= battery.battery_soc_pct <= 100 and battery.battery_power_w is not None
    assert len(stored) == 1 and stored[0]["refresh_token"] != APP["refresh_token"], "one refresh, handed over"
    assert enphase.quota.windows[0].limit == 600 and ADAPTERS["enphase"].quota.windows[1].limit == 1000


def test_refreshes_before_expiry_and_once_for_concurrent_calls(mock, enphase, stored):
    enphase.list_devices()
    assert token_calls(mock) == 1
    enphase.fetch_latest([PolledDevice("4001", "micros")])
    assert token_calls(mock) == 1, "a fresh token is reused"
    enphase.credentials["access_expires_at"] = time.time() + 20  # under 10% of the mock's 600 s lifetime left
    set_faults(mock, latency_ms=200)  # every call in progress at once while the refresh is
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: enphase.fetch_latest([PolledDevice("4001", "micros")]), range(5)))
    assert all(result.readings for result in results)
    assert token_calls(mock) == 2 and len(stored) == 2, "five concurrent calls, one refresh"
    assert stored[-1]["access_expires_at"] > time.time() + 500


def test_a_401_refreshes_once_and_retries(mock, enphase, stored):
    enphase.list_devices()
    enphase.credentials["access_token"] = "at.revoked.early"  # still 'fresh' by its expiry time
    assert enphase.fetch_latest([PolledDevice("4001", "micros")]).readings
    assert token_calls(mock) == 2 and stored[-1]["access_token"] == enphase.credentials["access_token"]


def test_a_spent_refresh_token_is_an_auth_error(mock, enphase):
    enphase.list_devices()  # spends the demo refresh token
    again = ADAPTERS["enphase"](mock.url + "/enphase", {**APP}, LOOPBACK_ALLOWED, 3)
    with pytest.raises(BrandError) as caught:
        again.list_devices()
    assert caught.value.kind == AUTH and caught.value.brand_code == "invalid_grant"


def test_unknown_systems_and_rate_limits(mock, enphase):
    unknown = enphase.fetch_latest([PolledDevice("4040", "micros")])
    assert unknown.failed["4040"].kind == UNKNOWN_DEVICE
    with pytest.raises(BrandError) as caught:
        enphase.discover("4040")
    assert caught.value.kind == UNKNOWN_DEVICE
    set_faults(mock, offline=["122301004001"])
    assert enphase.fetch_latest([PolledDevice("4001", "micros")]).offline == {"4001"}


def test_429_without_retry_after_is_rate_limited(services, metrics_env, tmp_path):
    fleet = json.loads(MockProcess.demo_fleet().read_text())
    fleet["brands"]["enphase"]["applications"][0]["limits"] = {"per_minute": 2}
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    mock = services.mock_inverter(metrics_env, "--config", str(tmp_path / "fleet.json"), "--profile", "real")
    adapter = ADAPTERS["enphase"](mock.url + "/enphase", APP, LOOPBACK_ALLOWED, 3)
    try:
        adapter.fetch_latest([PolledDevice("4001", "micros")])
        adapter.fetch_latest([PolledDevice("4001", "micros")])
        with pytest.raises(BrandError) as caught:
            adapter.fetch_latest([PolledDevice("4001", "micros")])
        assert caught.value.kind == RATE_LIMITED and caught.value.status == 429 and caught.value.retry_after_s is None
    finally:
        adapter.close()


def test_onboarding_with_spent_credentials_reuses_the_stored_ones_and_readings_arrive(services, metrics_env, mock, api):
    connection = {"base_url": mock.url + "/enphase", **APP, "plan": "demo"}
    first = api.post("/inverters", json={"brand": "enphase", "serial": "4002", "connection": connection})
    assert first.status_code == 201, first.text
    assert first.json()["device_type"] == "encharges" and first.json()["timezone"] == "Europe/Berlin"
    # The refresh token given is spent now; the connection holds its successor.
    second = api.post("/inverters", json={"brand": "enphase", "serial": "4001", "connection": connection})
    assert second.status_code == 201, second.text
    assert second.json()["connection_id"] == first.json()["connection_id"] and second.json()["device_type"] == "micros"
    bad_plan = api.post(
        "/inverters", json={"brand": "enphase", "serial": "4001", "connection": {**connection, "plan": "gigawatt"}}
    )
    assert bad_plan.status_code == 400 and bad_plan.json()["error"]["details"]["field"] == "connection.plan"
    missing = api.post(
        "/inverters",
        json={"brand": "enphase", "serial": "4001", "connection": {"base_url": connection["base_url"], "api_key": "k"}},
    )
    assert missing.status_code == 400 and missing.json()["error"]["details"]["field"] == "connection.client_id"
    assert token_calls(mock) == 1

    services.worker(metrics_env, role="pollers")
    for inverter in (first.json(), second.json()):
        wait_until(
            lambda: api.get(f"/inverters/{inverter['id']}/latest").json()["reading"],
            20,
            0.2,
            f"a reading of Enphase system {inverter['serial']}",
        )
    battery = api.get(f"/inverters/{first.json()['id']}/latest").json()["reading"]
    assert battery["battery_soc_pct"] is not None and battery["pv_power_w"] > 0
    assert token_calls(mock) == 1, "the poller uses the stored access token, no refresh needed"
    assert mock_stats(mock)["totals"]["rate_limited"] == 0
    # The connection is planned within its own plan's limits (the demo plan), not the brand's default Watt plan;
    # the battery system's poll is two calls (summary and battery telemetry).
    shown = api.get(f"/connections/{first.json()['connection_id']}").json()
    assert {w["name"]: w["limit"] for w in shown["windows"]} == {
        "per minute per API key": 600,
        "monthly per API key": 10_000_000,
    }
