"""SSE fan-out benchmark: one web process, 1,000 inverters, 200 readings/s, N concurrent clients.

    .venv/bin/python bench/sse_fanout.py [--clients 1000,5000,10000,19000] [--seconds 10] [--loadgens 4]

It starts its own redis-server and `python -m web` (SQLite in a temp dir), creates an account and
1,000 inverters, then for each client count: starts --loadgens load-generator processes (this file
with --loadgen; the fd limit is 20,000 per process) that open the streams, each watching one inverter
(client i watches inverter i mod 1000); publishes 200 readings/s with the real publish script (so the
replay log and the one pattern subscription are exercised as in production) for --seconds; and reports
connect time for all clients, delivered/expected, publish-to-client latency p50/p99, the web process's
RSS and the Redis connections it holds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import cpu_seconds, free_port, rss_mb, start_redis_server, wait_http  # noqa: E402

PYTHON = sys.executable
INVERTERS = 1000
RATE = 200


# -- load generator (its own process, gevent) ------------------------------------------------------
def loadgen(args) -> int:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.lock

    ids = json.loads(Path(args.ids).read_text())
    host, port = "127.0.0.1", args.port
    latencies: list[float] = []
    counts = {"events": 0, "connected": 0, "failed": 0, "from_seq": 1 << 62}
    connected_at: list[float] = []
    stop = gevent.event.Event()

    # At most this many handshakes in flight per load generator: 10,000 SYNs in the same millisecond
    # overflow the kernel's SYN queue (tcp_max_syn_backlog 2048 here) and the dropped ones are only
    # retried after 1, 3, 7 s, which measures the kernel's retransmit timer instead of the server.
    opening = gevent.lock.BoundedSemaphore(args.opening)

    def client(n: int):
        inverter = ids[n % len(ids)]
        try:
            opening.acquire()
            try:
                sock = socket.create_connection((host, port), timeout=30)
                sock.sendall(
                    f"GET {args.path.format(id=inverter)} HTTP/1.0\r\nHost: x\r\n"
                    f"Authorization: Bearer {args.key}\r\n\r\n".encode()
                )
                buffer = b""
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise OSError("closed before headers")
                    buffer += chunk
            finally:
                opening.release()
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise OSError(head.split(b"\r\n", 1)[0].decode())
            counts["connected"] += 1
            connected_at.append(time.time())
            sock.settimeout(None)
            chunk = b"-"
            while not stop.is_set() and chunk:
                now = time.time()
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    for line in block.split(b"\n"):
                        if line.startswith(b"data:") and b'"bench_seq"' in line:
                            data = json.loads(line[5:])  # flask-sse writes "data:" with no space
                            if data["bench_seq"] >= counts["from_seq"]:  # not the latest sent at connect
                                counts["events"] += 1
                                latencies.append(now - data["sent_at"])
                chunk = sock.recv(65536)
                buffer += chunk
        except OSError:
            counts["failed"] += 1

    started = time.time()
    for n in range(args.first, args.first + args.count):
        gevent.spawn(client, n)
    while counts["connected"] + counts["failed"] < args.count:
        gevent.sleep(0.05)
    print(
        json.dumps(
            {
                "connected": counts["connected"],
                "failed": counts["failed"],
                "started": started,
                "last_connected": max(connected_at) if connected_at else None,
            }
        ),
        flush=True,
    )
    # Wait for the controller's "measure" line, then reset counters; "stop" ends the run.
    from gevent.os import make_nonblocking, nb_read

    make_nonblocking(sys.stdin.fileno())

    def read_line():
        data = b""
        while not data.endswith(b"\n"):
            data += nb_read(sys.stdin.fileno(), 1)
        return data.decode().strip()

    command, first_seq = read_line().split()
    assert command == "measure"
    latencies.clear()
    counts["events"] = 0
    counts["from_seq"] = int(first_seq)
    assert read_line() == "stop"
    stop.set()
    print(json.dumps({"events": counts["events"], "latencies": latencies}), flush=True)
    os._exit(0)


# -- controller --------------------------------------------------------------------------------------
def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def setup(workdir: Path, baseline: str | None = None):
    import redis

    redis_proc, redis_port = start_redis_server(workdir, "--maxclients", "20000")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "SSE_CLIENT_QUEUE": "256",
        "STREAMS_PER_ACCOUNT": "100000",
    }  # every load client uses one account
    client = redis.Redis(port=redis_port, decode_responses=True)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL")})
    from models import inverters
    from models.accounts import create_account
    from models.db import open_database
    from models.schema import ensure_schema

    db = open_database(env["DATABASE_URL"])
    ensure_schema(db)

    def populate():
        account, key = create_account("bench")
        connection = inverters.connection_for("sandbox", "http://127.0.0.1:9", {"api_key": "bench"})
        ids = [
            inverters.Inverter.create(
                connection=connection.id, brand="sandbox", serial=f"B{n:05d}", device_type="hybrid", owner=account.id
            ).id
            for n in range(INVERTERS)
        ]
        return key, ids

    key, ids = db.write(populate)
    (workdir / "ids.json").write_text(json.dumps(ids))
    web_port = free_port()
    apps = {"flask-sse": "flask_sse_app.py", "floor": "sse_floor_app.py"}
    command = [PYTHON, "-m", "web"] if baseline is None else [PYTHON, str(ROOT / "bench" / apps[baseline])]
    web = subprocess.Popen(command, cwd=ROOT, env={**env, "PORT": str(web_port)})
    try:
        wait_http(f"http://127.0.0.1:{web_port}/healthz", proc=web)
    except BaseException:
        web.kill()
        redis_proc.terminate()
        raise
    return redis_proc, client, web, web_port, key, ids


def publish_for(client, ids, seconds: float, seq_start: int, baseline: str | None = None) -> tuple[int, dict]:
    from models import live_events

    script = client.register_script(live_events.PUBLISH_SCRIPT)
    sent: dict[str, int] = {}
    seq = seq_start
    tick = 0.01
    per_tick = RATE * tick
    started = time.monotonic()
    owed = 0.0
    while time.monotonic() - started < seconds:
        owed += per_tick
        pipe = client.pipeline(transaction=False)
        while owed >= 1:
            owed -= 1
            inverter = ids[seq % len(ids)]
            now = time.time()
            data = live_events.dumps({"inverter_id": inverter, "time": now, "bench_seq": seq, "sent_at": now})
            if baseline is None:
                keys, args = live_events.publish_args("reading", inverter, repr(now), data, 1000, 100000)
                script(keys=keys, args=args, client=pipe)
            else:  # flask-sse's own message shape, on the channel its clients subscribed to
                pipe.publish(f"inverter:{inverter}", json.dumps({"data": json.loads(data), "type": "reading"}))
            sent[inverter] = sent.get(inverter, 0) + 1
            seq += 1
        pipe.execute()
        time.sleep(max(0.0, started + (seq - seq_start) / RATE - time.monotonic()))
    return seq, sent


def web_redis_connections(client, web_pid: int) -> int:
    """Redis clients whose TCP peer is the web process (matched through /proc/<pid>/fd and /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{web_pid}/fd"):
        try:
            target = os.readlink(f"/proc/{web_pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[9] in inodes:
            ports.add(int(parts[1].split(":")[1], 16))
    return sum(1 for c in client.client_list() if int(c["addr"].rsplit(":", 1)[1]) in ports)


def wait_streams_released(port: int, key: str, timeout: float = 30) -> None:
    """Return once the web process's GET /streams/stats counts no open stream of the bench's account (every
    load client uses it); exit after `timeout` s."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        reply = requests.get(
            f"http://127.0.0.1:{port}/streams/stats", headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        reply.raise_for_status()
        clients = reply.json()["streams"]
        if clients == 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: web still holds {clients} streams {timeout} s after the clients left")
        time.sleep(0.05)


def run(counts, seconds: float, loadgens: int, opening: int, baseline: str | None = None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    redis_proc, client, web, port, key, ids = setup(workdir, baseline)
    path = "/inverters/{id}/stream" if baseline is None else "/stream?channel=inverter:{id}"
    seq = 0
    rows = []
    try:
        if baseline is None:
            # Steady state, as in production where the pollers run all the time: every inverter already
            # has a latest reading, so a first viewer finds it in Redis rather than falling back to the
            # database (which a fresh bench would otherwise measure 1,000 times).
            seq, _ = publish_for(client, ids, len(ids) / RATE, seq, baseline)
        base_rss = rss_mb(web.pid)
        for total in counts:
            procs = []
            per = -(-total // loadgens)
            web_cpu_before = cpu_seconds(web.pid)
            started = time.time()
            for n in range(loadgens):
                count = min(per, total - n * per)
                if count <= 0:
                    break
                procs.append(
                    subprocess.Popen(
                        [
                            PYTHON,
                            __file__,
                            "--loadgen",
                            "--port",
                            str(port),
                            "--key",
                            key,
                            "--ids",
                            str(workdir / "ids.json"),
                            "--first",
                            str(n * per),
                            "--count",
                            str(count),
                            "--opening",
                            str(opening),
                            "--path",
                            path,
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        cwd=ROOT,
                        text=True,
                    )
                )
            hello = [json.loads(p.stdout.readline()) for p in procs]
            connect_s = time.time() - started
            web_cpu_per_connect = (cpu_seconds(web.pid) - web_cpu_before) / total
            connected = sum(h["connected"] for h in hello)
            # From the first load generator's first connection attempt (their interpreter start-up, ~1 s,
            # is in connect_s but is not the server's doing).
            last = [h["last_connected"] for h in hello if h["last_connected"]]
            from_first_attempt = (max(last) - min(h["started"] for h in hello)) if last else None
            failed = sum(h["failed"] for h in hello)
            rss = rss_mb(web.pid)
            redis_conns = web_redis_connections(client, web.pid)
            for p in procs:
                p.stdin.write(f"measure {seq}\n")
                p.stdin.flush()
            # The floor app only holds connections: there is nothing to deliver.
            seq, sent = publish_for(client, ids, seconds, seq, baseline) if baseline != "floor" else (seq, {})
            time.sleep(1.0)  # let the last events arrive
            for p in procs:
                p.stdin.write("stop\n")
                p.stdin.flush()
            results = [json.loads(p.stdout.readline()) for p in procs]
            for p in procs:
                p.wait(30)
            watchers = {}
            for n in range(connected):
                watchers[ids[n % len(ids)]] = watchers.get(ids[n % len(ids)], 0) + 1
            expected = sum(sent.get(i, 0) * w for i, w in watchers.items())
            delivered = sum(r["events"] for r in results)
            latencies = [lat for r in results for lat in r["latencies"]]
            row = {
                "clients": total,
                "connected": connected,
                "failed": failed,
                "connect_s": round(connect_s, 2),
                "connect_from_first_attempt_s": round(from_first_attempt, 2) if from_first_attempt else None,
                "web_cpu_ms_per_connect": round(web_cpu_per_connect * 1000, 3),
                "delivered": delivered,
                "expected": expected,
                "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
                "rss_mb": round(rss, 1),
                "kb_per_client": round((rss - base_rss) * 1024 / max(connected, 1), 1),
                "redis_connections": redis_conns,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            # Wait until the server has let every closed stream go before the next size.
            if baseline is None:
                wait_streams_released(port, key)
            else:  # the baselines have no /streams/stats
                time.sleep(2.0)
    finally:
        web.terminate()
        web.wait(20)
        redis_proc.terminate()
    print(
        "\n| clients | connected (failed) | connect all | delivered / expected | p50 | p99 | web RSS | per client | "
        "Redis conns of web |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['clients']:,} | {r['connected']:,} ({r['failed']}) | {r['connect_s']} s | {r['delivered']:,} / "
            f"{r['expected']:,} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['rss_mb']} MB | {r['kb_per_client']} KB | "
            f"{r['redis_connections']} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1000,5000,10000,19000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loadgens", type=int, default=4)
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int)
    parser.add_argument("--key")
    parser.add_argument("--ids")
    parser.add_argument("--first", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--opening", type=int, default=200, help="handshakes in flight per load generator")
    parser.add_argument(
        "--baseline",
        choices=["flask-sse", "floor"],
        help="measure flask-sse (bench/flask_sse_app.py), or the bare stack's connect time "
        "(bench/sse_floor_app.py), instead",
    )
    parser.add_argument("--path", default="/inverters/{id}/stream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        return loadgen(args)
    run([int(c) for c in args.clients.split(",")], args.seconds, args.loadgens, args.opening, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
