"""Claim latency while a million expired rows are being purged, against the same claims without purging.

    .venv/bin/python bench/purge_bench.py [--expired-jobs 500000] [--due 10000] [--rounds 3] [--batch 200]

Fills a SQLite file with `expired-jobs` succeeded jobs finished 40 days ago, each with one attempt (a
million expired rows by default), 100,000 retrying jobs due in the future and `due` jobs due now. Then,
in one gevent-patched process with one DatabaseOwner as in the worker, a greenlet claims batches of 256
(as bench/claim_bench.py times them) every 5-15 ms, giving each batch back untimed, while the phases
alternate: quiet (claims only), then purging (the worker's Purge.jobs running beside the claims), for
`rounds` rounds. With --due 0 the claims find nothing due (the dispatcher's idle timer). Prints one JSON
object: claim p50/p99 per phase kind, and the purge's rows per second and batch times.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import jobs
from models.accounts import create_account  # noqa: E402
from models.db import checkpoint_wal, open_database  # noqa: E402
from models.ids import new_id  # noqa: E402
from models.retention import REST_FACTOR, Purge, purge_jobs_batch  # noqa: E402
from models.schema import ensure_schema  # noqa: E402

_INSERT_JOB = (
    "INSERT INTO job (id, account_id, request_hash, status, url, host, method, headers, body, body_kind,"
    " timeout_s, max_attempts, backoff, attempts, budget_start, due_at, created_at, updated_at)"
    " VALUES (?, ?, 'x', ?, 'http://127.0.0.1:9/x', '127.0.0.1', 'POST', '{}', NULL, 'none', 5, 50,"
    " '{}', 1, 0, ?, ?, ?)"
)
_INSERT_ATTEMPT = (
    "INSERT INTO attempt (job_id, number, worker, started_at, finished_at, outcome) VALUES (?, 1, 'w', ?, ?, 'success')"
)


def fill(db, account_id: str, expired: int, waiting: int, due: int) -> None:
    t = time.time()
    old = t - 40 * 86400
    batch = 50_000
    for start in range(0, expired, batch):
        ids = [new_id() for _ in range(min(batch, expired - start))]
        with db.atomic():
            db.cursor().executemany(_INSERT_JOB, [(i, account_id, jobs.SUCCEEDED, None, old, old) for i in ids])
            db.cursor().executemany(_INSERT_ATTEMPT, [(i, old, old) for i in ids])
    for start in range(0, waiting + due, batch):
        values = []
        for n in range(start, min(start + batch, waiting + due)):
            due_at = t + 3600 + n % 86400 if n < waiting else t - 1
            values.append((new_id(), account_id, jobs.RETRYING, due_at, t, t))
        with db.atomic():
            db.cursor().executemany(_INSERT_JOB, values)


def give_back(ids: list[str]) -> None:
    """Make claimed jobs due again as if never claimed (untimed, between claims)."""
    marks = ", ".join("?" * len(ids))
    jobs.database.execute_sql(f"DELETE FROM attempt WHERE job_id IN ({marks})", ids)
    jobs.database.execute_sql(
        f"UPDATE job SET status = 'retrying', due_at = ?, lease_owner = NULL, attempts = 1 WHERE id IN ({marks})",
        [time.time() - 1, *ids],
    )


class TimedOwner:
    """The database owner as Purge sees it, timing each delete batch."""

    def __init__(self, owner):
        self.owner = owner
        self.db = owner.db
        self.batch_ms: list[float] = []
        self.checkpoint_ms: list[float] = []
        self.jobs = 0
        self.attempts = 0

    def call(self, fn, *args):
        started = time.perf_counter()
        result = self.owner.call(fn, *args)
        if fn is checkpoint_wal:
            self.checkpoint_ms.append((time.perf_counter() - started) * 1000)
        return result

    def write(self, fn, *args):
        started = time.perf_counter()
        result = self.owner.write(fn, *args)
        if fn is purge_jobs_batch:
            self.batch_ms.append((time.perf_counter() - started) * 1000)
            self.jobs += result[0]
            self.attempts += result[1]
        return result


def percentile(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q / 100 * len(values)))], 3) if values else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--expired-jobs", type=int, default=500_000)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase-s", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rest-factor", type=float, default=REST_FACTOR)
    parser.add_argument("--no-checkpoint", action="store_true", help="leave the WAL to SQLite's automatic checkpoint")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="purge-bench-"))
    owner = open_database(f"sqlite:///{tmp}/purge.db")
    ensure_schema(owner)
    account, _ = owner.write(create_account, "bench")
    t0 = time.time()
    owner.call(fill, owner.db, account.id, args.expired_jobs, args.waiting, args.due)
    fill_s = time.time() - t0

    claims = {"quiet": [], "purging": []}
    phase = {"name": "quiet"}

    def claim_loop():
        while True:
            gevent.sleep(random.uniform(0.005, 0.015))
            started = time.perf_counter()
            claimed = owner.write(jobs.claim_due, "bench", 256, 30.0)
            claims[phase["name"]].append((time.perf_counter() - started) * 1000)
            if claimed:
                owner.write(give_back, [job.id for job in claimed])

    timed = TimedOwner(owner)
    purge = Purge(timed, args.batch, rest_factor=args.rest_factor, checkpoint=not args.no_checkpoint)
    claimer = gevent.spawn(claim_loop)
    purging_s = 0.0
    for _ in range(args.rounds):
        phase["name"] = "quiet"
        gevent.sleep(args.phase_s)
        phase["name"] = "purging"
        purger = gevent.spawn(purge.jobs, 30 * 86400)
        started = time.monotonic()
        purger.join(args.phase_s)
        purging_s += time.monotonic() - started
        purger.kill()
    claimer.kill()
    left = owner.call(lambda: jobs.Job.select().where(jobs.Job.status == jobs.SUCCEEDED).count())
    owner.close()
    shutil.rmtree(tmp, ignore_errors=True)

    quiet_p99, purging_p99 = percentile(claims["quiet"], 99), percentile(claims["purging"], 99)
    print(
        json.dumps(
            {
                "expired_rows": args.expired_jobs * 2,
                "due": args.due,
                "fill_s": round(fill_s, 1),
                "batch": args.batch,
                "rest_factor": args.rest_factor,
                "checkpoint": not args.no_checkpoint,
                "claims_quiet": len(claims["quiet"]),
                "claim_quiet_ms_p50": percentile(claims["quiet"], 50),
                "claim_quiet_ms_p99": quiet_p99,
                "claims_purging": len(claims["purging"]),
                "claim_purging_ms_p50": percentile(claims["purging"], 50),
                "claim_purging_ms_p99": purging_p99,
                "p99_ratio": round(purging_p99 / quiet_p99, 2) if quiet_p99 else None,
                "purged_jobs": timed.jobs,
                "purged_attempts": timed.attempts,
                "purged_rows_per_s": round((timed.jobs + timed.attempts) / purging_s),
                "purge_batch_ms_p50": percentile(timed.batch_ms, 50),
                "purge_batch_ms_p99": percentile(timed.batch_ms, 99),
                "checkpoint_ms_p50": percentile(timed.checkpoint_ms, 50),
                "checkpoint_ms_p99": percentile(timed.checkpoint_ms, 99),
                "expired_jobs_left": left,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
