"""Poller benchmark: 500 sandbox + 500 Growatt v4 inverters on the mock's fast profile.

    .venv/bin/python bench/pollers.py [--minutes 10] [--interval 2.5] [--watched 50] [--viewers 100]

Starts redis-server, the mock inverter (a generated fleet), web and one worker (pollers role), onboards
500 inverters of each brand through POST /inverters, then measures two equal windows from the mock's
/admin/stats: without browsers, and with --viewers SSE clients on each of --watched inverters (held by a
separate gevent process). Reports rate-limited replies (target 0), polls per inverter per minute against
the configured interval, calls per brand endpoint, and upstream requests with and without viewers.
"""

from __future__ import annotations

import sys

if "--viewer-mode" in sys.argv:  # the viewers' own process: patch before anything imports ssl
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import create_account, free_port, start_redis_server, wait_http  # noqa: E402

PYTHON = sys.executable


def viewers(args) -> int:
    """Hold SSE clients open and drain them until stdin closes (own process: it needs its own fds)."""
    import gevent

    ids = json.loads(Path(args.ids).read_text())
    received = {"events": 0, "open": 0, "failed": 0}

    def client(inverter):
        opened = False
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=30)
            sock.sendall(
                f"GET /inverters/{inverter}/stream HTTP/1.0\r\nAuthorization: Bearer {args.key}\r\n\r\n".encode()
            )
            sock.settimeout(None)
            received["open"] += 1
            opened = True
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                received["events"] += chunk.count(b"event: reading")
        except OSError:
            if not opened:  # one that was open and then lost stays counted as open
                received["failed"] += 1
            return

    for inverter in ids:
        for _ in range(args.viewers):
            gevent.spawn(client, inverter)
    while received["open"] + received["failed"] < len(ids) * args.viewers:
        gevent.sleep(0.1)
    print(json.dumps({"open": received["open"], "failed": received["failed"]}), flush=True)
    from gevent.os import make_nonblocking, nb_read

    make_nonblocking(sys.stdin.fileno())
    nb_read(sys.stdin.fileno(), 1)
    print(json.dumps(received), flush=True)
    os._exit(0)


def wait_first_round(mock_url: str, serials: dict, worker: subprocess.Popen, timeout: float) -> None:
    """Return once the mock has counted a request for every onboarded serial (the pollers' first round)."""
    every = {s for group in serials.values() for s in group}
    deadline = time.monotonic() + timeout
    while True:
        missing = every - set(requests.get(mock_url + "/admin/stats", timeout=10).json()["devices"])
        if not missing:
            return
        if worker.poll() is not None:
            raise SystemExit(f"bench: the pollers' worker exited with status {worker.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {len(missing)} of {len(every)} inverters unpolled after {timeout:.0f} s")
        time.sleep(0.2)


def window(mock_url: str, seconds: float) -> dict:
    requests.post(mock_url + "/admin/stats/reset", timeout=5).raise_for_status()
    time.sleep(seconds)
    return requests.get(mock_url + "/admin/stats", timeout=10).json()


def summarise(stats: dict, serials: dict, seconds: float, watched: list[str]) -> dict:
    def per_minute(group):
        counts = [stats["devices"].get(s, {}).get("requests", 0) * 60.0 / seconds for s in group]
        return {"mean": round(sum(counts) / len(counts), 2), "min": round(min(counts), 2), "max": round(max(counts), 2)}

    endpoints = {ep: v["requests"] for token in stats["tokens"].values() for ep, v in token.items()}
    return {
        "requests": stats["totals"]["requests"],
        "rate_limited": stats["totals"]["rate_limited"],
        "endpoints": endpoints,
        "sandbox_polls_per_min": per_minute(serials["sandbox"]),
        "growatt_polls_per_min": per_minute(serials["growatt_v4"]),
        "watched_polls_per_min": per_minute(watched),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each measured window")
    parser.add_argument("--interval", type=float, default=2.5)
    parser.add_argument("--watched", type=int, default=50)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--viewer-mode", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--key")
    parser.add_argument("--ids")
    args = parser.parse_args()
    if args.viewer_mode:
        return viewers(args)

    workdir = Path(tempfile.mkdtemp(prefix="poller-bench-"))
    mock_port, web_port = free_port(), free_port()
    redis_proc, redis_port = start_redis_server(workdir)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
        # The brands' real quotas on a poll clock 150x faster: the mock's fast profile (see tests/metrics).
        "POLL_CLOCK_SPEED": "150",
        "POLL_CLOCK_ANCHOR": repr(time.time()),
        "SANDBOX_POLL_INTERVAL_S": str(args.interval * 150),
        "GROWATT_V4_POLL_INTERVAL_S": str(args.interval * 150),
        "STREAMS_PER_ACCOUNT": "100000",
    }  # every viewer uses the bench's one account
    procs = [redis_proc]
    try:
        procs.append(
            subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "mock_inverter",
                    "--port",
                    str(mock_port),
                    "--generate-fleet",
                    "1200",
                    "--speed",
                    "60",
                    "--start",
                    "2024-06-21T11:00:00Z",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
        mock = f"http://127.0.0.1:{mock_port}"
        wait_http(mock + "/admin/health", timeout=60, proc=procs[-1])
        key = create_account(env, ROOT)
        procs.append(subprocess.Popen([PYTHON, "-m", "web"], cwd=ROOT, env={**env, "PORT": str(web_port)}))
        web = f"http://127.0.0.1:{web_port}"
        wait_http(web + "/healthz", proc=procs[-1])

        sandbox = [
            d["serial"]
            for d in requests.get(
                mock + "/sandbox/v1/devices", headers={"X-API-Key": "demo-sandbox-key"}, timeout=10
            ).json()["devices"]
        ][:500]
        growatt, page = [], 1
        while len(growatt) < 500:
            rows = requests.post(
                mock + "/v4/new-api/queryDeviceList",
                data={"page": page},
                headers={"token": "demo-growatt-token"},
                timeout=10,
            ).json()["data"]["data"]
            growatt += [r["deviceSn"] for r in rows]
            page += 1
            time.sleep(0.15)  # the list endpoint's own limit
        serials = {"sandbox": sandbox, "growatt_v4": growatt[:500]}
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"

        def onboard(pair):
            brand, serial = pair
            conn = (
                {"base_url": mock, "api_key": "demo-sandbox-key"}
                if brand == "sandbox"
                else {"base_url": mock, "token": "demo-growatt-token"}
            )
            for _ in range(20):
                reply = session.post(
                    web + "/inverters", json={"brand": brand, "serial": serial, "connection": conn}, timeout=30
                )
                if reply.status_code in (200, 201):
                    return serial, reply.json()["id"]
                time.sleep(float(reply.headers.get("Retry-After", 1)))
            raise SystemExit(f"could not onboard {serial}: {reply.text}")

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            ids = dict(pool.map(onboard, [(b, s) for b, group in serials.items() for s in group]))
        print(f"onboarded {len(ids)} inverters in {time.time() - started:.1f} s", flush=True)
        procs.append(subprocess.Popen([PYTHON, "-m", "actors", "--role", "pollers"], cwd=ROOT, env=env))
        wait_first_round(mock, serials, procs[-1], timeout=max(60.0, 10 * args.interval))

        seconds = args.minutes * 60
        watched = serials["sandbox"][: args.watched // 2] + serials["growatt_v4"][: args.watched - args.watched // 2]
        quiet = summarise(window(mock, seconds), serials, seconds, watched)
        (workdir / "watched.json").write_text(json.dumps([ids[s] for s in watched]))
        viewer = subprocess.Popen(
            [
                PYTHON,
                __file__,
                "--viewer-mode",
                "--port",
                str(web_port),
                "--key",
                key,
                "--ids",
                str(workdir / "watched.json"),
                "--viewers",
                str(args.viewers),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        opened = json.loads(viewer.stdout.readline())
        busy = summarise(window(mock, seconds), serials, seconds, watched)
        viewer.stdin.close()
        got = json.loads(viewer.stdout.readline())
        print(
            json.dumps(
                {
                    "window_s": seconds,
                    "interval_s": args.interval,
                    "configured_polls_per_min": round(60 / args.interval, 2),
                    "no_viewers": quiet,
                    "with_viewers": busy,
                    "viewers_open": opened["open"],
                    "viewers_failed": opened["failed"],
                    "readings_delivered_to_viewers": got["events"],
                },
                indent=1,
            )
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
