"""Quota planner benchmark: per brand, 50 sites for one simulated day (Enphase: one simulated month) against
the mock's `--profile real` (the brands' documented limits) counting its limits on its own accelerated clock
(`--limits-clock sim`).

    .venv/bin/python bench/planner_bench.py [--brands solaredge,enphase,...] [--sites 50] [--speed 150]
                                            [--month-speed 20000] [--driver actor|planner]

Each brand gets its own mock process and a generated fleet of 50 plants (one device each, every fifth with a
battery). Two drivers poll it:

- `actor` (the default, the real thing): a private redis-server, a web process and a pollers worker
  (`python -m actors --role pollers`) on a poll clock aligned to the mock's (POLL_CLOCK_SPEED and
  POLL_CLOCK_ANCHOR). The fleet is onboarded through POST /inverters, the brand's interval setting asks for
  0.1 s (as fast as the quota allows), and the BrandPoller plans, schedules, charges its QuotaBudget in Redis
  and polls; the span starts with the worker's first call. Reported besides: the worker's published
  readings (readings/s in real time), throttling replies it saw, calls its budget held back, and
  GET /connections/<id>'s planned interval and binding window.
- `planner`: this process polls as the BrandPoller does, with the planner and the poll schedule alone (no
  Redis budget, no actor): what tells a planner bug from one of the actor or the budget.

Reported per brand: limit violations (the mock's refusals: must be 0) and the limits that refused
(`refused_by`); budget use of the binding window (the latest calls the mock answered against what the window
allows over the span, target at least 90 %); and slots missed (a device with fewer polls than the span's
planned rounds, less the first round's spread; the planner driver also counts a poll late by more than one
interval or that brought no reading).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import create_account, free_port  # noqa: E402

from actors.schedule import PollSchedule, ScaledClock  # noqa: E402
from models.brands import ADAPTERS  # noqa: E402
from models.brands.base import BrandError, PolledDevice  # noqa: E402
from models.brands.planner import PlanDevice, charges, period_bounds, plan  # noqa: E402
from models.net.policy import DestinationPolicy  # noqa: E402

LOOPBACK = DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")])
DAY_START = "2024-06-21T00:00:00Z"
MONTH_START = "2024-06-01T00:00:00Z"
DEMO = json.loads((ROOT / "mock_inverter" / "demo_fleet.json").read_text())
BATTERY = {
    "capacity_wh": 10000,
    "max_charge_w": 3000,
    "max_discharge_w": 3000,
    "soc_min_pct": 10,
    "initial_soc_pct": 50,
}
# brand (adapter) -> (the mock's brand, device types cycled over the sites: (type without, with a battery))
FLEETS = {
    "sandbox": ("sandbox", ("inverter", "hybrid")),
    "growatt_v4": ("growatt", ("min", "sph")),
    "growatt_v1": ("growatt", ("inv", "sph")),
    "solaredge": ("solaredge", ("inverter", "storedge")),
    "enphase": ("enphase", ("micros", "encharges")),
    "fusionsolar": ("fusionsolar", ("inverter", "inverter")),
}
CREDENTIALS = {
    "sandbox": {"api_key": "demo-sandbox-key"},
    "growatt_v4": {"token": "demo-growatt-token"},
    "growatt_v1": {"token": "demo-growatt-token"},
    "solaredge": {"api_key": "demo-solaredge-key"},
    "enphase": {
        "client_id": "demo-enphase-client",
        "client_secret": "demo-enphase-secret",
        "api_key": "demo-enphase-key",
        "refresh_token": "demo-enphase-refresh",
        "plan": "watt",
    },
    "fusionsolar": {"user_name": "demo-fusionsolar", "system_code": "demo-fusionsolar-code"},
}
PATH_PREFIX = {"solaredge": "/solaredge", "enphase": "/enphase", "fusionsolar": "/fusionsolar"}
#: The schedule's allowance for clock jitter between the bench and the mock, in real seconds (the poller's is 0.1)
JITTER_REAL_S = 0.02
ONBOARD_GAP_SIM_S = 7.0


def quota_figures(stats: dict, latest: int, allowed: float | None) -> dict:
    """What the mock counted (requests, refusals and the limits that refused) and the share of the
    brand's allowance the latest-data calls used; the same for both drivers."""
    return {
        "requests": stats["totals"]["requests"],
        "violations": stats["totals"]["rate_limited"],
        "refused_by": stats["totals"].get("refused_by", {}),
        "latest_requests": latest,
        "allowed": None if allowed is None else round(allowed),
        "budget_use_pct": None if not allowed else round(100 * latest / allowed, 1),
    }


def fleet_config(brand: str, sites: int) -> dict:
    mock_brand, (plain, with_battery) = FLEETS[brand]
    rng = random.Random(7)
    plants = []
    for n in range(sites):
        battery = n % 5 == 0
        serial = {
            "sandbox": f"SBX-B{n:04d}",
            "growatt": f"GRTB{n:06d}",
            "solaredge": f"7E{n:06X}-5C",
            "enphase": f"1223{n:08d}",
            "fusionsolar": f"HWB{n:06d}",
        }[mock_brand]
        device = {
            "serial": serial,
            "type": with_battery if battery else plain,
            "pv_peak_w": rng.choice((4000, 6000)),
            "tilt": 30,
            "azimuth": 180,
            "cloudiness": 0.3,
        }
        if battery:
            device["battery"] = dict(BATTERY)
        plant = {
            "plant_id": 7000 + n,
            "name": f"Bench {n}",
            "brand": mock_brand,
            "city": "Madrid",
            "country": "Spain",
            "latitude": 40.4,
            "longitude": -3.7,
            "timezone": "Europe/Madrid",
            "devices": [device],
        }
        if mock_brand == "solaredge":
            plant["power_unit"] = "W"
        plants.append(plant)
    return {"seed": 42, "tick_s": 60.0, "brands": DEMO["brands"], "plants": plants}


class Mock:
    def __init__(self, brand: str, sites: int, speed: float, start: str):
        self.config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(fleet_config(brand, sites), self.config)
        self.config.close()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mock_inverter",
                "--port",
                str(self.port),
                "--config",
                self.config.name,
                "--profile",
                "real",
                "--limits-clock",
                "sim",
                "--speed",
                str(speed),
                "--start",
                start,
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                requests.get(self.url + "/admin/health", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise SystemExit(f"the mock did not start: {self.process.stderr.read().decode()[-2000:]}")

    def clock(self) -> ScaledClock:
        """A poll clock reading the mock's simulated time (a ScaledClock's anchor solved from one reading)."""
        before = time.time()
        health = requests.get(self.url + "/admin/health", timeout=2).json()
        real = (before + time.time()) / 2
        sim, speed = float(health["clock"]), float(health["clock_speed"])
        return ScaledClock((sim - real * speed) / (1 - speed), speed)

    def stats(self) -> dict:
        return requests.get(self.url + "/admin/stats", timeout=5).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        Path(self.config.name).unlink(missing_ok=True)


def onboard(adapter, speed: float) -> dict:
    """The device list, its requests paced at one per ONBOARD_GAP_SIM_S of the mock's clock (the brands' list
    endpoints allow one per 5 s, Enphase ten a minute): onboarding is not what is measured."""
    send = adapter._send

    def paced(*args, **kwargs):
        time.sleep(ONBOARD_GAP_SIM_S / speed)
        return send(*args, **kwargs)

    adapter._send = paced
    try:
        return adapter.list_devices()
    finally:
        adapter._send = send


def run(brand: str, sites: int, speed: float, span_s: float, start: str, jitter_s: float = JITTER_REAL_S) -> dict:
    mock = Mock(brand, sites, speed, start)
    try:
        cls = ADAPTERS[brand]
        adapter = cls(mock.url + PATH_PREFIX.get(brand, ""), dict(CREDENTIALS[brand]), LOOPBACK, timeout_s=10)
        quota = adapter.quota
        listed = onboard(adapter, speed)
        requests.post(mock.url + "/admin/stats/reset", timeout=5)  # measure the polling: onboarding is done
        polled = {s: PolledDevice(s, d.device_type, d.timezone) for s, d in listed.items()}
        devices = [
            PlanDevice(s, str(d.plant_id or s), cls.batch_key(polled[s]), d.device_type)
            for s, d in sorted(listed.items())
        ]
        clock = mock.clock()
        guard_s = jitter_s * speed
        began = clock.now()
        end = began + span_s
        calendar = [period_bounds(w, began)[1] for w in quota.windows if w.calendar]
        end = min([end] + [stop - 600 for stop in calendar if stop - 600 > began])  # inside one calendar period
        used: dict = defaultdict(int)
        current = plan(quota, devices, 1.0, began, used, cls.batch_size, guard_s)
        schedule = PollSchedule(current, began, {}, concurrency=quota.concurrency or 16)
        lock, wake = threading.Lock(), threading.Event()
        sends: dict[str, list[float]] = defaultdict(list)
        readings, failures = defaultdict(int), defaultdict(int)
        intervals = [current.interval_s]

        def poll(entry):
            sent_at = clock.now()  # as the BrandPoller: the next call is due one interval after this one came back
            try:
                batch = [polled[s] for s in entry.call.devices]
                result = adapter.fetch_latest(batch)
                got = set(result.readings) | set(result.offline)
                errors = [str(e) for e in result.failed.values()]
            except BrandError as exc:
                got, errors = set(), [str(exc)]
            with lock:
                for serial in entry.call.devices:
                    if serial in got:
                        readings[serial] += 1
                    else:
                        failures[serial] += 1
                for error in errors[:1]:
                    failures["_last_error"] = error  # type: ignore[assignment]
                schedule.finished(entry, sent_at, clock.now())
            wake.set()

        with ThreadPoolExecutor(quota.concurrency or 16) as pool:
            while True:
                now = clock.now()
                if now >= end:
                    break
                with lock:
                    if current.valid_until is not None and now >= current.valid_until:
                        used = defaultdict(int, {k: v for k, v in used.items() if not quota.windows[k[0]].calendar})
                        current = plan(quota, devices, 1.0, now, used, cls.batch_size, guard_s)
                        schedule.replan(current, now)
                        intervals.append(current.interval_s)
                    due = schedule.due(now)
                    for entry in due:
                        for c in charges(quota, entry.call):
                            if quota.windows[c.window].calendar:
                                used[(c.window, c.instance)] += c.amount
                        for serial in entry.call.devices:
                            sends[serial].append(now)
                    at = schedule.next_at()
                for entry in due:
                    pool.submit(poll, entry)
                wait = clock.real_seconds(max(0.0, (at if at is not None else now + 60) - clock.now()))
                wake.wait(min(wait, 0.5))
                wake.clear()
        stats = mock.stats()
        return report(brand, quota, current, intervals, devices, sends, readings, failures, stats, began, end, speed)
    finally:
        mock.stop()


LATEST_ENDPOINTS = (
    "latest",
    "last_data",
    "queryLastData",
    "currentPowerFlow",
    "overview",
    "summary",
    "battery",
    "getDevRealKpi",
)


def budget_use(quota, binding_name, devices, stats, began, end) -> tuple[int, float | None]:
    """(requests the binding window counted, what it allows over the span for its instances): the latest
    calls the mock answered against the window's limit x periods x instances."""
    span = end - began
    binding = next((w for w in quota.windows if w.name == binding_name), None)
    requests_by_token = {e: b["requests"] - b["rate_limited"] for t in stats["tokens"].values() for e, b in t.items()}
    latest = sum(v for e, v in requests_by_token.items() if any(k in e for k in LATEST_ENDPOINTS))
    if binding is not None and binding.scope == "device":  # a bulk call counts once per device it carries
        latest = sum(b["requests"] - b["rate_limited"] for b in stats["devices"].values())
    if binding is None:
        return latest, None
    if binding.calendar:
        start, stop = period_bounds(binding, began)
        periods = span / (stop - start)
    else:
        periods = span / binding.period_s
    instances = {
        "key": 1,
        "endpoint": 1,
        "site": len({d.site for d in devices}),
        "device": len(devices),
        "batch": len({d.batch_key for d in devices}),
    }[binding.scope]
    return latest, binding.limit * periods * instances


def report(brand, quota, current, intervals, devices, sends, readings, failures, stats, began, end, speed):
    span = end - began
    latest, allowed = budget_use(quota, current.binding, devices, stats, began, end)
    expected_rounds = math.floor(span / current.interval_s)
    missed = 0
    for device in devices:
        stamps = sends.get(device.id, [])
        late = sum(1 for a, b in zip(stamps, stamps[1:]) if b - a > 2 * current.interval_s)
        missed += late + failures.get(device.id, 0) + max(0, expected_rounds - len(stamps) - 1)
    return {
        "brand": brand,
        "driver": "planner",
        "sites": len({d.site for d in devices}),
        "devices": len(devices),
        "simulated_h": round(span / 3600, 2),
        "speed": speed,
        "interval_s": round(current.interval_s, 1),
        "intervals_planned": sorted({round(i, 1) for i in intervals}),
        "binding": current.binding,
        **quota_figures(stats, latest, allowed),
        "polls": sum(len(v) for v in sends.values()),
        "readings": sum(readings.values()),
        "readings_per_s": round(sum(readings.values()) / max(1e-9, span / speed), 1),
        "slots_missed": missed,
        "last_error": failures.get("_last_error"),
    }


# -- the real thing: a pollers worker (BrandPoller + QuotaBudget in Redis) polls ----------------------------
# The fleet is stored as POST /inverters stores it (models.inverters), in a process with the bench's settings:
# the web process's onboarding lists a brand's whole account per connection, and Growatt v1's 50 plants are 51
# list calls at one per 5 s, which is onboarding, not what is measured.
ONBOARD = """
import json, sys
from models import accounts, inverters
from models.db import open_database
from models.settings import get_settings

fleet = json.load(sys.stdin)


def store():
    owner = accounts.account_by_name("bench")
    connection = inverters.connection_for(fleet["brand"], fleet["base_url"], fleet["credentials"])
    for d in fleet["devices"]:
        inverters.onboard(owner.id, connection, d["serial"], d["device_type"], d["model"], d["plant_id"], d["timezone"])
    return connection.id


print(open_database(get_settings().database_url).call(store))
"""


def run_actor(brand: str, sites: int, speed: float, span_s: float, start: str, workdir: Path) -> dict:
    """Store the generated fleet's inverters, then let `python -m actors --role pollers` poll them on a poll
    clock aligned to the mock's (POLL_CLOCK_SPEED/ANCHOR), asking for the fastest interval."""
    from common import start_redis_server, wait_http

    mock = Mock(brand, sites, speed, start)
    procs: list[subprocess.Popen] = []
    try:
        redis_proc, redis_port = start_redis_server(workdir)
        procs.append(redis_proc)
        cls = ADAPTERS[brand]
        base_url = mock.url + PATH_PREFIX.get(brand, "")
        adapter = cls(base_url, dict(CREDENTIALS[brand]), LOOPBACK, timeout_s=10)
        listed = onboard(adapter, speed)  # the serials to onboard (and Enphase's rotated refresh token)
        credentials = {name: adapter.credentials.get(name, value) for name, value in CREDENTIALS[brand].items()}
        adapter.close()
        clock = mock.clock()
        metrics_port, web_port = free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "ALLOWED_TARGET_NETWORKS": "127.0.0.0/8",
            "POLL_CLOCK_SPEED": repr(speed),
            "POLL_CLOCK_ANCHOR": repr(clock.anchor),
            f"{cls.settings_prefix.upper()}_POLL_INTERVAL_S": "0.1",  # as fast as the quota allows
            "METRICS_PORT": str(metrics_port),
        }
        key = create_account(env, ROOT)
        fleet = {
            "brand": brand,
            "base_url": base_url,
            "credentials": credentials,
            "devices": [
                {
                    "serial": d.serial,
                    "device_type": d.device_type,
                    "model": d.model,
                    "plant_id": d.plant_id,
                    "timezone": d.timezone,
                }
                for d in listed.values()
            ],
        }
        onboarded = subprocess.run(
            [sys.executable, "-c", ONBOARD],
            cwd=ROOT,
            env=env,
            input=json.dumps(fleet),
            capture_output=True,
            text=True,
        )
        if onboarded.returncode:
            raise SystemExit(f"bench: onboarding failed: {onboarded.stderr[-2000:]}")
        connection_id = onboarded.stdout.strip().splitlines()[-1]
        procs.append(subprocess.Popen([sys.executable, "-m", "web"], cwd=ROOT, env={**env, "PORT": str(web_port)}))
        web = f"http://127.0.0.1:{web_port}"
        wait_http(web + "/healthz", proc=procs[-1])
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {key}"
        requests.post(mock.url + "/admin/stats/reset", timeout=5)  # measure the polling: onboarding is done
        procs.append(subprocess.Popen([sys.executable, "-m", "actors", "--role", "pollers"], cwd=ROOT, env=env))
        worker = procs[-1]
        while not mock.stats()["totals"]["requests"]:  # the span starts with the worker's first call
            if worker.poll() is not None:
                raise SystemExit(f"bench: the pollers' worker exited with status {worker.returncode}")
            time.sleep(0.02)
        began, real_began = clock.now(), time.time()
        end = began + span_s
        quota = cls.quota
        calendar = [period_bounds(w, began)[1] for w in quota.windows if w.calendar]
        end = min([end] + [stop - 600 for stop in calendar if stop - 600 > began])
        while clock.now() < end:
            if worker.poll() is not None:
                raise SystemExit(f"bench: the pollers' worker exited with status {worker.returncode}")
            time.sleep(min(1.0, max(0.01, clock.real_seconds(end - clock.now()))))
        stats = mock.stats()
        real_s = time.time() - real_began
        worker_metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        view = api.get(f"{web}/connections/{connection_id}", timeout=10).json()
        devices = [
            PlanDevice(
                s, str(d.plant_id or s), cls.batch_key(PolledDevice(s, d.device_type, d.timezone)), d.device_type
            )
            for s, d in sorted(listed.items())
        ]
        latest, allowed = budget_use(quota, view["binding_window"], devices, stats, began, end)
        published = _metric(worker_metrics, "readings_published_total")
        # The mock counts a device once per request that carries it (SolarEdge's serial without the site id);
        # a poll sends quota.requests_for(its type) requests.
        polls = [
            (stats["devices"].get(s) or stats["devices"].get(s.rpartition(":")[2]) or {}).get("requests", 0)
            // quota.requests_for((d.device_type,))
            for s, d in listed.items()
        ]
        return {
            "brand": brand,
            "driver": "actor",
            "devices": len(listed),
            "simulated_h": round((end - began) / 3600, 2),
            "speed": speed,
            "interval_s": view["planned_interval_s"],
            "binding": view["binding_window"],
            **quota_figures(stats, latest, allowed),
            "polls_per_device": [min(polls), max(polls)],
            "expected_polls_per_device": math.floor((end - began) / view["planned_interval_s"]),
            "readings": published,
            "readings_per_s": round(published / real_s, 1),
            "throttled_replies_seen": _metric(worker_metrics, "brand_rate_limited_total"),
            "calls_held_by_budget": _metric(worker_metrics, "quota_deferred_total"),
            "throttling": view["throttling"],
            # A device polled in fewer rounds than the others missed a slot (the first round is spread over
            # one interval, so one poll fewer is its place in it); the span over the polls is the real cycle.
            "slots_missed": sum(max(0, max(polls) - 1 - p) for p in polls),
            "mean_cycle_s": round((end - began) / (sum(polls) / len(polls)), 1),
        }
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        mock.stop()


def _metric(text: str, suffix: str) -> float:
    """The sum of a metric's samples (every label set) in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith(suffix)
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--brands", default="sandbox,growatt_v4,growatt_v1,solaredge,fusionsolar,enphase")
    p.add_argument("--sites", type=int, default=50)
    p.add_argument("--speed", type=float, default=150.0, help="simulated seconds per real second (a day)")
    p.add_argument("--month-speed", type=float, default=20000.0, help="the same for Enphase's month")
    p.add_argument(
        "--jitter",
        type=float,
        default=JITTER_REAL_S,
        help="real seconds of clock jitter the plan allows for on rolling windows (the poller's: 0.1)",
    )
    p.add_argument("--hours", type=float, default=23.5, help="simulated hours (day brands), inside one day")
    p.add_argument("--days", type=float, default=29.5, help="simulated days for Enphase, inside one month")
    p.add_argument(
        "--driver",
        choices=("actor", "planner"),
        default="actor",
        help="actor: web onboards the fleet and a pollers worker polls it (BrandPoller, QuotaBudget in Redis); "
        "planner: this process polls with the planner and the schedule alone",
    )
    args = p.parse_args()
    results = []
    for brand in args.brands.split(","):
        month = brand == "enphase"
        started = time.time()
        speed = args.month_speed if month else args.speed
        span = args.days * 86400 if month else args.hours * 3600
        if args.driver == "actor":
            with tempfile.TemporaryDirectory(prefix="planner-bench-") as workdir:
                result = run_actor(brand, args.sites, speed, span, MONTH_START if month else DAY_START, Path(workdir))
        else:
            result = run(brand, args.sites, speed, span, MONTH_START if month else DAY_START, args.jitter)
        result["wall_s"] = round(time.time() - started, 1)
        if args.driver == "planner":
            result["jitter_s"] = args.jitter
        print(json.dumps(result), flush=True)
        results.append(result)
    bad = [r["brand"] for r in results if r["violations"] or (r["budget_use_pct"] or 0) < 90 or r["slots_missed"]]
    print(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z: {len(results) - len(bad)}/{len(results)} brands within "
        f"every limit, >= 90 % of the binding window used, no slot missed" + (f"; not: {', '.join(bad)}" if bad else "")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
