"""Claim query and worker memory with a million jobs waiting in `retrying`.

    .venv/bin/python bench/claim_bench.py [--rows 1000000] [--due 10000]

Fills a SQLite file with `rows` retrying jobs due in the future (plus `due` that are due now),
times the claim statement (nothing due, then batches of 256 due), then starts a real worker on
that database and samples its RSS while it sits with every job waiting, and again after it has
claimed and delivered the due ones to a local sink. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import free_port, rss_mb, wait_http  # noqa: E402

from models import jobs
from models.accounts import create_account  # noqa: E402
from models.db import open_database, sql  # noqa: E402
from models.ids import new_id  # noqa: E402
from models.schema import ensure_schema  # noqa: E402


def fill(db, account_id: str, rows: int, due: int, sink_url: str):
    now = time.time()
    backoff = '{"base_s":1,"cap_s":3600,"jitter":"full","multiplier":2}'
    cursor_sql = (
        "INSERT INTO job (id, account_id, request_hash, status, url, host, method, headers, body, body_kind,"
        " timeout_s, max_attempts, backoff, attempts, budget_start, due_at, created_at, updated_at)"
        " VALUES (?, ?, 'x', 'retrying', ?, '127.0.0.1', 'POST', '{}', NULL, 'none', 5, 8, ?, 1, 0, ?, ?, ?)"
    )
    batch = 50_000
    for start in range(0, rows + due, batch):
        values = []
        for i in range(start, min(start + batch, rows + due)):
            due_at = now - 1 if i >= rows else now + 3600 + (i % 86400)
            values.append((new_id(), account_id, sink_url, backoff, due_at, now, now))
        with db.atomic():
            db.cursor().executemany(sql(cursor_sql), values)


def _timed(fn, *args, times: int) -> list[float]:
    samples = []
    for _ in range(times):
        t = time.perf_counter()
        fn(*args)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def _p(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))], 3)


def postgres_claims(args):
    """The claim statement's time with `rows` jobs waiting on PostgreSQL (FOR UPDATE SKIP LOCKED)."""
    import psycopg2

    name = f"claim_bench_{os.getpid()}"
    admin = psycopg2.connect(args.database)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        owner = open_database(args.database.rsplit("/", 1)[0] + "/" + name)
        ensure_schema(owner)
        account, _ = owner.write(create_account, "bench")
        t0 = time.time()
        fill(owner.db, account.id, args.rows, 0, "http://127.0.0.1:9/hook")
        owner.db.execute_sql("ANALYZE job")
        fill_s = time.time() - t0
        idle = _timed(lambda: owner.write(jobs.claim_due, "bench", 256, 30.0), times=200)
        fill(owner.db, account.id, 0, args.due, "http://127.0.0.1:9/hook")
        busy = []
        while True:
            t = time.perf_counter()
            claimed = owner.write(jobs.claim_due, "bench", 256, 30.0)
            busy.append((time.perf_counter() - t) * 1000)
            if not claimed:
                break
        owner.close()
        print(
            json.dumps(
                {
                    "database": "postgresql",
                    "rows_waiting": args.rows,
                    "fill_s": round(fill_s, 1),
                    "claim_nothing_due_ms_p50": _p(idle, 50),
                    "claim_nothing_due_ms_p99": _p(idle, 99),
                    "claim_256_due_ms_p50": _p(busy, 50),
                    "claim_256_due_ms_p99": _p(busy, 99),
                    "due_jobs": args.due,
                },
                indent=2,
            )
        )
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument(
        "--database",
        default=None,
        help="a PostgreSQL server URL: time the claim there, on a fresh database (no worker phase)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="claim-bench-"))
    if args.database:
        return postgres_claims(args)
    url = f"sqlite:///{tmp}/claim.db"
    owner = open_database(url)
    ensure_schema(owner)
    db = owner.db
    account, _ = owner.write(create_account, "bench")

    sink_port = free_port()
    sink = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "from gevent import monkey; monkey.patch_all()\n"
                "from gevent.pywsgi import WSGIServer\n"
                "def app(e, s):\n    e['wsgi.input'].read(); s('200 OK', [('Content-Length', '2')]); return [b'ok']\n"
                f"WSGIServer(('127.0.0.1', {sink_port}), app, log=None).serve_forever()"
            ),
        ]
    )
    try:
        wait_http(f"http://127.0.0.1:{sink_port}/hook", proc=sink)
    except BaseException:
        sink.kill()
        raise

    t0 = time.time()
    fill(db, account.id, args.rows, 0, f"http://127.0.0.1:{sink_port}/hook")
    fill_s = time.time() - t0

    idle = []
    for _ in range(200):
        t = time.perf_counter()
        owner.write(jobs.claim_due, "bench", 256, 30.0)
        idle.append((time.perf_counter() - t) * 1000)
    next_due = []
    for _ in range(200):
        t = time.perf_counter()
        owner.call(jobs.next_due_at)
        next_due.append((time.perf_counter() - t) * 1000)

    # Make `due` of them due now and time claiming them in batches of 256.
    fill(db, account.id, 0, args.due, f"http://127.0.0.1:{sink_port}/hook")
    busy = []
    while True:
        t = time.perf_counter()
        claimed = owner.write(jobs.claim_due, "bench", 256, 30.0)
        busy.append((time.perf_counter() - t) * 1000)
        if not claimed:
            break
    # Give them back so the worker below delivers them.
    db.execute_sql(
        "UPDATE job SET status='retrying', due_at=?, lease_owner=NULL WHERE lease_owner='bench'", (time.time() - 1,)
    )
    db.execute_sql("DELETE FROM attempt")
    owner.close()

    env = dict(
        os.environ, DATABASE_URL=url, ALLOWED_TARGET_NETWORKS="127.0.0.0/8", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1"
    )
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    worker = subprocess.Popen([sys.executable, "-m", "actors", "--role", "jobs"], cwd=ROOT, env=env)
    samples = []
    try:
        import sqlite3

        con = sqlite3.connect(f"{tmp}/claim.db", timeout=30)
        deadline = time.time() + 120
        while time.time() < deadline:
            samples.append(round(rss_mb(worker.pid), 1))
            left = con.execute(
                "SELECT COUNT(*) FROM job WHERE status != 'retrying' OR due_at <= ?", (time.time(),)
            ).fetchone()[0]
            succeeded = con.execute("SELECT COUNT(*) FROM job WHERE status = 'succeeded'").fetchone()[0]
            if succeeded >= args.due and left == succeeded:
                break
            time.sleep(0.5)
        delivered_s = time.time() - (deadline - 120)
        for _ in range(6):
            samples.append(round(rss_mb(worker.pid), 1))
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        sink.kill()

    def p(values, q):
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q / 100 * len(values)))], 3)

    print(
        json.dumps(
            {
                "rows_waiting": args.rows,
                "fill_s": round(fill_s, 1),
                "claim_nothing_due_ms_p50": p(idle, 50),
                "claim_nothing_due_ms_p99": p(idle, 99),
                "next_due_ms_p50": p(next_due, 50),
                "claim_256_due_ms_p50": p(busy, 50),
                "claim_256_due_ms_p99": p(busy, 99),
                "due_jobs": args.due,
                "worker_delivered_due_in_s": round(delivered_s, 1),
                "worker_rss_mb_first": samples[0] if samples else None,
                "worker_rss_mb_max": max(samples) if samples else None,
                "worker_rss_mb_last": samples[-1] if samples else None,
            },
            indent=2,
        )
    )
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
