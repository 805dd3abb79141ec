"""BrandPoller: one actor per brand connection, polling its inverters at the pace the brand allows.

Scheduling. Inverters are grouped into *items*, one latest-data call each: a single inverter for
sandbox, up to 100 inverters of one device type for growatt_v4. Each item is due once per poll
interval; the first schedule spreads items evenly over the interval, and an item is next due one
interval after its call was *sent*, so no device is ever asked sooner than the interval. Calls leave
at least 1/requests_per_s apart (the brand's limit per credential, which is what a connection is)
and at most POLL_CONCURRENCY are in flight.

Failures never crash the actor. Rate limiting, 5xx, unreachable and refused credentials pause the
whole connection with jittered exponential backoff (Retry-After as a floor). A device the brand does
not know, or answers unreadably for, backs off alone. A device reported offline is marked offline
(status event and database row) and polled on schedule until it is back.

Timers are gevent timers that send the actor a message; requests run in greenlets that report back
with a message, so all the state below is only touched inside on_receive.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import logging
import random
import time
from dataclasses import dataclass

import gevent
import gevent.event
import pykka
import redis as redis_lib

from actors.messages import tell_unless_dead
from models import inverters as Q
from models import live_events, telemetry
from models.backoff import REDIS_UNREACHABLE_BACKOFF, Backoff
from models.base import iso
from models.brands import adapter_for, poll_pace
from models.brands.base import BAD_REPLY, BRAND_WIDE, RATE_LIMITED, BatchResult, BrandError, PolledDevice
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
    item_id: int
    sent_at: float
    inverter_ids: tuple
    result: BatchResult | None
    error: BrandError | None


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
                    keys, args = live_events.publish_args(kind, inverter_id, order, data, self.log_maxlen,
                                                          self.ingest_maxlen)
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

    _RENEW = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
              "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end")
    _RELEASE = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('DEL', KEYS[1]) else return 0 end")

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
class _Item:
    """One latest-data call's worth of inverters sharing a batch key."""
    __slots__ = ("id", "key", "members", "due")

    def __init__(self, item_id: int, key: str, due: float):
        self.id = item_id
        self.key = key
        self.members: list[str] = []
        self.due = due


class _Tracked:
    __slots__ = ("inverter_id", "device", "status", "failures", "retry_at", "last_time")

    def __init__(self, inverter):
        self.inverter_id = inverter.id
        self.device = PolledDevice(inverter.serial, inverter.device_type, inverter.timezone)
        self.status = inverter.status
        self.failures = 0
        self.retry_at = 0.0
        self.last_time = float("-inf")


class BrandPoller(pykka.ThreadingActor):
    def __init__(self, connection, settings, db, redis, publisher: Publisher):
        super().__init__()
        self.connection_id = connection.id
        self.redis = redis
        self.sent_key = poller_sent(connection.id)
        self.brand = connection.brand
        self.db = db
        self.publisher = publisher
        self.adapter = adapter_for(connection, DestinationPolicy.from_settings(settings), settings.brand_timeout_s,
                                   self._store_credentials)
        self.interval_s, requests_per_s = poll_pace(connection.brand, settings)
        self.min_gap_s = 1.0 / requests_per_s
        self.concurrency = settings.poll_concurrency
        self.brand_backoff = Backoff(base_s=1.0, cap_s=max(60.0, self.interval_s), jitter="equal")
        self.device_backoff = Backoff(base_s=self.interval_s, cap_s=max(600.0, 4 * self.interval_s), jitter="full")
        self.tracked: dict[str, _Tracked] = {}
        self.items: dict[int, _Item] = {}
        self.item_of: dict[str, int] = {}
        self.heap: list = []
        self.item_ids = itertools.count(1)
        self.in_flight = 0
        self.next_send_at = 0.0
        self.brand_failures = 0
        self.paused_until = 0.0
        self.timer = None
        self.timer_at = None
        self.greenlets: set = set()

    def _store_credentials(self, credentials: dict) -> None:
        """Runs in the polling greenlet that rotated them: the old refresh token is already spent, so the new one
        is written before the call goes on (a failure is logged; the adapter still holds the new set)."""
        try:
            self.db.write(Q.store_credentials, self.connection_id, credentials)
        except Exception as exc:  # noqa: BLE001 - polling goes on; a restart would then need a new authorization
            log.error("could not store rotated credentials %s: %s", self._ctx(), exc)

    def _ctx(self) -> str:
        return f"connection={self.connection_id} brand={self.brand}"

    # -- life cycle ----------------------------------------------------------------------------
    def on_start(self):
        self._reload(first=True)
        log.info("poller started %s inverters=%d calls_per_round=%d interval=%.1fs min_gap=%.3fs", self._ctx(),
                 len(self.tracked), len(self.items), self.interval_s, self.min_gap_s)
        self._tick()

    def on_stop(self):
        if self.timer is not None:
            self.timer.kill(block=False)
        for greenlet in list(self.greenlets):
            greenlet.kill(block=False)
        self.adapter.close()
        log.info("poller stopped %s", self._ctx())

    def on_receive(self, message):
        try:
            if isinstance(message, Tick):
                self.timer = self.timer_at = None
                self._tick()
            elif isinstance(message, Polled):
                self._polled(message)
                self._tick()
            elif isinstance(message, Reload):
                self._reload()
                self._tick()
        except Exception:  # noqa: BLE001 - an exception would stop the actor and this brand's polling
            log.exception("poller step failed on %s %s; carrying on", type(message).__name__, self._ctx())
            self._arm()

    # -- the inverter set ------------------------------------------------------------------------
    def _reload(self, first: bool = False):
        try:
            rows = self.db.call(Q.pollable, self.connection_id)
        except Exception as exc:
            log.error("cannot read inverters %s: %s", self._ctx(), exc)
            return
        current = {row.id: row for row in rows}
        removed = [i for i in self.tracked if i not in current]
        for inverter_id in removed:
            self._remove(inverter_id)
        added = [row for row in rows if row.id not in self.tracked]
        now = time.monotonic()
        new_items = []
        for row in added:
            self.tracked[row.id] = _Tracked(row)
            item = self._place(row.id, now)
            if item is not None:
                new_items.append(item)
        # Spread new calls over one interval: evenly at start, at random for later arrivals (which
        # come one onboarding at a time, so random phases fill the interval just as well). A device
        # another process polled moments ago (a lease taken over) waits out its interval first.
        last_sent = self._last_sent() if first else {}
        wall_to_mono = now - time.time()
        for n, item in enumerate(new_items):
            offset = self.interval_s * n / len(new_items) if first else random.uniform(0, self.interval_s)
            earliest = max((last_sent.get(i, float("-inf")) for i in item.members), default=float("-inf"))
            item.due = max(now + offset, earliest + wall_to_mono + self.interval_s)
            heapq.heappush(self.heap, (item.due, item.id))
        if added or removed:
            log.info("inverters reloaded %s inverters=%d added=%d removed=%d calls_per_round=%d", self._ctx(),
                     len(self.tracked), len(added), len(removed), len(self.items))

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
            pipe.expire(self.sent_key, int(max(60.0, 3 * self.interval_s)))
            pipe.execute()
        except redis_lib.RedisError:
            pass  # only a takeover's first round needs it, and Redis is then likely back

    def _place(self, inverter_id: str, now: float) -> _Item | None:
        """Put an inverter into a call with room; return the call if it is a new one."""
        key = self.adapter.batch_key(self.tracked[inverter_id].device)
        size = self.adapter.batch_size
        if size > 1:
            for item in self.items.values():
                if item.key == key and len(item.members) < size:
                    item.members.append(inverter_id)
                    self.item_of[inverter_id] = item.id
                    return None
        item = _Item(next(self.item_ids), key, now)
        item.members.append(inverter_id)
        self.items[item.id] = item
        self.item_of[inverter_id] = item.id
        return item

    def _remove(self, inverter_id: str):
        self.tracked.pop(inverter_id, None)
        item = self.items.get(self.item_of.pop(inverter_id, None))
        if item is not None:
            item.members.remove(inverter_id)
            if not item.members:
                del self.items[item.id]  # its heap entry is skipped when popped

    # -- scheduling ------------------------------------------------------------------------------
    def _tick(self):
        now = time.monotonic()
        while self.heap and self.in_flight < self.concurrency:
            due, item_id = self.heap[0]
            item = self.items.get(item_id)
            if item is None or item.due != due:
                heapq.heappop(self.heap)  # stale entry: removed or rescheduled
                continue
            if max(due, self.paused_until, self.next_send_at) > now:
                break
            heapq.heappop(self.heap)
            ready = [i for i in item.members if self.tracked[i].retry_at <= now]
            if not ready:
                self._schedule(item, now + self.interval_s)
                continue
            self.next_send_at = now + self.min_gap_s
            telemetry.POLL_LAG.labels(self.brand).observe(max(0.0, now - due))
            self.in_flight += 1
            item.due = None  # in flight: not in the heap until it reports back
            greenlet = gevent.spawn(self._poll, item.id, tuple(ready), now)
            self.greenlets.add(greenlet)
            greenlet.link(self.greenlets.discard)
        self._arm()

    def _schedule(self, item: _Item, due: float):
        item.due = due
        heapq.heappush(self.heap, (due, item.id))

    def _arm(self):
        if not self.heap or self.in_flight >= self.concurrency:
            return
        at = max(self.heap[0][0], self.paused_until, self.next_send_at)
        if self.timer is not None:
            if self.timer_at <= at:
                return
            self.timer.kill(block=False)
        self.timer_at = at
        self.timer = gevent.spawn_later(max(0.0, at - time.monotonic()), tell_unless_dead, self.actor_ref, Tick())

    def _poll(self, item_id: int, inverter_ids: tuple, sent_at: float):
        devices = [self.tracked[i].device for i in inverter_ids if i in self.tracked]
        gevent.spawn(self._note_sent, inverter_ids, time.time())  # alongside: never delays the call
        result = error = None
        try:
            result = self.adapter.fetch_latest(devices)
        except BrandError as exc:
            error = exc
        except Exception as exc:  # an adapter bug must not kill the poller
            log.exception("adapter failed %s: %s", self._ctx(), exc)
            error = BrandError(BAD_REPLY, f"unexpected adapter failure: {exc!r}")
        tell_unless_dead(self.actor_ref, Polled(item_id, sent_at, inverter_ids, result, error))

    # -- outcomes --------------------------------------------------------------------------------
    def _polled(self, message: Polled):
        self.in_flight -= 1
        now = time.monotonic()
        item = self.items.get(message.item_id)
        if item is not None:
            self._schedule(item, message.sent_at + self.interval_s)
        error = message.error
        telemetry.BRAND_REQUESTS.labels(self.brand, "ok" if error is None else error.kind).inc()
        if error is not None and error.kind == RATE_LIMITED:
            telemetry.BRAND_RATE_LIMITED.labels(self.brand).inc()
        if error is not None and error.kind in BRAND_WIDE:
            self.brand_failures += 1
            delay = self.brand_backoff.delay(self.brand_failures, retry_after=error.retry_after_s)
            self.paused_until = max(self.paused_until, now + delay)
            log.warning("brand backing off %s kind=%s failures=%d pause=%.1fs: %s", self._ctx(), error.kind,
                        self.brand_failures, delay, error.message)
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
            changes += self._set_status(tracked, Q.ONLINE, "reading received")
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
            changes += self._set_status(tracked, Q.OFFLINE, "brand reports the device offline")
        for serial, exc in result.failed.items():
            if serial in by_serial:
                self._device_failed(by_serial[serial], exc, now)
        if changes:
            self._save_status(changes)

    def _device_failed(self, inverter_id: str, error: BrandError, now: float):
        tracked = self.tracked.get(inverter_id)
        if tracked is None:
            return
        tracked.failures += 1
        delay = self.device_backoff.delay(tracked.failures)
        tracked.retry_at = now + delay
        log.warning("inverter backing off %s inverter=%s serial=%s kind=%s failures=%d pause=%.1fs: %s", self._ctx(),
                    inverter_id, tracked.device.serial, error.kind, tracked.failures, delay, error.message)

    def _set_status(self, tracked: _Tracked, status: str, reason: str) -> list:
        if tracked.status == status:
            return []
        tracked.status = status
        at = time.time()
        log.info("inverter %s %s inverter=%s serial=%s: %s", status, self._ctx(), tracked.inverter_id,
                 tracked.device.serial, reason)
        self.publisher.status(tracked.inverter_id, status, {"inverter_id": tracked.inverter_id, "status": status,
                                                            "at": iso(at), "reason": reason})
        return [(tracked.inverter_id, status, at)]

    def _save_status(self, changes: list):
        def save():
            try:
                self.db.write(Q.set_status, changes)
            except Exception as exc:
                log.error("cannot store status of %d inverters %s: %s", len(changes), self._ctx(), exc)
        greenlet = gevent.spawn(save)
        self.greenlets.add(greenlet)
        greenlet.link(self.greenlets.discard)
