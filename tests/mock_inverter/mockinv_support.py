"""Shared helpers for the mock inverter tests (a uniquely named module, not conftest, so imports are unambiguous)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.helpers import free_port, project_env, wait_until

SANDBOX = {"X-API-Key": "demo-sandbox-key"}
GROWATT = {"token": "demo-growatt-token"}
REPO = Path(__file__).resolve().parents[2]


class MockProcess:
    def __init__(self, *args: str, env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mock_inverter", "--port", str(self.port), *args],
            cwd=REPO,
            env=project_env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def demo_fleet() -> Path:
        return REPO / "mock_inverter" / "demo_fleet.json"

    def wait_ready(self, deadline_s: float = 30.0) -> MockProcess:
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mock exited early: {self.proc.stderr.read()}")
            return requests.get(self.base + "/admin/health", timeout=1).ok

        try:
            wait_until(ready, deadline_s, 0.05, "the mock inverter to answer /admin/health")
        except BaseException:
            self.proc.kill()  # a fixture that never got the process would leave it running
            self.proc.wait()
            raise
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 5.0) -> float:
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        return time.monotonic() - started
