"""Live metrics in a worker: the publisher, the recorder, and a supervisor that runs one BrandPoller per
brand connection whose lease this process holds.

Several worker processes may run the pollers role; each connection is polled by exactly one of them at
a time: the supervisor takes or renews `poller-lease:<connection>` every quarter of POLLER_LEASE_S and
starts or stops the connection's poller accordingly. If Redis cannot be asked, a poller keeps running
only until its lease would have expired, because after that another process may have taken it over.
Onboarding and removal publish `inverters:changed` (payload: the connection id), so a new inverter is
polled without a restart; a slow full resync is the safety net for a lost notification. The list of
connections is read from the database only when it may have changed (at start, on `inverters:changed`,
after each (re)subscription to it, and at that resync), not on every lease renewal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import gevent
import pykka
import redis as redis_lib

from actors.base import Actor
from actors.messages import tell_unless_dead
from actors.poller import BrandPoller, ConnectionLease, Publisher, Reload
from actors.recorder import Recorder
from models import inverters
from models.brands import adapter_class
from models.channels import INVERTERS_CHANGED
from models.redis_client import listen_forever

log = logging.getLogger(__name__)

RESYNC_EVERY_S = 30.0


@dataclass(frozen=True)
class Sync:
    reason: str = "timer"
    reread: bool = False  # read the list of connections again, not only renew the leases


@dataclass(frozen=True)
class Changed:
    connection_id: str


class PollerSupervisor(Actor):
    def __init__(self, settings, db, redis, publisher: Publisher):
        super().__init__()
        self.settings = settings
        self.db = db
        self.redis = redis
        self.publisher = publisher
        self.pollers: dict[str, pykka.ActorRef] = {}
        self.leases: dict[str, ConnectionLease] = {}
        # The connections that have inverters, as last read; None: read them at the next sync.
        self.connections: dict | None = None
        self.background: list = []
        self.last_resync = time.monotonic()

    def on_start(self):
        self.background = [
            gevent.spawn(self._every, self.settings.poller_lease_s / 4, Sync()),
            gevent.spawn(self._listen),
        ]
        self._sync("start")

    def on_stop(self):
        for greenlet in self.background:
            greenlet.kill(block=False)
        for connection_id in list(self.pollers):
            self._stop_poller(connection_id, "shutting down")
        # Give the connections back at once so another worker takes over without waiting for expiry.
        for lease in self.leases.values():
            lease.release()

    def handle(self, message):
        if isinstance(message, Sync):
            if message.reread:
                self.connections = None
            self._sync(message.reason)
        elif isinstance(message, Changed):
            # A connection may have its first inverter or have lost its last: read the list again, now
            # if it may be a connection to take, else at the next lease renewal (as many changes, one read).
            self.connections = None
            ref = self.pollers.get(message.connection_id)
            if ref is not None and ref.is_alive():
                tell_unless_dead(ref, Reload())
            else:
                self._sync("inverters changed")

    def _sync(self, reason: str):
        log.debug("poller supervisor sync: %s", reason)
        resync = time.monotonic() - self.last_resync >= RESYNC_EVERY_S
        if self.connections is None or resync:
            try:
                self.connections = {c.id: c for c in self.db.call(inverters.connections_with_inverters)}
            except Exception as exc:
                log.error("cannot list brand connections (%s); keeping the current pollers", exc)
                self.connections = None  # read again at the next sync
        connections = self.connections
        if connections is not None:
            for connection_id in [c for c in self.pollers if c not in connections]:
                self._stop_poller(connection_id, "no inverters left")
                self.leases.pop(connection_id).release()
            for connection in connections.values():
                self._hold(connection)
        else:
            for connection_id in list(self.pollers):
                if not self.leases[connection_id].still_valid():
                    self._stop_poller(connection_id, "lease could not be renewed")
        if resync:
            self.last_resync = time.monotonic()
            for ref in self.pollers.values():
                tell_unless_dead(ref, Reload())

    def _hold(self, connection):
        if adapter_class(connection.brand) is None:
            log.error("connection=%s has unknown brand=%s; not polled", connection.id, connection.brand)
            return
        lease = self.leases.get(connection.id)
        if lease is None:
            lease = self.leases[connection.id] = ConnectionLease(
                self.redis, connection.id, self.settings.worker_id, self.settings.poller_lease_s
            )
        try:
            held = lease.acquire_or_renew()
        except redis_lib.RedisError as exc:
            held = lease.still_valid()
            if not held and connection.id in self.pollers:
                log.warning("cannot renew lease connection=%s brand=%s (%s)", connection.id, connection.brand, exc)
        if held and connection.id in self.pollers and not self.pollers[connection.id].is_alive():
            log.error(
                "poller of connection=%s brand=%s had stopped; starting it again", connection.id, connection.brand
            )
            del self.pollers[connection.id]
        if held and connection.id not in self.pollers:
            self.pollers[connection.id] = BrandPoller.start(
                connection, self.settings, self.db, self.redis, self.publisher
            )
            log.info(
                "lease taken connection=%s brand=%s worker=%s", connection.id, connection.brand, self.settings.worker_id
            )
        elif not held and connection.id in self.pollers:
            self._stop_poller(connection.id, "lease lost")

    def _stop_poller(self, connection_id: str, why: str):
        ref = self.pollers.pop(connection_id, None)
        if ref is not None:
            log.info("stopping poller connection=%s: %s", connection_id, why)
            try:
                ref.stop(timeout=5)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass

    # -- background greenlets --------------------------------------------------------------------
    def _every(self, interval: float, message):
        while True:
            gevent.sleep(interval)
            tell_unless_dead(self.actor_ref, message)

    def _listen(self):
        def changed(connection_id):
            tell_unless_dead(self.actor_ref, Changed(connection_id))

        def subscribed():  # changes made before (or while the subscription was lost) were not heard
            tell_unless_dead(self.actor_ref, Sync("change notifications subscribed", reread=True))

        listen_forever(
            self.redis,
            INVERTERS_CHANGED,
            changed,
            on_subscribed=subscribed,
            on_lost=lambda exc: log.warning("inverter change notifications lost (%s); resync timer still runs", exc),
        )


def start_metrics_actors(settings, db, redis):
    """Start the publisher, the recorder and the poller supervisor; return a function that stops them."""
    publisher = Publisher(redis, settings)
    recorder = Recorder.start(settings, db, redis)
    supervisor = PollerSupervisor.start(settings, db, redis, publisher)

    def stop():
        for ref in (supervisor, recorder):
            try:
                ref.stop(timeout=10)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
        # Flush what was polled but not yet published (bounded: Redis may be down).
        deadline = time.monotonic() + 2.0
        while publisher.outbox and time.monotonic() < deadline:
            gevent.sleep(0.02)
        publisher.close()

    return stop
