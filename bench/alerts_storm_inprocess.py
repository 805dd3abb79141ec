"""A storm of alerts against the recorder's writes, in one process: what the database owner thread does.

    export SECRET_KEY=$(.venv/bin/python -m models new-secret-key | tail -1)
    .venv/bin/python bench/alerts_storm_inprocess.py [--inverters 10000] [--rate 2000]

No Redis pub/sub, no second process: the alert engine (actors/alerts.py AlertEngine, its real decisions and
writes) is handed one battery reading at 5 % per inverter, BATCH events at a time as its queue would give
them, while a recorder-like greenlet stores --rate readings per second through the same database owner
(models/inverters.py store_readings, as actors/recorder.py does); then the same with the battery back at
60 %, which clears them. Reports for each phase how long it took (alerts per second), the process's CPU per
alert, how long the engine's flushes took (one per BATCH events), and the recorder's lag: the age of the
oldest reading of each write when it was stored, during the phase. On a machine shared with other work, alternate the runs of the
two versions to compare (the engine's and the recorder's code are those of the checkout it runs from).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from common import start_redis_server  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def populate(owner, inverters_n: int) -> list[str]:
    from models import alerts, inverters, webhooks
    from models.accounts import create_account
    from models.ids import new_id

    def work():
        account, _ = create_account("storm")
        connection = inverters.connection_for("bench", "http://127.0.0.1:9", {"api_key": "bench"})
        ids = [new_id() for _ in range(inverters_n)]
        rows = [
            {"id": i, "connection": connection.id, "brand": "bench", "serial": f"B{n:05d}", "device_type": "hybrid"}
            for n, i in enumerate(ids)
        ]
        for start in range(0, len(rows), 500):
            inverters.Inverter.insert_many(
                [{**row, "owner": account.id} for row in rows[start : start + 500]]
            ).execute()
        webhooks.create_endpoint(account.id, "http://127.0.0.1:9/hook", "bench", list(webhooks.EVENT_TYPES))
        alerts.create_rule(account.id, None, "battery_low", {"below_pct": 20.0, "clear_above_pct": 30.0})
        return ids

    return owner.write(work)


def recorder(owner, ids: list[str], rate: float, lags: list, stop) -> None:
    """Store `rate` readings a second, each write taking what arrived since the last (as the recorder does)."""
    from models.inverters import store_readings

    n, pending_since = 0, time.time()
    while not stop.is_set():
        gevent.sleep(0.05)
        t = time.time()
        count = int((t - pending_since) * rate)
        if not count:
            continue
        rows = []
        for k in range(count):
            at = pending_since + k / rate
            rows.append(
                {"inverter_id": ids[n % len(ids)], "time": at, "event_id": None, "data": {"battery_soc_pct": 60.0}}
            )
            n += 1
        owner.write(store_readings, rows)
        lags.append((time.time(), time.time() - pending_since))
        pending_since += count / rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inverters", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="readings stored per second meanwhile")
    parser.add_argument("--write-chunk", type=int, help="the engine's episode changes per transaction (WRITE_CHUNK)")
    args = parser.parse_args()

    import gevent.event
    import redis

    import actors.alerts
    from actors.alerts import BATCH, AlertEngine
    from models.base import iso
    from models.db import open_database
    from models.schema import ensure_schema

    if args.write_chunk:  # a checkout without WRITE_CHUNK (main) ignores it; the report says which it had
        actors.alerts.WRITE_CHUNK = args.write_chunk

    workdir = tempfile.mkdtemp(prefix="storm-")
    redis_proc, redis_port = start_redis_server(Path(workdir))
    try:
        owner = open_database(f"sqlite:///{os.path.join(workdir, 'storm.db')}")
        ensure_schema(owner)
        ids = populate(owner, args.inverters)
        engine = AlertEngine(
            SimpleNamespace(replay_maxlen=100, ingest_maxlen=1000),
            owner,
            redis.Redis(port=redis_port, decode_responses=True),
        )
        engine._reload()
        lags: list = []
        stop = gevent.event.Event()
        writer = gevent.spawn(recorder, owner, ids, args.rate, lags, stop)
        gevent.sleep(3)  # the recorder's normal, before the storm
        normal = [lag for _, lag in lags]
        phases = {}
        for phase, soc in (("open", 5.0), ("clear", 60.0)):
            open_before = len(engine.open)
            flushes = []
            started, cpu_before = time.time(), cpu()
            for start in range(0, len(ids), BATCH):
                for inverter_id in ids[start : start + BATCH]:
                    data = {"time": iso(time.time()), "status": "normal", "battery_soc_pct": soc}
                    engine._event({"event": "reading", "inverter_id": inverter_id, "data": data})
                flush_started = time.perf_counter()
                engine._flush()
                flushes.append(time.perf_counter() - flush_started)
                gevent.sleep(0)  # the queue's next batch: the hub runs what waits meanwhile
            seconds, cpu_used = time.time() - started, cpu() - cpu_before
            changed = abs(len(engine.open) - open_before)
            during = [lag for at, lag in lags if at >= started]
            phases[phase] = {
                "changed": changed,
                "seconds": round(seconds, 2),
                "alerts_per_s": round(changed / seconds, 1),
                "cpu_ms_per_alert": round(1000 * cpu_used / len(ids), 3),
                "flush_s": {"p50": round(statistics.median(flushes), 3), "max": round(max(flushes), 3)},
                "recorder_lag_during_s": {
                    "p50": round(statistics.median(during), 3),
                    "max": round(max(during), 3),
                    "writes": len(during),
                },
            }
            gevent.sleep(1)  # the recorder catches up between the phases
        stop.set()
        writer.join()
        engine.pvlib_pool.kill()
        print(
            json.dumps(
                {
                    **phases,
                    "recorder_lag_before_s": {"p50": round(statistics.median(normal), 3), "max": round(max(normal), 3)},
                    "write_chunk": getattr(actors.alerts, "WRITE_CHUNK", None),
                    "load": os.getloadavg()[0],
                }
            )
        )
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
