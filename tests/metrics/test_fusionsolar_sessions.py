"""FusionSolar sessions on the real clock: a pollers worker on POLL_CLOCK_SPEED 1 (production's wall clock)
against the mock's `--profile real` (the documented limits, sessions ending after idle time) over real HTTP.
A session that ended while the poller had nothing to ask answers failCode 305; the adapter logs in again
and the call goes through, with no throttling reply and no reading lost."""

from __future__ import annotations

import json
import time

import pytest

from mock_inverter.config import DEMO_FLEET_PATH
from tests.helpers import wait_until
from tests.metrics.conftest import PACE, START, mock_stats, onboard

SESSION_S = 1.0  # the documented idle lifetime is 30 minutes; the mock's fleet config shortens it


@pytest.fixture
def metrics_env(env):
    """This module's processes run on the wall clock, as in production (the suite's default is 150x)."""
    return {**env, **PACE, "POLL_CLOCK_SPEED": "1", "POLL_CLOCK_ANCHOR": "0"}


@pytest.fixture
def real_mock(services, metrics_env, tmp_path):
    fleet = json.loads(DEMO_FLEET_PATH.read_text())
    fleet["brands"]["fusionsolar"]["rate_limits"] = {"session_ttl_s": SESSION_S}
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet))
    return services.mock_inverter(metrics_env, "--config", str(path), "--profile", "real", "--start", START)


def test_the_poller_logs_in_again_when_its_session_ended_idle_on_the_real_clock(services, metrics_env, real_mock, api):
    services.worker(metrics_env, role="pollers")
    inverter = onboard(api, real_mock, "fusionsolar", "HWINV0001")
    wait_until(lambda: api.get(f"/inverters/{inverter['id']}/latest").json()["reading"], 30, 0.1, "the first reading")
    polled_at = time.monotonic()
    # The session's idle lifetime passing is the point here: the poller's next call of this device type is
    # a plan interval (over 5 minutes) away, so the worker asks nothing meanwhile.
    wait_until(lambda: time.monotonic() > polled_at + SESSION_S + 0.2, 5, 0.05, "the session's idle lifetime")
    # The web process lists devices once per connection and reuses the list, so onboarding this battery
    # sends nothing to FusionSolar; the worker's first call for it finds its session ended.
    battery = onboard(api, real_mock, "fusionsolar", "HWINV0001B")
    reading = wait_until(
        lambda: api.get(f"/inverters/{battery['id']}/latest").json()["reading"], 30, 0.1, "the battery's reading"
    )
    assert reading["battery_soc_pct"] is not None
    stats = mock_stats(real_mock)["tokens"]
    assert stats["demo-fusionsolar"]["fs:login"]["requests"] == 3, "onboarding's login, the poller's, its re-login"
    assert sum(e["requests"] for e in stats["<invalid>"].values()) == 1, "one call answered 305, then repeated"
    assert sum(e["rate_limited"] for e in stats["demo-fusionsolar"].values()) == 0
