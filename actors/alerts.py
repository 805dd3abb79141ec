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

Every event goes through one queue and one greenlet, so the state is never changed by two at once:
  offline      no reading for `minutes` (a timer checked every OFFLINE_TICK_S); cleared by a reading
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
import time
from datetime import datetime, timezone

import gevent
import gevent.queue
import pykka
from gevent.threadpool import ThreadPool

from models import alerts, live_events, telemetry
from models.base import iso, parse_iso
from models.channels import (
    ALERT_ENGINE_ALIVE,
    ALERT_LAST_SEEN,
    ALERT_RULES_CHANGED,
    INVERTER_PATTERN,
    INVERTERS_CHANGED,
)
from models.clearsky import DAY_S, ClearSky, Site, Sunsets
from models.events import DispatcherWaker
from models.redis_client import listen_forever

log = logging.getLogger(__name__)

OFFLINE_TICK_S = 1.0


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


class AlertEngine(pykka.ThreadingActor):
    def __init__(self, settings, db, redis):
        super().__init__()
        self.db = db
        self.redis = redis
        self.log_maxlen, self.ingest_maxlen = settings.replay_maxlen, settings.ingest_maxlen
        # Through the live-events script, so an alert gets an event id and a place in the inverter's replay
        # log: a stream that reconnects with Last-Event-ID replays the alerts it missed.
        self.publish_event = redis.register_script(live_events.PUBLISH_SCRIPT)
        self.waker = DispatcherWaker(redis)
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self.rules: list = []
        self.by_inverter: dict[str, list] = {}
        self.serials: dict[str, str] = {}
        self.open: dict[tuple[str, str], str] = {}
        self.last_seen: dict[str, float] = {}
        self.unsaved: set[str] = set()  # inverters heard from since the last save of last_seen
        self.restored = False
        self.below_since: dict[tuple[str, str], float | None] = {}
        # pvlib (milliseconds a call) on a native thread: the engine's greenlet never waits for it.
        self.pvlib_pool = ThreadPool(1)
        self.clear_sky = ClearSky(self.pvlib_pool.spawn)
        self.sunsets = Sunsets(self.pvlib_pool.spawn)
        self.summarized: dict[tuple[str, str], int] = {}
        self.started_at = time.time()
        self.greenlets: list = []

    def on_start(self):
        self.greenlets = [gevent.spawn(self._listen), gevent.spawn(self._process), gevent.spawn(self._tick)]
        log.info("alert engine started")

    def on_stop(self):
        gevent.killall(self.greenlets, block=True, timeout=5)
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
            kind, data, received_at = self.queue.get()
            try:
                if kind == "event":
                    self._event(json.loads(data))
                    telemetry.ALERT_ENGINE_EVENTS.inc()
                elif kind == "reload":
                    self._reload()
                else:
                    t = time.time()
                    self._check_offline(t)
                    self._save_last_seen(t)
                    telemetry.ALERT_ENGINE_QUEUE.set(self.queue.qsize())
            except Exception:  # a bad event or a refused write must not stop the engine
                log.exception("alert engine could not handle %s", kind)
            telemetry.ALERT_ENGINE_LAG.set(time.time() - received_at)

    # -- state ---------------------------------------------------------------------------------------
    def _reload(self):
        if not self.restored:
            self._restore_last_seen()
        rules, owned, open_ = self.db.call(alerts.engine_view)
        by_inverter: dict[str, list] = {}
        self.serials = {}
        for inverters in owned.values():
            for inverter_id, serial in inverters:
                self.serials[inverter_id] = serial
        for rule in rules:
            targets = [rule.inverter_id] if rule.inverter_id else [i for i, _ in owned.get(rule.account_id, [])]
            for inverter_id in targets:
                by_inverter.setdefault(inverter_id, []).append(rule)
        self.rules, self.by_inverter, self.open = rules, by_inverter, open_
        gone = [i for i in self.last_seen if i not in self.serials]
        for inverter_id in gone:
            del self.last_seen[inverter_id]
            self.unsaved.discard(inverter_id)
        if gone:
            try:
                self.redis.hdel(ALERT_LAST_SEEN, *gone)
            except Exception as exc:  # harmless: a deleted inverter's entry is never read again
                log.warning("alert engine could not forget deleted inverters: %s", exc)
        log.info("alert engine: %d rules over %d inverters, %d open episodes", len(rules), len(by_inverter), len(open_))

    def _restore_last_seen(self):
        """Resume the offline timers of the previous engine, shifted by the time no engine was alive."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(ALERT_LAST_SEEN)
        pipe.get(ALERT_ENGINE_ALIVE)
        saved, alive = pipe.execute()
        down_s = max(0.0, self.started_at - float(alive)) if alive else 0.0
        for inverter_id, seen in saved.items():
            self.last_seen.setdefault(inverter_id, float(seen) + down_s)
        self.restored = True
        log.info("alert engine: resumed %d offline timers (engines down for %.1f s)", len(saved), down_s)

    def _save_last_seen(self, t: float):
        if not self.restored:
            return
        unsaved, self.unsaved = self.unsaved, set()
        try:
            pipe = self.redis.pipeline(transaction=True)
            if unsaved:
                pipe.hset(ALERT_LAST_SEEN, mapping={i: repr(self.last_seen[i]) for i in unsaved})
            pipe.set(ALERT_ENGINE_ALIVE, repr(t))
            pipe.execute()
        except Exception as exc:  # kept for the next tick; a restart meanwhile restarts these timers
            self.unsaved |= unsaved
            log.warning("alert engine could not save when inverters were last heard from: %s", exc)

    def _event(self, event: dict):
        inverter_id = event.get("inverter_id")
        rules = self.by_inverter.get(inverter_id)
        if not rules:
            return
        t = time.time()
        data = event.get("data") or {}
        if event.get("event") == "reading":
            self.last_seen[inverter_id] = t
            self.unsaved.add(inverter_id)
            at = reading_time(data, t)
            for rule in rules:
                self._evaluate(rule, inverter_id, data, t, at)
        elif event.get("event") == "status" and data.get("status") == "online":
            self.last_seen[inverter_id] = t
            self.unsaved.add(inverter_id)
            for rule in rules:
                if rule.kind == "offline":
                    self._clear(rule, inverter_id, t, {"back_at": iso(t)})

    def _evaluate(self, rule, inverter_id: str, reading: dict, t: float, at: float):
        """One rule against one reading received at `t` and taken at `at`."""
        key = (rule.id, inverter_id)
        is_open = key in self.open
        if rule.kind == "offline":
            if is_open:
                self._clear(rule, inverter_id, t, {"back_at": iso(t), "reading_time": iso(at)})
            return
        if rule.kind == "fault":
            action = alerts.fault_action(reading.get("status"), is_open)
            values = {"status": reading.get("status")}
        elif rule.kind == "battery_low":
            action = alerts.battery_action(reading.get("battery_soc_pct"), rule.params, is_open)
            values = {"battery_soc_pct": reading.get("battery_soc_pct"), **rule.params}
        elif rule.kind == "production_low":
            expected = self.clear_sky.expected_w(site_of(rule.params), at)
            if expected is None:  # its table is being computed: this reading is not judged
                return
            action, self.below_since[key] = alerts.production_action(
                reading.get("pv_power_w"), expected, rule.params, is_open, self.below_since.get(key), at
            )
            values = {"pv_power_w": reading.get("pv_power_w"), "expected_w": round(expected, 1), **rule.params}
        elif rule.kind == "daily_summary":
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
        result = self.db.write(
            alerts.record_daily_summary, rule, inverter_id, self.serials.get(inverter_id, ""), round(sunset, 3), values
        )
        if result is not None:  # None: this site-day was summarised before (by us before a restart, or another engine)
            self._announce(inverter_id, result[1], result[2])

    def _check_offline(self, t: float):
        for inverter_id, rules in self.by_inverter.items():
            last = self.last_seen.get(inverter_id, self.started_at)
            for rule in rules:
                if rule.kind == "offline" and t - last >= rule.params["minutes"] * 60:
                    self._open(
                        rule,
                        inverter_id,
                        t,
                        {"last_reading_at": iso(self.last_seen.get(inverter_id)), "minutes": rule.params["minutes"]},
                    )

    # -- episodes ------------------------------------------------------------------------------------
    def _open(self, rule, inverter_id: str, t: float, values: dict):
        if (rule.id, inverter_id) in self.open:
            return
        result = self.db.write(alerts.open_alert, rule, inverter_id, self.serials.get(inverter_id, ""), t, values)
        if result is None:  # another engine opened it: learn its id so we can clear it
            self._reload()
            return
        alert, message, jobs = result
        self.open[(rule.id, inverter_id)] = alert.id
        telemetry.ALERTS_CHANGED.labels("opened").inc()
        self._announce(inverter_id, message, jobs)

    def _clear(self, rule, inverter_id: str, t: float, values: dict):
        alert_id = self.open.pop((rule.id, inverter_id), None)
        if alert_id is None:
            return
        result = self.db.write(alerts.clear_alert, alert_id, self.serials.get(inverter_id, ""), t, values)
        if result is not None:
            telemetry.ALERTS_CHANGED.labels("cleared").inc()
            self._announce(inverter_id, result[1], result[2])

    def _announce(self, inverter_id: str, message: dict, jobs: int):
        log.info(
            "alert %s inverter=%s alert=%s webhooks=%d", message["type"], inverter_id, message["data"]["alert_id"], jobs
        )
        if jobs:
            self.waker.wake()
        try:
            keys, args = live_events.publish_args(
                live_events.ALERT,
                inverter_id,
                message["data"]["alert_id"],
                live_events.dumps(message),
                self.log_maxlen,
                self.ingest_maxlen,
            )
            self.publish_event(keys=keys, args=args)
        except Exception as exc:  # streams miss it; the webhooks and the database have it
            log.warning("could not publish alert on the inverter's channel: %s", exc)
