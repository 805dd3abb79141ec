"""What the benchmarks share: free ports, a process's CPU time and RSS, waiting for a server to answer,
a private redis-server.

The benchmarks are run as scripts (`python bench/<name>.py`), so this is imported as `common`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# `python -m <module>` under cProfile counting its main thread's CPU (not wall time: under gevent a wait would
# be charged to whatever greenlet switched away), from SIGUSR1 (sent when the submissions start) to exit.
# The stats are written by an atexit handler: the project's processes end through models/process.py's
# exit_process, which runs the atexit handlers and then skips the interpreter's teardown (and any `finally` here).
PROFILED = r"""
import atexit, cProfile, runpy, signal, sys, time
module, out = sys.argv.pop(1), sys.argv.pop(1)
profiler = cProfile.Profile(time.thread_time)
signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
atexit.register(lambda: (profiler.disable(), profiler.dump_stats(out)))
sys.argv[0] = module
runpy.run_module(module, run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int | None = None, kernel_only: bool = False) -> float:
    """User plus system CPU time of process `pid` (this process if None), from /proc; system time alone with
    `kernel_only`."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[12]) + (0 if kernel_only else int(fields[11]))) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU seconds of process `pid`'s main thread, of all its other threads together), from /proc."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if int(task.name) == pid:
            main += seconds
        else:
            other += seconds
    return main, other


def voluntary_switches(pid: int) -> int:
    """How many times the threads of process `pid` went to sleep waiting for something (a socket, a lock, the
    database thread), from /proc: each is a wake-up later. The count moves with the machine's load (on a busy
    machine work piles up between wake-ups), so compare it only between runs at the same load."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            with open(task / "status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches:"))
        except (FileNotFoundError, StopIteration):  # the thread ended meanwhile
            continue
    return total


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MB, from /proc (NaN if the kernel reports none: a zombie)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_http(url: str, timeout: float = 20, proc: subprocess.Popen | None = None) -> None:
    """Return once GET `url` answers 200; pause 0.05 s after each refusal or other status.

    Exits the benchmark after `timeout` seconds, or as soon as `proc` (the server, if given) has exited.
    """
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"bench: the server for {url} exited with status {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"bench: {url} did not come up")


def start_redis_server(workdir: Path, *extra: str):
    """A private redis-server on a free port, keeping nothing on disk: (process, port), once it answers."""
    import redis

    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 5
    while True:
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("bench: redis-server did not start") from None
            time.sleep(0.05)
        finally:
            client.close()


def create_account(env: dict, root: Path, name: str = "bench") -> str:
    """A new account's API key, made by the project's own CLI (`python -m models create-account`)."""
    result = subprocess.run(
        [sys.executable, "-m", "models", "create-account", name],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]
