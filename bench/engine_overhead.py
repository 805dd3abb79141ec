"""The engine's own CPU per attempt, with no HTTP: a worker's dispatcher in this process, its transport answering
at once without a socket.

    .venv/bin/python bench/engine_overhead.py [--jobs 5000] [--profile out.prof]

Stores `--jobs` jobs in a fresh SQLite file (65% succeed, 25% fail once with 503, 5% twice, 5% answer 400, as in
bench/jobs_bench.py, with retries due at once), starts the JobDispatcher with the real database owner, event
publisher (Redis at REDIS_URL or 127.0.0.1:6379) and actors, and a transport that returns a canned response after
one yield to the hub, then prints the CPU of this process's main thread (dispatcher, actors, events, gevent) and
of its other threads (the database owner's: SQLite) per attempt until every job has ended. That is what
bench/jobs_bench.py calls the engine's overhead (worker CPU per attempt minus the bare transport's) measured
without the transport, the sink and the web: far less noise from the machine's neighbours, so a change of a few
tens of microseconds shows. It is a floor: the real worker also pays for the cache the transport evicts.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import peewee  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actors.dispatcher import JobDispatcher  # noqa: E402
from actors.transport import Response  # noqa: E402
from models import jobs  # noqa: E402
from models.accounts import create_account  # noqa: E402
from models.db import close_database, open_database  # noqa: E402
from models.events import BatchedPublisher  # noqa: E402
from models.redis_client import connect_redis  # noqa: E402
from models.schema import ensure_schema  # noqa: E402
from models.settings import Settings  # noqa: E402

_main_thread_clock = time.pthread_getcpuclockid(monkey.get_original("threading", "get_ident")())


class InstantTransport:
    """Answers each request at once (after one yield, as a socket would make it), like the bench's sink."""

    def __init__(self):
        self.seen: dict[str, int] = {}

    def send(self, method, url, headers, body, timeout_s):
        started = time.time()
        gevent.sleep(0)
        job_id = headers["X-Job-Id"]
        self.seen[job_id] = seen = self.seen.get(job_id, 0) + 1
        kind = url.rsplit("/", 1)[-1]
        status = 400 if kind == "bad" else 503 if seen <= {"ok": 0, "fail1": 1, "fail2": 2}[kind] else 200
        return Response(started, time.time(), status, {"Content-Type": "text/plain", "Content-Length": "2"}, b"ok")

    def close(self):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--profile", default=None, help="cProfile the main thread's CPU into this file")
    parser.add_argument("--profile-db", default=None, help="cProfile the database thread's CPU into this file")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="engine-overhead-"))
    settings = Settings.from_env(
        {**os.environ, "DATABASE_URL": f"sqlite:///{tmp / 'engine.db'}", "MAX_IN_FLIGHT_PER_HOST": "64"}
    )
    db = open_database(settings.database_url)
    ensure_schema(db)
    account, _ = db.write(create_account, "bench")
    rng = random.Random(7)
    kinds = ["ok"] * 65 + ["fail1"] * 25 + ["fail2"] * 5 + ["bad"] * 5
    body = json.dumps({"event": "payment.succeeded", "data": {"id": "x" * 380, "amount": 1234}}).encode()
    specs = []
    for _ in range(args.jobs):
        kind = rng.choice(kinds)
        spec = {
            "url": f"http://127.0.0.1:9/hook/{kind}",
            "host": "127.0.0.1",
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": body,
            "body_kind": "json",
            "timeout_s": 10.0,
            "max_attempts": 5,
            "backoff": {"base_s": 0.001, "cap_s": 0.001, "jitter": "none"},
            "run_at": None,
        }
        specs.append((spec, None))
    db.write(jobs.insert_jobs, account.id, specs)

    redis = connect_redis(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    transport = InstantTransport()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(lambda: time.clock_gettime(_main_thread_clock))
        profiler.enable()
    db_profiler = None
    if args.profile_db:
        import cProfile

        db_profiler = cProfile.Profile(time.thread_time)
        # Each piece of work the owner's thread runs is profiled there (a profiler follows the thread it runs on).
        commit_batch, run = db._commit_batch, db._run
        db._commit_batch = lambda batch: db_profiler.runcall(commit_batch, batch)
        db._run = lambda fn, args, kwargs: db_profiler.runcall(run, fn, args, kwargs)
    main_before, all_before, started = time.clock_gettime(_main_thread_clock), time.process_time(), time.time()
    dispatcher = JobDispatcher.start(settings, db, transport, publisher=BatchedPublisher(redis))

    def left():
        return jobs.Job.select().where(jobs.Job.status.not_in([jobs.SUCCEEDED, jobs.DEAD])).count()

    while db.call(left):
        gevent.sleep(0.05)
    main_cpu = time.clock_gettime(_main_thread_clock) - main_before
    all_cpu = time.process_time() - all_before
    wall = time.time() - started
    if db_profiler is not None:
        db_profiler.dump_stats(args.profile_db)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    attempts = db.call(lambda: jobs.Attempt.select().count())
    statuses = db.call(
        lambda: dict(jobs.Job.select(jobs.Job.status, peewee.fn.COUNT(jobs.Job.id)).group_by(jobs.Job.status).tuples())
    )
    dispatcher.stop()
    close_database()
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "attempts": attempts,
                "attempts_per_s": round(attempts / wall, 1),
                "cpu_ms_main_thread_per_attempt": round(main_cpu / attempts * 1000, 4),
                "cpu_ms_other_threads_per_attempt": round((all_cpu - main_cpu) / attempts * 1000, 4),
                "statuses": statuses,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
