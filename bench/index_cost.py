"""What an insert costs SQLite with and without the plain indexes that schema migration 8 dropped.

    .venv/bin/python bench/index_cost.py [--rounds 3] [--jobs 2000] [--inverters 1000] [--history 60] [--readings 20]

Each round makes two fresh SQLite files at the latest schema, one with the seven redundant indexes put back (as
migration 7 left them: a foreign key's own index beside a composite that starts with it), and in each, in turn:

- inserts `--jobs` jobs, each in its own write transaction (models.jobs.insert_job through the database owner, as
  `POST /jobs` does);
- stores `--history` readings for each of `--inverters` inverters, then measures `--readings` more rounds of one
  reading per inverter, 200 rows a statement (as the recorder does; foreign keys off, so no inverter rows are
  needed: the check would cost both files the same).

Prints, per file, the CPU per job insert and per reading, and the WAL frames (pages written) per job insert and
per reading, counted with SQLite's automatic checkpoint off. In-process, no gevent: the numbers are SQLite's and
peewee's own, not the HTTP path's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import jobs  # noqa: E402
from models.accounts import create_account  # noqa: E402
from models.db import close_database, open_database  # noqa: E402
from models.inverters import Reading  # noqa: E402
from models.schema import REDUNDANT_BEFORE_VERSION_8, ensure_schema  # noqa: E402

SPEC = {
    "url": "http://127.0.0.1:9/hook/ok",
    "host": "127.0.0.1",
    "method": "POST",
    "headers": {"Content-Type": "application/json"},
    "body": b'{"event": "payment.succeeded", "data": {"id": "' + b"x" * 380 + b'"}}',
    "body_kind": "json",
    "timeout_s": 10.0,
    "max_attempts": 5,
    "backoff": {"base_s": 0.2, "cap_s": 5.0, "jitter": "full"},
    "run_at": None,
    "sign_with": None,
}


def wal_frames(path: Path) -> int:
    wal = Path(str(path) + "-wal")
    return max(0, (wal.stat().st_size - 32) // (4096 + 24)) if wal.exists() else 0


def measure(path: Path, redundant: bool, args) -> dict:
    owner = open_database(f"sqlite:///{path}")
    try:
        ensure_schema(owner)

        def prepare(db):
            if redundant:
                for table, name, column in REDUNDANT_BEFORE_VERSION_8:
                    db.execute_sql(f'CREATE INDEX "{name}" ON "{table}" ("{column}")')
            db.execute_sql("PRAGMA wal_autocheckpoint=0")
            db.execute_sql("PRAGMA foreign_keys=OFF")

        owner.call(prepare, owner.db)
        account = owner.write(create_account, "bench")[0]
        frames, cpu = wal_frames(path), time.process_time()
        for _ in range(args.jobs):
            owner.write(jobs.insert_job, account.id, dict(SPEC), None)
        job_cpu, job_frames = time.process_time() - cpu, wal_frames(path) - frames

        rng = random.Random(7)
        inverters = [f"inv{n:05d}{rng.randrange(10**6):06d}" for n in range(args.inverters)]
        rng.shuffle(inverters)
        data = {"pv_w": 1234.5, "load_w": 800.0, "battery_soc": 55.0, "grid_w": -434.5, "status": "normal"}

        def store(round_no: int) -> None:
            rows = [
                {"inverter": i, "time": 1.7e9 + round_no * 60, "event_id": None, "data": data, "stored_at": 0.0}
                for i in inverters
            ]
            for start in range(0, len(rows), 200):
                Reading.insert_many(rows[start : start + 200]).on_conflict_ignore().execute()

        for round_no in range(args.history):
            owner.write(store, round_no)
        frames, cpu = wal_frames(path), time.process_time()
        for round_no in range(args.history, args.history + args.readings):
            owner.write(store, round_no)
        reading_cpu, reading_frames = time.process_time() - cpu, wal_frames(path) - frames
        readings = args.readings * args.inverters
        return {
            "cpu_us_per_job_insert": round(job_cpu / args.jobs * 1e6, 1),
            "pages_per_job_insert": round(job_frames / args.jobs, 2),
            "cpu_us_per_reading": round(reading_cpu / readings * 1e6, 2),
            "pages_per_reading": round(reading_frames / readings, 3),
        }
    finally:
        close_database()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--inverters", type=int, default=1000)
    parser.add_argument("--history", type=int, default=60)
    parser.add_argument("--readings", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="index-cost-"))
    results: dict[str, list[dict]] = {"with_redundant_indexes": [], "without": []}
    for round_no in range(args.rounds):
        for label, redundant in (("with_redundant_indexes", True), ("without", False)):
            path = tmp / f"{label}-{round_no}.db"
            results[label].append(measure(path, redundant, args))
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    print(
        json.dumps(
            {label: {key: [r[key] for r in runs] for key in runs[0]} for label, runs in results.items()}, indent=2
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("DATABASE_URL", "sqlite://")
    main()
