"""Poller leases across worker processes (one polls a connection, another takes over when it dies) and a
connection's backoff on brand errors (real mock inverter, web and worker processes, real Redis)."""

from __future__ import annotations

import time

from tests.helpers import wait_until
from tests.metrics.conftest import PACE, mock_stats, onboard, set_faults, wait_seconds_of_polling


def test_one_worker_polls_a_connection_and_another_takes_over_when_it_dies(services, metrics_env, mock, api):
    onboard(api, mock, "sandbox", "SBX-AMS-0001")
    first = services.worker(metrics_env, role="pollers", name="worker-a")
    wait_until(lambda: "lease taken" in first.logs(), 10, 0.05, "worker-a to take the lease")
    second = services.worker(metrics_env, role="pollers", name="worker-b")
    wait_seconds_of_polling(2 * float(PACE["POLLER_LEASE_S"]))
    assert "lease taken" not in second.logs()
    assert mock_stats(mock)["totals"]["rate_limited"] == 0
    first.kill()
    started = time.monotonic()
    wait_until(lambda: "lease taken" in second.logs(), 10, 0.05, "worker-b to take over")
    assert time.monotonic() - started <= float(PACE["POLLER_LEASE_S"]) * 1.5 + 1
    polled = mock_stats(mock)["devices"]["SBX-AMS-0001"]["requests"]
    wait_until(lambda: mock_stats(mock)["devices"]["SBX-AMS-0001"]["requests"] > polled, 10, 0.1, "polling to continue")
    assert mock_stats(mock)["totals"]["rate_limited"] == 0


def test_brand_errors_back_the_whole_connection_off_and_polling_recovers(services, metrics_env, mock, api):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    onboard(api, mock, "sandbox", "SBX-LOS-0001")
    set_faults(mock, error_rate=1.0)
    worker = services.worker(metrics_env, role="pollers")
    wait_until(lambda: worker.logs().count("brand backing off") >= 3, 20, 0.05, "repeated brand backoff")
    assert "kind=server_error" in worker.logs() and "failures=3" in worker.logs()
    assert api.get(f"/inverters/{inverter['id']}/latest").json()["reading"] is None
    set_faults(mock, clear=True)
    wait_until(lambda: api.get(f"/inverters/{inverter['id']}/latest").json()["reading"], 20, 0.1, "readings again")
    assert "brand answering again" in worker.logs() and worker.alive()
