"""The alert engine's batched episode writes (models/alerts.py apply_changes): set-based, yet exactly one
episode per rule and inverter and one webhook job per alert, phase and subscribed endpoint, whatever a batch
holds (episodes opened already, the same episode twice, an opening after its own clearing, a row the
database refuses). In process, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import redis

import actors.alerts as engine_module
from actors.alerts import AlertEngine, Rule
from models import alerts, jobs, webhooks
from models.accounts import create_account
from models.base import iso
from models.db import close_database, open_database
from models.ids import new_id
from models.jobs import Job
from models.schema import ensure_schema
from tests.helpers import sandbox_inverters

OPENING, CLEARING, SUMMARY = alerts.OPENING, alerts.CLEARING, alerts.SUMMARY


@pytest.fixture(params=["sqlite", "postgres"])
def fleet(request):
    """An account with 4 inverters, a battery_low and a fault rule, and three endpoints: every event type,
    battery.low only, and one subscribed to nothing a battery sends."""
    url = request.getfixturevalue("database_url" if request.param == "sqlite" else "postgres_server_url")
    owner = open_database(url)
    ensure_schema(owner)

    def setup():
        account, _ = create_account(f"batch-writes-{new_id()}")  # PostgreSQL's database is the session's
        ids = [
            inverter.id
            for inverter in sandbox_inverters(account.id, [f"SBX-{n}" for n in range(4)], api_key=account.id)
        ]
        webhooks.create_endpoint(account.id, "http://127.0.0.1:9/all", "", list(webhooks.EVENT_TYPES))
        webhooks.create_endpoint(account.id, "http://127.0.0.1:9/low", "", ["battery.low"])
        webhooks.create_endpoint(account.id, "http://127.0.0.1:9/other", "", ["inverter.offline"])
        battery = alerts.create_rule(account.id, None, "battery_low", {"below_pct": 20.0, "clear_above_pct": 30.0})
        fault = alerts.create_rule(account.id, None, "fault", {})
        return ids, Rule.of(battery), Rule.of(fault)

    ids, battery, fault = owner.write(setup)
    yield owner, ids, battery, fault
    close_database()


def opening(rule, inverter_id: str, alert_id: str | None = None, soc: float = 5.0) -> tuple:
    return (OPENING, rule, inverter_id, "SBX", alert_id or new_id(), time.time(), {"battery_soc_pct": soc})


def stored(owner, account_id: str):
    """(alert rows, job idempotency keys) of the account as the database holds them."""
    return owner.call(
        lambda: (
            list(alerts.Alert.select().where(alerts.Alert.account == account_id).order_by(alerts.Alert.opened_at)),
            sorted(key for (key,) in Job.select(Job.idempotency_key).where(Job.account == account_id).tuples()),
        )
    )


def test_a_batch_with_episodes_open_already_and_one_twice_opens_each_once_with_one_job_per_endpoint(fleet):
    owner, ids, battery, _ = fleet
    [earlier] = owner.write(alerts.apply_changes, [opening(battery, ids[0])])
    assert earlier is not None and earlier[2] == 2, "two endpoints are subscribed to battery.low"

    twice = new_id()
    batch = [
        opening(battery, ids[0]),  # open already (a restarted engine, or another one)
        opening(battery, ids[1], twice),
        opening(battery, ids[2]),
        opening(battery, ids[1]),  # the same rule and inverter again, another alert id
        opening(battery, ids[1], twice),  # the very same opening again
        opening(battery, ids[3]),
    ]
    results = owner.write(alerts.apply_changes, batch)
    assert [r is not None for r in results] == [False, True, True, False, False, True]
    assert [r[2] for r in results if r] == [2, 2, 2]
    assert results[1][0].id == twice and results[1][1]["type"] == "battery.low"
    assert results[1][1]["data"]["alert_id"] == twice and results[1][1]["data"]["values"] == {"battery_soc_pct": 5.0}

    rows, keys = stored(owner, battery.account_id)
    assert sorted(row.inverter_id for row in rows) == sorted(ids) and all(row.open_slot == "open" for row in rows)
    assert len(keys) == 8 and len(set(keys)) == 8
    assert {key.rsplit(":", 1)[0] for key in keys} == {f"alert:{row.id}:opened" for row in rows}

    again = owner.write(alerts.apply_changes, batch)  # the whole batch written again, as after a lost answer
    assert again == [None] * len(batch)
    assert stored(owner, battery.account_id) == (rows, keys)


def test_open_clear_and_open_again_in_one_batch_keep_their_order(fleet):
    owner, ids, battery, fault = fleet
    first, second = new_id(), new_id()
    results = owner.write(
        alerts.apply_changes,
        [
            opening(battery, ids[0], first),
            (CLEARING, first, "SBX", time.time(), {"battery_soc_pct": 35.0}),
            opening(battery, ids[0], second, soc=4.0),
            (CLEARING, new_id(), "SBX", time.time(), {}),  # no such open episode
            (OPENING, fault, ids[0], "SBX", new_id(), time.time(), {"status": "fault"}),
        ],
    )
    assert results[3] is None and all(results[i] is not None for i in (0, 1, 2, 4))
    assert results[1][0].id == first and results[1][1]["type"] == "battery.recovered"
    assert results[1][1]["data"]["values"] == {"battery_soc_pct": 5.0}, "the message carries the opening's values"
    assert results[1][1]["data"]["cleared_values"] == {"battery_soc_pct": 35.0}
    assert [r[2] for r in results if r] == [2, 1, 2, 1], "battery.recovered and inverter.fault: the all-events one"

    rows, keys = stored(owner, battery.account_id)
    by_id = {row.id: row for row in rows}
    assert by_id[first].open_slot is None and by_id[first].cleared_values == {"battery_soc_pct": 35.0}
    assert by_id[second].open_slot == "open" and by_id[second].values == {"battery_soc_pct": 4.0}
    assert len(keys) == 6 and len(set(keys)) == 6
    assert sum(key.startswith(f"alert:{first}:cleared:") for key in keys) == 1


def test_a_clear_of_a_fault_queues_nothing_and_a_summary_is_once_per_day(fleet):
    owner, ids, _, fault = fleet
    opened = owner.write(alerts.apply_changes, [(OPENING, fault, ids[0], "SBX", new_id(), time.time(), {})])[0]
    cleared = owner.write(alerts.apply_changes, [(CLEARING, opened[0].id, "SBX", time.time(), {"status": "normal"})])
    assert cleared[0] is not None and cleared[0][2] == 0 and cleared[0][1]["type"] == "inverter.fault"
    summary_rule = Rule.of(
        owner.write(alerts.create_rule, fault.account_id, None, "daily_summary", {"latitude": 52.0, "longitude": 4.9})
    )
    sunset = 1781726714.0
    day = [(SUMMARY, summary_rule, inverter_id, "SBX", sunset, {"energy_today_wh": 1.0}) for inverter_id in ids]
    results = owner.write(alerts.apply_changes, [*day, day[0]])
    assert [r is not None for r in results] == [True] * 4 + [False]
    assert owner.write(alerts.apply_changes, day) == [None] * 4


def test_a_row_the_database_refuses_leaves_the_others_of_its_batch_written(fleet):
    owner, ids, battery, _ = fleet
    batch = [opening(battery, ids[0]), opening(battery, "no-such-inverter"), opening(battery, ids[1])]
    results = owner.write(alerts.apply_changes, batch)
    assert [r is not None for r in results] == [True, False, True]
    rows, keys = stored(owner, battery.account_id)
    assert sorted(row.inverter_id for row in rows) == sorted(ids[:2]) and len(keys) == 4


def test_the_batch_job_insert_answers_repeats_and_conflicts_as_one_by_one_would(fleet):
    """jobs.insert_jobs, which the alerts' webhooks and POST /jobs/batch share, on both databases."""
    owner, _, battery, _ = fleet
    account_id = battery.account_id

    def spec(body: str) -> dict:
        return {
            "url": "http://127.0.0.1:9/hook",
            "host": "127.0.0.1",
            "method": "POST",
            "headers": {},
            "body": body.encode(),
            "body_kind": "text",
            "timeout_s": 5.0,
            "max_attempts": 3,
            "backoff": {},
            "run_at": None,
        }

    [(earlier, created)] = owner.write(jobs.insert_jobs, account_id, [(spec("a"), "k-old")])
    assert created
    results = owner.write(
        jobs.insert_jobs,
        account_id,
        [
            (spec("a"), "k-old"),  # a repeat of an earlier request
            (spec("b"), "k-old"),  # the same key, another request
            (spec("c"), "k-new"),
            (spec("c"), "k-new"),  # a repeat within the batch
            (spec("d"), "k-new"),
            (spec("e"), None),
        ],
    )
    assert results[0] == (earlier, False) and results[0][0].id == earlier.id
    assert isinstance(results[1], jobs.IdempotencyConflict) and results[1].job_id == earlier.id
    new, created = results[2]
    assert created and results[3][0].id == new.id and results[3][1] is False
    assert isinstance(results[4], jobs.IdempotencyConflict) and results[4].job_id == new.id
    assert results[5][1] is True
    stored_jobs = owner.call(
        lambda: {job.idempotency_key: bytes(job.body) for job in Job.select().where(Job.account == account_id)}
    )
    assert stored_jobs == {"k-old": b"a", "k-new": b"c", None: b"e"}


def test_the_engine_writes_a_flush_in_chunks_each_episode_once(fleet, redis_url, monkeypatch):
    """Chunks of 2 changes: an opening and its clearing land in different transactions, an episode another
    engine opened is refused and learnt; every alert once, with one job per subscribed endpoint."""
    owner, ids, battery, _ = fleet
    monkeypatch.setattr(engine_module, "WRITE_CHUNK", 2)
    [theirs] = owner.write(alerts.apply_changes, [opening(battery, ids[3])])
    engine = AlertEngine(
        SimpleNamespace(replay_maxlen=100, ingest_maxlen=1000),
        owner,
        redis.Redis.from_url(redis_url, decode_responses=True),
    )
    try:
        engine._reload()
        engine.open.pop((battery.id, ids[3]))  # as if it had read the episodes before the other engine opened it
        for inverter_id, soc in [*((i, 5.0) for i in ids), (ids[0], 50.0), (ids[1], 6.0)]:
            data = {"time": iso(time.time()), "status": "normal", "battery_soc_pct": soc}
            engine._event({"event": "reading", "inverter_id": inverter_id, "data": data})
        assert len(engine.changes) == 5
        engine._flush()
    finally:
        engine.pvlib_pool.kill()
    rows, keys = stored(owner, battery.account_id)
    assert len(rows) == 4 and {row.inverter_id for row in rows} == set(ids)
    assert [row.inverter_id for row in rows if row.open_slot is None] == [ids[0]]
    assert engine.open[(battery.id, ids[3])] == theirs[0].id, "the refused opening made it learn the other's"
    assert len(keys) == 4 * 2 + 1 and len(set(keys)) == len(keys), "battery.low twice each, recovered once"
