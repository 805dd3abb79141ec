"""The alert engine's decisions, in process: fault, battery hysteresis and low production.

The decisions are pure functions (models/alerts.py); the engine only does their I/O. Hypothesis drives
them with flapping values: one episode opens, nothing more happens until it clears, and a clear needs the
value past the hysteresis margin. The low-production rule is run over a simulated day of the mock's own
simulator at several latitudes: it fires for the shaded device and stays silent for the healthy ones.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_inverter.config import parse_fleet
from mock_inverter.simulator import Simulator
from models import alerts
from models.clearsky import ClearSky, Site, Sunsets


def run(actions_of, values) -> list[tuple[str, object]]:
    """Feed values one by one, keeping the open/closed state as the engine does; the actions taken."""
    is_open, taken = False, []
    for value in values:
        action = actions_of(value, is_open)
        if action is not None:
            taken.append((action, value))
            is_open = action == alerts.OPEN_IT
    return taken


def assert_alternating(taken):
    assert [a for a, _ in taken] == [alerts.OPEN_IT, alerts.CLEAR_IT] * (len(taken) // 2) + [alerts.OPEN_IT] * (
        len(taken) % 2
    )


statuses = st.lists(st.sampled_from(["normal", "waiting", "fault", None, "offline"]), max_size=200)


@given(statuses)
def test_fault_opens_once_per_fault_and_clears_on_the_next_other_status(values):
    taken = run(alerts.fault_action, values)
    assert_alternating(taken)
    assert all(value == "fault" for action, value in taken if action == alerts.OPEN_IT)
    assert all(value not in ("fault", None) for action, value in taken if action == alerts.CLEAR_IT)
    faults = sum(1 for before, now in zip([None] + values, values) if now == "fault" and before != "fault")
    assert sum(1 for action, _ in taken if action == alerts.OPEN_IT) <= faults


BATTERY = {"below_pct": 20.0, "clear_above_pct": 30.0}


@given(st.lists(st.floats(0, 100) | st.none(), max_size=300))
def test_battery_low_flapping_around_the_threshold_gives_one_open_per_clear(values):
    taken = run(lambda soc, is_open: alerts.battery_action(soc, BATTERY, is_open), values)
    assert_alternating(taken)
    assert all(v < 20 for a, v in taken if a == alerts.OPEN_IT) and all(
        v > 30 for a, v in taken if a == alerts.CLEAR_IT
    )


@given(st.lists(st.floats(15, 30), min_size=1, max_size=300))
def test_battery_low_flapping_between_the_thresholds_never_clears(values):
    """Once open, a state of charge wandering anywhere up to clear_above_pct is the same episode."""
    taken = run(lambda soc, is_open: alerts.battery_action(soc, BATTERY, is_open), [10.0] + values)
    assert taken == [(alerts.OPEN_IT, 10.0)]


PRODUCTION = {
    "peak_power_w": 1000.0,
    "below_pct": 50.0,
    "clear_above_pct": 60.0,
    "minutes": 1.0,
    "daylight_min_pct": 10.0,
}


@settings(max_examples=200)
@given(st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 1000)), max_size=300))
def test_production_low_flapping_gives_one_open_per_clear_and_needs_minutes_below(samples):
    """(pv, expected) every 10 s: an open needs a minute under 50 % in daylight; a clear needs over 60 %."""
    is_open, since, taken = False, None, []
    for i, (pv, expected) in enumerate(samples):
        action, since = alerts.production_action(pv, expected, PRODUCTION, is_open, since, i * 10.0)
        if action is not None:
            taken.append((action, i))
            is_open = action == alerts.OPEN_IT
    assert_alternating(taken)
    for action, i in taken:
        pv, expected = samples[i]
        assert expected >= 100.0, "nothing happens while the expectation is tiny (night, dawn, dusk)"
        if action == alerts.CLEAR_IT:
            assert pv / expected > 0.6
        else:  # the seven samples of the last minute were all in daylight and low
            assert i >= 6 and all(p < 0.5 * e and e >= 100 for p, e in samples[i - 6 : i + 1])


def test_production_low_is_silent_at_night_and_at_dawn_whatever_the_reading():
    for expected in (0.0, 50.0, 99.0):
        assert alerts.production_action(0.0, expected, PRODUCTION, False, 0.0, 3600.0) == (None, None)


# -- a simulated day at several latitudes --------------------------------------------------------
SITES = [
    ("Oslo", 59.9, 10.7, "Europe/Oslo"),
    ("Amsterdam", 52.4, 4.9, "Europe/Amsterdam"),
    ("Lagos", 6.5, 3.4, "Africa/Lagos"),
    ("Sydney", -33.9, 151.2, "Australia/Sydney"),
]
SHADED_SHARE = 0.3
DAYS = {"june": 1781654400, "december": 1797465600}  # 2026-06-17 and 2026-12-17, 00:00 UTC


def fleet():
    plants = []
    for number, (city, lat, lon, tz) in enumerate(SITES, start=1):
        azimuth = 180 if lat >= 0 else 0
        plants.append(
            {
                "plant_id": number,
                "brand": "sandbox",
                "latitude": lat,
                "longitude": lon,
                "timezone": tz,
                "devices": [
                    {
                        "serial": f"{city}-{role}",
                        "type": "inverter",
                        "pv_peak_w": 4000,
                        "tilt": 30,
                        "azimuth": azimuth,
                        "cloudiness": 0.2,
                    }
                    for role in ("healthy", "shaded")
                ],
            }
        )
    return parse_fleet({"seed": 7, "tick_s": 60.0, "plants": plants}, "test")


@pytest.mark.parametrize("day", DAYS)
def test_low_production_fires_for_the_shaded_device_only_across_a_simulated_day(day):
    devices = fleet().devices
    sim = Simulator(fleet(), float(DAYS[day]))
    sim.set_shaded({d.serial: SHADED_SHARE for d in devices if d.serial.endswith("shaded")})
    clear_sky = ClearSky()
    rules = {d.serial: {**PRODUCTION, "minutes": 15.0, "peak_power_w": d.pv_peak_w} for d in devices}
    sites = {d.serial: Site(d.latitude, d.longitude, d.pv_peak_w, d.tilt, d.azimuth) for d in devices}
    state = {d.serial: (False, None) for d in devices}
    opened: dict[str, list[float]] = {d.serial: [] for d in devices}
    lowest_healthy_ratio = 1.0
    for _ in range(24 * 60):
        sim.step()
        for device in devices:
            reading = sim.reading(device.serial)
            expected = clear_sky.expected_w(sites[device.serial], reading["t"])
            is_open, since = state[device.serial]
            action, since = alerts.production_action(
                reading["pv_power_w"], expected, rules[device.serial], is_open, since, reading["t"]
            )
            assert action != alerts.CLEAR_IT, "a shaded device never recovers, and a healthy one never opened"
            if action == alerts.OPEN_IT:
                opened[device.serial].append(reading["t"])
                is_open = True
            state[device.serial] = (is_open, since)
            if device.serial.endswith("healthy") and expected > 0.1 * device.pv_peak_w:
                lowest_healthy_ratio = min(lowest_healthy_ratio, reading["pv_power_w"] / expected)
    for device in devices:
        assert len(opened[device.serial]) == (1 if device.serial.endswith("shaded") else 0), device.serial
    assert lowest_healthy_ratio > PRODUCTION["below_pct"] / 100


@pytest.mark.parametrize("city, lat, lon, tz", SITES)
def test_daily_summary_is_due_once_per_site_day_just_after_local_sunset(city, lat, lon, tz):
    sunsets, summarized, fired = Sunsets(), None, []
    start = DAYS["june"]
    for t in range(start, start + 3 * 86400, 300):  # three days of five-minute readings
        known = sunsets.of(lat, lon, t)
        assert known is not None, "computed in line without a pool"
        day, sunset = known
        if alerts.summary_due(t, sunset, day, summarized):
            summarized = day
            fired.append((t, sunset, day))
    assert 2 <= len(fired) <= 3 and len({day for _, _, day in fired}) == len(fired)
    for t, sunset, _ in fired:
        assert 0 <= t - sunset < 300, "with the first reading after sunset"
        local = datetime.fromtimestamp(t, ZoneInfo(tz))
        assert 16 <= local.hour <= 23, f"{city}: summary at {local}, not in the evening"
