"""The alert engine's episode changes when the database refuses them: undone in memory, so the next reading
decides again and nothing is lost. In process, on a real SQLite database told to refuse writes
(PRAGMA query_only) and a real Redis."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import redis

from actors.alerts import AlertEngine
from models import alerts
from models.accounts import create_account
from models.base import iso
from models.db import close_database, open_database
from models.schema import ensure_schema
from tests.helpers import sandbox_inverters


@pytest.fixture
def engine_and_inverter(database_url, redis_url):
    owner = open_database(database_url)
    ensure_schema(owner)

    def setup():
        account, _ = create_account("alerts-owner")
        [inverter] = sandbox_inverters(account.id, ["SBX-1"])
        alerts.create_rule(account.id, None, "battery_low", {"below_pct": 20.0, "clear_above_pct": 30.0})
        return inverter.id

    inverter_id = owner.write(setup)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    engine = AlertEngine(SimpleNamespace(replay_maxlen=100, ingest_maxlen=1000), owner, client)
    engine._reload()
    yield engine, owner, inverter_id
    engine.pvlib_pool.kill()
    close_database()


def read(engine, inverter_id: str, soc: float) -> None:
    data = {"time": iso(time.time()), "status": "normal", "battery_soc_pct": soc}
    engine._event({"event": "reading", "inverter_id": inverter_id, "data": data})


def test_a_clear_the_database_refuses_stays_open_and_the_next_reading_clears_it(engine_and_inverter):
    engine, owner, inverter_id = engine_and_inverter
    read(engine, inverter_id, 10.0)
    engine._flush()
    [opened] = owner.call(alerts.alerts_of, inverter_id, 10)
    assert opened.cleared_at is None

    owner.call(lambda: owner.db.execute_sql("PRAGMA query_only = ON"))
    read(engine, inverter_id, 80.0)
    with pytest.raises(Exception, match="readonly"):
        engine._flush()
    assert list(engine.open.values()) == [opened.id], "the episode is still open for the engine"

    owner.call(lambda: owner.db.execute_sql("PRAGMA query_only = OFF"))
    read(engine, inverter_id, 81.0)
    engine._flush()
    [cleared] = owner.call(alerts.alerts_of, inverter_id, 10)
    assert cleared.id == opened.id and cleared.cleared_at and cleared.cleared_values["battery_soc_pct"] == 81.0


def test_an_opening_the_database_refuses_is_opened_by_the_next_reading(engine_and_inverter):
    engine, owner, inverter_id = engine_and_inverter
    owner.call(lambda: owner.db.execute_sql("PRAGMA query_only = ON"))
    read(engine, inverter_id, 10.0)
    with pytest.raises(Exception, match="readonly"):
        engine._flush()
    assert engine.open == {}
    owner.call(lambda: owner.db.execute_sql("PRAGMA query_only = OFF"))
    read(engine, inverter_id, 11.0)
    engine._flush()
    [opened] = owner.call(alerts.alerts_of, inverter_id, 10)
    assert opened.values["battery_soc_pct"] == 11.0 and list(engine.open.values()) == [opened.id]
