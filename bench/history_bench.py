"""What the inverter page's history ranges cost the API: a month from the hourly energy rollups against a
month of raw readings, beside the last hour of raw readings.

    REDIS_URL=... SECRET_KEY=... .venv/bin/python bench/history_bench.py [--step 60] [--days 31] [--rounds 7] [--profile]

Fills a SQLite file with one inverter's readings every `step` seconds for `days` days (the brands' real
polls are every 5 minutes; 60 s is a fast poll) and rolls up every complete local day, as the purger does (today is computed from raw readings on request). Then, with
the web app in this process (Flask's test client: no network, no server), times what the page asks for each
range, alternating the kinds in every round: the last hour of readings (pages of 1000), the last day and month
as hourly rollups (GET /inverters/<id>/energy?period=hour, as the page does), and the month as raw readings
(the pages the page would need without the rollups), and the month of hourly rollups again just after one
new reading was stored (untimed), as when the page is opened after a poll. Prints one JSON object: median and
quickest ms (the quickest is steadier on a busy machine) and rows per kind.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import energy, inverters  # noqa: E402
from models.accounts import create_account  # noqa: E402
from models.base import iso  # noqa: E402
from models.db import close_database  # noqa: E402
from models.settings import Settings  # noqa: E402


def reading_at(inverter_id: str, t: float) -> dict:
    hour = t % 86400 / 3600
    pv = max(0.0, 3000 * (1 - abs(hour - 12) / 6)) if 6 < hour < 18 else 0.0
    data = {
        "time": iso(t),
        "status": "normal",
        "pv_power_w": pv,
        "load_power_w": 500.0,
        "grid_import_w": max(0.0, 500 - pv),
        "grid_export_w": max(0.0, pv - 500),
        "battery_power_w": 0.0,
        "battery_soc_pct": 50.0,
    }
    return {"inverter_id": inverter_id, "time": t, "event_id": None, "data": data}


def new_reading(inverter_id: str) -> dict:
    return reading_at(inverter_id, time.time())


def fill(db_owner, days: int, step: int) -> tuple[str, str]:
    """(api key, inverter id) with `days` days of readings every `step` s up to now, complete days rolled up."""
    account, key = db_owner.write(create_account, "bench")

    def make_inverter():
        connection = inverters.connection_for("sandbox", "http://127.0.0.1:9", {"api_key": "k"})
        return inverters.onboard(account.id, connection, "BENCH-0001", "hybrid", None, None, "Africa/Nairobi")[0]

    inverter = db_owner.write(make_inverter)
    end = time.time()
    t = end - days * 86400
    rows = []
    while t < end:
        rows.append(reading_at(inverter.id, t))
        t += step
        if len(rows) == 20_000:
            db_owner.write(inverters.store_readings, rows)
            rows = []
    db_owner.write(inverters.store_readings, rows)
    zone = energy.zone_of("Africa/Nairobi")
    day = energy.local_date(end - days * 86400, zone)
    while day < energy.local_date(end, zone):  # every complete local day, as the purger keeps them
        db_owner.write(energy.store_day, inverter.id, zone, day)
        day += timedelta(days=1)
    return key, inverter.id


def readings(client, inverter_id: str, since: float) -> int:
    url = f"/inverters/{inverter_id}/readings?limit=1000&since={iso(since)}"
    count = 0
    while url:
        body = client.get(url).get_json()
        count += len(body["readings"])
        next_since = body["next_since"]
        url = f"/inverters/{inverter_id}/readings?limit=1000&since={next_since}" if next_since else None
    return count


def rollups(client, inverter_id: str, since: float) -> int:
    body = client.get(f"/inverters/{inverter_id}/energy?period=hour&since={iso(since - since % 3600)}").get_json()
    return len(body["buckets"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step", type=int, default=60)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--profile", action="store_true", help="then profile 10 month requests (cProfile, top 25 to stderr)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="history-bench-"))
    try:
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/app.db"
        from web import create_app

        settings = Settings.from_env()
        app = create_app(settings)
        from models.db import owner

        started = time.perf_counter()
        key, inverter_id = fill(owner(), args.days, args.step)
        fill_s = time.perf_counter() - started
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        kinds = {
            "hour_readings": lambda now: readings(client, inverter_id, now - 3600),
            "day_rollups": lambda now: rollups(client, inverter_id, now - 86400),
            "month_rollups": lambda now: rollups(client, inverter_id, now - 30 * 86400),
            "month_readings": lambda now: readings(client, inverter_id, now - 30 * 86400),
        }
        kinds["month_rollups_new_reading"] = kinds["month_rollups"]
        # Untimed, before that kind: one new reading, as a poll stores it, so today's buckets are not as last read.
        prepare = {
            "month_rollups_new_reading": lambda: owner().write(inverters.store_readings, [new_reading(inverter_id)])
        }
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        rows: dict[str, int] = {}
        for round_number in range(args.rounds):
            order = list(kinds) if round_number % 2 == 0 else list(reversed(kinds))
            for kind in order:
                if kind in prepare:
                    prepare[kind]()
                began = time.perf_counter()
                rows[kind] = kinds[kind](time.time())
                times[kind].append((time.perf_counter() - began) * 1000)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(lambda: [kinds["month_rollups"](time.time()) for _ in range(10)])
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        app.extensions["sse_hub"].close_all()
        print(
            json.dumps(
                {
                    "step_s": args.step,
                    "days": args.days,
                    "fill_s": round(fill_s, 1),
                    **{
                        kind: {
                            "median_ms": round(statistics.median(t), 1),
                            "min_ms": round(min(t), 1),
                            "rows": rows[kind],
                        }
                        for kind, t in times.items()
                    },
                }
            )
        )
    finally:
        close_database()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
