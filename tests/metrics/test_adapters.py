"""Brand adapters against the mock inverter over real HTTP: every device type, and how each brand
signals rate limiting, server errors, offline devices and unknown serials."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
import requests

from mock_inverter.config import DEMO_FLEET_PATH
from models.brands import ADAPTERS
from models.brands.base import AUTH, RATE_LIMITED, SERVER_ERROR, UNKNOWN_DEVICE, BrandError, PolledDevice
from models.net.policy import DestinationPolicy
from tests.metrics.conftest import FUSIONSOLAR_ACCOUNT, GROWATT_TOKEN, SANDBOX_KEY, START, mock_stats, set_faults

LOOPBACK_ALLOWED = DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")])  # the mock listens on 127.0.0.1


@pytest.fixture
def sandbox(mock):
    adapter = ADAPTERS["sandbox"](mock.url, {"api_key": SANDBOX_KEY}, LOOPBACK_ALLOWED, timeout_s=3)
    yield adapter
    adapter.close()


@pytest.fixture
def growatt(mock):
    adapter = ADAPTERS["growatt_v4"](mock.url, {"token": GROWATT_TOKEN}, LOOPBACK_ALLOWED, timeout_s=3)
    yield adapter
    adapter.close()


def polled(adapter, serial, zone=None):
    device = adapter.discover(serial)
    return PolledDevice(serial, device.device_type, zone)


def test_growatt_v4_maps_each_device_type_and_batches_them(growatt):
    devices = {s: polled(growatt, s, "Africa/Lagos") for s in ("GRTSPH0001", "GRTSTO0001", "GRTMIN0001", "GRTINV0001")}
    assert {s: d.device_type for s, d in devices.items()} == {
        "GRTSPH0001": "sph",
        "GRTSTO0001": "storage",
        "GRTMIN0001": "min",
        "GRTINV0001": "inv",
    }
    readings = {}
    for device in devices.values():  # one call per device type: a batch shares its deviceType
        readings.update(growatt.fetch_latest([device]).readings)
    sph, storage, tlx, inv = (readings[s] for s in devices)
    assert sph.battery_soc_pct is not None and sph.battery_voltage_v > 0 and sph.load_power_w is not None
    assert storage.battery_soc_pct is not None and storage.battery_voltage_v > 0  # capacity, vBat
    assert tlx.battery_soc_pct is None and tlx.battery_power_w is None  # min without battery
    assert inv.grid_import_w is None and inv.battery_soc_pct is None and inv.ac_power_w > 0
    for reading in readings.values():
        assert reading.status == "normal" and reading.pv_power_w > 0
        assert reading.energy_total_wh >= reading.energy_today_wh >= 0  # kWh at the brand, Wh here
    assert growatt.batch_size == 100


def test_growatt_v4_signals_rate_limits_offline_and_unknown(mock, growatt):
    sph = polled(growatt, "GRTSPH0001")
    growatt.fetch_latest([sph])
    with pytest.raises(BrandError) as caught:  # again within the per-device interval
        growatt.fetch_latest([sph])
    assert caught.value.kind == RATE_LIMITED and caught.value.brand_code == 102
    set_faults(mock, offline=["GRTINV0001"])
    inv = polled(growatt, "GRTINV0001")
    assert growatt.fetch_latest([inv]).offline == {"GRTINV0001"}
    unknown = growatt.fetch_latest([PolledDevice("GRTNOPE001", "min")])
    assert unknown.failed["GRTNOPE001"].kind == UNKNOWN_DEVICE
    set_faults(mock, clear=True, error_rate=1.0)
    with pytest.raises(BrandError) as caught:
        growatt.fetch_latest([PolledDevice("GRTMIN0001", "min")])
    assert caught.value.kind == SERVER_ERROR


def test_sandbox_maps_readings_and_signals_rate_limits_and_offline(mock, sandbox):
    hybrid = polled(sandbox, "SBX-AMS-0001")
    assert hybrid.device_type == "hybrid"
    reading = sandbox.fetch_latest([hybrid]).readings["SBX-AMS-0001"]
    assert reading.battery_soc_pct is not None and reading.time > 1.7e9
    with pytest.raises(BrandError) as caught:
        sandbox.fetch_latest([hybrid])
    assert caught.value.kind == RATE_LIMITED and caught.value.retry_after_s >= 1
    set_faults(mock, offline=["SBX-LOS-0001"])
    assert sandbox.fetch_latest([polled(sandbox, "SBX-LOS-0001")]).offline == {"SBX-LOS-0001"}
    with pytest.raises(BrandError) as caught:
        sandbox.discover("SBX-NOPE")
    assert caught.value.kind == UNKNOWN_DEVICE


def test_growatt_v4_learns_plant_time_zones_so_local_times_read_right(growatt, sandbox):
    sph, tlx = growatt.discover("GRTSPH0001"), growatt.discover("GRTMIN0001")
    assert (sph.timezone, tlx.timezone) == ("Africa/Lagos", "Europe/Amsterdam")
    # Both brands read one simulated clock: with the plant's zone the local wall time lands on the
    # same instant as the sandbox's UTC timestamp (read as UTC it would be an hour off).
    lagos = growatt.fetch_latest([PolledDevice("GRTSPH0001", "sph", sph.timezone)]).readings["GRTSPH0001"]
    amsterdam = growatt.fetch_latest([PolledDevice("GRTMIN0001", "min", tlx.timezone)]).readings["GRTMIN0001"]
    reference = sandbox.fetch_latest([polled(sandbox, "SBX-LOS-0001")]).readings["SBX-LOS-0001"]
    for reading in (lagos, amsterdam):
        assert abs(reading.time - reference.time) < 300


@pytest.fixture
def growatt_v1(mock):
    adapter = ADAPTERS["growatt_v1"](mock.url, {"token": GROWATT_TOKEN}, LOOPBACK_ALLOWED, timeout_s=3)
    yield adapter
    adapter.close()


def test_growatt_v1_discovers_type_codes_and_zones_and_maps_each_device_type(growatt_v1, sandbox):
    devices = growatt_v1.list_devices()
    assert {s: (d.device_type, d.timezone) for s, d in devices.items()} == {
        "GRTSPH0001": ("5", "Africa/Lagos"),
        "GRTSTO0001": ("2", "Africa/Lagos"),
        "GRTMIN0001": ("7", "Europe/Amsterdam"),
        "GRTINV0001": ("1", "Europe/Amsterdam"),
    }
    readings = {}
    for serial, device in devices.items():  # one device per call: v1 has a route per type and no batch
        readings.update(growatt_v1.fetch_latest([PolledDevice(serial, device.device_type, device.timezone)]).readings)
    sph, storage, tlx, inv = (readings[s] for s in ("GRTSPH0001", "GRTSTO0001", "GRTMIN0001", "GRTINV0001"))
    assert sph.battery_soc_pct is not None and sph.battery_voltage_v > 0 and sph.load_power_w is not None
    assert storage.battery_soc_pct is not None and storage.battery_voltage_v > 0
    assert tlx.battery_soc_pct is None and tlx.battery_power_w is None
    assert inv.grid_import_w is None and inv.battery_soc_pct is None and inv.ac_power_w > 0
    reference = sandbox.fetch_latest([polled(sandbox, "SBX-LOS-0001")]).readings["SBX-LOS-0001"]
    for reading in readings.values():
        assert reading.status == "normal" and reading.pv_power_w > 0
        assert reading.energy_total_wh >= reading.energy_today_wh >= 0
        assert abs(reading.time - reference.time) < 300, "local wall time read in the plant's zone"


def test_growatt_v1_signals_rate_limits_offline_unknown_and_auth(mock, growatt_v1):
    sph = PolledDevice("GRTSPH0001", "5", "Africa/Lagos")
    growatt_v1.fetch_latest([sph])
    with pytest.raises(BrandError) as caught:  # again within the per-device interval
        growatt_v1.fetch_latest([sph])
    assert caught.value.kind == RATE_LIMITED and caught.value.brand_code == 10012
    set_faults(mock, offline=["GRTINV0001"])
    assert growatt_v1.fetch_latest([PolledDevice("GRTINV0001", "1")]).offline == {"GRTINV0001"}
    assert growatt_v1.fetch_latest([PolledDevice("GRTNOPE001", "7")]).failed["GRTNOPE001"].kind == UNKNOWN_DEVICE
    with pytest.raises(BrandError) as caught:
        growatt_v1.discover("GRTNOPE001")
    assert caught.value.kind == UNKNOWN_DEVICE
    wrong = ADAPTERS["growatt_v1"](mock.url, {"token": "wrong"}, LOOPBACK_ALLOWED, timeout_s=3)
    with pytest.raises(BrandError) as caught:
        wrong.list_devices()
    assert caught.value.kind == AUTH and caught.value.brand_code == 10011
    wrong.close()


def fusionsolar_adapter(mock, **credentials):
    return ADAPTERS["fusionsolar"](
        mock.url + "/fusionsolar", {**FUSIONSOLAR_ACCOUNT, **credentials}, LOOPBACK_ALLOWED, timeout_s=3
    )


@pytest.fixture
def fusionsolar(mock):
    adapter = fusionsolar_adapter(mock)
    yield adapter
    adapter.close()


def fusionsolar_fleet(fusionsolar) -> dict[str, PolledDevice]:
    return {s: PolledDevice(s, d.device_type) for s, d in fusionsolar.list_devices().items()}


def by_type(devices: dict, device_type: str) -> list[PolledDevice]:
    return [d for d in devices.values() if d.device_type == device_type]


def test_fusionsolar_lists_inverters_batteries_and_meters_and_reads_each_type_in_one_call(mock, fusionsolar, sandbox):
    devices = fusionsolar_fleet(fusionsolar)
    assert {s: d.device_type for s, d in devices.items()} == {
        "HWINV0001": "38",
        "HWINV0001B": "39",
        "HWINV0001M": "47",
        "HWINV0002": "38",
        "HWINV0002M": "47",
    }
    inverters = fusionsolar.fetch_latest(by_type(devices, "38")).readings
    battery = fusionsolar.fetch_latest(by_type(devices, "39")).readings["HWINV0001B"]
    meters = fusionsolar.fetch_latest(by_type(devices, "47")).readings
    assert set(inverters) == {"HWINV0001", "HWINV0002"} and set(meters) == {"HWINV0001M", "HWINV0002M"}
    for reading in inverters.values():  # kW and kWh at the brand, W and Wh here
        assert reading.status == "normal" and 100 < reading.pv_power_w <= 6000 and reading.ac_power_w is not None
        assert reading.energy_total_wh > reading.energy_today_wh > 0 and reading.battery_soc_pct is None
    assert battery.battery_soc_pct is not None and battery.battery_power_w is not None and battery.pv_power_w is None
    for meter in meters.values():  # W at the brand; one of import and export is zero
        assert meter.grid_import_w is not None and meter.grid_export_w is not None
        assert min(meter.grid_import_w, meter.grid_export_w) == 0
    # Without a battery, what the inverter makes goes to the house or the grid: the meter agrees with it.
    assert inverters["HWINV0002"].ac_power_w - meters["HWINV0002M"].grid_export_w >= -1.0
    reference = sandbox.fetch_latest([polled(sandbox, "SBX-LOS-0001")]).readings["SBX-LOS-0001"]
    assert abs(battery.time - reference.time) < 300, "params.currentTime is UTC milliseconds"
    calls = mock_stats(mock)["tokens"]["demo-fusionsolar"]
    assert calls["fs:login"]["requests"] == 1, "one login per connection"
    assert calls["fs:getDevRealKpi"]["requests"] == 3, "one call per device type"
    assert fusionsolar.batch_size == 100 and fusionsolar.batch_key(devices["HWINV0001"]) == "38"


def test_fusionsolar_logs_in_again_once_when_another_login_ends_its_session(mock, fusionsolar):
    devices = fusionsolar_fleet(fusionsolar)
    elsewhere = requests.post(
        mock.url + "/fusionsolar/thirdData/login",
        timeout=5,
        json={"userName": "demo-fusionsolar", "systemCode": "demo-fusionsolar-code"},
    )
    assert elsewhere.json()["failCode"] == 0  # one online session per account: the adapter's has ended
    assert set(fusionsolar.fetch_latest(by_type(devices, "47")).readings) == {"HWINV0001M", "HWINV0002M"}
    stats = mock_stats(mock)["tokens"]
    assert stats["demo-fusionsolar"]["fs:login"]["requests"] == 3
    assert stats["<invalid>"]["fs:getDevRealKpi"]["requests"] == 1, "the call refused with 305, then repeated"
    wrong = fusionsolar_adapter(mock, system_code="wrong")
    with pytest.raises(BrandError) as caught:
        wrong.list_devices()
    assert caught.value.kind == AUTH and caught.value.brand_code == 20400
    wrong.close()


def test_fusionsolar_offline_and_unknown_devices(mock, fusionsolar):
    devices = fusionsolar_fleet(fusionsolar)
    set_faults(mock, offline=["HWINV0002"])  # the whole system behind it: its inverter and its meter
    inverters = fusionsolar.fetch_latest(by_type(devices, "38"))
    assert inverters.offline == {"HWINV0002"} and set(inverters.readings) == {"HWINV0001"}
    assert fusionsolar.fetch_latest([devices["HWINV0002M"]]).offline == {"HWINV0002M"}
    result = fusionsolar.fetch_latest([PolledDevice("HWNOPE", "38"), PolledDevice("HWINV0001M", "38")])
    assert {s: e.kind for s, e in result.failed.items()} == {"HWNOPE": UNKNOWN_DEVICE, "HWINV0001M": UNKNOWN_DEVICE}


@pytest.fixture
def strict_fusionsolar_mock(services, metrics_env, tmp_path):
    """A mock whose FusionSolar sessions end after 0.5 s idle and whose real-time data allows one call a minute."""
    fleet = json.loads(DEMO_FLEET_PATH.read_text())
    fleet["brands"]["fusionsolar"]["rate_limits"] = {"session_ttl_s": 0.5, "kpi_calls": 0, "kpi_window_s": 60}
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet))
    return services.mock_inverter(metrics_env, "--config", str(path), "--start", START, "--speed", "60")


def test_fusionsolar_relogs_in_after_an_idle_session_expires_and_maps_407_to_rate_limited(strict_fusionsolar_mock):
    mock = strict_fusionsolar_mock
    adapter = fusionsolar_adapter(mock)
    devices = fusionsolar_fleet(adapter)
    time.sleep(0.8)  # the session's idle lifetime passing is the point here, not a synchronisation
    assert set(adapter.fetch_latest(by_type(devices, "38")).readings) == {"HWINV0001", "HWINV0002"}
    assert mock_stats(mock)["tokens"]["demo-fusionsolar"]["fs:login"]["requests"] == 2
    with pytest.raises(BrandError) as caught:  # HTTP 200 with failCode 407
        adapter.fetch_latest(by_type(devices, "38"))
    assert caught.value.kind == RATE_LIMITED and caught.value.brand_code == 407
    assert adapter.fetch_latest(by_type(devices, "47")).readings, "the limit is per device type"
    adapter.close()
