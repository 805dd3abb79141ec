import json
import signal

import pytest
import requests

from tests.helpers import wait_until
from tests.mock_inverter.mockinv_support import MockProcess


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("pv_peak_w"), "field pv_peak_w"),
        (lambda d: d.update(type="toaster"), "field type"),
        (lambda d: d["battery"].update(soc_min_pct=90, initial_soc_pct=95, soc_max_pct=80), "battery.soc_min_pct"),
    ],
)
def test_broken_config_exits_with_one_line(tmp_path, mutate, field):
    config = json.loads((MockProcess.demo_fleet()).read_text())
    mutate(config["plants"][0]["devices"][0])
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(config))
    process = MockProcess("--config", str(path))
    out, err = process.proc.communicate(timeout=30)
    assert process.proc.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and "SBX-AMS-0001" in lines[0] and field in lines[0]


def test_unreadable_config_is_one_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    process = MockProcess("--config", str(path))
    _, err = process.proc.communicate(timeout=30)
    assert process.proc.returncode != 0 and len(err.strip().splitlines()) == 1 and str(path) in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_generated_fleet_and_prompt_stop(sig):
    process = MockProcess(env={"MOCK_INVERTER_GENERATE_FLEET": "300", "MOCK_INVERTER_SPEED": "100"}).wait_ready()
    try:
        body = requests.get(
            process.base + "/sandbox/v1/devices", headers={"X-API-Key": "demo-sandbox-key"}, timeout=5
        ).json()
        assert body["count"] > 100
        assert requests.get(process.base + "/admin/health", timeout=5).json()["devices"] == 300
    finally:
        assert process.stop(sig) < 2.0
    assert process.proc.returncode == 0


def test_tick_loop_advances_without_requests(mock):
    """The shared server runs at 60x: simulated time moves on its own, whole ticks at a time."""
    first = requests.get(mock.base + "/admin/health", timeout=5).json()["sim_time"]
    wait_until(
        lambda: requests.get(mock.base + "/admin/health", timeout=5).json()["sim_time"] != first,
        5,
        0.05,
        "simulated time to advance",
    )


def test_a_stop_does_not_wait_for_the_next_days_curves(tmp_path):
    """Near midnight the tick loop computes the next day's curves ahead of time, and the first a process computes
    imports pandas and pvlib (~0.9 s of CPU, seconds on a busy machine). A stop that comes meanwhile is answered
    at once: the computing is off the hub."""
    env = {"MOCK_INVERTER_CURVE_CACHE": str(tmp_path / "curves"), "MOCK_INVERTER_SPEED": "100"}
    # 1 June's curves into the cache, so that the next process starts without importing pvlib.
    MockProcess(env={**env, "MOCK_INVERTER_START": "2026-06-01T12:00:00Z"}).wait_ready().stop()
    process = MockProcess(env={**env, "MOCK_INVERTER_START": "2026-06-01T23:30:00Z"})
    assert "devices on http://" in process.proc.stdout.readline()  # listening: 2 June's curves come next
    assert process.stop(signal.SIGTERM) < 0.4
    assert process.proc.returncode == 0
