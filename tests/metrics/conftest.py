"""Fixtures for the live-metrics suite: a mock inverter, web and worker processes paced for tests,
onboarding helpers and a real SSE client (a raw socket, so tests can also drop it abruptly)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from tests.helpers import mock_service, sqlite_url, system_env, wait_until

START = "2024-06-21T11:00:00Z"  # midday in Lagos and Amsterdam: every demo device produces
SANDBOX_KEY = "demo-sandbox-key"
GROWATT_TOKEN = "demo-growatt-token"
FUSIONSOLAR_ACCOUNT = {"user_name": "demo-fusionsolar", "system_code": "demo-fusionsolar-code"}

# The pollers plan within the brands' real quotas (one latest call per device per 300 s) on a clock 150
# times faster than real time: exactly the mock's fast profile (one call per device per 2 s). Intervals
# are asked in that clock's seconds: 345 s there is a poll every 2.3 s here.
CLOCK_SPEED = 150.0
INTERVAL_S = 2.3  # real seconds between two polls of a device
PACE = {
    "POLL_CLOCK_SPEED": str(CLOCK_SPEED),
    "POLL_CLOCK_ANCHOR": repr(time.time()),
    "SANDBOX_POLL_INTERVAL_S": repr(INTERVAL_S * CLOCK_SPEED),
    "GROWATT_V4_POLL_INTERVAL_S": repr(INTERVAL_S * CLOCK_SPEED),
    "GROWATT_V1_POLL_INTERVAL_S": repr(INTERVAL_S * CLOCK_SPEED),
    "FUSIONSOLAR_POLL_INTERVAL_S": repr(INTERVAL_S * CLOCK_SPEED),
    "SOLAREDGE_POLL_INTERVAL_S": repr(INTERVAL_S * CLOCK_SPEED),
    "ENPHASE_POLL_INTERVAL_S": repr(INTERVAL_S * CLOCK_SPEED),
    "POLLER_LEASE_S": "2",
    "SSE_KEEPALIVE_S": "1",
    "SSE_RETRY_MS": "200",
    "BRAND_TIMEOUT_S": "3",
    "RECORDER_CLAIM_IDLE_S": "1",
}


@pytest.fixture
def metrics_env(env):
    return {**env, **PACE}


@pytest.fixture
def mock(shared_mock):
    """The module's mock inverter, reset (see `shared_mock`): the pollers and web processes of a test are its
    own and stop with it, so the next test finds no poller still calling; a module that needs more reset
    overrides this (test_enphase.py forgets the used refresh tokens too)."""
    return shared_mock


@pytest.fixture(scope="module")
def module_mock(redis_server, tmp_path_factory):
    """One mock inverter for a module's tests (its start-up is a couple of CPU seconds); use `shared_mock`."""
    workdir = tmp_path_factory.mktemp("mock")
    svc = mock_service(
        {**system_env(sqlite_url(workdir), redis_server.url), **PACE}, workdir, "--start", START, "--speed", "60"
    ).start()
    yield svc
    if svc.alive():
        svc.stop(timeout=20)


@pytest.fixture
def shared_mock(module_mock):
    """The module's mock inverter with faults cleared, counters and rate-limit windows reset: what a test that
    only talks to the mock (no fault or token state carried between tests) may use instead of `mock`."""
    set_faults(module_mock, clear=True)
    requests.post(module_mock.url + "/admin/stats/reset", timeout=5).raise_for_status()
    return module_mock


@pytest.fixture
def web(services, metrics_env):
    return services.web(metrics_env)


def connection(mock, brand: str) -> dict:
    if brand == "sandbox":
        return {"base_url": mock.url, "api_key": SANDBOX_KEY}
    if brand == "fusionsolar":
        return {"base_url": mock.url + "/fusionsolar", **FUSIONSOLAR_ACCOUNT}
    return {"base_url": mock.url, "token": GROWATT_TOKEN}


def onboard(api, mock, brand: str, serial: str, **extra) -> dict:
    reply = api.post(
        "/inverters", json={"brand": brand, "serial": serial, "connection": connection(mock, brand), **extra}
    )
    assert reply.status_code in (200, 201), reply.text
    return reply.json()


def mock_stats(mock) -> dict:
    return requests.get(mock.url + "/admin/stats", timeout=5).json()


def set_faults(mock, **faults) -> None:
    requests.post(mock.url + "/admin/faults", json=faults, timeout=5).raise_for_status()


@dataclass
class Event:
    id: str | None
    event: str
    data: dict


class SSEClient:
    """Reads one event stream in a thread. HTTP/1.0, so the body is plain bytes until close."""

    def __init__(
        self,
        base_url: str,
        path: str,
        key: str | None = None,
        cookie: str | None = None,
        last_event_id: str | None = None,
    ):
        host, port = base_url.split("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        headers = [f"GET {path} HTTP/1.0", f"Host: {host}", "Accept: text/event-stream"]
        if key:
            headers.append(f"Authorization: Bearer {key}")
        if cookie:
            headers.append(f"Cookie: session={cookie}")
        if last_event_id:
            headers.append(f"Last-Event-ID: {last_event_id}")
        self.sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        self.status = None
        self.headers: dict = {}
        self.body = b""
        self.events: list[Event] = []
        self.comments = 0
        self.comment_times: list[float] = []  # time.monotonic() as each was read, by the reader thread
        self.retry = None
        self.ended = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buffer = b""
        self.sock.settimeout(0.2)
        try:
            while not self._stop:
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                if self.status is None:
                    if b"\r\n\r\n" not in buffer:
                        continue
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.decode().split("\r\n")
                    self.status = int(lines[0].split()[1])
                    self.headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
                if self.status != 200:
                    self.body += buffer
                    buffer = b""
                    continue
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self._parse(block.decode())
        except OSError:
            pass
        finally:
            self.ended.set()

    def _parse(self, block: str):
        fields = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                self.comment_times.append(time.monotonic())
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "retry" in fields:
            self.retry = int(fields["retry"])
        if "data" in fields:
            self.events.append(Event(fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])))

    def wait_status(self, timeout=10) -> int:
        wait_until(lambda: self.status is not None or self.ended.is_set(), timeout, message="response headers")
        return self.status

    def of(self, kind: str) -> list[Event]:
        return [e for e in list(self.events) if e.event == kind]

    def wait_for(self, predicate, timeout=15, message="events"):
        return wait_until(lambda: predicate(list(self.events)), timeout, 0.02, message)

    def close(self):
        """Drop the connection abruptly, as a browser tab closing does."""
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def sse():
    opened = []

    def open_stream(*args, **kwargs) -> SSEClient:
        client = SSEClient(*args, **kwargs)
        opened.append(client)
        return client

    yield open_stream
    for client in opened:
        client.close()


def wait_seconds_of_polling(seconds: float) -> None:
    """Let the system run (this measures a rate over time; it does not synchronise anything)."""
    time.sleep(seconds)
