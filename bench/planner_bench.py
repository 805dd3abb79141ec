"""Quota planner benchmark: per brand, 50 sites for one simulated day (Enphase: one simulated month) against
the mock's `--profile real` (the brands' documented limits) counting its limits on its own accelerated clock
(`--limits-clock sim`).

    .venv/bin/python bench/planner_bench.py [--brands solaredge,enphase,...] [--sites 50] [--speed 300]
                                            [--month-speed 20000]

Each brand gets its own mock process and a generated fleet of 50 plants (one device each, every fifth with a
battery). The bench onboards the fleet with the brand's adapter (one device-list call), then polls it as the
BrandPoller does: the planner (models/brands/planner.py) makes the plan from the adapter's quota, the poll
schedule (actors/schedule.py) says which calls are due on a ScaledClock aligned to the mock's simulated clock,
and the adapter sends them (at most the quota's concurrency at once; the plan is made again when a calendar
window resets). Not exercised here: the Redis budget gate and the actor itself (tests/planner cover them).

Reported per brand: limit violations (the mock's throttling replies: must be 0); budget use of the binding
window (requests counted by the mock's own stats against what the window allows over the span, target at
least 90 %); and slots missed (a planned poll of a device that was late by more than one interval, or that
brought no reading).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
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
from common import free_port  # noqa: E402

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
            sent_at = clock.now()  # as the BrandPoller: the next call is due one interval after this one left
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
                schedule.finished(entry, sent_at)
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


def report(brand, quota, current, intervals, devices, sends, readings, failures, stats, began, end, speed):
    span = end - began
    binding = next((w for w in quota.windows if w.name == current.binding), None)
    # What the binding window allows over the span for its busiest instance, and what the mock counted.
    requests_by_token = {e: b["requests"] for t in stats["tokens"].values() for e, b in t.items()}
    latest = sum(
        v
        for e, v in requests_by_token.items()
        if any(
            k in e
            for k in (
                "latest",
                "last_data",
                "queryLastData",
                "currentPowerFlow",
                "overview",
                "summary",
                "battery",
                "getDevRealKpi",
            )
        )
    )
    if binding is not None and binding.scope == "device":  # a bulk call counts once per device it carries
        latest = sum(b["requests"] - b["rate_limited"] for b in stats["devices"].values())
    allowed = None
    if binding is not None:
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
        allowed = binding.limit * periods * instances
    expected_rounds = math.floor(span / current.interval_s)
    missed = 0
    for device in devices:
        stamps = sends.get(device.id, [])
        late = sum(1 for a, b in zip(stamps, stamps[1:]) if b - a > 2 * current.interval_s)
        missed += late + failures.get(device.id, 0) + max(0, expected_rounds - len(stamps) - 1)
    return {
        "brand": brand,
        "sites": len({d.site for d in devices}),
        "devices": len(devices),
        "simulated_h": round(span / 3600, 2),
        "speed": speed,
        "interval_s": round(current.interval_s, 1),
        "intervals_planned": sorted({round(i, 1) for i in intervals}),
        "binding": current.binding,
        "requests": stats["totals"]["requests"],
        "violations": stats["totals"]["rate_limited"],
        "latest_requests": latest,
        "allowed": None if allowed is None else round(allowed),
        "budget_use_pct": None if not allowed else round(100 * latest / allowed, 1),
        "polls": sum(len(v) for v in sends.values()),
        "readings": sum(readings.values()),
        "slots_missed": missed,
        "last_error": failures.get("_last_error"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--brands", default="sandbox,growatt_v4,growatt_v1,solaredge,fusionsolar,enphase")
    p.add_argument("--sites", type=int, default=50)
    p.add_argument("--speed", type=float, default=300.0, help="simulated seconds per real second (a day)")
    p.add_argument("--month-speed", type=float, default=20000.0, help="the same for Enphase's month")
    p.add_argument(
        "--jitter",
        type=float,
        default=JITTER_REAL_S,
        help="real seconds of clock jitter the plan allows for on rolling windows (the poller's: 0.1)",
    )
    p.add_argument("--hours", type=float, default=23.5, help="simulated hours (day brands), inside one day")
    p.add_argument("--days", type=float, default=29.5, help="simulated days for Enphase, inside one month")
    args = p.parse_args()
    results = []
    for brand in args.brands.split(","):
        month = brand == "enphase"
        started = time.time()
        result = run(
            brand,
            args.sites,
            args.month_speed if month else args.speed,
            args.days * 86400 if month else args.hours * 3600,
            MONTH_START if month else DAY_START,
            args.jitter,
        )
        result["wall_s"] = round(time.time() - started, 1)
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
