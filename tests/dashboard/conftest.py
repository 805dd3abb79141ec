"""Fixtures for the browser suite: Chromium from the system packages driven by Playwright, and one
running system (web, worker, mock inverter, the session's Redis) shared by a module's tests.

The system is shared because starting it is most of a test's cost; tests create their own accounts,
and only the module's fleet owner has inverters (a serial can belong to one account only).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pytest

from tests.conftest import ARTIFACTS, make_client
from tests.helpers import (
    Service,
    create_account,
    mock_service,
    sqlite_url,
    start_all,
    stop_all,
    system_env,
    wait_until,
    web_service,
    worker_service,
)

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that would reach for the internet (the machine has none).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SANDBOX_KEY = "demo-sandbox-key"
FLEET = ("SBX-AMS-0001", "SBX-NBO-0001")
# The mock's fast profile allows one latest-data call per device per 2 s: the brand's real 300 s on a poll
# clock 150 times faster (a poll every 2.2 s); short SSE retry and keepalive so a restarted web process is
# found again quickly.
PACE = {
    "POLL_CLOCK_SPEED": "150",
    "POLL_CLOCK_ANCHOR": repr(time.time()),
    "SANDBOX_POLL_INTERVAL_S": "330",
    "POLLER_LEASE_S": "2",
    "SSE_KEEPALIVE_S": "2",
    "SSE_RETRY_MS": "300",
    "BRAND_TIMEOUT_S": "3",
}
UI_TIMEOUT_MS = 10_000


# Per module, not per session: Playwright's sync API keeps an event loop and greenlets alive in this
# process, which the other suites (run after these in the same session) should not inherit.
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make test installs it)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run scripts/ensure-browser (make test does)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser):
    """new_page(width=1280) -> a page in a fresh browser context (its own cookies)."""
    contexts = []

    def make(width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(UI_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()


@dataclass
class System:
    env: dict
    web: Service
    worker: Service
    mock: Service
    owner_key: str
    inverters: dict = field(default_factory=dict)  # serial -> inverter id

    @property
    def url(self) -> str:
        return self.web.url

    def new_account(self) -> tuple[str, str]:
        name = f"user-{time.monotonic_ns()}"
        return name, create_account(self.env, name)

    def api(self, key: str):
        return make_client(self.web.url, key)

    def logs(self) -> str:
        return "\n".join(f"--- {svc.name} ---\n{svc.logs()[-3000:]}" for svc in (self.web, self.worker, self.mock))


@pytest.fixture(scope="module")
def system(redis_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dashboard")
    env = system_env(sqlite_url(workdir), redis_server.url, SHUTDOWN_GRACE_S="3", **PACE)
    redis_server.flush()
    started = [mock_service(env, workdir), web_service(env, workdir), worker_service(env, workdir)]
    try:
        mock, web, worker = start_all(*started)
        the_system = System(env, web, worker, mock, create_account(env, "fleet-owner"))
        owner_api = the_system.api(the_system.owner_key)
        for serial in FLEET:
            reply = owner_api.post(
                "/inverters",
                json={
                    "brand": "sandbox",
                    "serial": serial,
                    "connection": {"base_url": mock.url, "api_key": SANDBOX_KEY},
                },
            )
            assert reply.status_code == 201, reply.text
            the_system.inverters[serial] = reply.json()["id"]
        yield the_system
    finally:
        stop_all(reversed(started))


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "system" in request.fixturenames:
        print(request.getfixturevalue("system").logs())


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def sign_in(page, base_url: str, key: str, next_path: str = "/ui/inverters") -> None:
    page.goto(f"{base_url}{next_path}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}{next_path}")


def connection_state(page) -> str:
    return page.locator("#connection").get_attribute("data-state")


def wait_for_state(page, state: str, timeout_s: float = 10) -> None:
    wait_until(lambda: connection_state(page) == state, timeout_s, 0.05, f"the connection indicator to say {state}")
