"""BrandPoller: one actor per brand connection, polling its inverters as fast as the brand's quota allows.

Timing is decided elsewhere: the quota planner (models/brands/planner.py) turns the brand's declared limits,
the connection's inverters and the interval asked for (PATCH /connections/<id>, else the brand's setting)
into a plan, and the poll schedule (actors/schedule.py) says which calls are due now and when the next one
is. Before each call is sent it is charged to the connection's budget in Redis (models/brands/budget.py),
atomically over every window; a refused charge waits for the window instead of calling. The poller does
the rest: life cycle, the calls, publishing, and re-planning when the fleet, the interval or the budget
changes (a calendar window resets, the brand throttles us).

Failures never crash the actor. Rate limiting, 5xx, unreachable and refused credentials pause the
whole connection with jittered exponential backoff (Retry-After as a floor); a throttling reply is also
recorded (GET /connections/<id> shows it) and the plan is made again from the budget's counts. A device
the brand does not know, or answers unreadably for, backs off alone. A device reported offline is marked
offline (status event and database row) and polled on schedule until it is back.

Timers are gevent timers that send the actor a message; requests run in greenlets that report back
with a message, so all the state below is only touched inside on_receive.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from dataclasses import dataclass

import gevent
import gevent.event
import redis as redis_lib

from actors.base import Actor
from actors.messages import tell_unless_dead
from actors.schedule import Clock, Entry, PollSchedule, clock_from_settings
from models import inverters, live_events, telemetry
from models.backoff import REDIS_UNREACHABLE_BACKOFF, Backoff
from models.base import iso
from models.brands import adapter_for, plan_device, requested_interval
from models.brands.base import BAD_REPLY, BRAND_WIDE, RATE_LIMITED, BatchResult, BrandError, PolledDevice
from models.brands.budget import QuotaBudget, Refusal
from models.brands.planner import Plan, PlanCall, charges, plan
from models.channels import poller_lease, poller_sent
from models.net.policy import DestinationPolicy

log = logging.getLogger(__name__)


# -- messages ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reload:
    """The connection's inverters changed (onboarded or removed): read them again."""


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Polled:
    entry: Entry
    sent_at: float
    answered_at: float  # when the answer (or the failure) came back: the brand counted the call by then
    inverter_ids: tuple
    result: BatchResult | None
    error: BrandError | None


@dataclass(frozen=True)
class Refused:
    """The budget refused a call: it waits for the window that refused it."""

    entry: Entry
    refusal: Refusal


# -- publishing ----------------------------------------------------------------------------------
class Publisher:
    """Sends readings and status events to Redis from an outbox, in pipelines, in order.

    While Redis is unreachable the outbox keeps up to `capacity` events (oldest dropped first, with a
    warning) and is flushed when Redis is back, so a Redis restart loses no reading polled meanwhile.
    The publish script is idempotent, so resending a batch that half-succeeded is harmless.
    """

    BATCH = 500

    def __init__(self, redis, settings, capacity: int = 100_000):
        self.redis = redis
        self.log_maxlen = settings.replay_maxlen
        self.ingest_maxlen = settings.ingest_maxlen
        self.capacity = capacity
        self.outbox: collections.deque = collections.deque()
        self.wake = gevent.event.Event()
        self.script = redis.register_script(live_events.PUBLISH_SCRIPT)
        self.dropped = 0
        self.greenlet = gevent.spawn(self._run)

    def reading(self, inverter_id: str, at: float, data: dict) -> None:
        """Publish a reading taken at `at` (epoch seconds; the order the script deduplicates on)."""
        self._put((live_events.READING, inverter_id, repr(at), live_events.dumps(data)))

    def status(self, inverter_id: str, status: str, data: dict) -> None:
        self._put((live_events.STATUS, inverter_id, status, live_events.dumps(data)))

    def _put(self, event) -> None:
        if len(self.outbox) >= self.capacity:
            self.outbox.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("publish outbox full (%d events): dropped %d oldest so far", self.capacity, self.dropped)
        self.outbox.append(event)
        self.wake.set()

    def _run(self):
        failures = 0
        while True:
            if not self.outbox:
                self.wake.clear()
                self.wake.wait()
            batch = list(itertools.islice(self.outbox, self.BATCH))
            try:
                pipe = self.redis.pipeline(transaction=False)
                for kind, inverter_id, order, data in batch:
                    keys, args = live_events.publish_args(
                        kind, inverter_id, order, data, self.log_maxlen, self.ingest_maxlen
                    )
                    self.script(keys=keys, args=args, client=pipe)
                results = pipe.execute(raise_on_error=False)
            except (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError) as exc:
                failures += 1
                delay = REDIS_UNREACHABLE_BACKOFF.delay(failures)
                if failures == 1 or failures % 20 == 0:
                    log.warning("cannot publish %d events (%s); retrying in %.1f s", len(self.outbox), exc, delay)
                gevent.sleep(delay)
                continue
            if failures:
                log.info("publishing again after %d failed tries; %d events waiting", failures, len(self.outbox))
            failures = 0
            for (kind, inverter_id, _, _), outcome in zip(batch, results):
                self.outbox.popleft()
                if isinstance(outcome, Exception):
                    log.error("publish of a %s for inverter=%s refused by Redis: %s", kind, inverter_id, outcome)
                elif kind == "reading":
                    telemetry.READINGS_PUBLISHED.inc()

    def close(self):
        self.greenlet.kill(block=False)


# -- the lease that makes one process poll a connection ------------------------------------------
class ConnectionLease:
    """`poller-lease:<connection>` = holder, with an expiry; renewed while alive, released on stop."""

    _RENEW = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
    )
    _RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"

    def __init__(self, redis, connection_id: str, holder: str, lease_s: float):
        self.redis = redis
        self.key = poller_lease(connection_id)
        self.holder = holder
        self.lease_ms = int(lease_s * 1000)
        self.valid_until = 0.0  # monotonic; past it we must assume someone else may hold it
        # EVALSHA, loading the script again if Redis lost it (a restart); registering costs no round trip.
        self._renew = redis.register_script(self._RENEW)
        self._release = redis.register_script(self._RELEASE)

    def acquire_or_renew(self) -> bool:
        """True if we hold the lease now. Raises redis errors; the caller trusts valid_until then."""
        started = time.monotonic()
        held = self._renew(keys=[self.key], args=[self.holder, self.lease_ms]) == 1
        if not held:
            held = bool(self.redis.set(self.key, self.holder, nx=True, px=self.lease_ms))
        self.valid_until = started + self.lease_ms / 1000.0 if held else 0.0
        return held

    def still_valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def release(self) -> None:
        try:
            self._release(keys=[self.key], args=[self.holder])
        except redis_lib.RedisError:
            pass  # it expires by itself
        self.valid_until = 0.0


# -- the poller ----------------------------------------------------------------------------------
#: Real seconds of jitter between our clock and the brand's (arrival, timers) that rolling windows allow for.
CLOCK_JITTER_S = 0.1


class _Tracked:
    __slots__ = ("inverter_id", "device", "planned", "status", "failures", "retry_at", "last_time")

    def __init__(self, inverter):
        self.inverter_id = inverter.id
        self.device = PolledDevice(inverter.serial, inverter.device_type, inverter.timezone)
        self.planned = plan_device(inverter.brand, inverter)
        self.status = inverter.status
        self.failures = 0
        self.retry_at = 0.0
        self.last_time = float("-inf")


class BrandPoller(Actor):
    def __init__(self, connection, settings, db, redis, publisher: Publisher, clock: Clock | None = None):
        super().__init__()
        self.connection_id = connection.id
        self.redis = redis
        self.sent_key = poller_sent(connection.id)
        self.brand = connection.brand
        self.settings = settings
        self.db = db
        self.publisher = publisher
        self.clock = clock or clock_from_settings(settings)
        self.adapter = adapter_for(
            connection, DestinationPolicy.from_settings(settings), settings.brand_timeout_s, self._store_credentials
        )
        self.quota = self.adapter.quota
        self.guard_s = CLOCK_JITTER_S / self.clock.real_seconds(1.0)
        self.budget = QuotaBudget(redis, connection.id, self.quota, self.guard_s)
        self.requested_s = requested_interval(connection, settings)
        self.concurrency = min(settings.poll_concurrency, self.quota.concurrency or settings.poll_concurrency)
        self.brand_backoff = Backoff(base_s=1.0, cap_s=60.0, jitter="equal")
        self.tracked: dict[str, _Tracked] = {}
        self.plan: Plan | None = None
        self.schedule: PollSchedule | None = None
        self.brand_failures = 0
        self.tokens = itertools.count(1)
        self.timer = None
        self.timer_at = None
        self.greenlets: set = set()

    def _store_credentials(self, credentials: dict) -> None:
        """Runs in the polling greenlet that rotated them: the old refresh token is already spent, so the new one
        is written before the call goes on (a failure is logged; the adapter still holds the new set)."""
        try:
            self.db.write(inverters.store_credentials, self.connection_id, credentials)
        except Exception as exc:  # noqa: BLE001 - polling goes on; a restart would then need a new authorization
            log.error("could not store rotated credentials %s: %s", self._ctx(), exc)

    def _ctx(self) -> str:
        return f"connection={self.connection_id} brand={self.brand}"

    # -- life cycle ----------------------------------------------------------------------------
    def on_start(self):
        self._reload(first=True)
        self._tick()

    def on_stop(self):
        if self.timer is not None:
            self.timer.kill(block=False)
        for greenlet in list(self.greenlets):
            greenlet.kill(block=False)
        self.adapter.close()
        log.info("poller stopped %s", self._ctx())

    def handle(self, message):
        if isinstance(message, Tick):
            self.timer = self.timer_at = None
        elif isinstance(message, Polled):
            self._polled(message)
        elif isinstance(message, Refused):
            self._refused(message)
        elif isinstance(message, Reload):
            self._reload()
        self._tick()

    def after_failure(self, message):
        self._arm()

    def context(self) -> str:
        return f"poller {self._ctx()}"

    # -- the inverter set and the plan ---------------------------------------------------------------
    def _reload(self, first: bool = False):
        try:
            rows = self.db.call(inverters.pollable, self.connection_id)
            connection = self.db.call(inverters.connection, self.connection_id)
        except Exception as exc:
            log.error("cannot read inverters %s: %s", self._ctx(), exc)
            return
        if connection is not None:
            self.requested_s = requested_interval(connection, self.settings)
        current = {row.id: row for row in rows}
        removed = [i for i in self.tracked if i not in current]
        for inverter_id in removed:
            del self.tracked[inverter_id]
        added = [row.id for row in rows if row.id not in self.tracked]
        for row in rows:
            if row.id not in self.tracked:
                self.tracked[row.id] = _Tracked(row)
        # A newly onboarded inverter is polled once at once (charged like any call) so its owner sees data
        # now; at start every inverter is new to us, and they are spread over the interval instead.
        self._replan("start" if first else "reload", new=() if first else added)
        if added or removed:
            log.info(
                "inverters reloaded %s inverters=%d added=%d removed=%d",
                self._ctx(),
                len(self.tracked),
                len(added),
                len(removed),
            )

    def _replan(self, why: str, new=()):
        now = self.clock.now()
        try:
            used = self.budget.calendar_used(now)
        except redis_lib.RedisError as exc:
            log.warning("cannot read the quota budget %s (%s); planning as if unused", self._ctx(), exc)
            used = {}
        devices = [t.planned for t in self.tracked.values()]
        previous = self.plan
        self.plan = plan(self.quota, devices, self.requested_s, now, used, self.adapter.batch_size, self.guard_s)
        if self.schedule is None:
            self.schedule = PollSchedule(self.plan, now, self._last_sent(), self.concurrency)
        else:
            self.schedule.replan(self.plan, now, new)
        if previous is None or (previous.interval_s, len(previous.calls)) != (
            self.plan.interval_s,
            len(self.plan.calls),
        ):
            log.info(
                "poll plan (%s) %s inverters=%d calls_per_round=%d interval=%.1fs requested=%.1fs "
                "feasible_min=%.1fs binding=%s",
                why,
                self._ctx(),
                len(self.tracked),
                len(self.plan.calls),
                self.plan.interval_s,
                self.requested_s,
                self.plan.min_interval_s,
                self.plan.binding,
            )

    def _last_sent(self) -> dict:
        try:
            return {k: float(v) for k, v in self.redis.hgetall(self.sent_key).items()}
        except (redis_lib.RedisError, ValueError) as exc:
            log.warning("cannot read when devices were last polled %s: %s", self._ctx(), exc)
            return {}

    def _note_sent(self, inverter_ids: tuple, at: float):
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self.sent_key, mapping={i: repr(at) for i in inverter_ids})
            pipe.expire(self.sent_key, int(max(60.0, 3 * self.clock.real_seconds(self.plan.interval_s))))
            pipe.execute()
        except redis_lib.RedisError:
            pass  # only a takeover's first round needs it, and Redis is then likely back

    # -- scheduling ------------------------------------------------------------------------------
    def _tick(self):
        now = self.clock.now()
        if self.plan.valid_until is not None and now >= self.plan.valid_until:
            self._replan("a calendar window reset")
        for entry in self.schedule.due(now):
            ready = tuple(i for i in entry.call.devices if i in self.tracked and self.tracked[i].retry_at <= now)
            if not ready:
                self.schedule.deferred(entry, now + self.plan.interval_s)
                continue
            call = (
                entry.call
                if len(ready) == len(entry.call.devices)
                else PlanCall(ready, tuple(dict.fromkeys(self.tracked[i].planned.site for i in ready)), entry.call.bulk)
            )
            self._spawn(self._poll, entry, call, now)
        self._arm()

    def _arm(self):
        at = self.schedule.next_at() if self.schedule is not None else None
        if at is None:
            return
        if self.timer is not None:
            if self.timer_at <= at:
                return
            self.timer.kill(block=False)
        self.timer_at = at
        delay = max(0.0, self.clock.real_seconds(at - self.clock.now()))
        self.timer = gevent.spawn_later(delay, tell_unless_dead, self.actor_ref, Tick())

    def _spawn(self, function, *args):
        greenlet = gevent.spawn(function, *args)
        self.greenlets.add(greenlet)
        greenlet.link(self.greenlets.discard)

    def _poll(self, entry: Entry, call: PlanCall, planned_at: float):
        try:
            refusal = self.budget.charge(
                charges(self.quota, call), self.clock.now(), f"{self.settings.worker_id}:{next(self.tokens)}"
            )
        except redis_lib.RedisError as exc:
            # The plan alone keeps within the limits; the budget is the guard across restarts and handovers.
            log.warning("cannot charge the quota budget %s (%s); calling as planned", self._ctx(), exc)
            refusal = None
        if refusal is not None:
            tell_unless_dead(self.actor_ref, Refused(entry, refusal))
            return
        sent_at = self.clock.now()
        telemetry.POLL_LAG.labels(self.brand).observe(max(0.0, self.clock.real_seconds(sent_at - planned_at)))
        devices = [self.tracked[i].device for i in call.devices if i in self.tracked]
        gevent.spawn(self._note_sent, call.devices, sent_at)  # alongside: never delays the call
        result = error = None
        try:
            result = self.adapter.fetch_latest(devices)
        except BrandError as exc:
            error = exc
        except Exception as exc:  # an adapter bug must not kill the poller
            log.exception("adapter failed %s: %s", self._ctx(), exc)
            error = BrandError(BAD_REPLY, f"unexpected adapter failure: {exc!r}")
        answered_at = self.clock.now()
        gevent.spawn(self._note_sent, call.devices, answered_at)  # a takeover counts the interval from here too
        tell_unless_dead(self.actor_ref, Polled(entry, sent_at, answered_at, call.devices, result, error))

    # -- outcomes --------------------------------------------------------------------------------
    def _refused(self, message: Refused):
        now = self.clock.now()
        telemetry.QUOTA_DEFERRED.labels(self.brand).inc()
        log.info(
            "quota window %r is full %s; call waits %.1fs", message.refusal.window, self._ctx(), message.refusal.wait_s
        )
        self.schedule.deferred(message.entry, now + message.refusal.wait_s + self.guard_s)

    def _polled(self, message: Polled):
        now = self.clock.now()
        self.schedule.finished(message.entry, message.sent_at, message.answered_at)
        error = message.error
        telemetry.BRAND_REQUESTS.labels(self.brand, "ok" if error is None else error.kind).inc()
        if error is not None and error.kind == RATE_LIMITED:
            telemetry.BRAND_RATE_LIMITED.labels(self.brand).inc()
        if error is not None and error.kind in BRAND_WIDE:
            self.brand_failures += 1
            retry_after = error.retry_after_s
            delay = self.brand_backoff.delay(self.brand_failures, retry_after=retry_after)
            pause_s = delay / self.clock.real_seconds(1.0)  # backoff is real time; the schedule's clock may run fast
            if retry_after is not None:
                pause_s = max(pause_s, retry_after)  # the brand's Retry-After is in its own (the clock's) seconds
            self.schedule.pause(now + pause_s)
            log.warning(
                "brand backing off %s kind=%s failures=%d pause=%.1fs: %s",
                self._ctx(),
                error.kind,
                self.brand_failures,
                pause_s,
                error.message,
            )
            if error.kind == RATE_LIMITED:
                self._spawn(self._record_throttle, now, error.message, now + pause_s)
                self._replan("throttled")
            return
        if error is not None:
            for inverter_id in message.inverter_ids:
                self._device_failed(inverter_id, error, now)
            return
        if self.brand_failures:
            log.info("brand answering again %s after %d failures", self._ctx(), self.brand_failures)
        self.brand_failures = 0
        by_serial = {self.tracked[i].device.serial: i for i in message.inverter_ids if i in self.tracked}
        changes = []
        result = message.result
        for serial, reading in result.readings.items():
            if serial not in by_serial:  # removed while its call was in flight
                continue
            tracked = self.tracked[by_serial[serial]]
            tracked.failures = 0
            tracked.retry_at = 0.0
            changes += self._set_status(tracked, inverters.ONLINE, "reading received")
            if reading.time > tracked.last_time:
                tracked.last_time = reading.time
                data = {"inverter_id": tracked.inverter_id, "brand": self.brand, **reading.to_dict()}
                data["time"] = iso(reading.time)
                self.publisher.reading(tracked.inverter_id, reading.time, data)
        for serial in result.offline:
            if serial not in by_serial:
                continue
            tracked = self.tracked[by_serial[serial]]
            tracked.failures = 0
            tracked.retry_at = 0.0
            changes += self._set_status(tracked, inverters.OFFLINE, "brand reports the device offline")
        for serial, exc in result.failed.items():
            if serial in by_serial:
                self._device_failed(by_serial[serial], exc, now)
        if changes:
            self._save_status(changes)

    def _record_throttle(self, now: float, reason: str, paused_until: float):
        try:
            self.budget.record_throttle(now, reason, paused_until)
        except redis_lib.RedisError as exc:
            log.warning("cannot record a throttling reply %s: %s", self._ctx(), exc)

    def _device_failed(self, inverter_id: str, error: BrandError, now: float):
        tracked = self.tracked.get(inverter_id)
        if tracked is None:
            return
        tracked.failures += 1
        interval = self.plan.interval_s
        delay = Backoff(base_s=interval, cap_s=max(600.0, 4 * interval), jitter="full").delay(tracked.failures)
        tracked.retry_at = now + delay
        log.warning(
            "inverter backing off %s inverter=%s serial=%s kind=%s failures=%d pause=%.1fs: %s",
            self._ctx(),
            inverter_id,
            tracked.device.serial,
            error.kind,
            tracked.failures,
            delay,
            error.message,
        )

    def _set_status(self, tracked: _Tracked, status: str, reason: str) -> list:
        if tracked.status == status:
            return []
        tracked.status = status
        at = time.time()
        log.info(
            "inverter %s %s inverter=%s serial=%s: %s",
            status,
            self._ctx(),
            tracked.inverter_id,
            tracked.device.serial,
            reason,
        )
        self.publisher.status(
            tracked.inverter_id,
            status,
            {"inverter_id": tracked.inverter_id, "status": status, "at": iso(at), "reason": reason},
        )
        return [(tracked.inverter_id, status, at)]

    def _save_status(self, changes: list):
        def save():
            try:
                self.db.write(inverters.set_status, changes)
            except Exception as exc:
                log.error("cannot store status of %d inverters %s: %s", len(changes), self._ctx(), exc)

        self._spawn(save)
