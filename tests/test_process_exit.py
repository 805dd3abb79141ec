"""How the long-running processes end: the exit status, the last log lines and buffered output kept, atexit
handlers run, and the database closed by the process itself (the interpreter's teardown is skipped)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT


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
