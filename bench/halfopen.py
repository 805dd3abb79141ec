"""Half-open connections against the web process: do health checks still answer, and does the server close them?

    .venv/bin/python bench/halfopen.py [--connections 5000] [--timeout 10] [--max-connections 0] [--probes 20]

Starts its own redis-server and `python -m web` (HEADER_READ_TIMEOUT_S=--timeout, MAX_CONNECTIONS=--max-connections,
0 = as many as the descriptor limit allows), opens --connections connections that each send a request line and
one header but never the blank line (`GET /healthz HTTP/1.1`, `Host: x`), and while they are held times --probes
`GET /healthz` requests, each from a fresh connection (connect to last byte of the answer). Then it waits for the
server to close every half-open connection and reports when, measured from the moment each sent its bytes.
The half-open connections fit in this one process (5,000 of its 20,000 descriptors; the web process holds as many).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import free_port, start_redis_server, wait_http

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def probe(port: int) -> float:
    """Seconds for one GET /healthz on a fresh connection, from connect to the last byte of the answer."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"bench: /healthz answered {data[:80]!r}")
    return time.perf_counter() - started


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="halfopen-bench-"))
    redis_proc, redis_port = start_redis_server(workdir)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "PORT": str(port),
        "HEADER_READ_TIMEOUT_S": str(args.timeout),
        "MAX_CONNECTIONS": str(args.max_connections),
    }
    web = subprocess.Popen([PYTHON, "-m", "web"], cwd=ROOT, env=env, stderr=open(workdir / "web.log", "w"))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=web)
        fds_before = open_fds(web.pid)
        selector = selectors.DefaultSelector()
        sent_at = {}
        started = time.monotonic()
        for _ in range(args.connections):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(HALF_REQUEST)
            sent_at[sock] = time.monotonic()
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        opened_s = time.monotonic() - started
        probes = [probe(port) for _ in range(args.probes)]
        fds_held = open_fds(web.pid) - fds_before
        closed, refused = {}, 0
        deadline = time.monotonic() + args.timeout + 30
        while len(closed) < len(sent_at) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if data.startswith(b"HTTP/1.1 503"):
                    refused += 1
                    continue
                if not data:
                    closed[sock] = time.monotonic() - sent_at[sock]
                    selector.unregister(sock)
                    sock.close()
        early = [t for t in closed.values() if t < args.timeout - 0.05]  # given up for a newer connection
        at_timeout = [t - args.timeout for t in closed.values() if t >= args.timeout - 0.05]
        return {
            "connections": args.connections,
            "header_timeout_s": args.timeout,
            "max_connections": args.max_connections or "auto",
            "open_all_s": round(opened_s, 2),
            "web_fds_for_them": fds_held,
            "healthz_ms_p50": round(percentile(probes, 0.5) * 1000, 1),
            "healthz_ms_max": round(max(probes) * 1000, 1),
            "closed_by_server": len(closed),
            "never_closed": len(sent_at) - len(closed),
            "refused_503": refused,
            "closed_early_for_newer": len(early),
            "closed_after_timeout_lateness_ms_p50": round(percentile(at_timeout, 0.5) * 1000, 1),
            "closed_after_timeout_lateness_ms_p99": round(percentile(at_timeout, 0.99) * 1000, 1),
            "closed_after_timeout_lateness_ms_max": round(max(at_timeout, default=float("nan")) * 1000, 1),
        }
    finally:
        web.terminate()
        web.wait(20)
        redis_proc.terminate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=10.0, help="HEADER_READ_TIMEOUT_S of the web process")
    parser.add_argument("--max-connections", type=int, default=0, help="MAX_CONNECTIONS of the web process")
    parser.add_argument("--probes", type=int, default=20)
    print(json.dumps(run(parser.parse_args()), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
