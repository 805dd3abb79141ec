"""Fixtures: a real `python -m mock_inverter` process on a free localhost port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
START = "2024-06-21T11:00:00Z"  # midday in Lagos and Amsterdam: every demo device is producing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MockProcess:
    def __init__(self, *args: str, env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_inverter", "--port", str(self.port), *args], cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, deadline_s: float = 30.0) -> "MockProcess":
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mock exited early: {self.proc.stderr.read()}")
            try:
                if requests.get(self.base + "/admin/health", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise TimeoutError("mock inverter did not become ready")

    def stop(self, sig=signal.SIGTERM, timeout: float = 5.0) -> float:
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        return time.monotonic() - started


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
