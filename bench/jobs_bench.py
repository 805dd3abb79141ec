"""Retry engine benchmark: the workload of the retry-engine issue, end to end over real processes.

5,000 jobs POSTing ~500-byte JSON to a local sink: 65% succeed at once, 25% fail once with 503,
5% fail twice, 5% answer 400. Backoff base 0.2 s, cap 5 s, full jitter, max 5 attempts.

    .venv/bin/python bench/jobs_bench.py [--jobs 5000] [--concurrency 64] [--workers N]
        [--batch 500] [--database postgresql://postgres@127.0.0.1:5432/postgres] [--rate 100] [--all-ok]

--batch N submits with POST /jobs/batch, N jobs a request; --database runs on a fresh PostgreSQL
database made on that server (dropped afterwards) instead of a SQLite file; --rate paces submissions
(the cost at light load); --all-ok makes every job succeed at its first attempt (the paced workload of
the engine issue). CPU per job is each process's CPU from the first submission to the last job's end.

Starts its own web, worker and sink processes (and uses REDIS_URL or 127.0.0.1:6379), then prints
the figures as one JSON object. Run by hand; not part of `make test`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    PROFILED,
    cpu_seconds,
    create_account,
    free_port,
    thread_cpu_seconds,
    voluntary_switches,
    wait_http,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.channels import JOBS_WAKEUP  # noqa: E402

PY = sys.executable

SINK = r"""
from gevent import monkey; monkey.patch_all()
import json, sys
from collections import Counter
from gevent.pywsgi import WSGIServer
seen = Counter(); delivered = Counter()
def app(environ, start):
    path = environ["PATH_INFO"]
    if path == "/stats":
        body = json.dumps({"attempts": sum(seen.values()), "delivered": delivered}).encode()
        start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    environ["wsgi.input"].read()
    job = environ.get("HTTP_X_JOB_ID", "?")
    seen[job] += 1
    kind = path.rsplit("/", 1)[-1]
    fails = {"ok": 0, "fail1": 1, "fail2": 2}.get(kind)
    if kind == "bad":
        status = "400 Bad Request"
    elif seen[job] <= fails:
        status = "503 Service Unavailable"
    else:
        status = "200 OK"
        delivered[job] += 1
    start(status, [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
import socket
class Server(WSGIServer):
    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(sock, address)
Server(("127.0.0.1", int(sys.argv[1])), app, log=None).serve_forever()
"""


def wakeup_subscribers(client) -> int:
    """Clients subscribed to the jobs' wake-up channel (on the whole Redis server, any database)."""
    return client.pubsub_numsub(JOBS_WAKEUP)[0][1]


def wait_wakeup_subscribers(client, count: int, workers, timeout: float = 30) -> None:
    """Return once `count` clients subscribe to the wake-up channel; exit if a worker dies or on timeout."""
    deadline = time.monotonic() + timeout
    while (seen := wakeup_subscribers(client)) < count:
        for worker in workers:
            if worker.poll() is not None:
                raise SystemExit(f"bench: a worker exited (status {worker.returncode}) before subscribing")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {seen} subscribers to {JOBS_WAKEUP} after {timeout} s, not {count}")
        time.sleep(0.05)


def submit_all(web_port, key, sink_port, plan, payload, concurrency, rate):
    """POST every job over keep-alive sockets with pre-built requests.

    A lean client on purpose: the load generator shares the two cores with the system under test,
    and requests' own overhead would be measured as ours.
    """
    import socket

    bodies = {}
    for kind in set(plan):
        body = json.dumps(
            {
                "url": f"http://127.0.0.1:{sink_port}/hook/{kind}",
                "json": payload,
                "max_attempts": 5,
                "backoff": {"base_s": 0.2, "cap_s": 5, "jitter": "full"},
            }
        ).encode()
        bodies[kind] = (
            f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    queue = list(reversed(plan))
    start = time.time()
    sent = [0]

    def client():
        sock = socket.create_connection(("127.0.0.1", web_port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        while queue:
            kind = queue.pop()
            if rate:
                due = start + sent[0] / rate
                sent[0] += 1
                if due > time.time():
                    gevent.sleep(due - time.time())
            sock.sendall(bodies[kind])
            status = reader.readline()
            length = 0
            while True:
                line = reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reply = reader.read(length)
            if b" 202 " not in status:
                raise SystemExit(f"bench: submission failed: {status!r} {reply[:200]!r}")
        sock.close()

    gevent.joinall([gevent.spawn(client) for _ in range(concurrency)], raise_error=True)
    return start, time.time()


def submit_batches(web_port, key, sink_port, plan, payload, size, concurrency):
    """POST the jobs in batches of `size` with POST /jobs/batch over keep-alive connections."""
    session_pool = [requests.Session() for _ in range(concurrency)]
    jobs = [
        {
            "url": f"http://127.0.0.1:{sink_port}/hook/{kind}",
            "json": payload,
            "max_attempts": 5,
            "backoff": {"base_s": 0.2, "cap_s": 5, "jitter": "full"},
        }
        for kind in plan
    ]
    batches = [json.dumps({"jobs": jobs[i : i + size]}).encode() for i in range(0, len(jobs), size)]
    queue = list(reversed(batches))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start = time.time()

    def client(session):
        while queue:
            reply = session.post(
                f"http://127.0.0.1:{web_port}/jobs/batch", data=queue.pop(), headers=headers, timeout=60
            )
            if reply.status_code != 200 or any("error" in r for r in reply.json()["results"]):
                raise SystemExit(f"bench: batch submission failed: {reply.status_code} {reply.text[:200]}")

    gevent.joinall([gevent.spawn(client, s) for s in session_pool], raise_error=True)
    return start, time.time()


class Database:
    """The bench's own view of the database under test: a SQLite file, or a fresh PostgreSQL database."""

    def __init__(self, tmp: Path, server_url: str | None):
        self.server_url = server_url
        if server_url is None:
            self.url = f"sqlite:///{tmp / 'bench.db'}"
            self.path = tmp / "bench.db"
            return
        import psycopg2

        self.name = f"bench_jobs_{os.getpid()}"
        self.admin = psycopg2.connect(server_url)
        self.admin.autocommit = True
        with self.admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            cur.execute(f'CREATE DATABASE "{self.name}"')
        self.url = server_url.rsplit("/", 1)[0] + "/" + self.name

    def connect(self):
        if self.server_url is None:
            return sqlite3.connect(str(self.path), timeout=30)
        import psycopg2

        con = psycopg2.connect(self.url)
        con.autocommit = True
        return _Cursorless(con)

    def drop(self):
        if self.server_url is not None:
            with self.admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class _Cursorless:
    """psycopg2 with sqlite3's con.execute(...).fetchone() shape, for the few queries below."""

    def __init__(self, con):
        self.con = con

    def execute(self, sql):
        cur = self.con.cursor()
        cur.execute(sql)
        return cur


def counter_value(port: int, name: str) -> float:
    """A counter's value from a worker's metrics endpoint."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise SystemExit(f"bench: no {name} at the worker's metrics on port {port}")


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--rate", type=float, default=0, help="pace submissions at this many per second (0: as fast as possible)"
    )
    parser.add_argument("--batch", type=int, default=0, help="submit with POST /jobs/batch, this many jobs a request")
    parser.add_argument("--database", default=None, help="a PostgreSQL server URL (default: a SQLite file)")
    parser.add_argument("--all-ok", action="store_true", help="every job succeeds at its first attempt")
    parser.add_argument(
        "--profile-worker", default=None, help="run the (first) worker under cProfile, writing its stats to this file"
    )
    parser.add_argument("--profile-web", default=None, help="run the web process under cProfile, writing to this file")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="jobs-bench-"))
    database = Database(tmp, args.database)
    web_port, sink_port = free_port(), free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database.url,
        METRICS_PORT="0",
        PORT=str(web_port),
        ALLOWED_TARGET_NETWORKS="127.0.0.0/8",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        MAX_IN_FLIGHT_PER_HOST=os.environ.get("MAX_IN_FLIGHT_PER_HOST", "64"),
    )
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    key = create_account(env, ROOT)
    (tmp / "sink.py").write_text(SINK)
    wakeups = redis.Redis.from_url(env["REDIS_URL"])
    subscribed_before = wakeup_subscribers(wakeups)  # the Redis may be shared: count only ours
    procs = [
        subprocess.Popen([PY, str(tmp / "sink.py"), str(sink_port)], cwd=ROOT, env=env),
        subprocess.Popen(
            [PY, *(["-c", PROFILED, "web", os.path.abspath(args.profile_web)] if args.profile_web else ["-m", "web"])],
            cwd=ROOT,
            env=env,
            stderr=open(tmp / "web.log", "w"),
        ),
    ]
    profiled = (
        ["-c", PROFILED, "actors", os.path.abspath(args.profile_worker)] if args.profile_worker else ["-m", "actors"]
    )
    worker_metrics = [free_port() for _ in range(args.workers)]
    procs += [
        subprocess.Popen(
            [PY, *(profiled if i == 0 else ["-m", "actors"]), "--role", "jobs"],
            cwd=ROOT,
            env={**env, "METRICS_PORT": str(worker_metrics[i])},
            stderr=open(tmp / f"worker{i}.log", "w"),
        )
        for i in range(args.workers)
    ]
    try:
        wait_http(f"http://127.0.0.1:{sink_port}/stats")
        wait_http(f"http://127.0.0.1:{web_port}/healthz")
        # The workers subscribe to wake-ups before the first submission.
        wait_wakeup_subscribers(wakeups, subscribed_before + args.workers, procs[2:])

        rng = random.Random(7)
        kinds = ["ok"] if args.all_ok else ["ok"] * 65 + ["fail1"] * 25 + ["fail2"] * 5 + ["bad"] * 5
        plan = [rng.choice(kinds) for _ in range(args.jobs)]
        payload = {"event": "payment.succeeded", "data": {"id": "x" * 380, "amount": 1234, "currency": "EUR"}}
        for index, profiled_file in ((1, args.profile_web), (2, args.profile_worker)):
            if profiled_file:
                procs[index].send_signal(signal.SIGUSR1)
        cpu_before = [cpu_seconds(proc.pid) for proc in procs]
        kernel_before = [cpu_seconds(proc.pid, kernel_only=True) for proc in procs]
        worker_threads_before = thread_cpu_seconds(procs[2].pid)
        web_threads_before = thread_cpu_seconds(procs[1].pid)
        switches_before = [voluntary_switches(proc.pid) for proc in procs]
        if args.batch:
            t0, t_submitted = submit_batches(
                web_port, key, sink_port, plan, payload, args.batch, min(args.concurrency, 4)
            )
        else:
            t0, t_submitted = submit_all(web_port, key, sink_port, plan, payload, args.concurrency, args.rate)

        con = database.connect()
        deadline = time.time() + 300
        while time.time() < deadline:
            left = con.execute("SELECT COUNT(*) FROM job WHERE status NOT IN ('succeeded','dead')").fetchone()[0]
            if left == 0:
                break
            time.sleep(0.05)
        cpu = [cpu_seconds(proc.pid) - before for proc, before in zip(procs, cpu_before)]
        kernel = [cpu_seconds(proc.pid, kernel_only=True) - before for proc, before in zip(procs, kernel_before)]
        worker_threads = [now - before for now, before in zip(thread_cpu_seconds(procs[2].pid), worker_threads_before)]
        web_threads = [now - before for now, before in zip(thread_cpu_seconds(procs[1].pid), web_threads_before)]
        switches = [voluntary_switches(proc.pid) - before for proc, before in zip(procs, switches_before)]
        last_delivery = con.execute("SELECT MAX(finished_at) FROM attempt WHERE outcome='success'").fetchone()[0]
        first_latency = [
            r[0] * 1000
            for r in con.execute(
                "SELECT a.started_at - j.created_at FROM attempt a JOIN job j ON j.id = a.job_id WHERE a.number = 1"
            )
        ]
        lateness = [r[0] * 1000 for r in con.execute("SELECT started_at - scheduled_at FROM attempt WHERE number > 1")]
        statuses = dict(con.execute("SELECT status, COUNT(*) FROM job GROUP BY status").fetchall())
        total_attempts = con.execute("SELECT COUNT(*) FROM attempt").fetchone()[0]
        per_job = dict(con.execute("SELECT id, attempts FROM job").fetchall())
        final = dict(con.execute("SELECT id, status FROM job").fetchall())
        sink = requests.get(f"http://127.0.0.1:{sink_port}/stats", timeout=5).json()
        outcome_writes = sum(counter_value(port, "solar_relay_job_outcome_writes_total") for port in worker_metrics)

        job_kinds = {job_id: url.rsplit("/", 1)[-1] for job_id, url in con.execute("SELECT id, url FROM job")}
        expected_success = [j for j, k in job_kinds.items() if k != "bad"]
        lost = sum(1 for j in expected_success if final.get(j) != "succeeded" or sink["delivered"].get(j, 0) == 0)
        duplicates = sum(n - 1 for n in sink["delivered"].values() if n > 1)
        bad_retries = sum(per_job[j] - 1 for j, k in job_kinds.items() if k == "bad")
        deliveries = sum(1 for j in expected_success if sink["delivered"].get(j))
        elapsed = last_delivery - t0
        result = {
            "jobs": args.jobs,
            "submission_rate_per_s": round(args.jobs / (t_submitted - t0), 1),
            "end_to_end_s": round(elapsed, 3),
            "deliveries_per_s": round(deliveries / elapsed, 1),
            "total_attempts": total_attempts,
            "sink_attempts": sink["attempts"],
            "duplicates": duplicates,
            "lost": lost,
            "attempts_on_400_beyond_first": bad_retries,
            "first_attempt_ms_p50": round(statistics.median(first_latency), 2),
            "first_attempt_ms_p99": round(percentile(first_latency, 99), 2),
            "retry_lateness_ms_p50": round(statistics.median(lateness), 2) if lateness else None,
            "retry_lateness_ms_p99": round(percentile(lateness, 99), 2) if lateness else None,
            "statuses": statuses,
            # CPU of each process from the first submission until every job had ended.
            "cpu_ms_web_per_job": round(cpu[1] / args.jobs * 1000, 3),
            "cpu_ms_workers_per_job": round(sum(cpu[2:]) / args.jobs * 1000, 3),
            "cpu_ms_web_and_workers_per_job": round(sum(cpu[1:]) / args.jobs * 1000, 3),
            "cpu_ms_workers_per_attempt": round(sum(cpu[2:]) / total_attempts * 1000, 3),
            # Of which in the kernel (system calls: wake-ups, sockets, the database file).
            "kernel_ms_web_per_job": round(kernel[1] / args.jobs * 1000, 3),
            "kernel_ms_workers_per_job": round(sum(kernel[2:]) / args.jobs * 1000, 3),
            # The web's CPU per job on its main thread (the greenlets: HTTP, Flask, validation, Redis) and on its
            # other threads (the database owner's: the insert and its group commit).
            "cpu_ms_web_main_thread_per_job": round(web_threads[0] / args.jobs * 1000, 3),
            "cpu_ms_web_other_threads_per_job": round(web_threads[1] / args.jobs * 1000, 3),
            # The first worker's CPU per attempt on its main thread (the greenlets: actors, HTTP, Redis) and on
            # its other threads (the database owner's: SQLite), for one worker's share of the attempts.
            "cpu_ms_worker_main_thread_per_attempt": round(worker_threads[0] / total_attempts * 1000 * args.workers, 3),
            "cpu_ms_worker_other_threads_per_attempt": round(
                worker_threads[1] / total_attempts * 1000 * args.workers, 3
            ),
            "cpu_ms_sink_per_attempt": round(cpu[0] / total_attempts * 1000, 3),
            # Times a thread of web / of the workers went to sleep, per job: the hand-offs from idle. They move
            # with the machine's load too (a busy machine lets work pile up between wake-ups: fewer per job),
            # so compare them, like CPU time, only between runs alternated at the same load.
            "sleeps_web_per_job": round(switches[1] / args.jobs, 2),
            "sleeps_workers_per_job": round(sum(switches[2:]) / args.jobs, 2),
            # Transactions that wrote outcomes (the workers' own count): jobs share them when their attempts
            # finish together. Independent of the machine's speed, unlike the CPU figures.
            "outcome_writes_per_job": round(outcome_writes / args.jobs, 3),
        }
        print(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        database.drop()
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
