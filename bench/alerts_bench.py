"""Alert engine benchmark: N inverters reporting every I seconds into one worker (recorder + alert engine).

    export SECRET_KEY=$(.venv/bin/python -m models new-secret-key | tail -1)
    .venv/bin/python bench/alerts_bench.py [--inverters 10000] [--interval 5] [--seconds 60] [--sites 1000]
                                           [--no-rules] [--storm]
    .venv/bin/python bench/alerts_bench.py --pvlib-stall [--tables 200]

Starts a private redis-server and one worker (`python -m actors --role pollers`: the recorder and the
alert engine) on a fresh SQLite file holding one account, N inverters (on a connection of a brand no
adapter speaks, so no poller calls anything: the readings are this script's) and the rules: account-wide
offline (10 min), fault and battery_low, and one production_low per inverter at one of --sites places
(one clear-sky table per place and day), and a webhook endpoint for every event type. This process
publishes readings with the pollers' own Lua script (models/live_events.py) at N / interval per second,
evenly, each inverter once per interval, for a warm-up then --seconds measured. Every second it samples
the worker's /metrics (alert engine queue and lag, recorder lag, counters) and its CPU time from /proc.
--no-rules: the same with no rule at all, the baseline (the engine still hears every reading).
--storm: then every inverter reports its battery at 5 % from one round on, while the flow goes on: N
battery.low episodes (each with its webhook job) open; alerts per second until all are open, and the lags;
then the battery back at 60 %: the same until all N are cleared.
--pvlib-stall: in process, how long the gevent hub stalls while --tables clear-sky tables are computed,
on the engine's pvlib thread and in line (the ticks of a 1 ms timer; max and p99 gap).
"""

from __future__ import annotations

import sys

if "--pvlib-stall" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from common import cpu_seconds, free_port, start_redis_server, wait_http  # noqa: E402

PYTHON = sys.executable
METRICS = {
    "solar_relay_alert_engine_lag_seconds": "engine_lag",
    "solar_relay_alert_engine_queue": "engine_queue",
    "solar_relay_alert_engine_events_total": "evaluated",
    "solar_relay_recorder_lag_seconds": "recorder_lag",
    "solar_relay_readings_recorded_total": "recorded",
    'solar_relay_alerts_total{phase="opened"}': "opened",
    'solar_relay_alerts_total{phase="cleared"}': "cleared",
}


def populate(db, inverters_n: int, sites_n: int, with_rules: bool) -> list[str]:
    from models import alerts, inverters, webhooks
    from models.accounts import create_account
    from models.ids import new_id

    def work():
        account, _ = create_account("bench")
        connection = inverters.connection_for("bench", "http://127.0.0.1:9", {"api_key": "bench"})
        ids = [new_id() for _ in range(inverters_n)]
        rows = [
            {
                "id": inverter_id,
                "connection": connection.id,
                "brand": "bench",
                "serial": f"B{n:05d}",
                "device_type": "hybrid",
                "owner": account.id,
            }
            for n, inverter_id in enumerate(ids)
        ]
        for start in range(0, len(rows), 500):
            inverters.Inverter.insert_many(rows[start : start + 500]).execute()
        if not with_rules:
            return ids
        webhooks.create_endpoint(account.id, "http://127.0.0.1:9/hook", "bench", list(webhooks.EVENT_TYPES))
        for kind, params in (
            ("offline", {"minutes": 10.0}),
            ("fault", {}),
            ("battery_low", {"below_pct": 20.0, "clear_above_pct": 30.0}),
        ):
            alerts.create_rule(account.id, None, kind, params)
        rules = []
        for n, inverter_id in enumerate(ids):
            site = n % sites_n
            rules.append(
                {
                    "id": new_id(),
                    "account": account.id,
                    "inverter": inverter_id,
                    "kind": "production_low",
                    "params": {
                        "latitude": 35.0 + 25.0 * site / sites_n,
                        "longitude": -10.0 + 40.0 * ((site * 7919) % sites_n) / sites_n,
                        "peak_power_w": 5000.0,
                        "tilt": 30.0,
                        "azimuth": 180.0,
                        "below_pct": 50.0,
                        "clear_above_pct": 60.0,
                        "minutes": 30.0,
                        "daylight_min_pct": 10.0,
                    },
                    "created_at": time.time(),
                }
            )
        for start in range(0, len(rules), 500):
            alerts.AlertRule.insert_many(rules[start : start + 500]).execute()
        return ids

    return db.write(work)


def scrape(port: int) -> dict:
    values = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in METRICS:
            values[METRICS[name]] = float(value)
    return values


class Publisher:
    """Readings for every inverter, each once per interval, spread evenly (the pollers' Lua script)."""

    def __init__(self, client, ids: list[str], interval_s: float):
        from models import live_events

        self.live_events = live_events
        self.script = client.register_script(live_events.PUBLISH_SCRIPT)
        self.client = client
        self.ids = ids
        self.rate = len(ids) / interval_s
        self.next = 0
        self.sent = 0
        self.soc = 60.0

    def reading(self, n: int, at: float) -> tuple[list, list]:
        from models.base import iso

        inverter_id = self.ids[n]
        data = {
            "inverter_id": inverter_id,
            "brand": "bench",
            "serial": f"B{n:05d}",
            "time": iso(at),
            "status": "normal",
            "pv_power_w": 5000.0,
            "ac_power_w": 4800.0,
            "load_power_w": 900.0,
            "grid_import_w": 0.0,
            "grid_export_w": 2900.0,
            "battery_power_w": 1000.0,
            "battery_soc_pct": self.soc,
            "battery_voltage_v": 51.0,
            "energy_today_wh": 12000.0 + at % 1000,
            "energy_total_wh": 9_000_000.0 + at % 1000,
            "temperature_c": 31.0,
        }
        return self.live_events.publish_args(
            self.live_events.READING, inverter_id, repr(at), self.live_events.dumps(data), 100, 1_000_000
        )

    def run(self, seconds: float, each_second=None) -> None:
        started = time.monotonic()
        owed, last_sample = 0.0, started
        previous = started
        while True:
            now = time.monotonic()
            if now - started >= seconds:
                return
            owed += (now - previous) * self.rate
            previous = now
            count = int(owed)
            if count:
                owed -= count
                pipe = self.client.pipeline(transaction=False)
                at = time.time()
                for _ in range(count):
                    keys, args = self.reading(self.next, at)
                    self.script(keys=keys, args=args, client=pipe)
                    self.next = (self.next + 1) % len(self.ids)
                pipe.execute()
                self.sent += count
            if each_second is not None and now - last_sample >= 1.0:
                last_sample = now
                each_second()
            time.sleep(0.01)


def summarise(samples: list[dict], name: str) -> dict:
    values = [s[name] for s in samples if name in s]
    if not values:
        return {}
    third = max(1, len(values) // 3)
    return {
        "mean": round(statistics.fmean(values), 3),
        "p50": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "first_third": round(statistics.fmean(values[:third]), 3),
        "last_third": round(statistics.fmean(values[-third:]), 3),
    }


def run(args) -> dict:
    import redis

    from models.db import open_database
    from models.schema import ensure_schema

    if not os.environ.get("SECRET_KEY"):
        raise SystemExit("bench: set SECRET_KEY (see the docstring)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis_proc, redis_port = start_redis_server(workdir)
        worker = None
        try:
            env = {
                **os.environ,
                "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                "METRICS_PORT": str(free_port()),
            }
            os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL")})
            db = open_database(env["DATABASE_URL"])
            ensure_schema(db)
            ids = populate(db, args.inverters, args.sites, not args.no_rules)
            db.close()
            worker = subprocess.Popen([PYTHON, "-m", "actors", "--role", "pollers"], cwd=ROOT, env=env)
            metrics_port = int(env["METRICS_PORT"])
            wait_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60, proc=worker)
            client = redis.Redis(port=redis_port, decode_responses=True)
            publisher = Publisher(client, ids, args.interval)
            samples: list[dict] = []

            def sample():
                samples.append({**scrape(metrics_port), "cpu": cpu_seconds(worker.pid), "t": time.monotonic()})

            sample()
            publisher.run(args.warmup, sample)  # the start: the engine loads its rules and clear-sky tables
            sample()
            first = samples[-1]
            warmup = samples[: samples.index(first) + 1]
            sent_before = publisher.sent
            publisher.run(args.seconds, sample)
            sample()
            last = samples[-1]
            window = samples[samples.index(first) :]
            elapsed = last["t"] - first["t"]
            readings = publisher.sent - sent_before
            result = {
                "inverters": args.inverters,
                "interval_s": args.interval,
                "rules": not args.no_rules,
                "sites": args.sites,
                "seconds": round(elapsed, 1),
                "published_per_s": round(readings / elapsed, 1),
                "evaluated_per_s": round((last.get("evaluated", 0) - first.get("evaluated", 0)) / elapsed, 1),
                "recorded_per_s": round((last["recorded"] - first["recorded"]) / elapsed, 1),
                "worker_cpu_per_s": round((last["cpu"] - first["cpu"]) / elapsed, 3),
                "worker_cpu_us_per_reading": round((last["cpu"] - first["cpu"]) / readings * 1e6, 1),
                "engine_lag_s": summarise(window, "engine_lag"),
                "engine_queue": summarise(window, "engine_queue"),
                "recorder_lag_s": summarise(window, "recorder_lag"),
                "alerts_opened": last.get("opened", 0),
                "warmup": {
                    "seconds": round(first["t"] - warmup[0]["t"], 1),
                    "worker_cpu_s": round(first["cpu"] - warmup[0]["cpu"], 2),
                    "engine_lag_s": summarise(warmup, "engine_lag"),
                    "engine_queue": summarise(warmup, "engine_queue"),
                },
            }
            if args.storm:
                result["storm"] = storm(publisher, sample, samples, args)
            return result
        finally:
            if worker is not None:
                worker.terminate()
                try:
                    worker.wait(20)
                except subprocess.TimeoutExpired:
                    worker.kill()
            redis_proc.terminate()
            redis_proc.wait(10)


def storm(publisher: Publisher, sample, samples: list[dict], args) -> dict:
    """Every inverter's battery at 5 % from now on: N episodes open while the flow goes on; then back at 60 %:
    the N clear."""
    return {
        "open": storm_phase(publisher, sample, samples, args, 5.0, "opened"),
        "clear": storm_phase(publisher, sample, samples, args, 60.0, "cleared"),
    }


def storm_phase(publisher: Publisher, sample, samples: list[dict], args, soc: float, counter: str) -> dict:
    sample()
    before = samples[-1]
    counted_before = before.get(counter, 0)
    publisher.soc = soc
    deadline = time.monotonic() + args.storm_timeout
    while samples[-1].get(counter, 0) - counted_before < args.inverters and time.monotonic() < deadline:
        publisher.run(1.0)
        sample()
    after = samples[-1]
    window = samples[samples.index(before) :]
    changed = after.get(counter, 0) - counted_before
    seconds = after["t"] - before["t"]
    return {
        counter: changed,
        "seconds": round(seconds, 1),
        "alerts_per_s": round(changed / seconds, 1),
        "evaluated_per_s": round((after.get("evaluated", 0) - before.get("evaluated", 0)) / seconds, 1),
        "worker_cpu_per_s": round((after["cpu"] - before["cpu"]) / seconds, 3),
        "engine_lag_s": summarise(window, "engine_lag"),
        "engine_queue": summarise(window, "engine_queue"),
        "recorder_lag_s": summarise(window, "recorder_lag"),
    }


def ticker(gaps: list[float], done) -> None:
    """A 1 ms timer: each gap is how long the hub took to come back to it."""
    import gevent

    last = time.perf_counter()
    while not done.is_set():
        gevent.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


def pvlib_stall(args) -> dict:
    """The hub's longest pause while clear-sky tables are computed on the pvlib thread, and in line."""
    import gevent
    import gevent.event

    from models.clearsky import ClearSky, QueuedThread, Site, day_table

    day_table(Site(0.0, 0.0, 1.0), 19_000)  # imports and first-call costs out of the way
    results = {}
    for mode in ("thread", "inline", "thread", "inline"):
        pool = QueuedThread()  # the engine's pvlib thread
        clear_sky = ClearSky(pool.spawn if mode == "thread" else None)
        gaps: list[float] = []
        done = gevent.event.Event()
        greenlet = gevent.spawn(ticker, gaps, done)
        gevent.sleep(0.05)
        started = time.perf_counter()
        sites = [Site(35.0 + i * 0.01, 5.0, 5000.0, 30.0, 180.0) for i in range(args.tables)]
        for site in sites:
            clear_sky.expected_w(site, 1_718_964_000.0)
            gevent.sleep(0)
        while len(clear_sky.tables.ready) < args.tables:
            gevent.sleep(0.01)
        elapsed = time.perf_counter() - started
        done.set()
        greenlet.join()
        pool.kill()
        gaps.sort()
        results.setdefault(mode, []).append(
            {
                "tables": args.tables,
                "seconds": round(elapsed, 2),
                "max_gap_ms": round(gaps[-1] * 1000, 1),
                "p99_gap_ms": round(gaps[int(len(gaps) * 0.99)] * 1000, 1),
                "ticks": len(gaps),
            }
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inverters", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between two readings of an inverter")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured window")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--sites", type=int, default=1000, help="distinct places of the production_low rules")
    parser.add_argument("--no-rules", action="store_true", help="the baseline: no alert rule at all")
    parser.add_argument("--storm", action="store_true", help="then open one battery.low episode per inverter")
    parser.add_argument("--storm-timeout", type=float, default=600.0)
    parser.add_argument("--pvlib-stall", action="store_true")
    parser.add_argument("--tables", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(pvlib_stall(args) if args.pvlib_stall else run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
