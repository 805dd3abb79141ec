"""AlertEngine: turns the live readings into alert episodes, without polling the database.

It listens to the same pub/sub the web processes do (`inverter:*`: readings and status events) and to
`alert-rules:changed` / `inverters:changed` (reload rules and fleet). Pub/sub, not a consumer group on
`readings:ingest`: the recorder deletes ingest entries once stored, and an alert only needs the newest
state of each inverter, not every entry. What it may miss while down is covered by the episode state
kept in the database (models/alerts.py): at start it reads the open episodes. When each inverter was
last heard from is kept in Redis (`ALERT_LAST_SEEN`, written every OFFLINE_TICK_S with the engine's own
heartbeat): a restarted engine resumes each offline timer where it stood, the time the engine was down
not counted against the device (its pollers, in the same process, were down too). So a device silent
for 10 s of a 15 s rule before a kill -9 gets its alert 5 s after the restart: none missed, and the open
episode in the database makes a duplicate impossible. Inverters never heard from start their timer at
the engine's start.
production_low's "below for `minutes`" counts are kept the same way (`ALERT_BELOW_SINCE`, in the same
heartbeat pipeline; only a count that starts or ends is written, so a steady fleet costs nothing) and
resumed the same way, shifted by the time no engine was alive. The count is in the readings' own time,
but the readings come from the pollers of the engine's process, so while it was down nobody looked at
the device; not counting that time keeps the rule's meaning, "seen below for `minutes`": a device seen
below for 8 of 10 minutes before a restart alerts 2 minutes (plus the down time) after it, and after a
long outage (a night) it still needs its remaining minutes seen below, not one reading. (The shift is in
real seconds, as the readings' time is outside benchmarks' accelerated mock clocks.) Resumed timers and
counts are saved shifted, so a second restart adds its own down time only. A count or timer changed in
the last OFFLINE_TICK_S before a kill -9 is lost (a SIGTERM saves it). Nothing else held in memory
changes what is sent: fault and battery_low decide from the reading and the open episodes, and a daily
summary `summarized` forgot is refused by the database (once per rule, inverter and sunset).

Every event goes through one queue and one greenlet, so the state is never changed by two at once:
  offline      no reading for `minutes` of the poll clock (a timer checked every OFFLINE_TICK_S); cleared by a
               reading. Real minutes in production; on an accelerated poll clock (POLL_CLOCK_SPEED, tests and
               `make run` against the mock's fast profile) readings come that many times as often, and an
               absence lasts that many times fewer real seconds, as the poll intervals do
  fault        a reading with status fault; cleared by a reading with another status
  battery_low  state of charge below `below_pct`; cleared only above `clear_above_pct` (hysteresis)
  production_low  PV under `below_pct` of the site's clear-sky expectation for `minutes`, in daylight only;
               cleared above `clear_above_pct` (models/clearsky.py: a per-day table, no pvlib per reading;
               tables and sunsets are computed on a thread of their own, never on this greenlet)
  daily_summary  the day's energy, with the first reading after the site's sunset; once per site-day (the
               database refuses a second summary of the same rule, inverter and sunset)
The decisions themselves are pure functions in models/alerts.py.
Opening and clearing are idempotent in the database (one open episode per rule and inverter), so a
restarted engine, or two engines, never send an alert twice. Each opening/clearing is published as an
`alert` event on the inverter's channel for its streams, with an event id and in the inverter's replay log.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

import gevent
import gevent.queue

from actors.base import Actor
from models import alerts, live_events, telemetry
from models.base import iso, parse_iso
from models.brands.clock import clock_from_settings
from models.channels import (
    ALERT_BELOW_SINCE,
    ALERT_ENGINE_ALIVE,
    ALERT_LAST_SEEN,
    ALERT_RULES_CHANGED,
    INVERTER_PATTERN,
    INVERTERS_CHANGED,
)
from models.clearsky import DAY_S, ClearSky, QueuedThread, Site, Sunsets
from models.events import DispatcherWaker
from models.ids import new_id
from models.redis_client import listen_forever

log = logging.getLogger(__name__)

OFFLINE_TICK_S = 1.0
#: Events handled (of those already waiting) before the episode changes they made are written, set-based
#: (see _flush): a storm of alerts costs a few statements per chunk, not a transaction each.
BATCH = 500
#: Episode changes per write transaction (a batch of events may decide hundreds): short transactions let the
#: recorder's writes, through the same database owner, go in between.
WRITE_CHUNK = 100


def reading_time(reading: dict, fallback: float) -> float:
    """The time a reading was taken (published as ISO-8601: on a simulated clock, not now), else `fallback`."""
    value = reading.get("time")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_iso(value)
    except ValueError:
        return fallback


def site_of(params: dict) -> Site:
    return Site(params["latitude"], params["longitude"], params["peak_power_w"], params["tilt"], params["azimuth"])


@dataclass(slots=True)
class Rule:
    """What the engine needs of a rule, read once per reload (a peewee row costs a descriptor call per
    attribute, on every reading); models/alerts.py's writes take it as they take the row."""

    id: str
    account_id: str
    kind: str
    params: dict
    site: Site | None

    @classmethod
    def of(cls, row) -> Rule:
        site = site_of(row.params) if row.kind == "production_low" else None
        return cls(row.id, row.account_id, row.kind, row.params, site)


class AlertEngine(Actor):
    """Takes no messages: its inputs are a subscription and a tick, handled by its own greenlets, each item
    inside its own try (a bad event must not stop the engine); `Actor` still stands behind a stray message."""

    def __init__(self, settings, db, redis):
        super().__init__()
        self.db = db
        self.redis = redis
        self.log_maxlen, self.ingest_maxlen = settings.replay_maxlen, settings.ingest_maxlen
        self.poll_clock = clock_from_settings(settings)
        # Through the live-events script, so an alert gets an event id and a place in the inverter's replay
        # log: a stream that reconnects with Last-Event-ID replays the alerts it missed.
        self.publish_event = redis.register_script(live_events.PUBLISH_SCRIPT)
        self.waker = DispatcherWaker(redis)
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self.rules: list[Rule] = []
        self.by_inverter: dict[str, list[Rule]] = {}
        self.offline_rules: dict[str, list[Rule]] = {}
        self.shortest_offline_s = math.inf
        self.serials: dict[str, str] = {}
        self.open: dict[tuple[str, str], str] = {}
        # Offline timers: from when each inverter with an offline rule counts as silent (when last heard
        # from, or a restart's resumed value), oldest first, so a tick looks at the silent ones only.
        self.silent_since: OrderedDict[str, float] = OrderedDict()
        self.heard_at: dict[str, float] = {}  # when last heard from (what an offline alert reports)
        self.unsaved: set[str] = set()  # timers changed since the last save
        self.restored = False
        # production_low: since when (a reading's time) each (rule, inverter) has been below its threshold.
        self.below_since: dict[tuple[str, str], float] = {}
        self.below_unsaved: set[tuple[str, str]] = set()  # counts started or ended since the last save
        # pvlib (milliseconds a call) on a native thread: the engine's greenlet never waits for it.
        self.pvlib_pool = QueuedThread()
        self.clear_sky = ClearSky(self.pvlib_pool.spawn)
        self.sunsets = Sunsets(self.pvlib_pool.spawn)
        self.summarized: dict[tuple[str, str], int] = {}
        self.started_at = time.time()
        self.greenlets: list = []
        self.changes: list[tuple] = []  # episode changes decided, not yet written (see _flush)
        telemetry.ALERT_ENGINE_QUEUE.set_function(self.queue.qsize)

    def on_start(self):
        self.greenlets = [gevent.spawn(self._listen), gevent.spawn(self._process), gevent.spawn(self._tick)]
        log.info("alert engine started")

    def on_stop(self):
        gevent.killall(self.greenlets, block=True, timeout=5)
        self._save_timers(time.time())  # a SIGTERM loses not even the last tick's timers and counts
        self.pvlib_pool.kill()

    # -- inputs --------------------------------------------------------------------------------------
    def _listen(self):
        listen_forever(
            self.redis,
            (ALERT_RULES_CHANGED, INVERTERS_CHANGED),
            lambda _data: self.queue.put(("reload", None, time.time())),
            # A change may have been missed while unsubscribed.
            on_subscribed=lambda: self.queue.put(("reload", None, time.time())),
            on_lost=lambda exc: log.warning("alert engine lost its subscription (%s); resubscribing", exc),
            patterns=(INVERTER_PATTERN,),
            on_pattern_message=lambda data: self.queue.put(("event", data, time.time())),
        )

    def _tick(self):
        while True:
            gevent.sleep(OFFLINE_TICK_S)
            self.queue.put(("tick", None, time.time()))

    def _process(self):
        while True:
            batch = [self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():  # only what waits already: no added delay
                batch.append(self.queue.get_nowait())
            for kind, data, _ in batch:
                try:
                    if kind == "event":
                        self._event(json.loads(data))
                    elif kind == "reload":
                        self._reload()
                    else:
                        t = time.time()
                        self._check_offline(t)
                        self._save_timers(t)
                except Exception:  # a bad event must not stop the engine
                    log.exception("alert engine could not handle %s", kind)
            try:
                self._flush()
            except Exception:  # refused: undone in memory, so the next reading or tick decides again
                log.exception("alert engine could not write %d episode changes", len(self.changes))
            telemetry.ALERT_ENGINE_EVENTS.inc(sum(1 for kind, _, _ in batch if kind == "event"))
            telemetry.ALERT_ENGINE_LAG.set(time.time() - batch[0][2])

    # -- state ---------------------------------------------------------------------------------------
    def _reload(self):
        self._flush()  # the open episodes read below must include this engine's own
        if not self.restored:
            self._restore_timers()
        rows, owned, open_ = self.db.call(alerts.engine_view)
        rules = [Rule.of(row) for row in rows]
        inverter_of = {row.id: row.inverter_id for row in rows}
        by_inverter: dict[str, list[Rule]] = {}
        self.serials = {}
        for inverters in owned.values():
            for inverter_id, serial in inverters:
                self.serials[inverter_id] = serial
        for rule in rules:
            inverter_id = inverter_of[rule.id]
            targets = [inverter_id] if inverter_id else [i for i, _ in owned.get(rule.account_id, [])]
            for target in targets:
                by_inverter.setdefault(target, []).append(rule)
        self.rules, self.by_inverter, self.open = rules, by_inverter, open_
        self.offline_rules = {
            i: offline for i, rs in by_inverter.items() if (offline := [r for r in rs if r.kind == "offline"])
        }
        self.shortest_offline_s = min(
            (self._offline_delay_s(r) for rs in self.offline_rules.values() for r in rs), default=math.inf
        )
        # Inverters never heard from (new, or new to a rule) are silent from now on.
        timers = {i: self.silent_since.get(i, time.time()) for i in self.offline_rules}
        self.silent_since = OrderedDict(sorted(timers.items(), key=lambda item: item[1]))
        self._forget_counts(by_inverter)
        gone = [i for i in self.heard_at if i not in self.serials]
        for inverter_id in gone:
            del self.heard_at[inverter_id]
        if gone:
            try:
                self.redis.hdel(ALERT_LAST_SEEN, *gone)
            except Exception as exc:  # harmless: a deleted inverter's entry is never read again
                log.warning("alert engine could not forget deleted inverters: %s", exc)
        log.info("alert engine: %d rules over %d inverters, %d open episodes", len(rules), len(by_inverter), len(open_))

    def _forget_counts(self, by_inverter: dict[str, list[Rule]]):
        """Drop the production_low counts of rules deleted, or of inverters no longer under them."""
        gone = [
            key
            for key in self.below_since
            if not any(rule.id == key[0] and rule.kind == "production_low" for rule in by_inverter.get(key[1], ()))
        ]
        for key in gone:
            del self.below_since[key]
        self.below_unsaved.update(gone)

    def _restore_timers(self):
        """Resume the offline timers and production_low counts of the previous engine, shifted by the time no
        engine was alive."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(ALERT_LAST_SEEN)
        pipe.hgetall(ALERT_BELOW_SINCE)
        pipe.get(ALERT_ENGINE_ALIVE)
        saved, below, alive = pipe.execute()
        down_s = max(0.0, self.started_at - float(alive)) if alive else 0.0
        for inverter_id, value in saved.items():
            silent_since, _, heard_at = value.partition(" ")
            self.silent_since.setdefault(inverter_id, float(silent_since) + down_s)
            if heard_at:
                self.heard_at.setdefault(inverter_id, float(heard_at))
        for field, since in below.items():
            rule_id, _, inverter_id = field.partition(" ")
            self.below_since.setdefault((rule_id, inverter_id), float(since) + down_s)
        if down_s:  # saved shifted, or a second restart would count this down time against the devices
            self.unsaved.update(saved)
            self.below_unsaved.update(tuple(field.partition(" ")[::2]) for field in below)
        self.restored = True
        log.info(
            "alert engine: resumed %d offline timers and %d production_low counts (engines down for %.1f s)",
            len(saved),
            len(below),
            down_s,
        )

    def _save_timers(self, t: float):
        if not self.restored:
            return
        unsaved, self.unsaved = self.unsaved, set()
        below_unsaved, self.below_unsaved = self.below_unsaved, set()
        timers = {
            i: f"{self.silent_since[i]!r} {self.heard_at.get(i, 0.0)!r}" for i in unsaved if i in self.silent_since
        }
        counts = {f"{r} {i}": repr(self.below_since[r, i]) for r, i in below_unsaved if (r, i) in self.below_since}
        ended = [f"{r} {i}" for r, i in below_unsaved if (r, i) not in self.below_since]
        try:
            pipe = self.redis.pipeline(transaction=True)
            if timers:
                pipe.hset(ALERT_LAST_SEEN, mapping=timers)
            if counts:
                pipe.hset(ALERT_BELOW_SINCE, mapping=counts)
            if ended:
                pipe.hdel(ALERT_BELOW_SINCE, *ended)
            pipe.set(ALERT_ENGINE_ALIVE, repr(t))
            pipe.execute()
        except Exception as exc:  # kept for the next tick; a restart meanwhile restarts these timers
            self.unsaved |= unsaved
            self.below_unsaved |= below_unsaved
            log.warning("alert engine could not save its offline timers and production_low counts: %s", exc)

    def _event(self, event: dict):
        inverter_id = event.get("inverter_id")
        rules = self.by_inverter.get(inverter_id)
        if not rules:
            return
        t = time.time()
        data = event.get("data") or {}
        kind = event.get("event")
        if kind == "reading":
            self._heard(inverter_id, t)
            at = reading_time(data, t)
            for rule in rules:
                self._evaluate(rule, inverter_id, data, t, at)
        elif kind == "status" and data.get("status") == "online":
            self._heard(inverter_id, t)
            for rule in self.offline_rules.get(inverter_id, ()):
                self._clear(rule, inverter_id, t, {"back_at": iso(t)})

    def _heard(self, inverter_id: str, t: float):
        if inverter_id in self.silent_since:
            self.silent_since[inverter_id] = t
            self.silent_since.move_to_end(inverter_id)
            self.heard_at[inverter_id] = t
            self.unsaved.add(inverter_id)

    def _evaluate(self, rule, inverter_id: str, reading: dict, t: float, at: float):
        """One rule against one reading received at `t` and taken at `at`."""
        key = (rule.id, inverter_id)
        is_open = key in self.open
        kind = rule.kind
        if kind == "offline":
            if is_open:
                self._clear(rule, inverter_id, t, {"back_at": iso(t), "reading_time": iso(at)})
            return
        if kind == "fault":
            action = alerts.fault_action(reading.get("status"), is_open)
            if action is None:
                return
            values = {"status": reading.get("status")}
        elif kind == "battery_low":
            action = alerts.battery_action(reading.get("battery_soc_pct"), rule.params, is_open)
            if action is None:
                return
            values = {"battery_soc_pct": reading.get("battery_soc_pct"), **rule.params}
        elif kind == "production_low":
            assert rule.site is not None
            expected = self.clear_sky.expected_w(rule.site, at)
            if expected is None:  # its table is being computed: this reading is not judged
                return
            was = self.below_since.get(key)
            action, since = alerts.production_action(reading.get("pv_power_w"), expected, rule.params, is_open, was, at)
            if since != was:  # a count started or ended (a running one keeps its start): saved with the heartbeat
                if since is None:
                    del self.below_since[key]
                else:
                    self.below_since[key] = since
                self.below_unsaved.add(key)
            if action is None:
                return
            values = {"pv_power_w": reading.get("pv_power_w"), "expected_w": round(expected, 1), **rule.params}
        elif kind == "daily_summary":
            self._summarize(rule, inverter_id, reading, at)
            return
        else:
            return
        if action == alerts.OPEN_IT:
            self._open(rule, inverter_id, t, values)
        elif action == alerts.CLEAR_IT:
            self._clear(rule, inverter_id, t, values)

    def _summarize(self, rule, inverter_id: str, reading: dict, at: float):
        key = (rule.id, inverter_id)
        known = self.sunsets.of(rule.params["latitude"], rule.params["longitude"], at)
        if known is None:  # being computed: a later reading after sunset sends the summary
            return
        day, sunset = known
        if not alerts.summary_due(at, sunset, day, self.summarized.get(key)):
            return
        self.summarized[key] = day
        values = {
            "date": datetime.fromtimestamp(day * DAY_S, timezone.utc).date().isoformat(),
            "sunset": iso(sunset),
            "energy_today_wh": reading.get("energy_today_wh"),
            "energy_total_wh": reading.get("energy_total_wh"),
        }
        serial = self.serials.get(inverter_id, "")
        self.changes.append((key, (alerts.SUMMARY, rule, inverter_id, serial, round(sunset, 3), values)))

    def _offline_delay_s(self, rule: Rule) -> float:
        """The real seconds of silence an offline rule's `minutes` are (minutes of the poll clock)."""
        return self.poll_clock.real_seconds(rule.params["minutes"] * 60.0)

    def _check_offline(self, t: float):
        """Open the offline episodes due: only the inverters silent for the shortest delay are looked at."""
        due = []
        for inverter_id, silent_since in self.silent_since.items():  # oldest first
            if t - silent_since < self.shortest_offline_s:
                break
            for rule in self.offline_rules.get(inverter_id, ()):
                if t - silent_since >= self._offline_delay_s(rule) and (rule.id, inverter_id) not in self.open:
                    due.append((rule, inverter_id))
        for rule, inverter_id in due:
            values = {"last_reading_at": iso(self.heard_at.get(inverter_id)), "minutes": rule.params["minutes"]}
            self._open(rule, inverter_id, t, values)

    # -- episodes ------------------------------------------------------------------------------------
    # The decisions change the in-memory state at once (an alert's id is chosen here), so a second event
    # of the same batch sees the episode open; _flush writes them and undoes what the database refused.
    def _open(self, rule, inverter_id: str, t: float, values: dict):
        key = (rule.id, inverter_id)
        if key in self.open:
            return
        self.open[key] = alert_id = new_id()
        serial = self.serials.get(inverter_id, "")
        self.changes.append((key, (alerts.OPENING, rule, inverter_id, serial, alert_id, t, values)))

    def _clear(self, rule, inverter_id: str, t: float, values: dict):
        key = (rule.id, inverter_id)
        alert_id = self.open.pop(key, None)
        if alert_id is None:
            return
        self.changes.append((key, (alerts.CLEARING, alert_id, self.serials.get(inverter_id, ""), t, values)))

    def _flush(self):
        """Write the episode changes decided, WRITE_CHUNK per transaction, each chunk's rows, messages and
        webhook jobs built here first (models/alerts.py prepare_changes): the database's one writer, which the
        recorder shares, is held only for the statements, and its other writes go in between the chunks."""
        if not self.changes:
            return
        conflicted = False
        try:
            context = self.db.call(alerts.change_context, [change for _, change in self.changes])
        except Exception:
            self._undo(self.changes)
            self.changes = []
            raise
        while self.changes:
            changes, self.changes = self.changes[:WRITE_CHUNK], self.changes[WRITE_CHUNK:]
            try:
                prepared = alerts.prepare_changes([change for _, change in changes], context)
                results = self.db.write(alerts.write_prepared, prepared)
            except Exception:
                rest, self.changes = changes + self.changes, []
                self._undo(rest)
                raise
            conflicted = self._written(changes, results) or conflicted
        if conflicted:  # learn the other engine's episode ids, so we can clear them
            self._reload()

    def _written(self, changes: list[tuple], results: list) -> bool:
        """Count, log and publish the changes written; whether an opening was refused."""
        published, conflicted, jobs = [], False, 0
        for (_, change), result in zip(changes, results):
            if result is None:  # an open one exists (another engine's), or it was cleared or summarised before
                conflicted = conflicted or change[0] == alerts.OPENING
                continue
            alert, message, queued = result
            jobs += queued
            telemetry.ALERTS_CHANGED.labels("cleared" if change[0] == alerts.CLEARING else "opened").inc()
            log.info("alert %s inverter=%s alert=%s webhooks=%d", message["type"], alert.inverter_id, alert.id, queued)
            published.append((alert.inverter_id, message))
        if jobs:
            self.waker.wake()
        self._publish(published)
        return conflicted

    def _undo(self, changes: list[tuple]):
        """Back to the state before these unwritten changes: the next reading or tick decides them again."""
        for key, change in reversed(changes):
            if change[0] == alerts.OPENING:
                if self.open.get(key) == change[4]:
                    del self.open[key]
            elif change[0] == alerts.CLEARING:
                self.open[key] = change[1]
            else:
                self.summarized.pop(key, None)

    def _publish(self, published: list[tuple[str, dict]]):
        """Each alert as an `alert` event on its inverter's channel and replay log, in one pipeline."""
        if not published:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for inverter_id, message in published:
                keys, args = live_events.publish_args(
                    live_events.ALERT,
                    inverter_id,
                    message["data"]["alert_id"],
                    live_events.dumps(message),
                    self.log_maxlen,
                    self.ingest_maxlen,
                )
                self.publish_event(keys=keys, args=args, client=pipe)
            pipe.execute()
        except Exception as exc:  # streams miss them; the webhooks and the database have them
            log.warning("could not publish %d alerts on their inverters' channels: %s", len(published), exc)
