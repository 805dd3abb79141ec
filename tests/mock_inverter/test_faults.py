import json
import time

import pytest
import requests

from tests.helpers import wait_until
from tests.mock_inverter.mockinv_support import GROWATT, SANDBOX


def set_faults(base, **settings):
    r = requests.post(base + "/admin/faults", json=settings, timeout=5)
    r.raise_for_status()
    return r.json()


def test_error_rate_gives_5xx(base):
    set_faults(base, error_rate=1.0)
    r = requests.get(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5)
    assert r.status_code in (500, 502, 503) and r.json()["error"]["code"] == "injected_fault"
    r = requests.post(base + "/v4/new-api/queryDeviceList", headers=GROWATT, timeout=5)
    assert r.status_code in (500, 502, 503)
    assert requests.get(base + "/admin/health", timeout=5).ok, "admin is never faulted"


def test_latency_is_added(base):
    set_faults(base, latency_ms=300)
    started = time.monotonic()
    requests.get(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5)
    assert time.monotonic() - started >= 0.3


def test_malformed_replies_are_not_json(base):
    set_faults(base, malformed_rate=1.0)
    r = requests.get(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)


def test_offline_device_in_each_brand(base):
    set_faults(base, offline=["SBX-AMS-0001", "GRTMIN0001"])
    reading = requests.get(base + "/sandbox/v1/devices/SBX-AMS-0001/latest", headers=SANDBOX, timeout=5).json()
    assert reading["status"] == "offline"
    v4 = requests.post(
        base + "/v4/new-api/queryLastData",
        headers=GROWATT,
        data={"deviceType": "min", "deviceSn": "GRTMIN0001"},
        timeout=5,
    ).json()
    assert v4["code"] == 5 and v4["message"] == "DEVICE_OFFLINE"
    devices = requests.get(base + "/v1/device/list", params={"plant_id": 2002}, headers=GROWATT, timeout=5).json()
    assert {d["device_sn"]: d["lost"] for d in devices["data"]["devices"]} == {"GRTMIN0001": True, "GRTINV0001": False}
    tlx = requests.post(
        base + "/v1/device/tlx/tlx_last_data", headers=GROWATT, data={"tlx_sn": "GRTMIN0001"}, timeout=5
    ).json()["data"]
    assert tlx["status"] == -1 and tlx["lost"] is True
    set_faults(base, offline=[])
    requests.post(base + "/admin/stats/reset", timeout=5)
    back = requests.get(base + "/sandbox/v1/devices/SBX-AMS-0001/latest", headers=SANDBOX, timeout=5).json()
    assert back["status"] == "normal"


def test_outage_resets_connections_then_recovers(base):
    set_faults(base, outage_for_s=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5)
    assert requests.get(base + "/admin/faults", timeout=5).json()["outage_remaining_s"] > 0
    wait_until(
        lambda: requests.get(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5).ok,
        5,
        0.1,
        "the mock to recover after the outage window",
    )


def test_bad_fault_settings_are_a_400(base):
    r = requests.post(base + "/admin/faults", json={"error_rate": 3}, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_fault"
    r = requests.post(base + "/admin/faults", data="nope", timeout=5)
    assert r.status_code == 400


def test_a_faulted_device_reports_status_fault_and_a_shaded_one_less_pv(base):
    def latest():
        requests.post(base + "/admin/stats/reset", timeout=5)  # the sandbox's per-device rate limit
        return requests.get(base + "/sandbox/v1/devices/SBX-AMS-0001/latest", headers=SANDBOX, timeout=5).json()

    first = latest()
    assert first["status"] == "normal" and first["pv_power_w"] > 0
    set_faults(base, faulted=["SBX-AMS-0001", "GRTMIN0001"])
    assert latest()["status"] == "fault"
    v4 = requests.post(
        base + "/v4/new-api/queryLastData",
        headers=GROWATT,
        data={"deviceType": "min", "deviceSn": "GRTMIN0001"},
        timeout=5,
    ).json()
    assert v4["data"]["min"][0]["status"] == 3, "Growatt's fault code, which the relay reads as fault"
    described = set_faults(base, faulted=[], shaded={"SBX-AMS-0001": 0.0})
    assert described["shaded"] == {"SBX-AMS-0001": 0.0}
    wait_until(lambda: latest()["pv_power_w"] == 0.0, 10, 0.1, "the shaded device's PV to drop to its share (0)")
    assert latest()["status"] == "normal"
    set_faults(base, shaded={})
    wait_until(lambda: latest()["pv_power_w"] > 0, 10, 0.1, "full PV back")
    bad = requests.post(base + "/admin/faults", json={"shaded": {"SBX-AMS-0001": 1.5}}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_fault"


def test_a_battery_held_at_a_state_of_charge_reports_it_until_released(base):
    def latest(serial="SBX-AMS-0001"):
        requests.post(base + "/admin/stats/reset", timeout=5)  # the sandbox's per-device rate limit
        return requests.get(base + f"/sandbox/v1/devices/{serial}/latest", headers=SANDBOX, timeout=5).json()

    described = set_faults(base, battery_soc={"SBX-AMS-0001": 12, "SBX-LOS-0001": 12})
    assert described["battery_soc"] == {"SBX-AMS-0001": 12.0, "SBX-LOS-0001": 12.0}
    assert latest()["battery_soc_pct"] == 12.0
    assert latest("SBX-LOS-0001")["battery_soc_pct"] is None, "a device without a battery has no state of charge"
    set_faults(base, battery_soc={})
    wait_until(lambda: latest()["battery_soc_pct"] != 12.0, 10, 0.1, "the battery's own state of charge back")
    bad = requests.post(base + "/admin/faults", json={"battery_soc": {"SBX-AMS-0001": 101}}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_fault"
