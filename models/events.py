"""Job state-change events: one shape, published by whichever process changed the job."""

from __future__ import annotations

import json
import logging

import gevent
from gevent import monkey

from models.channels import JOBS_WAKEUP, account_jobs_channel, job_channel
from models.lifecycle import event_view

log = logging.getLogger(__name__)


def job_event_json(job) -> str:
    return json.dumps(event_view(job), separators=(",", ":"))


def job_messages(job) -> list[tuple[str, str]]:
    """(channel, payload) of a job event: on the job's channel, and on its account's when the state carries it."""
    payload = job_event_json(job)
    account_id = getattr(job, "account_id", None)
    channels = [job_channel(job.id)] + ([account_jobs_channel(account_id)] if account_id else [])
    return [(channel, payload) for channel in channels]


def publish_job_event(redis, job) -> None:
    """Tell anyone streaming this job; a Redis outage must not fail the change already committed."""
    publish_job_events(redis, [job])


def publish_job_events(redis, jobs, then: tuple[str, str] | None = None) -> None:
    """publish_job_event for many jobs in one round trip (bulk actions); with `then`, one more (channel,
    payload) published after them in the same round trip."""
    if not jobs and then is None:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for job in jobs:
            for channel, payload in job_messages(job):
                pipe.publish(channel, payload)
        if then is not None:
            pipe.publish(*then)
        pipe.execute()
    except Exception as exc:
        log.warning("could not publish the state of %d jobs: %s", len(jobs), exc)


class Coalescer:
    """Flushes from one greenlet at a time; what is added while a flush runs goes out together in the next.

    `flush(items)` gets every item added since the previous flush began; it handles its own errors.
    """

    def __init__(self, flush):
        self.flush = flush
        self.pending: list = []
        self._running = False

    def add(self, item) -> None:
        self.pending.append(item)
        if not self._running:
            self._running = True
            gevent.spawn(self._flush_while_pending)

    def begin_own_flush(self) -> bool:
        """If no flush runs, the caller makes one itself (True) and calls end_own_flush after; what is added
        meanwhile goes out in a flush that starts after it. False: a flush runs; add() instead."""
        if self._running:
            return False
        self._running = True
        return True

    def end_own_flush(self) -> None:
        if self.pending:
            gevent.spawn(self._flush_while_pending)
        else:
            self._running = False

    def _flush_while_pending(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                self.flush(batch)
        finally:
            self._running = False


class DispatcherWaker:
    """Coalesces wake-ups: any number of submissions during one PUBLISH cause one more PUBLISH after it.

    Every job committed before `wake()` is followed by a publish that starts after its commit, so no
    dispatcher can miss it; a burst of 1,000 submissions costs a handful of publishes, not 1,000.
    Job events are not queued here: one published later than a cancel's or a worker's event for the same
    job would reach streams out of order.
    """

    def __init__(self, redis):
        self.redis = redis
        # Outside gevent (an in-process tool) there is no hub to run a publisher greenlet on.
        self._in_background = monkey.is_module_patched("socket")
        self._wakes = Coalescer(self._publish)

    def wake(self) -> None:
        if not self._in_background:
            self._publish([None])
            return
        self._wakes.add(None)

    def publish_and_wake(self, jobs: list) -> None:
        """Publish the events of jobs just committed, then wake the dispatchers: in one round trip when no
        wake-up is on its way, else the events now and the wake-up coalesced. Returns once the events are
        published (before the caller answers: a change the caller makes next is published after them).

        The events go first in the pipeline, so no dispatcher woken by it can claim these jobs, and publish
        a later state of theirs, before their event; a job claimed sooner (by another submission's wake-up
        or a timer) is the same race as with two round trips."""
        if not self._in_background or not self._wakes.begin_own_flush():
            publish_job_events(self.redis, jobs)
            self.wake()
            return
        try:
            publish_job_events(self.redis, jobs, then=(JOBS_WAKEUP, "1"))
        finally:
            self._wakes.end_own_flush()

    def _publish(self, _wakes: list) -> None:
        try:
            self.redis.publish(JOBS_WAKEUP, "1")
        except Exception as exc:
            # The dispatcher's fallback timer still finds the job; it just starts later.
            log.warning("could not wake dispatchers: %s", exc)


class BatchedPublisher:
    """Publishes job events from a greenlet, many per round trip (a pipeline), without blocking callers.

    Events queued while one pipeline is on the wire go out together in the next.
    """

    def __init__(self, redis, max_pending: int = 100_000):
        self.redis = redis
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
            pipe = self.redis.pipeline(transaction=False)
            for channel, payload in batch:
                pipe.publish(channel, payload)
            pipe.execute()
        except Exception as exc:
            log.warning("could not publish %d job events: %s", len(batch), exc)
