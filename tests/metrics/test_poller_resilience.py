"""A poller survives a failure in one of its own steps (a real BrandPoller, the mock, Redis, SQLite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.metrics.conftest import onboard

SCRIPT = Path(__file__).with_name("poller_step_failure.py")


def test_a_poller_step_that_raises_is_logged_and_polling_carries_on(metrics_env, mock, api):
    onboard(api, mock, "sandbox", "SBX-AMS-0001")
    run = subprocess.run([sys.executable, str(SCRIPT)], env=metrics_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "polling carried on" in run.stdout
    assert "handling Polled failed; carrying on" in run.stderr  # logged with its context, not swallowed
