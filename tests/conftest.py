"""Fixtures every suite shares: a private Redis, a SQLite file per test, the project's processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from tests.helpers import (
    ROOT,
    TEST_SECRET_KEY,
    Service,
    create_account,
    free_port,
    mock_service,
    sqlite_url,
    stop_all,
    system_env,
    wait_until,
    web_service,
    worker_service,
)

os.environ["SECRET_KEY"] = TEST_SECRET_KEY  # for the tests that call the models in this process

ARTIFACTS = ROOT / "test-artifacts"
MODULE_SECONDS: dict[str, float] = json.loads((Path(__file__).with_name("module_seconds.json")).read_text())
MODULE_SECONDS_UNKNOWN = 10.0


class RedisServer:
    """A redis-server of the test session's own (of each pytest-xdist worker's own, on its own free port), so
    pub/sub channels never meet another run's."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(client.ping, 10, 0.02, "redis-server to answer PING")
        client.close()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self):
        self.stop()
        self.start()

    def flush(self):
        client = redis_lib.Redis(port=self.port)
        client.flushall()
        client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.exit("redis-server is not installed: run `make test`, which installs it", returncode=3)
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def database_url(tmp_path):
    return sqlite_url(tmp_path)


@pytest.fixture(scope="session")
def postgres_server_url():
    """A PostgreSQL database of this test session's own, or a skip saying why there is none."""
    psycopg2 = pytest.importorskip("psycopg2")
    admin_url = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    # One per test process: under pytest-xdist each worker (gw0, gw1, ...) has its own.
    name = f"relay_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    try:
        admin = psycopg2.connect(admin_url, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {admin_url}: {str(exc).strip()}")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    yield admin_url.rsplit("/", 1)[0] + "/" + name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def emptied(postgres_url: str) -> str:
    """The session's PostgreSQL database (postgres_server_url, shared by the session's tests) with nothing left
    in it; its URL."""
    import psycopg2

    conn = psycopg2.connect(postgres_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        conn.close()
    return postgres_url


@pytest.fixture
def database(database_url):
    """This test's database opened in the test process with its schema: the owner that runs its queries."""
    from models.db import close_database, open_database
    from models.schema import ensure_schema

    owner = open_database(database_url)
    ensure_schema(owner)
    yield owner
    close_database()


@pytest.fixture
def env(redis_url, database_url):
    """Environment for the project's processes in this test (tests may add to it before starting)."""
    return system_env(database_url, redis_url)


@pytest.fixture
def services(tmp_path, request):
    """Start project processes: services.web(env), services.worker(env), services.mock_inverter(env, ...).
    With ready=False a process is launched and returned at once, for the test to call .wait_ready() after
    starting others: their start-ups (interpreter, imports) overlap instead of adding up."""
    started: list[Service] = []

    def start(svc: Service, ready: bool) -> Service:
        started.append(svc)
        return svc.start() if ready else svc.launch()

    class Services:
        def web(self, env, ready=True, **extra):
            return start(web_service({**env, **extra}, tmp_path), ready)

        def worker(self, env, role="all", name="worker", ready=True, **extra):
            return start(worker_service({**env, **extra}, tmp_path, role, name), ready)

        def mock_inverter(self, env, *args, ready=True, **extra):
            return start(mock_service({**env, **extra}, tmp_path, *args), ready)

    yield Services()
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    stop_all(reversed(started))
    for svc in reversed(started):
        if failed:
            print(f"--- {svc.name} log ---\n{svc.logs()[-4000:]}")


# A test that starts project processes or a browser -- in its body or through a fixture, at any depth -- is
# marked `processes`, and `make test-fast` leaves it out (-m "not processes"). Found by the names the test's
# and its fixtures' code uses, so a new test is classified without anyone remembering to mark it.
PROCESS_STARTERS = frozenset(
    {
        "subprocess",
        "run_cli",
        "create_account_with_cli",
        "MockProcess",
        "web_service",
        "worker_service",
        "mock_service",
        "gunicorn_service",
        "sync_playwright",
    }
)


def _code_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _code_names(const)
    return names


def _starts_processes(function, seen: set) -> bool:
    """Whether the function's code, or a function of the test suite's that it calls by name, starts one."""
    function = getattr(function, "__wrapped__", function)
    code = getattr(function, "__code__", None)
    if code is None or code in seen:
        return False
    seen.add(code)
    names = _code_names(code)
    if not PROCESS_STARTERS.isdisjoint(names):
        return True
    module_globals = getattr(function, "__globals__", {})
    return any(
        _starts_processes(helper, seen)
        for name in names
        if getattr(helper := module_globals.get(name), "__module__", "").startswith("tests.") and callable(helper)
    )


def pytest_collection_modifyitems(items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # make test (--dist loadfile --no-loadscope-reorder) hands out modules in this order: the longest first,
        # by the seconds each took in a recent run (tests/module_seconds.json; tests/module_seconds.py refreshes
        # it). The long end-to-end modules (real processes waiting on real time) then start at once, side by
        # side, and the quick ones fill the gaps at the end, instead of one process finishing a long module
        # alone while the other idles. A module not in the table counts as MODULE_SECONDS_UNKNOWN. A stable
        # sort: each module's tests stay together and in their order.
        items.sort(key=lambda item: -MODULE_SECONDS.get(item.nodeid.split("::", 1)[0], MODULE_SECONDS_UNKNOWN))
    for item in items:
        fixture_defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        functions = [getattr(item, "function", None)] + [d.func for defs in fixture_defs.values() for d in defs]
        seen: set = set()
        if any(_starts_processes(f, seen) for f in functions if f is not None):
            item.add_marker(pytest.mark.processes)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def account_key(env):
    """A fresh account's API key."""
    return create_account(env)


def make_client(base_url: str, key: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    if key:
        session.headers["Authorization"] = f"Bearer {key}"
    session.base = base_url

    original = session.request

    def request(method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 10)
        return original(method, base_url + url if url.startswith("/") else url, *args, **kwargs)

    session.request = request
    return session


@pytest.fixture
def client_for():
    return make_client


@pytest.fixture
def partner():
    """A flaky HTTP partner on 127.0.0.1 (see tests/servers.py) that records what it receives."""
    from tests.servers import ScriptedServer

    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture
def web(services, env):
    return services.web(env)


@pytest.fixture
def api(web, account_key):
    """A client of the web process, signed in with a fresh account's key."""
    return make_client(web.url, account_key)


# -- the web app in this process -------------------------------------------------------------------


@contextlib.contextmanager
def in_process_app(database_url: str, redis_url: str, **overrides):
    """The web app built by create_app in the test process on this database and Redis (settings from the
    environment a web process would get, plus `overrides`); drive it with app.test_client(). No server and
    no gevent patching: the database owner runs queries inline and the stream hub's greenlet never runs,
    so use a `web` process for streams. Apps on one database share its owner; another database at the
    same time is refused (models/db.py `hold_database`)."""
    import models.settings
    from web import close_app, create_app

    settings = models.settings.Settings.from_env(system_env(database_url, redis_url, **overrides))
    flask_app = create_app(settings)
    flask_app.config["TESTING"] = True
    try:
        yield flask_app
    finally:
        close_app(flask_app)


@pytest.fixture(scope="module")
def app(redis_server, tmp_path_factory):
    """The web app in the test process (see in_process_app) on a SQLite file of the module's own."""
    with in_process_app(sqlite_url(tmp_path_factory.mktemp("app")), redis_server.url) as flask_app:
        yield flask_app


@pytest.fixture
def app_on_test_database(database_url, redis_url):
    """The in-process app on this test's own database, the one its processes and `create_account(env)` use.
    A process holds one database at a time (models/db.py), so a module whose tests also start processes
    on their own databases uses this as its `app` (tests/app_on_own_database.py) instead of a module-wide app."""
    with in_process_app(database_url, redis_url) as flask_app:
        yield flask_app


def app_key_maker(flask_app):
    """new_app_key for `flask_app`: new(name=None) creates an account in its database; returns the API key."""
    from models.accounts import create_account as create
    from web.extensions import collaborators_of

    def new(name: str | None = None) -> str:
        return collaborators_of(flask_app).owner.write(create, name or f"acct-{time.monotonic_ns()}")[1]

    return new


@pytest.fixture(scope="module")
def new_app_key(app):
    """new_app_key(name=None) creates an account in the app's database; returns its API key."""
    return app_key_maker(app)


@pytest.fixture
def client(app, new_app_key):
    """Flask's test client of `app`, signed in with a fresh account's key (client.account_key)."""
    test_client = app.test_client()
    test_client.account_key = new_app_key()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {test_client.account_key}"
    return test_client
