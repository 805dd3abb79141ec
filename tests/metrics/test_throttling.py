"""A throttling reply end to end: a mock stricter than the brand's declared quota (the sandbox's window per
device at 5 real seconds, where the plan polls every 2.3) answers 429; the pollers worker pauses the
connection, records the reply (GET /connections/<id> `throttling`) and counts it in its metrics."""

from __future__ import annotations

import json

import pytest

from mock_inverter.config import DEMO_FLEET_PATH
from tests.helpers import free_port, wait_until
from tests.metrics.conftest import START, mock_stats, onboard
from tests.operations.test_metrics import scrape, value


@pytest.fixture
def strict_mock(services, metrics_env, tmp_path):
    fleet = json.loads(DEMO_FLEET_PATH.read_text())
    fleet["brands"]["sandbox"]["rate_limits"] = {"per_device_interval_s": 5}
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet))
    return services.mock_inverter(metrics_env, "--config", str(path), "--start", START, "--speed", "60")


def test_a_throttling_reply_pauses_the_connection_is_recorded_and_counted(services, metrics_env, strict_mock, api):
    port = free_port()
    services.worker(metrics_env, role="pollers", METRICS_PORT=str(port))
    connection_id = onboard(api, strict_mock, "sandbox", "SBX-AMS-0001")["connection_id"]

    def throttled():
        view = api.get(f"/connections/{connection_id}").json()
        return view if view["throttling"]["count"] >= 1 else None

    view = wait_until(throttled, 30, 0.2, "a recorded throttling reply")
    assert "too many requests" in view["throttling"]["reason"]
    assert view["throttling"]["paused_until"] > view["throttling"]["last_at"], "the connection paused"
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(samples, "solar_relay_brand_rate_limited_total", brand="sandbox") >= 1
    refused = mock_stats(strict_mock)["totals"]["refused_by"]
    assert set(refused) == {"sandbox:latest per device: 1 per 5 s"}, "the mock's stricter window, and only it"
