"""Job events go out through a connection that asks Redis for no replies (models/events.py NoReplyPublisher):
what one process publishes arrives in order, and a connection Redis closed is replaced before the next write."""

from __future__ import annotations

import pytest
import redis as redis_lib

from models.events import NoReplyPublisher
from models.redis_client import connect_redis
from tests.helpers import free_port


@pytest.fixture
def redis(redis_url):
    client = connect_redis(redis_url)
    yield client
    client.close()


def _listening(redis, pattern: str):
    pubsub = redis.pubsub()
    pubsub.psubscribe(pattern)
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    return pubsub


def _received(pubsub, count: int) -> list[tuple[str, str]]:
    got = []
    while len(got) < count:
        message = pubsub.get_message(timeout=5)
        assert message is not None, f"only {got} of {count} messages arrived"
        got.append((message["channel"], message["data"]))
    return got


def test_what_one_publisher_writes_arrives_in_order_with_no_reply_to_wait_for(redis):
    pubsub = _listening(redis, "job:*")
    publisher = NoReplyPublisher(redis)
    sent = [(f"job:{n % 3}", str(n)) for n in range(50)]
    for start in range(0, 50, 7):
        publisher.publish(sent[start : start + 7])
    assert _received(pubsub, 50) == sent
    assert [c for c in redis.client_list() if c["cmd"] == "client|reply"] == []  # no reply was ever owed


def test_a_connection_the_server_closed_is_replaced_before_the_next_write(redis):
    pubsub = _listening(redis, "job:*")
    publisher = NoReplyPublisher(redis)
    publisher.publish([("job:a", "1")])
    assert _received(pubsub, 1) == [("job:a", "1")]
    mine = max(int(c["id"]) for c in redis.client_list() if c["cmd"] == "publish")  # the newest publisher
    redis.client_kill_filter(_id=mine)
    publisher.publish([("job:a", "2")])  # would vanish into a half-closed socket without the check
    assert _received(pubsub, 1) == [("job:a", "2")]


def test_an_unreachable_redis_raises_to_the_caller():
    publisher = NoReplyPublisher(connect_redis(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(redis_lib.ConnectionError):
        publisher.publish([("job:a", "1")])
