"""`--limits-clock sim`: the mock counts its limits on the simulated clock (a benchmark's accelerated day)."""

from __future__ import annotations

import time

import requests

from tests.helpers import wait_until
from tests.mock_inverter.mockinv_support import GROWATT, MockProcess


def last_data(base: str) -> int:
    reply = requests.post(
        base + "/v1/device/mix/mix_last_data", data={"mix_sn": "GRTSPH0001"}, headers=GROWATT, timeout=5
    )
    return reply.json()["error_code"]


def test_the_per_device_five_minutes_pass_in_simulated_time():
    mock = MockProcess("--profile", "real", "--limits-clock", "sim", "--speed", "120").wait_ready()
    try:
        health = requests.get(mock.base + "/admin/health", timeout=5).json()
        assert health["clock_speed"] == 120
        assert last_data(mock.base) == 0
        assert last_data(mock.base) == 10012, "the device's 5 minutes have not passed"
        # 300 simulated seconds are 2.5 s here (a real-time limit would hold for 5 minutes)
        wait_until(lambda: last_data(mock.base) == 0, 10.0, 0.1, "the device's next 5-minute window")
        stats = requests.get(mock.base + "/admin/stats", timeout=5).json()
        assert stats["totals"]["rate_limited"] >= 1
    finally:
        mock.stop()


def test_a_fusionsolar_session_ends_after_its_documented_idle_half_hour_of_simulated_time():
    from tests.mock_inverter.test_fusionsolar_api import call, login

    mock = MockProcess("--profile", "real", "--limits-clock", "sim", "--speed", "3600").wait_ready()
    try:
        token = login(mock.base)
        assert call(mock.base, "stations", {"pageNo": 1}, token)["failCode"] == 0
        used_at = time.monotonic()
        # 30 simulated minutes are half a real second here; idle time passing is the point, not a synchronisation
        wait_until(lambda: time.monotonic() > used_at + 1.0, 5.0, 0.05, "a simulated hour of idleness")
        assert call(mock.base, "stations", {"pageNo": 1}, token)["failCode"] == 305
        assert call(mock.base, "stations", {"pageNo": 1}, login(mock.base))["failCode"] == 0
    finally:
        mock.stop()
