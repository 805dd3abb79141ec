"""How the long-running processes end: the exit status, the last log lines and buffered output kept, atexit
handlers run, and the database closed by the process itself (the interpreter's teardown is skipped)."""

from __future__ import annotations

import os
import pstats
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli


def test_exit_process_keeps_the_status_the_output_the_log_and_the_atexit_handlers(tmp_path):
    marker, log_file = tmp_path / "atexit-ran", tmp_path / "log.txt"
    script = textwrap.dedent(
        f"""
        import atexit, logging, logging.handlers, sys
        from models.process import exit_process

        atexit.register(lambda: open({str(marker)!r}, "w").write("ran"))
        # Held in memory until logging.shutdown() (an atexit handler) flushes it to the file.
        held = logging.handlers.MemoryHandler(1000, flushLevel=logging.CRITICAL, target=logging.FileHandler({str(log_file)!r}))
        logging.getLogger().addHandler(held)
        logging.getLogger().warning("the last line")
        sys.stdout.write("buffered, no newline")  # a pipe: block-buffered until flushed
        sys.stderr.write("on stderr")
        exit_process(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 3
    assert done.stdout == "buffered, no newline"
    assert done.stderr == "on stderr"
    assert marker.read_text() == "ran"
    assert log_file.read_text() == "the last line\n"


def _wal_of(env: dict) -> Path:
    database = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
    return database.with_name(database.name + "-wal")


@pytest.mark.parametrize("kind", ["web", "worker"])
def test_a_stopped_process_exits_0_having_closed_its_database_itself(services, env, kind):
    process = services.web(env) if kind == "web" else services.worker(env, role="jobs")
    wal = _wal_of(env)
    assert wal.exists()  # open, in WAL mode
    assert process.stop() == 0
    assert ("web: stopped" if kind == "web" else "actor system stopped") in process.logs().splitlines()[-1]
    # The last connection's close checkpoints the WAL and removes it. The interpreter's teardown, which used to
    # close the connection, is skipped: the process must have closed it itself.
    assert not wal.exists()


def test_a_profiled_benchmark_process_writes_its_stats_though_it_ends_through_exit_process(tmp_path):
    """bench/jobs_bench.py --profile-worker runs the worker under bench/common.py's PROFILED wrapper, which
    must write the stats from an atexit handler: exit_process skips the teardown and any `finally` around it."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from common import PROFILED
    finally:
        sys.path.remove(str(ROOT / "bench"))
    module = tmp_path / "profiled_service.py"
    module.write_text(
        textwrap.dedent(
            """
            import os, signal
            from models.process import exit_process

            def the_work():
                return sum(range(1000))

            os.kill(os.getpid(), signal.SIGUSR1)  # jobs_bench signals the process when the submissions start
            the_work()
            exit_process(0)
            """
        )
    )
    stats = tmp_path / "service.prof"
    done = subprocess.run(
        [sys.executable, "-c", PROFILED, "profiled_service", str(stats)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    profiled = {name for _file, _line, name in pstats.Stats(str(stats)).stats}
    assert "the_work" in profiled


def test_the_cli_exits_with_its_status_and_output_having_closed_its_database_itself(env):
    """`python -m models` ends through exit_process too: its last line printed, the database closed by itself."""
    made = run_cli(["models", "create-account", "closing"], env)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[-1].startswith("sk_")  # the API key, alone on the last line
    assert not _wal_of(env).exists()  # the last connection's close checkpointed the WAL and removed it
    again = run_cli(["models", "create-account", "closing"], env)
    assert again.returncode == 1 and again.stderr.startswith("error: ") and len(again.stderr.splitlines()) == 1


def test_an_app_closed_by_its_embedder_stops_its_subscription_before_its_redis_client(env):
    """close_app (tests, an embedding process) under gevent: the hub's listener is gone before the app's Redis client
    closes; it used to take the close for a lost subscription, log it and subscribe again on the closed client."""
    assert run_cli(["models", "migrate"], env).returncode == 0
    script = textwrap.dedent(
        """
        from gevent import monkey; monkey.patch_all()
        import logging
        from models.settings import Settings
        from web import close_app, create_app

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        app = create_app(Settings.from_env())
        hub = app.extensions["sse_hub"]
        assert hub.subscribed.wait(10)
        close_app(app)
        print("listener dead:", hub.greenlet.dead)  # already: it must not outlive the client it listens on
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "listener dead: True"
    assert "subscription" not in done.stderr, done.stderr
