"""JobDispatcher: claims due jobs with a lease and hands each to a RetryActor, within limits.

It never polls on a fixed interval: it sleeps on a gevent timer armed for the earliest due time in
the database, and a Redis notification from the web process wakes it when a job is submitted.
Claimed jobs wait in a per-host queue while their host has MAX_IN_FLIGHT_PER_HOST attempts
running; the lease of everything it holds is renewed in one statement every third of a lease.
"""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass

import gevent
import gevent.event
import pykka

from actors.messages import tell_unless_dead
from actors.retry_actor import AttemptFinished, RetryActor, RunAttempt
from models import jobs as J
from models.channels import JOBS_WAKEUP
from models.events import BatchedPublisher
from models.redis_client import listen_forever

log = logging.getLogger(__name__)

# Sleep at most this long even when nothing is due: a safety net for a lost Redis notification.
MAX_IDLE_S = 5.0
IDLE_WHEN_REDIS_DOWN_S = 0.5


@dataclass(frozen=True)
class Wake:
    reason: str = "timer"


@dataclass(frozen=True)
class Claimed:
    """A claim finished: the jobs it took, how many were asked for, and the next due time if it ran dry."""
    jobs: list
    wanted: int
    next_due_at: float | None
    failed: bool = False


@dataclass(frozen=True)
class Drain:
    """Stop claiming; give back jobs not yet started; wait up to grace_s for running attempts."""
    grace_s: float


@dataclass(frozen=True)
class Stats:
    pass


class JobDispatcher(pykka.ThreadingActor):
    def __init__(self, settings, db, redis, transport):
        super().__init__()
        self.settings = settings
        self.db = db
        self.redis = redis
        self.transport = transport
        self.events = BatchedPublisher(redis)
        self.worker_id = settings.worker_id
        # (job id, attempt number) -> host. Keyed by attempt, not job: a job whose retry is due at
        # once can be claimed and started again before its previous attempt's AttemptFinished arrives.
        self.running: dict[tuple[str, int], str] = {}
        self.waiting: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.waiting_count = 0
        self.per_host: collections.Counter = collections.Counter()
        self.idle_actors: list[pykka.ActorRef] = []
        self.all_actors: list[pykka.ActorRef] = []
        self.accepting = True
        self.more_due = True
        self.claiming = False
        self.work_noted_while_claiming = False
        self.fill_scheduled = False
        self.redis_ok = False
        self.timer = None
        self.background: list[gevent.Greenlet] = []
        self.drained = None

    # -- life cycle ----------------------------------------------------------------------------
    def on_start(self):
        self.background = [gevent.spawn(self._listen_for_wakeups), gevent.spawn(self._renew_leases_forever)]
        self._fill()
        log.info("dispatcher started worker=%s max_in_flight=%d per_host=%d lease=%.1fs", self.worker_id,
                 self.settings.max_in_flight, self.settings.max_in_flight_per_host, self.settings.lease_s)

    def on_stop(self):
        for greenlet in self.background:
            greenlet.kill(block=False)
        if self.timer is not None:
            self.timer.kill(block=False)
        for ref in self.all_actors:
            ref.stop(block=False)

    def on_receive(self, message):
        if isinstance(message, AttemptFinished):
            self._finished(message)
        elif isinstance(message, Claimed):
            self._claimed(message)
        elif isinstance(message, Wake):
            log.debug("dispatcher woken: %s", message.reason)
            self.fill_scheduled = False
            self._note_work()
            self._fill()
        elif isinstance(message, Drain):
            return self._drain(message.grace_s)
        elif isinstance(message, Stats):
            return {"running": len(self.running), "waiting": self.waiting_count, "actors": len(self.all_actors),
                    "claiming": self.claiming}

    # -- claiming ------------------------------------------------------------------------------
    def _capacity(self) -> int:
        return self.settings.max_in_flight - len(self.running) - self.waiting_count

    def _fill(self):
        """Start a claim if there is room and work may be due. The claim runs in its own greenlet and
        reports back with Claimed, so the actor keeps taking AttemptFinished meanwhile: a dispatcher
        that waited on the database itself let finished attempts queue behind its claims."""
        if not self.accepting or self.claiming or not self.more_due or self._capacity() <= 0:
            return
        self.claiming = True
        self.work_noted_while_claiming = False
        gevent.spawn(self._claim, min(self._capacity(), self.settings.claim_batch))

    def _note_work(self):
        """Something may have become due: a submission, a timer, a retry scheduled soon."""
        self.more_due = True
        if self.claiming:
            # The claim on the wire may have read the table before this work was committed.
            self.work_noted_while_claiming = True

    def _claim(self, want: int):
        try:
            jobs = self.db.write(J.claim_due, self.worker_id, want, self.settings.lease_s)
            next_due = self.db.call(J.next_due_at) if len(jobs) < want else None
            result = Claimed(jobs, want, next_due)
        except Exception as exc:
            log.error("claim failed, retrying in 1 s: %s", exc)
            result = Claimed([], want, time.time() + 1.0, failed=True)
        tell_unless_dead(self.actor_ref, result)

    def _claimed(self, message: Claimed):
        self.claiming = False
        if not self.accepting:
            # Claimed while a drain began: give them back untouched before shutdown goes on.
            if message.jobs:
                try:
                    self.db.write(J.release, self.worker_id, [(j.id, j.attempts) for j in message.jobs])
                except Exception as exc:
                    log.error("could not release %d jobs claimed during shutdown (their lease will expire): %s",
                              len(message.jobs), exc)
            return
        for job in message.jobs:
            self._enqueue(job)
        if message.failed or len(message.jobs) < message.wanted:
            self.more_due = self.work_noted_while_claiming and not message.failed
            idle = MAX_IDLE_S if self.redis_ok else IDLE_WHEN_REDIS_DOWN_S
            due = message.next_due_at
            self._arm_timer(min(due, time.time() + idle) if due is not None else time.time() + idle)
        self._fill()

    def _arm_timer(self, at: float):
        # A Wake that finds work already being claimed only sets more_due: the claim in flight
        # either takes that work or comes back short and re-arms the timer.
        if self.timer is not None:
            self.timer.kill(block=False)
        delay = max(0.0, at - time.time())
        self.timer = gevent.spawn_later(delay, tell_unless_dead, self.actor_ref, Wake("timer"))

    def _enqueue(self, job):
        if self.per_host[job.host] < self.settings.max_in_flight_per_host:
            self._start(job)
        else:
            self.waiting[job.host].append(job)
            self.waiting_count += 1

    def _start(self, job):
        actor = self.idle_actors.pop() if self.idle_actors else self._new_actor()
        self.running[(job.id, job.attempts)] = job.host
        self.per_host[job.host] += 1
        actor.tell(RunAttempt(job))

    def _new_actor(self):
        ref = RetryActor.start(self.actor_ref, self.transport, self.db, self.events, self.worker_id)
        self.all_actors.append(ref)
        return ref

    def _finished(self, message: AttemptFinished):
        host = self.running.pop((message.job_id, message.number), None)
        self.idle_actors.append(message.actor)
        if host is None:
            return
        self.per_host[host] -= 1
        queue = self.waiting.get(host)
        if queue and self.accepting:
            self.waiting_count -= 1
            self._start(queue.popleft())
            if not queue:
                del self.waiting[host]
        elif self.per_host[host] <= 0:
            del self.per_host[host]
        if message.status == J.RETRYING:
            # Its next attempt may be due before the timer we armed.
            self._note_work()
        if self.drained is not None and not self.running:
            self.drained.set()
        else:
            self._fill()

    # -- background greenlets -------------------------------------------------------------------
    def _listen_for_wakeups(self):
        def subscribed():
            self.redis_ok = True
            tell_unless_dead(self.actor_ref, Wake("redis-connected"))

        def submitted(_):
            if not self.fill_scheduled:
                self.fill_scheduled = True
                tell_unless_dead(self.actor_ref, Wake("submission"))

        def lost(exc):
            if self.redis_ok:
                log.warning("wake-up subscription lost (%s); falling back to %.1f s timer", exc, IDLE_WHEN_REDIS_DOWN_S)
            self.redis_ok = False

        listen_forever(self.redis, JOBS_WAKEUP, submitted, subscribed, lost)

    def _renew_leases_forever(self):
        interval = self.settings.lease_s / 3
        while True:
            gevent.sleep(interval)
            held = [job_id for job_id, _ in self.running] + [job.id for queue in self.waiting.values() for job in queue]
            if not held:
                continue
            try:
                self.db.write(J.renew_leases, self.worker_id, held, self.settings.lease_s)
            except Exception as exc:
                log.error("lease renewal failed for %d jobs: %s", len(held), exc)

    # -- shutdown ------------------------------------------------------------------------------
    def _drain(self, grace_s: float) -> dict:
        self.accepting = False
        if self.timer is not None:
            self.timer.kill(block=False)
        not_started = [(job.id, job.attempts) for queue in self.waiting.values() for job in queue]
        self.waiting.clear()
        self.waiting_count = 0
        released = self.db.write(J.release, self.worker_id, not_started) if not_started else 0
        running_at_drain = len(self.running)
        if self.running:
            self.drained = gevent.event.Event()
            # Answer later: the actor keeps processing AttemptFinished messages meanwhile.
            gevent.spawn(self._expire_after, grace_s)
        return {"released": released, "running": running_at_drain}

    def _expire_after(self, grace_s: float):
        finished = self.drained.wait(grace_s)
        if not finished and self.running:
            # Make what is still running claimable at once; its attempt will be recorded abandoned.
            try:
                ids = [job_id for job_id, _ in self.running]
                self.db.write(J.expire_leases, self.worker_id, ids)
                log.warning("grace period over: %d attempts left to lease recovery", len(ids))
            except Exception as exc:
                log.error("could not expire leases at shutdown: %s", exc)
