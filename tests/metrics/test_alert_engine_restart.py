"""A restarted alert engine resumes production_low's "below for `minutes`" counts where the previous one
left them (saved in Redis with its heartbeat), as it resumes the offline timers: a device seen shaded for
8 of 10 minutes before a restart alerts 2 minutes (and the engines' down time) after it, not 10; a count
that ended is not resumed. In process, on a real SQLite database and a real Redis; the readings carry
their own (simulated) time, the engines are dropped without stopping (as a kill -9 leaves them)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import gevent
import pytest
import redis

from actors.alerts import AlertEngine
from models import alerts
from models.accounts import create_account
from models.base import iso
from models.channels import ALERT_BELOW_SINCE, ALERT_ENGINE_ALIVE, ALERT_LAST_SEEN
from models.clearsky import Site
from models.db import close_database, open_database
from models.schema import ensure_schema
from tests.helpers import sandbox_inverters, wait_until

NOON_AMSTERDAM = 1_781_690_400.0  # 2026-06-17 10:00 UTC
SITE = {"latitude": 52.37, "longitude": 4.9, "peak_power_w": 4000.0, "tilt": 35.0, "azimuth": 180.0}
RULE = {**SITE, "below_pct": 50.0, "clear_above_pct": 60.0, "minutes": 10.0, "daylight_min_pct": 10.0}
STEP_S = 60.0


@pytest.fixture
def world(database_url, redis_url):
    owner = open_database(database_url)
    ensure_schema(owner)

    def setup():
        account, _ = create_account("shade-owner")
        [inverter] = sandbox_inverters(account.id, ["SBX-AMS-1"], device_type="inverter")
        rule = alerts.create_rule(account.id, inverter.id, "production_low", RULE)
        offline = alerts.create_rule(account.id, inverter.id, "offline", {"minutes": 60.0})
        return rule.id, offline.id, inverter.id

    rule_id, offline_rule_id, inverter_id = owner.write(setup)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    engines: list[AlertEngine] = []

    def start(poll_clock_speed: float = 1.0) -> AlertEngine:
        """An engine as the worker starts one: its first reload resumes what the previous one saved."""
        settings = SimpleNamespace(replay_maxlen=100, ingest_maxlen=1000, poll_clock_speed=poll_clock_speed)
        engine = AlertEngine(settings, owner, client)
        engines.append(engine)
        engine._reload()
        site = Site(**SITE)
        # Its clear-sky table is computed on its pvlib thread; until then readings are not judged.
        wait_until(lambda: (gevent.sleep(0.01), engine.clear_sky.expected_w(site, NOON_AMSTERDAM))[1], 30, 0, "table")
        return engine

    yield SimpleNamespace(
        start=start,
        owner=owner,
        redis=client,
        key=f"{rule_id} {inverter_id}",
        inverter=inverter_id,
        offline_key=(offline_rule_id, inverter_id),
    )
    for engine in engines:
        engine.pvlib_pool.kill()
    close_database()


def read(world, engine: AlertEngine, at: float, share_of_clear_sky: float) -> None:
    expected = engine.clear_sky.expected_w(Site(**SITE), at)
    data = {"time": iso(at), "status": "normal", "pv_power_w": share_of_clear_sky * expected}
    engine._event({"event": "reading", "inverter_id": world.inverter, "data": data})
    engine._flush()


def heartbeat(engine: AlertEngine) -> None:
    """What the engine's tick does every OFFLINE_TICK_S."""
    t = time.time()
    engine._check_offline(t)
    engine._save_timers(t)


def opened(world) -> list:
    return world.owner.call(alerts.alerts_of, world.inverter, 10)


def test_a_count_cut_by_a_restart_resumes_and_the_alert_opens_at_the_original_deadline(world):
    first = world.start()
    start = NOON_AMSTERDAM
    for minute in range(9):  # shaded from `start` on, seen for 8 of the rule's 10 minutes
        read(world, first, start + minute * STEP_S, 0.05)
    heartbeat(first)
    assert float(world.redis.hget(ALERT_BELOW_SINCE, world.key)) == start
    assert opened(world) == []
    del first  # killed: no stop, nothing more saved

    second = world.start()
    down_s = second.started_at - float(world.redis.get(ALERT_ENGINE_ALIVE))
    assert 0 <= down_s < 5
    deadline = start + RULE["minutes"] * 60 + down_s  # the time no engine was alive is not counted
    read(world, second, start + 9 * STEP_S, 0.05)
    heartbeat(second)
    saved = float(world.redis.hget(ALERT_BELOW_SINCE, world.key))
    assert saved == pytest.approx(start + down_s, abs=1e-3), (
        "saved shifted: a second restart adds its own down time only"
    )
    read(world, second, deadline - 1, 0.05)
    assert opened(world) == [], "not before the device was seen below for the whole 10 minutes"
    read(world, second, deadline + 0.001, 0.05)  # (float rounding of the shifted count)
    (alert,) = opened(world)  # a fresh count would open it only 10 minutes after start + 9 minutes
    assert alert.kind == "production_low" and alert.values["pv_power_w"] < 0.5 * alert.values["expected_w"]

    read(world, second, deadline + STEP_S, 0.05)
    heartbeat(second)
    assert world.redis.hget(ALERT_BELOW_SINCE, world.key) is None, "no count while the episode is open"
    assert len(opened(world)) == 1


def test_a_count_that_ended_before_a_restart_is_not_resumed(world):
    first = world.start()
    start = NOON_AMSTERDAM
    for minute in range(8):
        read(world, first, start + minute * STEP_S, 0.05)
    heartbeat(first)
    assert world.redis.hget(ALERT_BELOW_SINCE, world.key) is not None
    read(world, first, start + 8 * STEP_S, 0.9)  # the shade is gone: the count ends
    heartbeat(first)
    assert world.redis.hget(ALERT_BELOW_SINCE, world.key) is None

    second = world.start()
    shaded_again = start + 9 * STEP_S
    for minute in range(10):  # 9 minutes of a new count: not yet due
        read(world, second, shaded_again + minute * STEP_S, 0.05)
    assert opened(world) == []
    read(world, second, shaded_again + 10 * STEP_S, 0.05)
    assert len(opened(world)) == 1


def test_the_count_of_a_deleted_rule_is_forgotten(world):
    first = world.start()
    read(world, first, NOON_AMSTERDAM, 0.05)
    heartbeat(first)
    assert world.redis.hget(ALERT_BELOW_SINCE, world.key) is not None
    rule_id = world.key.split()[0]
    world.owner.write(alerts.delete_rule, rule_id)
    first._reload()
    heartbeat(first)
    assert first.below_since == {} and world.redis.hgetall(ALERT_BELOW_SINCE) == {}


def test_resumed_offline_timers_are_saved_shifted_so_a_second_restart_does_not_count_the_first_down_time(world):
    first = world.start()
    read(world, first, NOON_AMSTERDAM, 0.9)
    heartbeat(first)
    silent_since = float(world.redis.hget(ALERT_LAST_SEEN, world.inverter).split()[0])
    wait_until(lambda: time.time() - silent_since > 0.05, 5, 0.01, "some down time")

    second = world.start()
    down_s = second.started_at - float(world.redis.get(ALERT_ENGINE_ALIVE))
    heartbeat(second)
    resaved = float(world.redis.hget(ALERT_LAST_SEEN, world.inverter).split()[0])
    assert down_s > 0 and resaved == pytest.approx(silent_since + down_s, abs=1e-3)


def test_an_offline_delay_is_counted_in_minutes_of_the_poll_clock(world):
    """The rule asks for 60 minutes of silence. In production (speed 1) that is 60 real minutes; on a poll clock 600
    times real time, where every device is polled 600 times as often, it is 6 real seconds."""

    def offline_open(engine: AlertEngine) -> bool:
        """The offline rule's episode open for the inverter (decided, not yet written)."""
        return world.offline_key in engine.open

    real_time = world.start()
    read(world, real_time, NOON_AMSTERDAM, 0.9)
    silent_since = real_time.silent_since[world.inverter]
    real_time._check_offline(silent_since + 3599.0)
    assert not offline_open(real_time)
    real_time._check_offline(silent_since + 3601.0)
    assert offline_open(real_time)

    accelerated = world.start(poll_clock_speed=600.0)
    read(world, accelerated, NOON_AMSTERDAM + 60, 0.9)
    silent_since = accelerated.silent_since[world.inverter]
    accelerated._check_offline(silent_since + 5.9)
    assert not offline_open(accelerated)
    accelerated._check_offline(silent_since + 6.1)
    assert offline_open(accelerated)
