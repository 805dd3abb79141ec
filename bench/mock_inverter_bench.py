"""Mock inverter benchmark: CPU share of simulating N devices at a 1 s tick, and latest-data latency meanwhile.

Runs `python -m mock_inverter --generate-fleet N` as a subprocess, reads its CPU time from /proc while it
only simulates, then times latest-data requests (sandbox and Growatt v4) against it from this process.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from common import cpu_seconds, free_port, wait_http  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def timed(session, method, url, **kwargs):
    started = time.perf_counter()
    response = session.request(method, url, timeout=5, **kwargs)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--idle-s", type=float, default=30.0, help="seconds of pure simulation to measure")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mock_inverter",
            "--port",
            str(port),
            "--generate-fleet",
            str(args.devices),
            "--start",
            "2024-06-21T10:00:00Z",
        ],
        cwd=REPO,
    )
    try:
        wait_http(base + "/admin/health", timeout=60, proc=proc)
        time.sleep(2)  # let start-up work settle before measuring

        sim0 = requests.get(base + "/admin/health", timeout=5).json()["sim_time"]
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle_s)
        idle_share = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0) * 100
        sim1 = requests.get(base + "/admin/health", timeout=5).json()["sim_time"]

        session = requests.Session()
        sandbox_serials = [
            d["serial"]
            for d in session.get(
                base + "/sandbox/v1/devices", headers={"X-API-Key": "demo-sandbox-key"}, timeout=5
            ).json()["devices"]
        ]
        growatt = session.post(
            base + "/v4/new-api/queryDeviceList", headers={"token": "demo-growatt-token"}, data={"page": 1}, timeout=5
        ).json()["data"]["data"]
        sandbox_ms, v4_ms = [], []
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        for n in range(args.requests):
            if n % 15 == 0:  # stay clear of the fast profile's limits (v4: 20 calls per second per token)
                session.post(base + "/admin/stats/reset", timeout=5)
            serial = sandbox_serials[n % len(sandbox_serials)]
            ms, _ = timed(
                session, "GET", f"{base}/sandbox/v1/devices/{serial}/latest", headers={"X-API-Key": "demo-sandbox-key"}
            )
            sandbox_ms.append(ms)
            device = growatt[n % len(growatt)]
            ms, r = timed(
                session,
                "POST",
                base + "/v4/new-api/queryLastData",
                headers={"token": "demo-growatt-token"},
                data={"deviceType": device["deviceType"], "deviceSn": device["deviceSn"]},
            )
            assert r.json()["code"] == 0, r.text
            v4_ms.append(ms)
        busy_share = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0) * 100
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

    print(f"devices: {args.devices}, tick 1 s simulated, speed 1x, cores: {os.cpu_count()}")
    print(f"simulation only: {idle_share:.2f}% of one core over {args.idle_s:.0f} s (sim time {sim0} -> {sim1})")
    for name, values in (("sandbox latest", sandbox_ms), ("growatt v4 queryLastData (1 device)", v4_ms)):
        print(
            f"{name}: n={len(values)} p50={statistics.median(values):.2f} ms "
            f"p99={percentile(values, 99):.2f} ms max={max(values):.2f} ms"
        )
    print(f"mock CPU while serving back-to-back requests: {busy_share:.1f}% of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
