"""JobDispatcher: claims due jobs with a lease and hands each to a RetryActor, within limits.

It never polls on a fixed interval: it sleeps on a gevent timer armed for the earliest due time in
the database, and a Redis notification from the web process wakes it when a job is submitted.

An attempt is started (its row written) in a transaction committed before its request goes out,
and never in one of its own: a claimed job that fits a free slot is started by the claim itself;
one whose host has MAX_IN_FLIGHT_PER_HOST attempts running waits in a per-host queue, claimed but
not started, until a slot frees: the finishing attempt takes it as its successor (TakeSuccessor)
and starts it with its outcome, or else the next claim's transaction starts it. A crash therefore
charges only attempts that were sent; waiting jobs go back uncharged when their lease expires. So
that a crash strands little, a claim takes no more than the free slots of the hosts it runs plus
one host's worth (MAX_IN_FLIGHT_PER_HOST) of waiting jobs. The lease of everything it holds is
renewed in one statement every third of a lease.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass

import gevent
import gevent.event
import pykka

from actors.base import Actor
from actors.messages import tell_unless_dead
from actors.retry_actor import AttemptFinished, RetryActor, RunAttempt, TakeSuccessor
from models import jobs, lifecycle, telemetry
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
    """A claim finished: the jobs it took (each `started` or not), how many were asked for, the next due
    time if it ran dry, and which of the waiting jobs handed to it (`to_start`) it started."""

    jobs: list
    wanted: int
    next_due_at: float | None
    to_start: list = ()
    started_ids: frozenset = frozenset()
    failed: bool = False


@dataclass(frozen=True)
class Drain:
    """Stop claiming; give back jobs not yet started; wait up to grace_s for running attempts."""

    grace_s: float


@dataclass(frozen=True)
class Stats:
    pass


class JobDispatcher(Actor):
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
        # Waiting jobs handed to a finishing attempt of their host (TakeSuccessor), to be started in the
        # transaction of its outcome; not in waiting_count. Keyed like `running`.
        self.successors: dict[tuple[str, int], jobs.Job] = {}
        self.waiting_count = 0
        # Waiting jobs given a slot (in `running` already) whose attempt the next claim will start.
        self.to_start: list = []
        self.per_host: collections.Counter = collections.Counter()
        self.idle_actors: list[pykka.ActorRef] = []
        self.all_actors: list[pykka.ActorRef] = []
        self.accepting = True
        self.more_due = True
        self.claiming = False
        self.claim_failed_until = 0.0
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
        log.info(
            "dispatcher started worker=%s max_in_flight=%d per_host=%d lease=%.1fs",
            self.worker_id,
            self.settings.max_in_flight,
            self.settings.max_in_flight_per_host,
            self.settings.lease_s,
        )

    def on_stop(self):
        for greenlet in self.background:
            greenlet.kill(block=False)
        if self.timer is not None:
            self.timer.kill(block=False)
        for ref in self.all_actors:
            ref.stop(block=False)

    def after_failure(self, message):
        # Whatever the message was, a claim must come again: a timer retries in a second.
        self.claiming = False
        self._arm_timer(time.time() + 1.0)

    def handle(self, message):
        if isinstance(message, AttemptFinished):
            self._finished(message)
        elif isinstance(message, Claimed):
            self._claimed(message)
        elif isinstance(message, Wake):
            log.debug("dispatcher woken: %s", message.reason)
            self.fill_scheduled = False
            self.claim_failed_until = 0.0
            self._note_work()
            self._fill()
        elif isinstance(message, Drain):
            return self._drain(message.grace_s)
        elif isinstance(message, TakeSuccessor):
            return self._take_successor(message)
        elif isinstance(message, Stats):
            return {
                "running": len(self.running),
                "waiting": self.waiting_count,
                "starting": len(self.to_start),
                "successors": len(self.successors),
                "actors": len(self.all_actors),
                "claiming": self.claiming,
            }

    # -- claiming ------------------------------------------------------------------------------
    def _free_slots(self) -> dict:
        """Per-host slots free now, for the hosts that have attempts running (a host with waiting jobs has none)."""
        cap = self.settings.max_in_flight_per_host
        return {host: max(0, cap - running) for host, running in self.per_host.items()}

    def _wanted(self, free_slots: dict) -> int:
        # At most the global room, and only what can start now plus one host's worth of waiting jobs:
        # jobs for a busy host would otherwise pile up claimed (MAX_IN_FLIGHT of them) where no other
        # worker can take them, and wait out a lease after a crash.
        queue_room = self.settings.max_in_flight_per_host - self.waiting_count
        held = len(self.running) + len(self.successors) + self.waiting_count
        return max(
            0, min(self.settings.claim_batch, self.settings.max_in_flight - held, queue_room + sum(free_slots.values()))
        )

    def _fill(self):
        """Start a claim if there is room and work may be due, or waiting jobs to start. The claim runs
        in its own greenlet and reports back with Claimed, so the actor keeps taking AttemptFinished
        meanwhile: a dispatcher that waited on the database itself let finished attempts queue behind
        its claims."""
        if self.claiming or time.time() < self.claim_failed_until:
            return
        free_slots = self._free_slots()
        want = self._wanted(free_slots) if self.accepting and self.more_due else 0
        if want <= 0 and not self.to_start:
            return
        to_start, self.to_start = self.to_start, []
        self.claiming = True
        self.work_noted_while_claiming = False
        gevent.spawn(self._claim, want, to_start, free_slots)

    def _note_work(self):
        """Something may have become due: a submission, a timer, a retry scheduled soon."""
        self.more_due = True
        if self.claiming:
            # The claim on the wire may have read the table before this work was committed.
            self.work_noted_while_claiming = True

    def _claim(self, want: int, to_start: list, free_slots: dict):
        try:
            started_ids, claimed = self.db.write(self._start_and_claim, want, to_start, free_slots)
            if claimed and claimed.abandoned:
                telemetry.JOB_ATTEMPTS.labels(lifecycle.ABANDONED).inc(claimed.abandoned)
            if claimed and claimed.dead:
                telemetry.JOBS_DEAD.inc(claimed.dead)
            next_due = self.db.call(jobs.next_due_at) if len(claimed) < want else None
            result = Claimed(claimed, want, next_due, to_start, frozenset(started_ids))
        except Exception as exc:
            log.error("claim failed, retrying in 1 s: %s", exc)
            result = Claimed([], want, time.time() + 1.0, to_start, failed=True)
        tell_unless_dead(self.actor_ref, result)

    def _start_and_claim(self, want: int, to_start: list, free_slots: dict):
        """One transaction: start the waiting jobs given a slot, claim more, and start those of them that
        fit a free slot. `free_slots` is the actor's view when the claim began; slots only free up since."""
        started_ids = jobs.start_attempts(self.worker_id, [(job.id, job.attempts) for job in to_start])
        cap = self.settings.max_in_flight_per_host

        def start_now(job) -> bool:
            free = free_slots.get(job.host, cap)
            free_slots[job.host] = free - 1
            return free > 0

        claimed = jobs.claim_due(self.worker_id, want, self.settings.lease_s, start_now=start_now) if want > 0 else []
        return started_ids, claimed

    def _claimed(self, message: Claimed):
        self.claiming = False
        if not self.accepting:
            # Claimed while a drain began: give everything back unsent (and uncharged) before shutdown goes on.
            for job in message.to_start:
                self._free_slot((job.id, job.attempts))
            unsent = list(message.jobs) + list(message.to_start)
            if unsent:
                try:
                    self.db.write(jobs.release, self.worker_id, [(j.id, j.attempts) for j in unsent])
                except Exception as exc:
                    log.error(
                        "could not release %d jobs claimed during shutdown (their lease will expire): %s",
                        len(unsent),
                        exc,
                    )
            if self.drained is not None and not self.running:
                self.drained.set()
            return
        if message.failed:
            # The waiting jobs given a slot keep it; the timer's claim tries again in a second.
            self.to_start = list(message.to_start) + self.to_start
            self.claim_failed_until = message.next_due_at
        # Queue the new waiting jobs first, so that each attempt sent below takes one as its successor.
        to_send = []
        for job in message.jobs:
            if job.started:
                self._take_slot(job)
                to_send.append(job)
            else:
                self.waiting[job.host].append(job)
                self.waiting_count += 1
        for job in [] if message.failed else message.to_start:
            if job.id in message.started_ids:
                to_send.append(job)
            else:  # its lease was lost meanwhile (another worker has it): not ours to send
                self._free_slot((job.id, job.attempts))
        for job in to_send:
            self._send(job)
        for host in {job.host for job in [*message.jobs, *message.to_start]}:
            self._promote(host)
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

    def _take_slot(self, job):
        self.running[(job.id, job.attempts)] = job.host
        self.per_host[job.host] += 1

    def _free_slot(self, key) -> str | None:
        host = self.running.pop(key, None)
        if host is not None:
            self.per_host[host] -= 1
            if self.per_host[host] <= 0:
                del self.per_host[host]
        return host

    def _promote(self, host):
        """Give free slots of `host` to its waiting jobs; the next claim starts their attempts."""
        queue = self.waiting.get(host)
        while queue and self.accepting and self.per_host[host] < self.settings.max_in_flight_per_host:
            job = queue.popleft()
            self.waiting_count -= 1
            self._take_slot(job)
            self.to_start.append(job)
        if queue is not None and not queue:
            del self.waiting[host]

    def _send(self, job):
        actor = self.idle_actors.pop() if self.idle_actors else self._new_actor()
        actor.tell(RunAttempt(job))

    def _take_successor(self, message: TakeSuccessor):
        queue = self.waiting.get(message.host)
        if not queue or not self.accepting or (message.job_id, message.number) not in self.running:
            return None
        successor = queue.popleft()
        self.waiting_count -= 1
        if not queue:
            del self.waiting[message.host]
        self.successors[(message.job_id, message.number)] = successor
        return successor

    def _new_actor(self):
        ref = RetryActor.start(
            self.actor_ref, self.transport, self.db, self.events, self.worker_id, self.settings.attempt_body_cap
        )
        self.all_actors.append(ref)
        return ref

    def _finished(self, message: AttemptFinished):
        key = (message.job_id, message.number)
        host = self._free_slot(key)
        self.idle_actors.append(message.actor)
        successor = self.successors.pop(key, None)
        if successor is not None:
            if message.successor_started:
                self._take_slot(successor)
                self._send(successor)
            else:  # the outcome was not recorded: back to the head of its queue, the next claim starts it
                self.waiting[successor.host].appendleft(successor)
                self.waiting_count += 1
        if host is None:
            return
        self._promote(host)
        if message.status == lifecycle.RETRYING:
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
            held = (
                [job_id for job_id, _ in self.running]
                + [job.id for job in self.successors.values()]
                + [job.id for queue in self.waiting.values() for job in queue]
            )
            if not held:
                continue
            try:
                self.db.write(jobs.renew_leases, self.worker_id, held, self.settings.lease_s)
            except Exception as exc:
                log.error("lease renewal failed for %d jobs: %s", len(held), exc)

    # -- shutdown ------------------------------------------------------------------------------
    def _drain(self, grace_s: float) -> dict:
        self.accepting = False
        if self.timer is not None:
            self.timer.kill(block=False)
        not_started = [(job.id, job.attempts) for queue in self.waiting.values() for job in queue]
        not_started += [(job.id, job.attempts) for job in [*self.to_start, *self.successors.values()]]
        self.successors.clear()
        for job in self.to_start:
            self._free_slot((job.id, job.attempts))
        self.to_start = []
        self.waiting.clear()
        self.waiting_count = 0
        released = self.db.write(jobs.release, self.worker_id, not_started) if not_started else 0
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
                self.db.write(jobs.expire_leases, self.worker_id, ids)
                log.warning("grace period over: %d attempts left to lease recovery", len(ids))
            except Exception as exc:
                log.error("could not expire leases at shutdown: %s", exc)
