"""Fixtures: a real `python -m mock_inverter` process on a free localhost port."""

from __future__ import annotations

import pytest
import requests

from tests.mock_inverter.mockinv_support import MockProcess

START = "2024-06-21T11:00:00Z"  # midday in Lagos and Amsterdam: every demo device is producing


@pytest.fixture(scope="session")
def mock():
    process = MockProcess("--start", START, "--speed", "60").wait_ready()
    yield process
    process.stop()


@pytest.fixture
def base(mock):
    """The shared server with faults cleared, counters and rate-limit windows reset."""
    requests.post(mock.base + "/admin/faults", json={"clear": True}, timeout=5).raise_for_status()
    requests.post(mock.base + "/admin/stats/reset", timeout=5).raise_for_status()
    return mock.base
