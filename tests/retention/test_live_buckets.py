"""The buckets not rolled up yet, kept between requests (energy.LiveBuckets): brought up to date from the
newest readings only, they always equal the computation from all raw readings, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import date

import pytest

from models import energy
from models.accounts import create_account
from models.inverters import Reading
from tests.retention.conftest import add_inverter, add_readings

KOLKATA = energy.zone_of("Asia/Kolkata")  # hours start at :30 UTC
DAY = date(2024, 3, 5)


def power(t: float) -> dict:
    return {"pv_power_w": 1500 + 1000 * math.sin(t / 1700), "battery_power_w": 400 * math.cos(t / 900)}


@pytest.fixture
def inverter(store):
    account, _ = store.write(create_account, "live-buckets")
    return add_inverter(store, account.id, "Asia/Kolkata")


class RecordingFetch:
    """Runs each query on the database owner, noting which ones ran."""

    def __init__(self, owner):
        self.owner, self.reads = owner, []

    def __call__(self, fn, *args):
        if fn is energy._readings:
            self.reads.append(args[1])  # where the read of raw readings started
        return self.owner.call(fn, *args)


@pytest.mark.parametrize("period", energy.PERIODS)
def test_kept_buckets_equal_the_computation_from_all_readings_as_readings_arrive(store, inverter, period):
    start, end = energy.day_bounds(DAY, KOLKATA)
    live, fetch = energy.LiveBuckets(), RecordingFetch(store)

    def both():
        kept = live.compute(inverter, KOLKATA, period, DAY, DAY + date.resolution, fetch)
        assert kept == energy.compute(inverter, KOLKATA, period, DAY, DAY + date.resolution, store.call)
        return kept

    assert both() == []
    add_readings(store, inverter, [start + 60 * i for i in range(300)], power)  # five hours at 60 s
    assert len(both()) == (5 if period == energy.HOUR else 1)
    newest = start + 60 * 299

    add_readings(store, inverter, [newest + 60 * i for i in range(1, 100)], power)
    fetch.reads.clear()
    both()
    # Only the hour holding the previous newest reading onward was read again (the day is one bucket).
    hour_start = max(s for s, _ in energy.bucket_bounds(period, DAY, DAY, KOLKATA) if s <= newest)
    assert fetch.reads == [hour_start - energy.MAX_GAP_S]

    fetch.reads.clear()
    both()  # nothing new: nothing read again
    assert fetch.reads == []

    newest += 60 * 99
    add_readings(store, inverter, [newest + 1200, newest + 1800], power)  # after a gap longer than MAX_GAP_S
    add_readings(store, inverter, [end + 30], power)  # into the next local day
    both()

    add_readings(store, inverter, [start + 90], {"pv_power_w": 9000.0})  # a late reading, between two others
    fetch.reads.clear()
    kept = both()
    assert fetch.reads == [start - energy.MAX_GAP_S]  # computed afresh
    assert kept[0]["samples"] == (61 if period == energy.HOUR else 402)

    store.write(lambda: Reading.delete().where(Reading.time < start + 3600).execute())  # as a purge would
    kept = both()
    assert (kept[0]["start"] if period == energy.HOUR else kept[0]["samples"]) == (
        start + 3600 if period == energy.HOUR else 341
    )


def test_days_pushed_out_by_newer_entries_are_computed_afresh(store, inverter):
    bounds = energy.bucket_bounds(energy.HOUR, DAY, DAY, KOLKATA)
    live, fetch = energy.LiveBuckets(max_entries=1), RecordingFetch(store)
    add_readings(store, inverter, [bounds[0][0] + 300 * i for i in range(40)], power)
    first = live.compute(inverter, KOLKATA, energy.HOUR, DAY, DAY, fetch)
    live.compute(inverter, KOLKATA, energy.DAY, DAY, DAY, fetch)  # the only entry now: the hourly one is dropped
    fetch.reads.clear()
    assert live.compute(inverter, KOLKATA, energy.HOUR, DAY, DAY, fetch) == first
    assert fetch.reads == [bounds[0][0] - energy.MAX_GAP_S]
