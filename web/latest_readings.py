"""The latest reading and status of each inverter someone has watched, for a new viewer's first frames.

Filled from Redis on a first viewer, then kept current by the hub's subscription (`apply`), so a new
viewer's "latest first" costs no Redis round trip. The first viewers of a connect storm (a web restart)
are fetched together: one Redis MULTI per batch, not one round trip each. Redis having lost an inverter
(a restart without persistence), its stored reading comes from the database, for the whole batch in one
call. Only a live subscription keeps entries current: the hub says when it has one (`current`) and
forgets everything when it loses it (`forget`).
"""

from __future__ import annotations

import gevent
import gevent.event

from models import inverters, live_events


class LatestReadings:
    def __init__(self, owner, redis, redis_call):
        self.owner = owner
        self.redis = redis
        self.redis_call = redis_call  # runs a Redis call within the connect-time Redis slots
        self.current = False  # a live subscription keeps the entries current
        # inverter id -> [event id, reading json, status].
        self.latest: dict[str, list] = {}
        # inverter id -> what arrived while its fetch was in flight, merged over the fetched reply.
        self.filling: dict[str, list] = {}
        # inverter id -> the wait of the streams asking for its latest reading; one fetcher at a time.
        self.wanted: dict[str, gevent.event.AsyncResult] = {}
        self.fetcher: gevent.Greenlet | None = None

    def latest_of(self, inverter_ids: list[str]) -> list[tuple]:
        """(event id, reading json, status) per inverter: from the cache, else fetched from Redis
        together with every other inverter asked for meanwhile."""
        waits = {i: self.wanted.get(i) or self._want(i) for i in inverter_ids if i not in self.latest}
        fetched = {i: wait.get() for i, wait in waits.items()}  # raises what the fetch raised
        return [fetched[i] if i in fetched else tuple(self.latest[i]) for i in inverter_ids]

    def tracks(self, inverter_id: str) -> bool:
        """Whether an event of this inverter changes an entry (cached or being fetched)."""
        return inverter_id in self.latest or inverter_id in self.filling

    def apply(self, inverter_id: str, kind: str, event_id: str, encoded: str, data) -> None:
        """An event of the inverter from the subscription: a reading replaces the latest, a status the status."""
        for entry in (self.latest.get(inverter_id), self.filling.get(inverter_id)):
            if entry is None:
                continue
            if kind == live_events.READING:
                entry[0], entry[1] = event_id, encoded
            elif kind == live_events.STATUS and isinstance(data, dict):
                entry[2] = data.get("status", entry[2])

    def forget(self) -> None:
        """The subscription is lost: nothing keeps the entries current any more."""
        self.current = False
        self.latest.clear()
        self.filling.clear()

    def _want(self, inverter_id: str) -> gevent.event.AsyncResult:
        wait = self.wanted[inverter_id] = gevent.event.AsyncResult()
        if self.fetcher is None:
            self.fetcher = gevent.spawn(self._fetch_wanted)
        return wait

    def _fetch_wanted(self) -> None:
        try:
            while self.wanted:
                batch, self.wanted = self.wanted, {}
                try:
                    replies = self._fetch(list(batch))
                except Exception as exc:  # noqa: BLE001 - each waiting stream answers "unavailable"
                    for wait in batch.values():
                        wait.set_exception(exc)
                    continue
                for inverter_id, reply in replies.items():
                    batch[inverter_id].set(reply)
        finally:
            self.fetcher = None

    def _fetch(self, inverter_ids: list[str]) -> dict:
        for inverter_id in inverter_ids:  # events dispatched while Redis answers land here
            self.filling.setdefault(inverter_id, [None, None, None])
        replies = self.redis_call(live_events.snapshot, self.redis, inverter_ids, None)
        missing = [inverter_id for inverter_id, reply in zip(inverter_ids, replies) if reply[0] is None]
        stored = self.owner.call(inverters.latest_stored, missing) if missing else {}
        fetched = {}
        for inverter_id, reply in zip(inverter_ids, replies):
            if inverter_id in stored:
                reply = (stored[inverter_id].event_id, live_events.dumps(stored[inverter_id].data), reply[2])
            fetched[inverter_id] = tuple(reply)
            newer = self.filling.pop(inverter_id, None) or [None, None, None]
            if self.current:
                merged = [n if n is not None else r for n, r in zip(newer, reply)]
                self.latest.setdefault(inverter_id, merged)
        return fetched
