"""CPU time a start of each kind of project process costs, as the tests start them: start, wait until ready,
SIGTERM, and take the process's user + sys time from os.wait4 (so the start and the stop, nothing else), and
the wall time from SIGTERM until the process had exited.

    export SECRET_KEY=$(.venv/bin/python -m models new-secret-key | tail -1)
    eval "$(scripts/ensure-redis --export)"
    .venv/bin/python bench/process_starts.py --runs 5 [--root OTHER_CHECKOUT ...]

Kinds: web (`python -m web`, ready when /healthz answers), worker-jobs and worker-all (`python -m actors --role
jobs|all`, ready when it logs "actor system up"; `all` runs the alert engine, here with no rules), mock
(`python -m mock_inverter --start ... --speed 60`, the demo fleet, ready when /admin/stats answers) and cli
(`python -m models migrate`, to its exit). Each --root is a checkout whose processes are started (default: the
one this file sits in); with several, their starts alternate one by one, so that the machine's changing speed
falls on each alike. Every checkout gets a fresh SQLite database; the mock's first start in a checkout may pay
for what later starts find on disk, as in a test run (the median hides it).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from common import free_port, wait_http  # noqa: E402

KINDS = ("web", "worker-jobs", "worker-all", "mock", "cli")
MOCK_START = "2024-06-21T11:00:00Z"  # the mock tests' start (tests/mock_inverter/conftest.py)


def wait_log(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None:
            raise SystemExit(f"bench: {proc.args} exited with {proc.returncode}:\n{path.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {proc.args} did not log {text!r}")
        time.sleep(0.02)


def start_once(kind: str, root: Path, env: dict, log: Path) -> tuple[float, float | None]:
    """Start one process of `kind` from checkout `root`, wait until it is ready, stop it: its CPU seconds, and the
    seconds from SIGTERM until it had exited (None for the CLI, which exits by itself)."""
    env = {**env, "PYTHONPATH": str(root)}
    args = {
        "web": ["web"],
        "worker-jobs": ["actors", "--role", "jobs"],
        "worker-all": ["actors", "--role", "all"],
        "mock": ["mock_inverter", "--start", MOCK_START, "--speed", "60"],
        "cli": ["models", "migrate"],
    }[kind]
    port = free_port()
    if kind == "mock":
        args += ["--port", str(port)]
    else:
        env["PORT"] = str(port)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    if kind == "web":
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
    elif kind == "mock":
        wait_http(f"http://127.0.0.1:{port}/admin/stats", 30, proc)
    elif kind.startswith("worker"):
        wait_log(log, "actor system up", proc)
    stopping = time.monotonic()
    if kind != "cli":
        proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    stop_s = None if kind == "cli" else time.monotonic() - stopping
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, -signal.SIGTERM):
        raise SystemExit(f"bench: {args} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, stop_s


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="starts of each kind in each checkout")
    parser.add_argument("--root", action="append", type=Path, help="a checkout to start (repeatable)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of " + ", ".join(KINDS))
    options = parser.parse_args()
    roots = [r.resolve() for r in options.root or [REPO]]
    kinds = options.kinds.split(",")
    if not os.environ.get("SECRET_KEY") or not os.environ.get("REDIS_URL"):
        raise SystemExit("bench: SECRET_KEY and REDIS_URL must be set (see the docstring)")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as scratch:
        envs = {}
        for i, root in enumerate(roots):
            envs[root] = {
                **os.environ,
                "DATABASE_URL": f"sqlite:///{scratch}/app-{i}.db",
                "METRICS_PORT": "0",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        seconds: dict[tuple[Path, str], list[float]] = {(r, k): [] for r in roots for k in kinds}
        stops: dict[tuple[Path, str], list[float]] = {(r, k): [] for r in roots for k in kinds}
        for kind in kinds:
            for run in range(options.runs):
                for root in roots if run % 2 == 0 else roots[::-1]:
                    cpu_s, stop_s = start_once(kind, root, envs[root], Path(scratch) / "process.log")
                    seconds[root, kind].append(cpu_s)
                    if stop_s is not None:
                        stops[root, kind].append(stop_s)
    for root in roots:
        print(f"{root}:")
        for kind in kinds:
            values = seconds[root, kind]
            print(
                f"  {kind:12s} median {statistics.median(values) * 1000:6.0f} ms CPU"
                f"  (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, {len(values)} starts)"
                + (
                    f"; SIGTERM to exit median {statistics.median(stops[root, kind]) * 1000:.0f} ms"
                    if stops[root, kind]
                    else ""
                )
            )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
