"""Alert rules and alerts (episodes): the tables, and the one transaction that turns an alert into jobs.

An alert is an episode of a rule's condition on one inverter: opened once, cleared once. At most one
episode per rule and inverter is open at a time, enforced by the database (`open_slot` is 'open'
while open and NULL after, under a unique index, where NULLs never collide), so two alert engines, or
one restarted mid-episode, can never open it twice; clearing is an UPDATE of an open row, so it happens
once. The webhook jobs of an opening or clearing are inserted in the same transaction as the alert
(models/jobs.py insert_jobs), one per endpoint of the account subscribed to the event type, each with
an idempotency key naming the alert, phase and endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee

from models import jobs, webhooks
from models.accounts import Account
from models.backoff import Backoff
from models.base import BaseModel, JSONField, iso, json_text, now
from models.db import built_sql, chunks, sql
from models.ids import new_id
from models.inverters import Inverter, _visible_to
from models.net.urls import parse_outbound_url

KINDS = ("offline", "fault", "battery_low", "production_low", "daily_summary")
#: The event types of an episode's opening and clearing, per rule kind.
EVENT_TYPES = {
    "offline": ("inverter.offline", "inverter.online"),
    "fault": ("inverter.fault", None),
    "battery_low": ("battery.low", "battery.recovered"),
    "production_low": ("production.low", "production.recovered"),
    "daily_summary": ("energy.daily_summary", None),
}
OPEN = "open"
FAULT_STATUSES = ("fault",)
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_MAX_ATTEMPTS = 8


class AlertRule(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=26, default=new_id)
    account = peewee.ForeignKeyField(Account, backref="alert_rules", on_delete="CASCADE")
    # NULL: every inverter the account owns.
    inverter = peewee.ForeignKeyField(Inverter, null=True, backref="alert_rules", on_delete="CASCADE")
    kind = peewee.CharField(max_length=20)
    params = JSONField()
    created_at = peewee.DoubleField(default=now)


class Alert(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=26, default=new_id)
    rule = peewee.ForeignKeyField(AlertRule, backref="alerts", on_delete="CASCADE", index=False)
    inverter = peewee.ForeignKeyField(Inverter, backref="alerts", on_delete="CASCADE", index=False)
    account = peewee.ForeignKeyField(Account, backref="alerts", on_delete="CASCADE")
    kind = peewee.CharField(max_length=20)
    opened_at = peewee.DoubleField()
    cleared_at = peewee.DoubleField(null=True)
    open_slot = peewee.CharField(max_length=4, null=True)
    values = JSONField()
    cleared_values = JSONField(null=True)
    acknowledged_at = peewee.DoubleField(null=True)

    class Meta:
        indexes = (
            (("rule", "inverter", "open_slot"), True),
            (("rule", "inverter", "opened_at"), True),
            (("inverter", "id"), False),
        )


# -- rules ---------------------------------------------------------------------------------------
def create_rule(account_id: str, inverter_id: str | None, kind: str, params: dict) -> AlertRule:
    return AlertRule.create(account=account_id, inverter=inverter_id, kind=kind, params=params)


def visible_rules(account_id: str) -> list[AlertRule]:
    """The account's own rules and the rules on inverters it is a member of (members read them)."""
    on_visible = Inverter.select(Inverter.id).where(_visible_to(account_id))
    return list(
        AlertRule.select()
        .where((AlertRule.account == account_id) | AlertRule.inverter.in_(on_visible))
        .order_by(AlertRule.id)
    )


def update_rule(rule: AlertRule, params: dict) -> AlertRule:
    rule.params = params
    rule.save()
    return rule


def delete_rule(rule_id: str) -> None:
    Alert.delete().where(Alert.rule == rule_id).execute()
    AlertRule.delete().where(AlertRule.id == rule_id).execute()


def engine_view() -> tuple[list[AlertRule], dict[str, list[tuple[str, str]]], dict[tuple[str, str], str]]:
    """What an alert engine starts from: every rule, each account's owned inverters [(id, serial)], and
    the open episodes {(rule id, inverter id): alert id}."""
    rules = list(AlertRule.select())
    owned: dict[str, list[tuple[str, str]]] = {}
    for row in Inverter.select(Inverter.id, Inverter.serial, Inverter.owner):
        owned.setdefault(row.owner_id, []).append((row.id, row.serial))
    open_ = {(a.rule_id, a.inverter_id): a.id for a in Alert.select().where(Alert.open_slot == OPEN)}
    return rules, owned, open_


def alerts_of(inverter_id: str, limit: int) -> list[Alert]:
    return list(Alert.select().where(Alert.inverter == inverter_id).order_by(Alert.id.desc()).limit(limit))


def acknowledge(inverter_id: str, alert_id: str, at: float) -> Alert | None:
    """Mark an alert of this inverter acknowledged (once: the first time is kept); None if there is no such alert."""
    Alert.update(acknowledged_at=at).where(
        (Alert.id == alert_id) & (Alert.inverter == inverter_id) & Alert.acknowledged_at.is_null()
    ).execute()
    return Alert.get_or_none((Alert.id == alert_id) & (Alert.inverter == inverter_id))


# -- episodes ------------------------------------------------------------------------------------
def payload(event_type: str, alert: Alert, serial: str, at: float) -> dict:
    return {
        "type": event_type,
        "timestamp": iso(at),
        "data": {
            "alert_id": alert.id,
            "inverter_id": alert.inverter_id,
            "serial": serial,
            "rule_id": alert.rule_id,
            "kind": alert.kind,
            "values": alert.values,
            "cleared_values": alert.cleared_values,
            "opened_at": iso(alert.opened_at),
            "cleared_at": iso(alert.cleared_at),
        },
    }


OPENING, CLEARING, SUMMARY = "open", "clear", "summary"

# Raw SQL: an episode change is written per alert of a storm, and peewee's statement building (tens of µs
# a statement) would be most of its cost. "values" is quoted: a keyword in both dialects.
_ALERT_COLUMNS = 'id, rule_id, inverter_id, account_id, kind, opened_at, cleared_at, open_slot, "values"'
_ALERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_CLEAR = (
    "UPDATE alert SET cleared_at = ?, open_slot = NULL, cleared_values = ? WHERE id = ? AND open_slot = ? RETURNING id"
)
#: Episodes per INSERT: 9 parameters each, well under SQLite's and PostgreSQL's limits.
INSERT_CHUNK = 500


def open_alert(
    rule: AlertRule, inverter_id: str, serial: str, opened_at: float, values: dict, alert_id: str | None = None
) -> tuple[Alert, dict, int] | None:
    """Open an episode and queue its webhooks, in the caller's write transaction; None if one is open already."""
    return apply_changes([(OPENING, rule, inverter_id, serial, alert_id or new_id(), opened_at, values)])[0]


def clear_alert(alert_id: str, serial: str, cleared_at: float, values: dict) -> tuple[Alert, dict, int] | None:
    """Clear an open episode and queue its webhooks; None if it is not open (cleared already, or deleted)."""
    return apply_changes([(CLEARING, alert_id, serial, cleared_at, values)])[0]


def record_daily_summary(
    rule: AlertRule, inverter_id: str, serial: str, sunset: float, values: dict
) -> tuple[Alert, dict, int] | None:
    """Record one site-day's summary (opened and cleared at that day's sunset) and queue its webhooks; None
    if that day's summary exists already: the unique (rule, inverter, opened_at) makes it once per site-day,
    across restarts and engines."""
    return apply_changes([(SUMMARY, rule, inverter_id, serial, sunset, values)])[0]


def apply_changes(changes: list[tuple]) -> list[tuple[Alert, dict, int] | None]:
    """An engine's episode changes, in order, in the caller's one write transaction (one commit for a storm
    of alerts instead of one each): (OPENING, rule, inverter id, serial, alert id, at, values),
    (CLEARING, alert id, serial, at, values), (SUMMARY, rule, inverter id, serial, sunset, values). Each
    result is (alert, message, webhook jobs queued), or None where the database refused the change: an
    episode of that rule and inverter is open already (or that day's summary exists), or the one to clear
    is not open. The engine runs the same three steps with only the last in the transaction."""
    return write_prepared(prepare_changes(changes, change_context(changes)))


@dataclass(slots=True)
class ChangeContext:
    """What preparing changes needs from the database, read before the write transaction: the episodes to
    clear (none of an episode's columns but its clearing changes once written) and the accounts' endpoints."""

    episodes: dict[str, Alert]
    endpoints: dict[str, list[tuple[str, str, list[str]]]]


def change_context(changes: list[tuple]) -> ChangeContext:
    """Read what prepare_changes needs (on the database owner, outside the write transaction)."""
    to_clear = [args[0] for kind, *args in changes if kind == CLEARING]
    episodes: dict[str, Alert] = {}
    for chunk in chunks(to_clear, 500):
        for alert in Alert.select().where(Alert.id.in_(chunk)):
            episodes[alert.id] = alert
    accounts = {args[0].account_id for kind, *args in changes if kind != CLEARING}
    accounts |= {alert.account_id for alert in episodes.values()}
    return ChangeContext(episodes, webhooks.subscribed_endpoints(accounts))


@dataclass(slots=True)
class PreparedChange:
    """One episode change ready to write: its alert and message as they will be, the row to insert (an opening
    or a summary) or to clear, and its webhook jobs, built before the transaction."""

    index: int
    alert: Alert
    message: dict
    insert: tuple | None
    clear: list | None
    jobs: list[jobs.NewJob]


@dataclass(slots=True)
class PreparedChanges:
    count: int
    runs: list[list[PreparedChange]]


def prepare_changes(changes: list[tuple], context: ChangeContext) -> PreparedChanges:
    """Build the rows, messages and webhook jobs of these changes, in runs no reordering can affect (clearings,
    then insertions, none touching a rule and inverter or an alert twice), so that each run is a few set-based
    statements. No I/O: the caller keeps the database's one writer for write_prepared only. The openings are
    added to `context`, so that the next changes prepared with it may clear them."""
    known = context.episodes  # and, added here, those opened by earlier changes, which later ones may clear
    runs: list[list[PreparedChange]] = []
    for run in _runs(changes):
        prepared = []
        for index in run:
            kind, *args = changes[index]
            if kind == CLEARING:
                alert_id, serial, cleared_at, values = args
                opened = known.get(alert_id)
                if opened is None:  # no such episode (deleted with its inverter or rule): nothing to clear
                    continue
                alert = Alert(**{**opened.__data__, "cleared_at": cleared_at, "open_slot": None})
                alert.cleared_values = values
                event_type = EVENT_TYPES[alert.kind][1]
                message = payload(event_type or EVENT_TYPES[alert.kind][0], alert, serial, cleared_at)
                clear = [cleared_at, json_text(values), alert_id, OPEN]
                made = _webhook_jobs(alert, message, "cleared", context) if event_type else []
                prepared.append(PreparedChange(index, alert, message, None, clear, made))
                continue
            if kind == OPENING:
                rule, inverter_id, serial, alert_id, at, values = args
                alert, phase = _episode(rule, inverter_id, alert_id, at, None, values), "opened"
                known[alert_id] = alert
            else:
                rule, inverter_id, serial, sunset, values = args
                alert, phase = _episode(rule, inverter_id, new_id(), sunset, sunset, values), "summary"
            message = payload(EVENT_TYPES[alert.kind][0], alert, serial, alert.opened_at)
            row = (
                alert.id,
                alert.rule_id,
                alert.inverter_id,
                alert.account_id,
                alert.kind,
                alert.opened_at,
                alert.cleared_at,
                alert.open_slot,
                json_text(values),
            )
            prepared.append(
                PreparedChange(index, alert, message, row, None, _webhook_jobs(alert, message, phase, context))
            )
        runs.append(prepared)
    return PreparedChanges(len(changes), runs)


def write_prepared(prepared: PreparedChanges) -> list[tuple[Alert, dict, int] | None]:
    """Write prepared changes in the caller's write transaction: per run, the clearings (an UPDATE each, of an
    open episode only), the insertions (one INSERT, what a unique index refuses left out) and the webhook jobs
    of those written (one jobs.insert_new_jobs per account). Results as apply_changes's."""
    db = Alert._meta.database
    results: list[tuple[Alert, dict, int] | None] = [None] * prepared.count
    for run in prepared.runs:
        written = [
            change
            for change in run
            if change.clear is not None and db.execute_sql(sql(_CLEAR), change.clear).fetchone()
        ]
        inserted = _insert_episodes([change.insert for change in run if change.insert is not None])
        written += [change for change in run if change.insert is not None and change.alert.id in inserted]
        by_account: dict[str, list[tuple[PreparedChange, jobs.NewJob]]] = {}
        for change in written:
            for new in change.jobs:
                by_account.setdefault(change.alert.account_id, []).append((change, new))
        created: dict[int, int] = {}
        for account_id, pairs in by_account.items():
            for (change, _), outcome in zip(pairs, jobs.insert_new_jobs(account_id, [new for _, new in pairs])):
                if isinstance(outcome, tuple) and outcome[1]:
                    created[change.index] = created.get(change.index, 0) + 1
        for change in written:
            results[change.index] = (change.alert, change.message, created.get(change.index, 0))
    return results


def _runs(changes: list[tuple]) -> list[list[int]]:
    """Indexes of `changes` in runs: clearings first, then openings and summaries, no key twice in a run.

    A clearing does not name its rule and inverter, so a clearing after an insertion starts a new run:
    within a run every clearing came before every insertion, as in `changes`."""
    runs: list[list[int]] = []
    seen: set[tuple] = set()
    inserting = False
    for index, (kind, *args) in enumerate(changes):
        if kind == CLEARING:
            keys = {("alert", args[0])}
            fresh = not inserting
        else:
            rule, inverter_id = args[0], args[1]
            keys = {("episode", rule.id, inverter_id)} | ({("alert", args[3])} if kind == OPENING else set())
            fresh = True
        if not runs or not fresh or keys & seen:
            runs.append([])
            seen, inserting = set(), False
        runs[-1].append(index)
        seen |= keys
        inserting = inserting or kind != CLEARING
    return runs


def _episode(rule, inverter_id: str, alert_id: str, at: float, cleared_at: float | None, values: dict) -> Alert:
    return Alert(
        id=alert_id,
        rule=rule.id,
        inverter=inverter_id,
        account=rule.account_id,
        kind=rule.kind,
        opened_at=at,
        cleared_at=cleared_at,
        open_slot=OPEN if cleared_at is None else None,
        values=values,
    )


def _insert_episodes(rows: list[tuple]) -> set[str]:
    """Insert these alert rows, a chunk per statement; the ids of those inserted (not refused by a unique index)."""
    inserted: set[str] = set()
    db = Alert._meta.database
    for chunk in chunks(rows, INSERT_CHUNK):
        text = f"INSERT INTO alert ({_ALERT_COLUMNS}) VALUES {', '.join([_ALERT_ROW] * len(chunk))}"
        try:
            with db.atomic():
                cursor = db.execute_sql(
                    built_sql(f"{text} ON CONFLICT DO NOTHING RETURNING id"),
                    [value for row in chunk for value in row],
                )
                inserted.update(alert_id for (alert_id,) in cursor.fetchall())
        except peewee.IntegrityError:
            # Not a duplicate (those are skipped) but a row the database refuses, e.g. an inverter deleted
            # meanwhile: row by row, so only that one is left out.
            for row in chunk:
                try:
                    with db.atomic():
                        db.execute_sql(sql(f"INSERT INTO alert ({_ALERT_COLUMNS}) VALUES {_ALERT_ROW}"), row)
                    inserted.add(row[0])
                except peewee.IntegrityError:
                    pass
    return inserted


def _webhook_jobs(alert: Alert, message: dict, phase: str, context: ChangeContext) -> list[jobs.NewJob]:
    """One job per endpoint of the alert's account subscribed to the message's type, with an idempotency key
    naming the alert, phase and endpoint: written again (a restart, another engine), it is never sent twice."""
    subscribed = [e for e in context.endpoints.get(alert.account_id, ()) if message["type"] in e[2]]
    if not subscribed:
        return []
    body = json_text(message).encode()
    items = []
    for endpoint_id, url, _ in subscribed:
        spec = {
            "url": url,
            "host": parse_outbound_url(url).host,
            "method": "POST",
            "headers": {"Content-Type": "application/json", webhooks.ID_HEADER: f"msg_{alert.id}_{phase}"},
            "body": body,
            "body_kind": "json",
            "timeout_s": WEBHOOK_TIMEOUT_S,
            "max_attempts": WEBHOOK_MAX_ATTEMPTS,
            "backoff": Backoff().to_dict(),
            "run_at": None,
            "sign_with": endpoint_id,
        }
        items.append((spec, f"alert:{alert.id}:{phase}:{endpoint_id}"))
    return jobs.new_jobs(alert.account_id, items)


# -- decisions -----------------------------------------------------------------------------------
# Pure: the reading, the rule's params and whether an episode is open in, an action out ("open",
# "clear" or None). The engine (actors/alerts.py) does the I/O; these carry the rules' meaning, so that
# hysteresis and the daylight gate are tested without a database (tests/metrics/test_alert_decisions.py).
OPEN_IT, CLEAR_IT = "open", "clear"


def fault_action(status, is_open: bool) -> str | None:
    """Open on a fault status; clear on any other status the device reports."""
    if status in FAULT_STATUSES:
        return None if is_open else OPEN_IT
    return CLEAR_IT if is_open and status is not None else None


def battery_action(soc_pct, params: dict, is_open: bool) -> str | None:
    """Open below `below_pct`; clear only above `clear_above_pct`, so a value flapping in between stays quiet."""
    if soc_pct is None:
        return None
    if not is_open and soc_pct < params["below_pct"]:
        return OPEN_IT
    if is_open and soc_pct > params["clear_above_pct"]:
        return CLEAR_IT
    return None


def production_action(
    pv_w, expected_w: float, params: dict, is_open: bool, below_since: float | None, t: float
) -> tuple[str | None, float | None]:
    """(action, new below_since) for a production_low rule.

    Only in daylight worth judging: while the clear-sky expectation is under `daylight_min_pct` of the
    peak power (night, dawn, dusk) nothing opens or clears and the "below since" clock is reset. Opens once
    production has stayed under `below_pct` of the expectation for `minutes`; clears above `clear_above_pct`.
    """
    if pv_w is None or expected_w < params["daylight_min_pct"] / 100.0 * params["peak_power_w"]:
        return None, None
    ratio_pct = 100.0 * pv_w / expected_w
    if is_open:
        return (CLEAR_IT if ratio_pct > params["clear_above_pct"] else None), None
    if ratio_pct >= params["below_pct"]:
        return None, None
    since = t if below_since is None else below_since
    return (OPEN_IT if t - since >= params["minutes"] * 60.0 else None), since


def summary_due(reading_time: float, sunset: float | None, day: int, summarized_day: int | None) -> bool:
    """A site-day's summary is due with its first reading after that day's sunset (never in polar day or night)."""
    return sunset is not None and reading_time >= sunset and summarized_day != day
