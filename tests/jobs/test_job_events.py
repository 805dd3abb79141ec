"""Job events go out through a connection that asks Redis for no replies (models/events.py NoReplyPublisher):
what one process publishes arrives in order, a connection Redis closed (or restarted) is replaced before the next
write, and a replacement asks for no replies again."""

from __future__ import annotations

import os
import signal

import gevent
import pytest
import redis as redis_lib

from models.channels import JOBS_WAKEUP
from models.events import WAKE_ALONE_AFTER_S, DispatcherWaker, NoReplyPublisher
from models.jobs import OutcomeState
from models.redis_client import connect_redis
from tests.conftest import RedisServer
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


# -- a redis-server of the test's own, stopped and started by it ---------------------------------------------
@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    if server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)  # in case a test stopped it
    server.stop()


def _connections_received(client) -> int:
    return int(client.info("stats")["total_connections_received"])


def test_a_restarted_redis_gets_the_next_publish_on_a_fresh_connection_without_replies(own_redis):
    publisher = NoReplyPublisher(connect_redis(own_redis.url))
    publisher.publish([("job:a", "before")])
    own_redis.restart()  # same port, nothing kept: the publisher's socket now reads an end of file
    observer = connect_redis(own_redis.url)
    pubsub = _listening(observer, "job*")
    opened = _connections_received(observer)
    sent = [("job:a", "1"), ("jobs:wakeup", "1"), ("job:a", "2")]
    for message in sent:
        publisher.publish([message])  # the first would vanish into the dead socket without the check
    assert _received(pubsub, 3) == sent  # in the order written
    # One new connection for all three: it asked for no replies again (replies owed would have been read as
    # a broken connection before the next write, and a connection opened for it).
    assert _connections_received(observer) - opened == 1
    publisher.close()


def test_while_redis_is_down_a_publish_raises_and_the_first_after_it_is_back_arrives(own_redis):
    publisher = NoReplyPublisher(connect_redis(own_redis.url))
    publisher.publish([("job:a", "before")])
    own_redis.stop()
    with pytest.raises(redis_lib.ConnectionError):
        publisher.publish([("job:a", "lost")])  # the caller logs it; a dispatcher's timer finds the job
    own_redis.start()
    observer = connect_redis(own_redis.url)
    pubsub = _listening(observer, "job:*")
    publisher.publish([("job:a", "after")])
    assert _received(pubsub, 1) == [("job:a", "after")]
    publisher.close()


class _Interrupted(BaseException):
    """What a greenlet killed mid-write sees (GreenletExit): not a connection error."""


def test_a_write_cut_short_is_not_followed_by_one_on_a_connection_that_owes_replies(own_redis):
    # Redis stopped (SIGSTOP) reads nothing, so a large enough write blocks until an alarm cuts it short,
    # leaving half a PUBLISH written. redis-py closes that connection; left to itself it would open it again
    # on the next write without CLIENT REPLY OFF.
    publisher = NoReplyPublisher(connect_redis(own_redis.url))
    observer = connect_redis(own_redis.url)
    pubsub = _listening(observer, "job:*")
    publisher.publish([("job:a", "before")])
    assert _received(pubsub, 1) == [("job:a", "before")]
    opened = _connections_received(observer)

    def interrupt(_signum, _frame):
        raise _Interrupted

    # Made before the alarm is armed: on a loaded machine making 64 MiB took long enough for the alarm to go off
    # before publish() was even called, and nothing was then cut short.
    big = [("job:big", "x" * (64 << 20))]
    previous = signal.signal(signal.SIGALRM, interrupt)
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_Interrupted):
            publisher.publish(big)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    publisher.publish([("job:a", "1")])
    assert _received(pubsub, 1) == [("job:a", "1")]  # Redis has run it (and would have replied by now)
    publisher.publish([("job:a", "2")])
    assert _received(pubsub, 1) == [("job:a", "2")]
    assert _connections_received(observer) - opened == 1  # one fresh connection, without replies, for both
    publisher.close()


# -- DispatcherWaker: a lone submission's wake-up rides with its events; a burst's still coalesce -------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _submitted(n: int) -> OutcomeState:
    return OutcomeState(
        id=f"w{n}", status="pending", attempts=0, max_attempts=5, due_at=1.0, updated_at=1.0, account_id=""
    )


def _waker_and_listener(redis, clock):
    pubsub = _listening(redis, "*")  # this worker's own Redis: only this test publishes meanwhile
    # In background as in the web; this test process is not gevent-patched, so the coalescing greenlet runs only
    # when the test yields to the hub, and the listener's blocking reads never do.
    return DispatcherWaker(redis, in_background=True, clock=clock), pubsub


def _kinds(messages) -> list[str]:
    return ["wake" if channel == JOBS_WAKEUP else channel.removeprefix("job:") for channel, _ in messages]


def test_a_lone_submission_writes_its_wake_up_after_its_events_without_a_greenlet(redis):
    clock = _Clock()
    waker, pubsub = _waker_and_listener(redis, clock)
    try:
        waker.publish_and_wake([_submitted(1)])
        # Received while the hub never ran: written by the call itself, after the event.
        assert _kinds(_received(pubsub, 2)) == ["w1", "wake"]
        clock.now += WAKE_ALONE_AFTER_S + 0.001
        waker.publish_and_wake([_submitted(2), _submitted(3)])
        assert _kinds(_received(pubsub, 3)) == ["w2", "w3", "wake"]
    finally:
        waker.close()
        pubsub.close()


def test_a_burst_of_submissions_shares_its_wake_ups(redis):
    clock = _Clock()
    waker, pubsub = _waker_and_listener(redis, clock)
    try:
        for n in range(100):  # within WAKE_ALONE_AFTER_S of each other
            waker.publish_and_wake([_submitted(n)])
        assert pubsub.get_message(timeout=0.05) is not None  # the first event: nothing waits behind the hub yet
        gevent.sleep(0)  # the coalescing greenlet writes one wake-up for the other 99
        kinds = ["w0"] + _kinds(_received(pubsub, 101))
        assert kinds == ["w0", "wake"] + [f"w{n}" for n in range(1, 100)] + ["wake"]
    finally:
        waker.close()
        pubsub.close()
