"""Job state-change events: one shape, published by whichever process changed the job, through its
NoReplyPublisher (one connection that asks Redis for no replies: a publish is one write, in order)."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable

import gevent
import redis as redis_lib
from gevent import monkey

from models.channels import JOBS_WAKEUP, account_jobs_channel, job_channel
from models.lifecycle import event_view

log = logging.getLogger(__name__)


_EVENT_JSON = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps with options builds one per call


def job_event_json(job) -> str:
    return _EVENT_JSON.encode(event_view(job))


def job_messages(job) -> list[tuple[str, str]]:
    """(channel, payload) of a job event: on the job's channel, and on its account's when the state carries it."""
    payload = job_event_json(job)
    account_id = getattr(job, "account_id", None)
    channels = [job_channel(job.id)] + ([account_jobs_channel(account_id)] if account_id else [])
    return [(channel, payload) for channel in channels]


def publish_job_event(redis, job) -> None:
    """Tell anyone streaming this job; a Redis outage must not fail the change already committed."""
    publish_job_events(redis, [job])


def publish_job_events(redis, jobs) -> None:
    """publish_job_event for many jobs in one round trip (bulk actions). `redis`: a client, or a NoReplyPublisher
    (nothing to wait for)."""
    if not jobs:
        return
    try:
        if isinstance(redis, NoReplyPublisher):
            redis.publish([message for job in jobs for message in job_messages(job)])
            return
        pipe = redis.pipeline(transaction=False)
        for job in jobs:
            for channel, payload in job_messages(job):
                pipe.publish(channel, payload)
        pipe.execute()
    except Exception as exc:
        log.warning("could not publish the state of %d jobs: %s", len(jobs), exc)


class NoReplyPublisher:
    """PUBLISHes on a Redis connection of its own that asks for no replies (CLIENT REPLY OFF).

    A publish is then one write with nothing to wait for: a pipeline's round trip cost an idle process about
    0.3 ms of CPU more, most of it waking up for the reply (docs/benchmarks.md). Redis runs one connection's
    commands in the order written, so what a process publishes through its one NoReplyPublisher arrives in
    that order (a submission's event before its wake-up, before a later cancel's event).

    Without replies a failure shows only as a broken connection: a server that closed it (a restart) has left
    an end of file to read, checked before each write, and a write that fails is made again once on a fresh
    connection, which asks for no replies again. Raises what the second try raises (Redis unreachable). What
    was written into a connection just before its server died is lost unseen, as a pipeline's PUBLISH accepted
    just before would be to its subscribers: a lost wake-up is made up by the dispatchers' timers (at most
    MAX_IDLE_S; at once when their subscription comes back), and the web closes its job streams when its own
    subscription is lost, so their browsers read the state again."""

    def __init__(self, redis):
        pool = redis.connection_pool
        # No health check: its PING would wait for a reply that never comes.
        self._settings = {**pool.connection_kwargs, "health_check_interval": 0}
        self._connection_class = pool.connection_class
        self._connection = None
        self._lock = threading.Lock()  # one writer at a time: a write that yields must not interleave another

    def publish(self, messages: list[tuple[str, str]]) -> None:
        if not messages:
            return
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._write(messages)
                    return
                except BaseException as exc:
                    # Whatever cut a write short (a lost connection, or this greenlet killed mid-write) left
                    # redis-py's connection closed or a command half-written; redis-py would open it again by
                    # itself, without CLIENT REPLY OFF, so it is dropped and the next write makes a fresh one.
                    self.close()
                    if attempt == 2 or not isinstance(
                        exc, (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError)
                    ):
                        raise

    def _write(self, messages: list[tuple[str, str]]) -> None:
        connection = self._connection
        if connection is None:
            connection = self._connection_class(**self._settings)
            connection.connect()
            connection.send_command("CLIENT", "REPLY", "OFF", check_health=False)
            self._connection = connection
        elif connection.can_read(timeout=0):  # raises ConnectionError at an end of file
            raise redis_lib.ConnectionError("unexpected data on a connection without replies")
        commands = [("PUBLISH", channel, payload) for channel, payload in messages]
        connection.send_packed_command(connection.pack_commands(commands), check_health=False)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()


class Coalescer:
    """Flushes from one greenlet at a time; what is added while a flush runs goes out together in the next.

    `flush(items)` gets every item added since the previous flush began; it handles its own errors.
    """

    def __init__(self, flush):
        self.flush = flush
        self.pending: list = []
        self.running = False  # a flush is under way or about to start

    def add(self, item) -> None:
        self.pending.append(item)
        if not self.running:
            self.running = True
            gevent.spawn(self._flush_while_pending)

    def _flush_while_pending(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                self.flush(batch)
        finally:
            self.running = False


#: A wake-up that comes this long after the previous one is written with its jobs' events (see DispatcherWaker).
WAKE_ALONE_AFTER_S = 0.005


class DispatcherWaker:
    """Publishes a process's job events, and coalesces its wake-ups: any number of submissions during one
    wake-up's write cause one more after it.

    Every job committed before `wake()` is followed by a publish that starts after its commit, so no
    dispatcher can miss it; a burst of 1,000 submissions costs a handful of wake-ups, not 1,000. Events and
    wake-ups go through one NoReplyPublisher, so Redis publishes them in the order they were handed over.
    Job events are not queued with the wake-ups: one published later than a cancel's or a worker's event for
    the same job would reach streams out of order.

    A submission that comes alone (no wake-up on its way, none written in the last WAKE_ALONE_AFTER_S) writes
    its wake-up after its events in the same write: at light load, where nearly every submission comes alone,
    the coalescing greenlet and the second write cost the web ~0.25 ms of CPU a job on this machine
    (docs/benchmarks.md). A burst still coalesces: at most one wake-up per WAKE_ALONE_AFTER_S rides along, and
    the rest go through the coalescer as before.
    """

    def __init__(self, redis, in_background: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.events = NoReplyPublisher(redis)
        # Outside gevent (an in-process tool) there is no hub to run a publisher greenlet on.
        self._in_background = monkey.is_module_patched("socket") if in_background is None else in_background
        self._wakes = Coalescer(self._publish)
        self._clock = clock
        self._last_wake = -math.inf

    def wake(self) -> None:
        if not self._in_background:
            self._publish([None])
            return
        self._wakes.add(None)

    def publish(self, jobs: list) -> None:
        """Publish the events of jobs just changed, now (before the caller answers: a change the caller makes
        next is published after them)."""
        publish_job_events(self.events, jobs)

    def publish_and_wake(self, jobs: list) -> None:
        """Publish the events of jobs just committed, then wake the dispatchers. The events are written first,
        so no dispatcher woken by this can claim these jobs, and publish a later state of theirs, before their
        event; a job claimed sooner (by another submission's wake-up, or a timer) is the same race as ever."""
        now = self._clock()
        if self._wakes.running or now - self._last_wake < WAKE_ALONE_AFTER_S:
            self.publish(jobs)
            self.wake()
            return
        self._last_wake = now
        try:
            self.events.publish([message for job in jobs for message in job_messages(job)] + [(JOBS_WAKEUP, "1")])
        except Exception as exc:
            # As for each apart: the committed jobs stand, and the dispatchers' fallback timer finds them.
            log.warning("could not publish the state of %d jobs nor wake dispatchers: %s", len(jobs), exc)

    def close(self) -> None:
        self.events.close()

    def _publish(self, _wakes: list) -> None:
        self._last_wake = self._clock()
        try:
            self.events.publish([(JOBS_WAKEUP, "1")])
        except Exception as exc:
            # The dispatcher's fallback timer still finds the job; it just starts later.
            log.warning("could not wake dispatchers: %s", exc)


class BatchedPublisher:
    """Publishes job events from a greenlet, many per write (one NoReplyPublisher), without blocking callers.

    Events queued while one write is under way go out together in the next.
    """

    def __init__(self, redis, max_pending: int = 100_000):
        self.wire = NoReplyPublisher(redis)
        self.max_pending = max_pending
        self._events = Coalescer(self._publish_batch)

    def publish_job(self, job) -> None:
        if len(self._events.pending) >= self.max_pending:
            log.warning("event backlog full: dropping the state event of job=%s", job.id)
            return
        for message in job_messages(job):
            self._events.add(message)

    def _publish_batch(self, batch: list) -> None:
        try:
            self.wire.publish(batch)
        except Exception as exc:
            log.warning("could not publish %d job events: %s", len(batch), exc)
