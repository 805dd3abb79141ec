"""Retention on SQLite and PostgreSQL: `python -m models purge` and the worker's purger delete finished jobs
and old readings, never unfinished jobs, and roll readings up before they go."""

from __future__ import annotations

import re
import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from models import energy, jobs
from models.inverters import Reading
from tests.helpers import run_cli, wait_until
from tests.retention.conftest import add_account, add_inverter, add_job, add_readings

HOUR = 3600.0
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def _job_ids(store) -> set[str]:
    return store.call(lambda: {row.id for row in jobs.Job.select(jobs.Job.id)})


def _attempt_job_ids(store) -> set[str]:
    return store.call(lambda: {row.job_id for row in jobs.Attempt.select(jobs.Attempt.job)})


def _arrange_jobs(store):
    """Five finished jobs two hours old, one finished a minute ago, and old unfinished ones; returns
    (ids that should go, ids that should stay)."""
    account = add_account(store)
    t = time.time()
    old = [
        add_job(store, account.id, status, t - 2 * HOUR, attempts=2)
        for status in (jobs.SUCCEEDED, jobs.SUCCEEDED, jobs.SUCCEEDED, jobs.DEAD, jobs.CANCELLED)
    ]
    recent = add_job(store, account.id, jobs.SUCCEEDED, t - 60)
    # Unfinished jobs last changed long ago, due far in the future so no worker claims them meanwhile.
    unfinished = [
        add_job(store, account.id, status, t - 5 * HOUR) for status in (jobs.PENDING, jobs.RETRYING, jobs.IN_FLIGHT)
    ]
    store.write(lambda: jobs.Job.update(due_at=t + 10 * HOUR).where(jobs.Job.id.in_(unfinished)).execute())
    return set(old), {recent, *unfinished}


def test_purge_cli_deletes_finished_jobs_older_than_the_duration_and_nothing_else(store, store_env):
    old, kept = _arrange_jobs(store)
    result = run_cli(["models", "purge", "--jobs-older-than", "1h"], store_env)
    assert result.returncode == 0, result.stderr
    assert "jobs: deleted 5 finished jobs and 10 attempts older than 3600 s" in result.stdout
    assert _job_ids(store) == kept
    assert _attempt_job_ids(store) == kept
    again = run_cli(["models", "purge", "--jobs-older-than", "30s"], store_env)
    assert "jobs: deleted 1 finished jobs and 1 attempts older than 30 s" in again.stdout, again.stdout
    assert len(_job_ids(store)) == 3 and all(
        store.call(jobs.Job.get_by_id, job_id).status not in jobs.TERMINAL for job_id in _job_ids(store)
    )


@pytest.mark.parametrize(
    "option, value",
    [
        ("--jobs-older-than", "12x"),
        ("--readings-older-than", "soon"),
        ("--jobs-older-than", "-5d"),
        ("--readings-older-than", ""),
    ],
)
def test_purge_cli_names_a_bad_duration_in_one_line_and_exits_2(env, option, value):
    result = run_cli(["models", "purge", f"{option}={value}"], env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and repr(value) in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _readings_over(store, inverter_id, first_day: date, last_day_exclusive: date, zone, step=300.0, power=None):
    start, _ = energy.day_bounds(first_day, zone)
    end, _ = energy.day_bounds(last_day_exclusive, zone)
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    add_readings(
        store,
        inverter_id,
        times,
        power
        or (
            lambda t: {
                "pv_power_w": 1000.0,
                "load_power_w": 400.0,
                "battery_power_w": 300.0 if int(t) % 600 else -300.0,
            }
        ),
    )
    return times


def test_readings_are_rolled_up_before_they_go_and_the_rollups_stay(store, store_env):
    account = add_account(store)
    inverter = add_inverter(store, account.id, "Europe/Amsterdam")
    # 2024-03-30 (24 h) and 2024-03-31 (23 h: clocks go forward) in Amsterdam, every 5 minutes.
    _readings_over(store, inverter, date(2024, 3, 30), date(2024, 4, 1), AMSTERDAM)
    before = {
        period: store.call(energy.compute, inverter, AMSTERDAM, period, date(2024, 3, 30), date(2024, 3, 31))
        for period in energy.PERIODS
    }

    result = run_cli(["models", "purge", "--readings-older-than", "1d"], store_env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"readings: rolled up 3 days, deleted \d+ readings", result.stdout), result.stdout
    # Only readings within the last 15 minutes before the rolled-up end are kept (the next day starts from them).
    left = store.call(lambda: [r.time for r in Reading.select(Reading.time).where(Reading.inverter == inverter)])
    assert len(left) <= 1

    for period in energy.PERIODS:
        kept = store.call(energy.stored, inverter, period, 0, time.time(), 1000)
        assert [(b["start"], b["end"]) for b in kept][: len(before[period])] == [
            (b["start"], b["end"]) for b in before[period]
        ]
        for stored, computed in zip(kept, before[period]):
            assert stored["pv_wh"] == pytest.approx(computed["pv_wh"])
            assert stored["power"]["pv_power_w"]["avg"] == pytest.approx(1000.0)
    days = store.call(energy.stored, inverter, energy.DAY, 0, time.time(), 1000)
    assert [d["local_start"] for d in days[:2]] == ["2024-03-30T00:00+01:00", "2024-03-31T00:00+01:00"]
    assert [d["pv_wh"] for d in days[:2]] == [pytest.approx(24_000), pytest.approx(23_000)]
    assert days[1]["charge_wh"] == pytest.approx(23 * 150)  # 300 W and 0 W samples alternating
    hours = store.call(energy.stored, inverter, energy.HOUR, *energy.day_bounds(date(2024, 3, 31), AMSTERDAM), 100)
    assert len(hours) == 23

    again = run_cli(["models", "purge", "--readings-older-than", "1d"], store_env)
    assert "readings: rolled up 0 days, deleted 0 readings" in again.stdout, again.stdout
    assert store.call(energy.stored, inverter, energy.DAY, 0, time.time(), 1000) == days


def test_readings_of_a_day_not_yet_complete_are_kept(store, store_env):
    account = add_account(store)
    inverter = add_inverter(store, account.id, None)
    t = time.time()
    add_readings(store, inverter, [t - 600 + 60 * i for i in range(10)], {"pv_power_w": 500.0})
    today = energy.local_midnight(datetime.utcfromtimestamp(t).date(), energy.zone_of(None))
    result = run_cli(["models", "purge", "--readings-older-than", "90s"], store_env)
    assert result.returncode == 0, result.stderr
    left = store.call(lambda: [r.time for r in Reading.select(Reading.time).where(Reading.inverter == inverter)])
    assert [x for x in left if x >= today] == [x for x in [t - 600 + 60 * i for i in range(10)] if x >= today]


def test_the_workers_purger_deletes_in_batches_and_keeps_unfinished_jobs(store, store_env, services):
    old, kept = _arrange_jobs(store)
    account = add_account(store, "readings-owner")
    inverter = add_inverter(store, account.id, "Asia/Kolkata")
    _readings_over(store, inverter, date(2024, 1, 10), date(2024, 1, 12), ZoneInfo("Asia/Kolkata"), step=900)
    worker = services.worker(
        {
            **store_env,
            "JOB_RETENTION_DAYS": "0.02",
            "READING_RETENTION_DAYS": "1",
            "PURGE_INTERVAL_S": "1",
            "PURGE_BATCH": "3",
        },
        role="all",
    )
    wait_until(lambda: _job_ids(store) == kept, 20, 0.1, "the purger to delete the old finished jobs")
    assert _attempt_job_ids(store) == kept
    wait_until(
        lambda: "purged 5 finished jobs and 10 attempts in 2 batches" in worker.logs(),
        10,
        0.1,
        "the purge to be logged",
    )
    wait_until(
        lambda: store.call(lambda: Reading.select().where(Reading.inverter == inverter).count()) <= 1,
        30,
        0.1,
        "the purger to delete the old readings",
    )
    days = store.call(energy.stored, inverter, energy.DAY, 0, time.time(), 1000)
    assert [d["local_start"] for d in days[:2]] == ["2024-01-10T00:00+05:30", "2024-01-11T00:00+05:30"]
    assert [d["pv_wh"] for d in days[:2]] == [pytest.approx(24_000), pytest.approx(24_000)]
    wait_until(
        lambda: re.search(r"rolled up 3 days; purged \d+ readings in \d+ batches", worker.logs()),
        10,
        0.1,
        "the readings' purge to be logged",
    )
    assert _job_ids(store) == kept  # several passes later
