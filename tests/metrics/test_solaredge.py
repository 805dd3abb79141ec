"""SolarEdge end to end over real HTTP: the adapter against the mock's /solaredge dialect per device type
(a StorEdge inverter with a battery on a site reporting kW, a PV-only inverter on a site reporting W), how the
brand signals refused keys, unknown serials and spent budgets, and onboarding through POST /inverters with a
reading arriving through a pollers worker."""

from __future__ import annotations

import ipaddress
import json

import pytest
import requests

from models.brands import ADAPTERS
from models.brands.base import AUTH, RATE_LIMITED, UNKNOWN_DEVICE, BrandError, PolledDevice
from models.brands.solaredge import normalise
from models.net.policy import DestinationPolicy
from tests.helpers import wait_until
from tests.metrics.conftest import PACE, START
from tests.mock_inverter.mockinv_support import MockProcess

KEY = "demo-solaredge-key"
STOREDGE, PV_ONLY = "3001:7E1A3001-5C", "3002:7F2B3002-11"
LOOPBACK_ALLOWED = DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")])


@pytest.fixture
def metrics_env(env):
    return {**env, **PACE}


@pytest.fixture
def solaredge(mock):
    adapter = ADAPTERS["solaredge"](mock.url + "/solaredge", {"api_key": KEY}, LOOPBACK_ALLOWED, timeout_s=3)
    yield adapter
    adapter.close()


def polled(adapter, serial):
    device = adapter.discover(serial)
    return PolledDevice(serial, device.device_type, device.timezone)


def test_device_types_come_from_the_inventory_and_each_site_maps_in_its_own_unit(mock, solaredge):
    devices = solaredge.list_devices()
    assert {s: (d.device_type, d.plant_id, d.timezone) for s, d in devices.items()} == {
        STOREDGE: ("storedge", "3001", "Europe/Madrid"),
        PV_ONLY: ("inverter", "3002", "Africa/Johannesburg"),
    }
    for serial in (STOREDGE, PV_ONLY):
        device = polled(solaredge, serial)
        result = solaredge.fetch_latest([device])
        reading = result.readings[serial]
        overview = requests.get(
            f"{mock.url}/solaredge/site/{serial.split(':')[0]}/overview", params={"api_key": KEY}, timeout=5
        ).json()["overview"]
        # Power flow in kW (3001) or W (3002) both arrive in W: the overview's current power is always W.
        assert reading.pv_power_w == pytest.approx(overview["currentPower"]["power"], rel=0.2)
        assert reading.status == "normal" and reading.load_power_w > 0
        assert reading.energy_total_wh >= reading.energy_today_wh > 0
        assert (reading.grid_import_w == 0) or (reading.grid_export_w == 0)
        if device.device_type == "storedge":
            assert 0 <= reading.battery_soc_pct <= 100 and reading.battery_power_w is not None
        else:
            assert reading.battery_soc_pct is None and reading.battery_power_w is None
    assert solaredge.batch_key(polled(solaredge, STOREDGE)) == "3001"


def test_power_flow_unit_and_directions_are_honoured():
    device = PolledDevice(STOREDGE, "storedge", "Europe/Madrid")
    overview = {
        "lastUpdateTime": "2024-06-21 13:00:00",
        "lastDayData": {"energy": 1500.0},
        "lifeTimeData": {"energy": 9e6},
    }
    flow = {
        "unit": "kW",
        "connections": [{"from": "LOAD", "to": "Grid"}, {"from": "STORAGE", "to": "Load"}],
        "GRID": {"status": "Active", "currentPower": 1.25},
        "LOAD": {"status": "Active", "currentPower": 0.5},
        "PV": {"status": "Idle", "currentPower": 0},
        "STORAGE": {"status": "Discharging", "currentPower": 1.75, "chargeLevel": 61, "critical": False},
    }
    kw = normalise(device, flow, overview)
    assert (kw.grid_import_w, kw.grid_export_w, kw.battery_power_w, kw.battery_soc_pct) == (0.0, 1250.0, -1750.0, 61)
    assert kw.status == "waiting" and kw.time == 1718967600.0  # 13:00 CEST is 11:00Z
    watts = normalise(
        device,
        {
            **flow,
            "unit": "W",
            "connections": [{"from": "GRID", "to": "Load"}, {"from": "PV", "to": "Storage"}],
            "STORAGE": {"status": "Charging", "currentPower": 800.0, "chargeLevel": 62},
        },
        overview,
    )
    assert (watts.grid_import_w, watts.grid_export_w, watts.battery_power_w) == (1.25, 0.0, 800.0)
    with pytest.raises(BrandError):
        normalise(device, {**flow, "unit": "furlongs"}, overview)


def test_refused_keys_unknown_serials_and_spent_budgets(mock, solaredge, tmp_path):
    wrong = ADAPTERS["solaredge"](mock.url + "/solaredge", {"api_key": "nope"}, LOOPBACK_ALLOWED, timeout_s=3)
    with pytest.raises(BrandError) as caught:
        wrong.list_devices()
    assert caught.value.kind == AUTH and caught.value.status == 403
    wrong.close()
    with pytest.raises(BrandError) as caught:
        solaredge.discover("7E1A3001-5C")  # the bare SN: say how to name it
    assert caught.value.kind == UNKNOWN_DEVICE and STOREDGE in caught.value.message
    gone = solaredge.fetch_latest([PolledDevice("9999:AAAA", "inverter", None)])
    assert gone.failed["9999:AAAA"].kind == UNKNOWN_DEVICE

    fleet = json.loads(MockProcess.demo_fleet().read_text())
    fleet["brands"]["solaredge"]["rate_limits"] = {"daily_per_site": 3}
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    small = MockProcess("--config", str(tmp_path / "fleet.json"), "--start", START, "--profile", "real").wait_ready()
    adapter = ADAPTERS["solaredge"](small.base + "/solaredge", {"api_key": KEY}, LOOPBACK_ALLOWED, timeout_s=3)
    try:
        device = PolledDevice(PV_ONLY, "inverter", "Africa/Johannesburg")
        assert PV_ONLY in adapter.fetch_latest([device]).readings  # two calls of the site's three
        with pytest.raises(BrandError) as caught:
            adapter.fetch_latest([device])
        assert caught.value.kind == RATE_LIMITED and caught.value.status == 429
    finally:
        adapter.close()
        small.stop()


def test_onboarded_through_the_api_and_polled_by_a_worker(services, metrics_env, mock, api):
    connection = {"base_url": mock.url + "/solaredge", "api_key": KEY}
    reply = api.post("/inverters", json={"brand": "solaredge", "serial": STOREDGE, "connection": connection})
    assert reply.status_code == 201, reply.text
    inverter = reply.json()
    assert (inverter["device_type"], inverter["plant_id"], inverter["timezone"]) == (
        "storedge",
        "3001",
        "Europe/Madrid",
    )
    bare = api.post("/inverters", json={"brand": "solaredge", "serial": "7E1A3001-5C", "connection": connection})
    assert bare.status_code == 422 and bare.json()["error"]["code"] == "unknown_serial"
    services.worker(metrics_env, role="pollers")
    reading = wait_until(
        lambda: api.get(f"/inverters/{inverter['id']}/latest").json()["reading"],
        20,
        0.05,
        "a SolarEdge reading through the pollers",
    )
    assert reading["serial"] == STOREDGE and 0 <= reading["battery_soc_pct"] <= 100 and reading["pv_power_w"] > 100
