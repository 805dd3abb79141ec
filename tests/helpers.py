"""Test helpers shared by every suite: waiting on conditions, free ports, subprocess services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# The key every process of this test session encrypts brand credentials with (conftest.py puts it in
# this process's environment too, for tests that call the models directly).
TEST_SECRET_KEY = Fernet.generate_key().decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"):
    """Poll predicate until it returns something truthy or the deadline passes; return that value."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {message}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


class Service:
    """A project process (`python -m web`, `python -m actors`, ...) run as a real subprocess."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict,
        log_dir: Path,
        port: int | None = None,
        ready_path: str = "/healthz",
        ready_log: str | None = None,
    ):
        self.name = name
        self.args = args
        self.env = env
        self.port = port
        self.ready_path = ready_path
        self.ready_log = ready_log
        self.log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
        self.proc: subprocess.Popen | None = None
        self._terminated = False  # SIGTERM sent by terminate(): stop() waits without sending a second one

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Service:
        self.launch()
        try:
            return self.wait_ready(timeout)
        except BaseException:
            self.kill()  # a module fixture that never got the process would leave it running
            raise

    def launch(self) -> Service:
        """Start the process without waiting for it to be ready (see start_all)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", *self.args], cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._terminated = False
        return self

    def wait_ready(self, timeout: float = 20.0) -> Service:
        if self.port is not None:
            wait_until(self._http_ready, timeout, 0.05, f"{self.name} on port {self.port}")
        elif self.ready_log:
            wait_until(lambda: self.ready_log in self.logs(), timeout, 0.05, f"{self.name} to log {self.ready_log!r}")
        return self

    def _http_ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
        return requests.get(self.url + self.ready_path, timeout=1).status_code == 200

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            if not self._terminated:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout} s of SIGTERM") from None
        self._log.close()
        return self.proc.returncode

    def terminate(self) -> None:
        """Send SIGTERM without waiting (see stop_all)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if self.proc is not None:
            self._log.close()


def start_all(*services: Service, timeout: float = 20.0) -> list[Service]:
    """Start several processes at once and wait until each is ready: their start-ups (interpreter, imports)
    overlap instead of adding up."""
    launched = []
    try:
        for svc in services:
            launched.append(svc.launch())
        for svc in launched:
            svc.wait_ready(timeout)
    except BaseException:
        for svc in launched:
            svc.kill()
        raise
    return launched


def stop_all(services, timeout: float = 20.0) -> None:
    """SIGTERM every process at once, then wait for each (a test's processes shut down side by side); one
    that is already dead or does not stop within the timeout is killed. For fixture teardown."""
    services = list(services)
    for svc in services:
        svc.terminate()
    for svc in services:
        try:
            svc.kill() if not svc.alive() else svc.stop(timeout)
        except AssertionError:
            pass


def web_service(env: dict, log_dir: Path, name: str = "web") -> Service:
    """`python -m web` on a free port (not started); ready when /healthz answers 200."""
    port = free_port()
    return Service(name, ["web"], {**env, "PORT": str(port)}, log_dir, port=port)


def gunicorn_service(env: dict, log_dir: Path, workers: int = 2, name: str = "gunicorn") -> Service:
    """The production web server, `gunicorn -c gunicorn.conf.py`, on a free port (not started)."""
    port = free_port()
    return Service(
        name,
        ["gunicorn", "-c", "gunicorn.conf.py"],
        {**env, "PORT": str(port), "WEB_WORKERS": str(workers)},
        log_dir,
        port=port,
    )


def worker_service(env: dict, log_dir: Path, role: str = "all", name: str = "worker") -> Service:
    """`python -m actors --role ROLE` (not started); ready when it logs that its actors are up."""
    return Service(name, ["actors", "--role", role], env, log_dir, ready_log="actor system up")


def mock_service(env: dict, log_dir: Path, *args: str) -> Service:
    """`python -m mock_inverter ARGS` on a free port (not started); ready when /admin/stats answers 200."""
    port = free_port()
    return Service(
        "mock_inverter",
        ["mock_inverter", "--port", str(port), *args],
        env,
        log_dir,
        port=port,
        ready_path="/admin/stats",
    )


def run_cli(args: list[str], env: dict, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def project_env(**overrides) -> dict:
    """This process's environment without pytest's own variables, plus overrides: every subprocess starts from it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update({"PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO", "SECRET_KEY": TEST_SECRET_KEY})
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def sqlite_url(directory) -> str:
    return f"sqlite:///{directory}/app.db"


def system_env(database_url: str, redis_url: str, **overrides) -> dict:
    """The environment of a running system (web, worker, mock inverter) on one database and one Redis:
    jobs may target loopback partners, and leases and shutdown are short enough for tests."""
    return project_env(
        **{
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
            "LEASE_S": "3",
            "SHUTDOWN_GRACE_S": "5",
            # Several workers run at once in tests: a test that scrapes one gives it a port.
            "METRICS_PORT": "0",
            **overrides,
        }
    )


def create_account(env: dict, name: str | None = None) -> str:
    """Create an account in the environment's database, in this process; returns its API key.

    In process rather than through the CLI: a CLI run costs a second of interpreter start-up, and most
    tests need an account. `create_account_with_cli` (and the CLI's own tests) cover the command.
    """
    from models import accounts
    from models.db import open_database
    from models.schema import ensure_schema

    # A process holds one database at a time: a module whose in-process app is on another database than
    # its processes' gets DatabaseInUse here, and builds its app on the test's database instead.
    owner = open_database(env["DATABASE_URL"])
    ensure_schema(owner)
    _, key = owner.write(accounts.create_account, name or f"acct-{time.monotonic_ns()}")
    return key


def create_account_with_cli(env: dict, name: str) -> str:
    """Create an account with the real CLI (`python -m models create-account`); returns its API key."""
    result = run_cli(["models", "create-account", name], env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def job_spec(url: str = "http://127.0.0.1:9/x", host: str = "127.0.0.1", **changes) -> dict:
    """A validated job as models.jobs.insert_job takes it (what POST /jobs stores), with `changes` applied."""
    return {
        "url": url,
        "host": host,
        "method": "POST",
        "headers": {},
        "body": None,
        "body_kind": "none",
        "timeout_s": 5.0,
        "max_attempts": 3,
        "backoff": {"base_s": 1, "cap_s": 10, "multiplier": 2, "jitter": "full"},
        "run_at": None,
        **changes,
    }


def sandbox_inverters(account_id: str, serials: list[str], device_type: str = "hybrid", api_key: str = "key") -> list:
    """Inverters of the sandbox brand on one connection whose base URL is never called (port 9, discard), for
    tests that feed readings to actors themselves. Call on the database owner's thread (inside owner.write)."""
    from models import inverters

    connection = inverters.connection_for("sandbox", "http://127.0.0.1:9", {"api_key": api_key})
    return [
        inverters.Inverter.create(
            connection=connection.id, brand="sandbox", serial=serial, device_type=device_type, owner=account_id
        )
        for serial in serials
    ]
