"""The pieces the SSE hub is made of, each alone in this process: the pub/sub listener
(models.redis_client.listen_forever), the fan-out, the latest-reading service and the access cache."""

from __future__ import annotations

import queue
import threading

import gevent
import pytest

from models import inverters, live_events
from models.accounts import create_account
from models.backoff import Backoff
from models.redis_client import OnDemandChannels, SubscriptionUnavailable, connect_redis, listen_forever
from tests.helpers import wait_until
from tests.retention.conftest import add_inverter
from web.fanout import Client, Fanout, TooManyStreams
from web.latest_readings import LatestReadings
from web.stream_access import AccessCache

QUICK_RESUBSCRIBE = Backoff(base_s=0.01, cap_s=0.05, jitter="none")


@pytest.fixture
def redis(redis_url):
    client = connect_redis(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(database):
    return database


# -- the listener ----------------------------------------------------------------------------------


class _Stop(BaseException):
    """Raised from a callback to end listen_forever (it resubscribes after any Exception)."""


def _listener(redis, on_demand: OnDemandChannels | None = None):
    """listen_forever in a thread of its own (this process is not monkey-patched), reporting to a queue."""
    seen: queue.Queue = queue.Queue()

    def on_message(channel, data):
        seen.put(("message", channel, data))
        if data == "stop":
            raise _Stop()

    thread = threading.Thread(
        target=lambda: _run_until_stopped(
            redis,
            on_message,
            on_subscribed=lambda: seen.put(("subscribed",)),
            on_lost=lambda exc: seen.put(("lost",)),
            on_pattern_message=lambda channel, data: seen.put(("pmessage", channel, data)),
            on_demand=on_demand,
        ),
        daemon=True,
    )
    thread.start()
    return thread, seen


def _run_until_stopped(redis, on_message, **callbacks):
    try:
        listen_forever(
            redis,
            ("plain",),
            on_message,
            patterns=("pat:*",),
            with_channel=True,
            backoff=QUICK_RESUBSCRIBE,
            **callbacks,
        )
    except _Stop:
        pass


def _next(seen: queue.Queue):
    return seen.get(timeout=10)


def test_the_listener_hands_on_channel_and_data_once_subscribed_and_again_after_a_lost_connection(redis):
    thread, seen = _listener(redis)
    assert _next(seen) == ("subscribed",)
    redis.publish("pat:1", "a")
    redis.publish("plain", "b")
    assert _next(seen) == ("pmessage", "pat:1", "a")
    assert _next(seen) == ("message", "plain", "b")

    redis.client_kill_filter(_type="pubsub")
    assert _next(seen) == ("lost",)
    assert _next(seen) == ("subscribed",)  # resubscribed: the caller can catch up here
    redis.publish("pat:2", "c")
    assert _next(seen) == ("pmessage", "pat:2", "c")

    redis.publish("plain", "stop")
    assert _next(seen) == ("message", "plain", "stop")
    thread.join(10)
    assert not thread.is_alive()


def test_a_channel_held_on_demand_is_subscribed_from_its_confirmed_hold_until_its_last_release(redis):
    on_demand = OnDemandChannels(confirm_timeout_s=5)
    thread, seen = _listener(redis, on_demand)
    assert _next(seen) == ("subscribed",)
    redis.publish("job:1", "nobody holds it")
    on_demand.hold("job:1")  # returns once Redis confirmed: what follows is delivered
    assert redis.pubsub_numsub("job:1") == [("job:1", 1)]
    redis.publish("job:1", "a")
    assert _next(seen) == ("message", "job:1", "a")

    on_demand.hold("job:1")  # a second holder: no second subscription
    on_demand.release("job:1")
    redis.publish("job:1", "b")
    assert _next(seen) == ("message", "job:1", "b")
    on_demand.release("job:1")
    wait_until(lambda: redis.pubsub_numsub("job:1") == [("job:1", 0)], 5, 0.01, "the last release to unsubscribe")
    redis.publish("job:1", "nobody holds it again")
    # Released and held again at once: the hold waits for its own confirmation, not the earlier one's.
    for _ in range(20):
        on_demand.hold("job:2")
        on_demand.release("job:2")
    on_demand.hold("job:2")
    redis.publish("job:2", "c")
    assert _next(seen) == ("message", "job:2", "c")

    # A lost connection: the listener subscribes again to what is held; holds waiting meanwhile fail.
    redis.client_kill_filter(_type="pubsub")
    assert _next(seen) == ("lost",)
    assert _next(seen) == ("subscribed",)
    wait_until(lambda: redis.pubsub_numsub("job:2") == [("job:2", 1)], 5, 0.01, "the held channel subscribed again")
    on_demand.hold("job:3")
    redis.publish("job:2", "d")
    redis.publish("job:3", "e")
    assert [_next(seen), _next(seen)] == [("message", "job:2", "d"), ("message", "job:3", "e")]
    assert on_demand.held() == {"job:2", "job:3"}

    redis.publish("plain", "stop")
    assert _next(seen) == ("message", "plain", "stop")
    thread.join(10)
    assert not thread.is_alive()


def test_a_hold_fails_when_no_subscription_can_be_confirmed_in_time():
    on_demand = OnDemandChannels(confirm_timeout_s=0.05)  # no listener: never confirmed
    with pytest.raises(SubscriptionUnavailable):
        on_demand.hold("job:1")
    on_demand.release("job:1")
    assert on_demand.held() == set()


# -- the fan-out -----------------------------------------------------------------------------------


def test_the_fanout_hands_frames_to_the_channels_watchers_within_each_accounts_limit():
    fanout = Fanout(client_queue=2, streams_per_account=2)
    mine = Client(("inverter:a", "inverter:b"), fanout.client_queue, "me")
    also_mine = Client(("inverter:b",), fanout.client_queue, "me")
    theirs = Client(("inverter:b",), fanout.client_queue, "them")
    for client in (mine, also_mine, theirs):
        fanout.register(client)
        client.go_live()
    with pytest.raises(TooManyStreams) as refused:
        fanout.register(Client(("inverter:c",), fanout.client_queue, "me"))
    assert refused.value.limit == 2 and fanout.streams_of == {"me": 2, "them": 1}
    assert fanout.client_count() == 3

    fanout.offer("inverter:b", (1, 0), b"b1")
    fanout.offer("inverter:a", (2, 0), b"a2")
    assert list(mine.queue) == [b"b1", b"a2"] and list(also_mine.queue) == [b"b1"] and list(theirs.queue) == [b"b1"]
    fanout.offer("inverter:a", (3, 0), b"a3")  # mine's bounded queue is full: it is dropped, not grown
    assert mine.closed and mine.reason == "slow"

    fanout.close_watchers("inverter:b", "access revoked", "them")
    assert theirs.closed and not also_mine.closed

    for client in (mine, also_mine, theirs):
        fanout.unregister(client)
    assert fanout.streams_of == {} and fanout.client_count() == 0 and not fanout.clients
    fanout.register(Client(("inverter:c",), fanout.client_queue, "me"))  # the account's places are free again


# -- the latest-reading service --------------------------------------------------------------------


def _publish_reading(redis, inverter_id: str, at: float, power: int) -> str:
    keys, args = live_events.publish_args(
        live_events.READING, inverter_id, str(at), live_events.dumps({"pv_w": power}), 100, 1000
    )
    return redis.eval(live_events.PUBLISH_SCRIPT, len(keys), *keys, *args)


def test_first_viewers_asking_together_cost_one_redis_round_trip_and_the_subscription_keeps_them_current(redis, store):
    ids = ["inv-a", "inv-b", "inv-c"]
    first_ids = {inverter_id: _publish_reading(redis, inverter_id, 100.0, 1) for inverter_id in ids}
    round_trips = []

    def counted(fn, *args):
        round_trips.append(args[1])
        return fn(*args)

    latest = LatestReadings(store, redis, counted)
    latest.current = True
    viewers = [gevent.spawn(latest.latest_of, [inverter_id]) for inverter_id in ids]
    gevent.joinall(viewers, raise_error=True)
    assert round_trips == [ids]  # one snapshot for the three of them
    assert [v.value[0][0] for v in viewers] == [first_ids[i] for i in ids]

    newer = _publish_reading(redis, "inv-a", 101.0, 2)
    latest.apply("inv-a", live_events.READING, newer, '{"pv_w":2}', {"pv_w": 2})
    latest.apply("inv-a", live_events.STATUS, "", "", {"status": "offline"})
    assert latest.latest_of(["inv-a", "inv-b"]) == [(newer, '{"pv_w":2}', "offline"), tuple(viewers[1].value[0])]
    assert len(round_trips) == 1  # served from the cache

    latest.forget()  # the subscription was lost: nothing keeps the cache current
    assert not latest.tracks("inv-a")
    assert latest.latest_of(["inv-a"])[0][0] == newer
    assert len(round_trips) == 2 and not latest.tracks("inv-a")  # not cached until it is current again


# -- the access cache ------------------------------------------------------------------------------


def test_access_granted_works_at_once_and_a_revocation_applies_before_the_cached_set_expires(store):
    owner_account, _ = store.write(create_account, "owner")
    member, _ = store.write(create_account, "member")
    inverter_id = add_inverter(store, owner_account.id, None)
    access = AccessCache(store)
    assert access.visible_of(member.id, [inverter_id]) == set()

    store.write(inverters.add_member, inverter_id, member.id)
    assert access.visible_of(member.id, [inverter_id]) == {inverter_id}  # a miss asks the database

    store.write(inverters.remove_member, inverter_id, member.id)
    assert access.visible_of(member.id, [inverter_id]) == {inverter_id}  # the cached set, for VISIBLE_FOR_S
    access.revoke(inverter_id, member.id)
    assert access.visible_of(member.id, [inverter_id]) == set()
    assert access.visible_of(owner_account.id, [inverter_id]) == {inverter_id}
