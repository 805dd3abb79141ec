import requests

from tests.mock_inverter.mockinv_support import SANDBOX


def test_lists_sandbox_devices_only(base):
    body = requests.get(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5).json()
    serials = {d["serial"] for d in body["devices"]}
    assert body["count"] == 3
    assert serials == {"SBX-AMS-0001", "SBX-LOS-0001", "SBX-NBO-0001"}
    hybrid = next(d for d in body["devices"] if d["serial"] == "SBX-AMS-0001")
    assert hybrid["type"] == "hybrid" and hybrid["battery_capacity_wh"] == 10000


def test_latest_reading_has_what_a_normaliser_needs(base):
    r = requests.get(base + "/sandbox/v1/devices/SBX-AMS-0001/latest", headers=SANDBOX, timeout=5)
    assert r.status_code == 200
    reading = r.json()
    assert reading["timestamp"].endswith("Z") and reading["status"] == "normal"
    assert reading["pv_power_w"] > 0 and 10 <= reading["battery_soc_pct"] <= 100
    for name in (
        "ac_power_w",
        "load_power_w",
        "grid_import_w",
        "grid_export_w",
        "battery_charge_w",
        "battery_discharge_w",
        "temperature_c",
        "pv_energy_today_wh",
        "pv_energy_total_wh",
    ):
        assert isinstance(reading[name], (int, float)), name
    inverter = requests.get(base + "/sandbox/v1/devices/SBX-LOS-0001/latest", headers=SANDBOX, timeout=5).json()
    assert inverter["battery_soc_pct"] is None


def test_wrong_key_is_401_in_sandbox_shape(base):
    for headers in ({}, {"X-API-Key": "nope"}):
        r = requests.get(base + "/sandbox/v1/devices", headers=headers, timeout=5)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"


def test_unknown_serial_and_route_and_method(base):
    r = requests.get(base + "/sandbox/v1/devices/NOPE/latest", headers=SANDBOX, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_device"
    r = requests.get(base + "/sandbox/v1/devices/GRTSPH0001/latest", headers=SANDBOX, timeout=5)
    assert r.status_code == 404, "a Growatt serial is not a sandbox device"
    r = requests.get(base + "/sandbox/v1/nothing", headers=SANDBOX, timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = requests.post(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_rate_limit_per_device_is_429_with_retry_after(base):
    url = base + "/sandbox/v1/devices/SBX-LOS-0001/latest"
    assert requests.get(url, headers=SANDBOX, timeout=5).status_code == 200
    r = requests.get(url, headers=SANDBOX, timeout=5)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    other = requests.get(base + "/sandbox/v1/devices/SBX-AMS-0001/latest", headers=SANDBOX, timeout=5)
    assert other.status_code == 200, "the limit is per device"
    stats = requests.get(base + "/admin/stats", timeout=5).json()
    assert stats["devices"]["SBX-LOS-0001"] == {**stats["devices"]["SBX-LOS-0001"], "requests": 2, "rate_limited": 1}
    assert stats["tokens"]["demo-sandbox-key"]["sandbox:latest"]["requests"] == 3


def test_a_refusal_names_the_window_that_refused_it(base):
    """In the 429 (body and X-Mock-Refused-By), in /admin/stats per endpoint, device and in the totals, and
    in the mock's /metrics: a benchmark's violations say which limit was overrun."""
    from prometheus_client.parser import text_string_to_metric_families

    url = base + "/sandbox/v1/devices/SBX-NBO-0001/latest"
    assert requests.get(url, headers=SANDBOX, timeout=5).status_code == 200
    refused = requests.get(url, headers=SANDBOX, timeout=5)
    window = "sandbox:latest per device: 1 per 2 s"  # the fast profile's
    assert refused.status_code == 429 and refused.headers["X-Mock-Refused-By"] == window
    assert refused.json()["error"]["details"]["window"] == window
    stats = requests.get(base + "/admin/stats", timeout=5).json()
    assert stats["totals"]["refused_by"] == {window: 1}
    assert stats["tokens"]["demo-sandbox-key"]["sandbox:latest"]["refused_by"] == {window: 1}
    assert stats["devices"]["SBX-NBO-0001"]["refused_by"] == {window: 1}
    text = requests.get(base + "/metrics", timeout=5).text
    refusals = [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mock_inverter_brand_refusals_total" and s.labels["window"] == window
    ]
    assert refusals and refusals[0].value >= 1


def test_mock_metrics_count_answered_calls_per_endpoint(base):
    from prometheus_client.parser import text_string_to_metric_families

    def answered() -> float:
        text = requests.get(base + "/metrics", timeout=5).text
        return sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "mock_inverter_brand_calls_total"
            and s.labels == {"endpoint": "sandbox:devices", "outcome": "answered"}
        )

    before = answered()
    requests.get(base + "/sandbox/v1/devices", headers=SANDBOX, timeout=5).raise_for_status()
    assert answered() == before + 1
