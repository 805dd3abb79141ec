"""The rollup computation itself (a pure function): energy additivity, DST days, half-hour zones."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.energy import DAY, HOUR, QUANTITIES, bucket_bounds, day_bounds, rollup

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
KOLKATA = ZoneInfo("Asia/Kolkata")
ZONES = [AMSTERDAM, KOLKATA, ZoneInfo("America/New_York"), ZoneInfo("Africa/Lagos"), ZoneInfo("Asia/Kathmandu")]
DST_DAYS = [date(2024, 3, 31), date(2024, 10, 27), date(2024, 3, 10), date(2024, 11, 3), date(2024, 6, 21)]


@pytest.mark.parametrize("day, hours", [(date(2024, 3, 31), 23), (date(2024, 10, 27), 25), (date(2024, 6, 21), 24)])
def test_amsterdam_dst_days_have_23_and_25_hour_buckets(day, hours):
    start, end = day_bounds(day, AMSTERDAM)
    assert end - start == hours * 3600
    bounds = bucket_bounds(HOUR, day, day, AMSTERDAM)
    assert len(bounds) == hours
    assert bounds[0][0] == start and bounds[-1][1] == end
    assert all(b - a == 3600 for a, b in bounds)
    assert all(a_end == b_start for (_, a_end), (b_start, _) in zip(bounds, bounds[1:]))
    labels = [datetime.fromtimestamp(a, AMSTERDAM).strftime("%H:%M") for a, _ in bounds]
    if hours == 23:
        assert "02:00" not in labels
    if hours == 25:
        assert labels.count("02:00") == 2


def test_kolkata_hours_start_on_the_local_whole_hour_at_half_past_utc():
    day = date(2024, 6, 21)
    bounds = bucket_bounds(HOUR, day, day, KOLKATA)
    assert len(bounds) == 24
    assert all(datetime.fromtimestamp(a, KOLKATA).minute == 0 for a, _ in bounds)
    assert all(a % 3600 == 1800 for a, _ in bounds)
    assert datetime.fromtimestamp(bounds[0][0], KOLKATA).hour == 0


def test_constant_power_over_a_whole_dst_day_is_power_times_its_hours():
    day = date(2024, 10, 27)
    start, end = day_bounds(day, AMSTERDAM)
    readings = [
        (t, {"pv_power_w": 1000.0, "battery_power_w": -500.0}) for t in range(int(start) - 300, int(end) + 301, 300)
    ]
    [bucket] = rollup(readings, bucket_bounds(DAY, day, day, AMSTERDAM))
    assert bucket.energy_wh["pv"] == pytest.approx(25_000)
    assert bucket.energy_wh["discharge"] == pytest.approx(12_500)
    assert bucket.energy_wh["charge"] == 0
    assert bucket.samples == 25 * 12


def test_a_gap_longer_than_the_limit_counts_as_no_data():
    day = date(2024, 6, 21)
    start, _ = day_bounds(day, AMSTERDAM)
    readings = [
        (start + 600, {"pv_power_w": 1200.0}),
        (start + 600 + 3600, {"pv_power_w": 1200.0}),
        (start + 600 + 3900, {"pv_power_w": 1200.0}),
    ]
    [bucket] = rollup(readings, bucket_bounds(DAY, day, day, AMSTERDAM), max_gap_s=900)
    assert bucket.energy_wh["pv"] == pytest.approx(100.0)  # only the last 300 s at 1200 W
    assert bucket.power["pv_power_w"][:2] == [1200.0, 1200.0]


power = st.one_of(st.none(), st.floats(min_value=-5000, max_value=5000, allow_nan=False))


@st.composite
def day_of_readings(draw):
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.sampled_from(DST_DAYS))
    start, end = day_bounds(day, zone)
    offsets = draw(
        st.lists(
            st.floats(min_value=-1200, max_value=end - start + 1200, allow_nan=False),
            min_size=0,
            max_size=200,
            unique=True,
        )
    )
    readings = []
    for offset in sorted(offsets):
        readings.append(
            (
                start + offset,
                {
                    "pv_power_w": draw(power),
                    "load_power_w": draw(power),
                    "grid_import_w": draw(power),
                    "grid_export_w": draw(power),
                    "battery_power_w": draw(power),
                },
            )
        )
    return zone, day, readings, draw(st.sampled_from([300, 900, 3600]))


@settings(max_examples=150, deadline=None)
@given(day_of_readings())
def test_a_days_energy_is_the_sum_of_its_hours(case):
    zone, day, readings, max_gap = case
    [whole] = rollup(readings, bucket_bounds(DAY, day, day, zone), max_gap)
    hours = rollup(readings, bucket_bounds(HOUR, day, day, zone), max_gap)
    assert len(hours) in (23, 24, 25)
    assert sum(h.samples for h in hours) == whole.samples
    for quantity in QUANTITIES:
        assert sum(h.energy_wh[quantity] for h in hours) == pytest.approx(whole.energy_wh[quantity], rel=1e-9, abs=1e-6)
    for name, (mn, mx, _total, count) in whole.power.items():
        parts = [h.power[name] for h in hours if name in h.power]
        assert min(p[0] for p in parts) == mn and max(p[1] for p in parts) == mx
        assert sum(p[3] for p in parts) == count


@settings(max_examples=100, deadline=None)
@given(day_of_readings())
def test_two_consecutive_days_split_energy_without_loss(case):
    zone, day, readings, max_gap = case
    both = bucket_bounds(DAY, day, day + timedelta(days=1), zone)
    [whole] = rollup(readings, [(both[0][0], both[1][1])], max_gap)
    first, second = rollup(readings, both, max_gap)
    for quantity in QUANTITIES:
        assert first.energy_wh[quantity] + second.energy_wh[quantity] == pytest.approx(
            whole.energy_wh[quantity], rel=1e-9, abs=1e-6
        )
