"""JobDispatcher: claims due jobs with a lease and hands each to a RetryActor, within limits.

It never polls on a fixed interval: it sleeps on a gevent timer armed for the earliest due time in
the database, and a Redis notification from the web process wakes it when a job is submitted.

An attempt is started (its row written) in a transaction committed before its request goes out,
and never in one of its own: a claimed job that fits a free slot is started by the claim itself;
one whose host has MAX_IN_FLIGHT_PER_HOST attempts running waits in a per-host queue, claimed but
not started, until a slot frees: when an attempt's request is done (AttemptDone), the dispatcher
hands the next waiting job of its host to that attempt's outcome as its successor, started in the
outcome's transaction, or else the next claim's transaction starts it. A crash therefore charges
only attempts that were sent; waiting jobs go back uncharged when their lease expires. So that a
crash strands little, a claim takes no more than the free slots of the hosts it runs plus one
host's worth (MAX_IN_FLIGHT_PER_HOST) of waiting jobs. The lease of everything it holds is renewed
in one statement every third of a lease.

Outcomes are written by the dispatcher's OutcomeWriter, one write at a time from a greenlet: those
that finish while one is on its way go together in the next (one transaction, one trip to the
database thread, their events in one pipeline). An outcome whose attempt went out with others waits
for theirs, at most WAKE_COALESCE_MS, unless its slot is wanted (actors/coalescing.py). The
RetryActor only sends and decides, and tells the dispatcher (one message each way per attempt, no ask).

The dispatcher only decides; its pieces each have one reason to change and are tested in process:
HostSlots (actors/slots.py, pure) keeps the slots and queues, Claimer (actors/claimer.py) does the
database side of claiming and leases, OutcomeWriter (actors/outcome_writer.py) the outcomes' writes
and events. Its collaborators (database owner, transport, event publisher, Redis for wake-ups, clock,
the factory of attempt actors) are given when it is started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import gevent
import gevent.event
import pykka

from actors.base import Actor
from actors.claimer import Claimer, ClaimResult
from actors.coalescing import OutcomeHold, WakeDelay
from actors.messages import tell_unless_dead
from actors.outcome_writer import Outcome, OutcomeWriter, Written
from actors.retry_actor import AttemptDone, RetryActor, RunAttempt
from actors.slots import HostSlots, key_of
from actors.transport import Transport
from models import lifecycle
from models.channels import JOBS_WAKEUP
from models.db import DatabaseOwner
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
    """A claim finished (ClaimResult, None if it failed): how many jobs were asked for, and the waiting jobs
    given a slot that it was to start."""

    result: ClaimResult | None
    wanted: int
    to_start: list


@dataclass(frozen=True)
class OutcomesWritten:
    """The OutcomeWriter wrote these outcomes (each Written, in order)."""

    outcomes: list[Outcome]
    written: list[Written]


@dataclass(frozen=True)
class WriteHeld:
    """The outcomes held for the attempts sent with them have waited long enough."""


@dataclass(frozen=True)
class Drain:
    """Stop claiming; give back jobs not yet started; wait up to grace_s for running attempts."""

    grace_s: float


@dataclass(frozen=True)
class Stats:
    pass


class JobDispatcher(Actor):
    def __init__(
        self,
        settings,
        db: DatabaseOwner,
        transport: Transport,
        publisher: BatchedPublisher,
        wakeups=None,
        clock: Callable[[], float] = time.time,
        attempt_actor: Callable[[pykka.ActorRef], pykka.ActorRef] | None = None,
    ):
        """`wakeups`: the Redis client whose JOBS_WAKEUP messages wake the dispatcher (None: its timer alone);
        `attempt_actor(dispatcher)`: starts an actor that runs RunAttempt messages (default: a RetryActor)."""
        super().__init__()
        self.settings = settings
        self.db = db
        self.transport = transport
        self.publisher = publisher
        self.wakeups = wakeups
        self.clock = clock
        self.worker_id = settings.worker_id
        self.slots = HostSlots(settings.max_in_flight, settings.max_in_flight_per_host)
        self.claimer = Claimer(db, self.worker_id, settings.lease_s, settings.max_in_flight_per_host)
        self.outcomes = OutcomeWriter(db, self.worker_id, publisher.publish_job, settings.attempt_body_cap)
        self.attempt_actor = attempt_actor or self._new_retry_actor
        # Outcomes to write, and whether a write is on its way (one at a time: those that finish meanwhile
        # go together in the next).
        self.outcome_queue: list[Outcome] = []
        self.writing = False
        self.outcome_hold = OutcomeHold(settings.wake_coalesce_ms / 1000)
        self.hold_timer: gevent.Greenlet | None = None
        self.idle_actors: list[pykka.ActorRef] = []
        self.all_actors: list[pykka.ActorRef] = []
        self.accepting = True
        self.more_due = True
        # The last claim that asked for jobs got all it asked for: more may be due than the free slots could take.
        self.claims_full = False
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
        self.background = [gevent.spawn(self._renew_leases_forever)]
        if self.wakeups is not None:
            self.background.append(gevent.spawn(self._listen_for_wakeups))
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
        for timer in (self.timer, self.hold_timer):
            if timer is not None:
                timer.kill(block=False)
        for ref in self.all_actors:
            ref.stop(block=False)

    def after_failure(self, message):
        # Whatever the message was, a claim must come again: a timer retries in a second.
        self.claiming = False
        self._arm_timer(self.clock() + 1.0)

    def handle(self, message):
        if isinstance(message, AttemptDone):
            self._attempt_done(message)
        elif isinstance(message, OutcomesWritten):
            self._outcomes_written(message)
        elif isinstance(message, WriteHeld):
            self.hold_timer = None
            self._write_outcomes()
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
        elif isinstance(message, Stats):
            return {
                **self.slots.stats(),
                "outcomes_to_write": len(self.outcome_queue),
                "actors": len(self.all_actors),
                "claiming": self.claiming,
            }

    # -- claiming ------------------------------------------------------------------------------
    def _fill(self):
        """Start a claim if there is room and work may be due, or waiting jobs to start. The claim runs
        in its own greenlet and reports back with Claimed, so the actor keeps taking AttemptDone
        meanwhile: a dispatcher that waited on the database itself let finished attempts queue behind
        its claims."""
        if self.claiming or self.clock() < self.claim_failed_until:
            return
        free_slots = self.slots.free_slots()
        want = self.slots.wanted(self.settings.claim_batch, free_slots) if self.accepting and self.more_due else 0
        if want <= 0 and not self.slots.to_start:
            return
        to_start = self.slots.take_to_start()
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
            result = self.claimer.claim(want, to_start, free_slots)
        except Exception as exc:
            log.error("claim failed, retrying in 1 s: %s", exc)
            result = None
        tell_unless_dead(self.actor_ref, Claimed(result, want, to_start))

    def _claimed(self, message: Claimed):
        self.claiming = False
        result = message.result
        claimed = result.jobs if result is not None else []
        if message.wanted:
            self.claims_full = result is not None and len(claimed) >= message.wanted
        if not self.accepting:
            # Claimed while a drain began: give everything back unsent (and uncharged) before shutdown goes on.
            for job in message.to_start:
                self.slots.free(key_of(job))
            unsent = [key_of(job) for job in [*claimed, *message.to_start]]
            try:
                self.claimer.release(unsent)
            except Exception as exc:
                log.error(
                    "could not release %d jobs claimed during shutdown (their lease will expire): %s", len(unsent), exc
                )
            if self.drained is not None and not self.slots.running:
                self.drained.set()
            return
        if result is None:
            # The waiting jobs given a slot keep it; the timer's claim tries again in a second.
            self.slots.give_back_to_start(message.to_start)
            self.claim_failed_until = self.clock() + 1.0
        # Queue the new waiting jobs first, so that each attempt sent below takes one as its successor.
        to_send = []
        for job in claimed:
            if job.started:
                self.slots.take(job)
                to_send.append(job)
            else:
                self.slots.wait(job)
        if result is not None:
            for job in message.to_start:
                if job.id in result.started_ids:
                    to_send.append(job)
                else:  # its lease was lost meanwhile (another worker has it): not ours to send
                    self.slots.free(key_of(job))
        self.outcome_hold.sent(key_of(job) for job in to_send)
        for job in to_send:
            self._send(job)
        for host in {job.host for job in [*claimed, *message.to_start]}:
            self._promote(host)
        self._write_outcomes()  # one held for its mates may now have a waiting job to hand its slot to
        if result is None or len(claimed) < message.wanted:
            self.more_due = self.work_noted_while_claiming and result is not None
            idle = MAX_IDLE_S if self.redis_ok else IDLE_WHEN_REDIS_DOWN_S
            due = result.next_due_at if result is not None else self.claim_failed_until
            now = self.clock()
            self._arm_timer(min(due, now + idle) if due is not None else now + idle)
        self._fill()

    def _arm_timer(self, at: float):
        # A Wake that finds work already being claimed only sets more_due: the claim in flight
        # either takes that work or comes back short and re-arms the timer.
        if self.timer is not None:
            self.timer.kill(block=False)
        delay = max(0.0, at - self.clock())
        self.timer = gevent.spawn_later(delay, tell_unless_dead, self.actor_ref, Wake("timer"))

    def _promote(self, host):
        """Give free slots of `host` to its waiting jobs; the next claim starts their attempts."""
        if self.accepting:
            self.slots.promote(host)

    def _send(self, job):
        actor = self.idle_actors.pop() if self.idle_actors else self._start_attempt_actor()
        actor.tell(RunAttempt(job))

    def _start_attempt_actor(self) -> pykka.ActorRef:
        ref = self.attempt_actor(self.actor_ref)
        self.all_actors.append(ref)
        return ref

    def _new_retry_actor(self, dispatcher: pykka.ActorRef) -> pykka.ActorRef:
        return RetryActor.start(dispatcher, self.transport, self.db)

    # -- outcomes ------------------------------------------------------------------------------
    def _attempt_done(self, message: AttemptDone):
        """An attempt's request is done: queue its outcome to be written, with the next job waiting for its
        host, if any, as its successor."""
        self.idle_actors.append(message.actor)
        job, key = message.job, key_of(message.job)
        if message.decision is None or message.response is None:
            # It failed before deciding (logged by the actor): nothing to write; the lease recovers the job.
            self.outcome_hold.finished(key, outcome_waiting=False)
            self._attempts_over([(key, None)])
            return
        self.outcome_hold.finished(key, outcome_waiting=True)
        self.outcome_queue.append(Outcome(job, message.decision, message.response, None))
        if self.accepting:
            self._hand_slots_to_waiting_jobs(since=len(self.outcome_queue) - 1)
        self._write_outcomes()

    def _write_outcomes(self):
        if self.writing or not self.outcome_queue:
            return
        if self.accepting:
            self._hand_slots_to_waiting_jobs()
        # A slot is wanted when a waiting job takes it with the outcome, or when the claims take all they may.
        slot_wanted = self.claims_full or any(outcome.successor is not None for outcome in self.outcome_queue)
        if self.accepting and not slot_wanted:
            wait = self.outcome_hold.wait_s()
            if wait > 0:
                if self.hold_timer is None:
                    self.hold_timer = gevent.spawn_later(wait, tell_unless_dead, self.actor_ref, WriteHeld())
                return
        if self.hold_timer is not None:
            self.hold_timer.kill(block=False)
            self.hold_timer = None
        self.outcome_hold.written()
        batch, self.outcome_queue = self.outcome_queue, []
        self.writing = True
        gevent.spawn(self._write, batch)

    def _hand_slots_to_waiting_jobs(self, since: int = 0):
        """The queued outcomes from `since` on each hand their attempt's slot to the next job waiting for its
        host, as its successor: started in the outcome's transaction, sent once that committed.

        Done for each outcome as it is queued, and for the whole queue when a write begins: a job that came to
        wait since (claimed meanwhile) takes a slot as it would have had it been waiting when the attempt was
        done. The whole queue waits for the write on its way: the slots that write frees go to the jobs waiting
        then first (_attempts_over); handing them out at once measured no better (docs/benchmarks.md)."""
        for index in range(since, len(self.outcome_queue)):
            outcome = self.outcome_queue[index]
            if outcome.successor is None and self.slots.has_waiting(outcome.job.host):
                successor = self.slots.take_successor(outcome.job.host, key_of(outcome.job))
                self.outcome_queue[index] = replace(outcome, successor=successor)

    def _write(self, batch: list[Outcome]):
        try:
            written = self.outcomes.write(batch)
        except Exception as exc:
            # Not written: their leases run out and another claim records those attempts abandoned.
            log.error("could not write %d outcomes: %s", len(batch), exc)
            written = [Written(None, False)] * len(batch)
        tell_unless_dead(self.actor_ref, OutcomesWritten(batch, written))

    def _outcomes_written(self, message: OutcomesWritten):
        self.writing = False
        unsent = []
        started = []
        for outcome, written in zip(message.outcomes, message.written):
            successor = self.slots.successor_of(key_of(outcome.job))
            if successor is None:
                continue
            if not self.accepting:  # draining: started or not, it goes back unsent
                unsent.append(key_of(successor))
            elif written.successor_started:
                self.slots.take(successor)
                started.append(successor)
            else:  # the outcome was not recorded: back to the head of its queue, the next claim starts it
                self.slots.wait(successor, first=True)
        self.outcome_hold.sent(key_of(job) for job in started)
        for job in started:
            self._send(job)
        if unsent:
            try:
                self.claimer.release(unsent)
            except Exception as exc:
                log.error("could not release %d jobs at shutdown (their lease will expire): %s", len(unsent), exc)
        self._attempts_over([(key_of(o.job), w.status) for o, w in zip(message.outcomes, message.written)])
        self._write_outcomes()

    def _attempts_over(self, finished: list):
        """These attempts (key, the job's status now or None) hold their slots no more."""
        hosts = set()
        for key, status in finished:
            host = self.slots.free(key)
            if host is None:
                continue
            hosts.add(host)
            if status == lifecycle.RETRYING:
                # Its next attempt may be due before the timer we armed.
                self._note_work()
        if not hosts:
            return
        for host in hosts:
            self._promote(host)
        if self.drained is not None and not self.slots.running:
            self.drained.set()
        else:
            self._fill()

    # -- background greenlets -------------------------------------------------------------------
    def _listen_for_wakeups(self):
        def subscribed():
            self.redis_ok = True
            tell_unless_dead(self.actor_ref, Wake("redis-connected"))

        wake_delay = WakeDelay(self.settings.wake_coalesce_ms / 1000)

        def submitted(_):
            delay = wake_delay.for_submission()
            if self.fill_scheduled:
                return
            self.fill_scheduled = True
            if delay:
                # This listener waits out the window itself: the wake-ups published meanwhile stay unread in the
                # socket and are read together after it, one wake of this process for them all instead of one
                # each. Their jobs were committed before they were published: the claim this Wake starts has them.
                gevent.sleep(delay)
            tell_unless_dead(self.actor_ref, Wake("submission"))

        def lost(exc):
            if self.redis_ok:
                log.warning("wake-up subscription lost (%s); falling back to %.1f s timer", exc, IDLE_WHEN_REDIS_DOWN_S)
            self.redis_ok = False

        listen_forever(self.wakeups, JOBS_WAKEUP, submitted, subscribed, lost)

    def _renew_leases_forever(self):
        interval = self.settings.lease_s / 3
        while True:
            gevent.sleep(interval)
            held = self.slots.held_ids()
            try:
                self.claimer.renew(held)
            except Exception as exc:
                log.error("lease renewal failed for %d jobs: %s", len(held), exc)

    # -- shutdown ------------------------------------------------------------------------------
    def _drain(self, grace_s: float) -> dict:
        self.accepting = False
        if self.timer is not None:
            self.timer.kill(block=False)
        released = self.claimer.release(self.slots.give_up_unstarted())
        self._write_outcomes()  # no longer held for the attempts sent with them
        running_at_drain = len(self.slots.running)
        if self.slots.running:
            self.drained = gevent.event.Event()
            # Answer later: the actor keeps processing AttemptDone and OutcomesWritten meanwhile.
            gevent.spawn(self._expire_after, grace_s)
        return {"released": released, "running": running_at_drain}

    def _expire_after(self, grace_s: float):
        finished = self.drained.wait(grace_s)
        if not finished and self.slots.running:
            # Make what is still running claimable at once; its attempt will be recorded abandoned.
            try:
                ids = self.slots.running_ids()
                self.claimer.expire(ids)
                log.warning("grace period over: %d attempts left to lease recovery", len(ids))
            except Exception as exc:
                log.error("could not expire leases at shutdown: %s", exc)
