"""The worker's poller and recorder metrics, scraped from METRICS_PORT while it polls the mock."""

from __future__ import annotations

from tests.helpers import free_port, wait_until
from tests.metrics.conftest import onboard
from tests.operations.test_metrics import scrape, value


def test_polls_publishes_and_records_are_counted_per_brand(services, metrics_env, mock, web, api):
    port = free_port()
    services.worker(metrics_env, role="pollers", METRICS_PORT=str(port))
    onboard(api, mock, "sandbox", "SBX-AMS-0001")
    onboard(api, mock, "growatt_v4", "GRTMIN0001")

    def recorded():
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        return samples if value(samples, "solar_relay_readings_recorded_total") >= 2 else None

    samples = wait_until(recorded, 20, 0.1, "readings recorded by the worker")
    for brand in ("sandbox", "growatt_v4"):
        assert value(samples, "solar_relay_brand_requests_total", brand=brand, outcome="ok") >= 1
        assert value(samples, "solar_relay_poll_lag_seconds_count", brand=brand) >= 1
        assert value(samples, "solar_relay_brand_rate_limited_total", brand=brand) == 0
    assert value(samples, "solar_relay_readings_published_total") >= 2
    assert ("solar_relay_recorder_lag_seconds", frozenset()) in samples
