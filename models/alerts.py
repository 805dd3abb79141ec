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

import peewee

from models import jobs, webhooks
from models.accounts import Account
from models.backoff import Backoff
from models.base import BaseModel, JSONField, iso, json_text, now
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
    rule = peewee.ForeignKeyField(AlertRule, backref="alerts", on_delete="CASCADE")
    inverter = peewee.ForeignKeyField(Inverter, backref="alerts", on_delete="CASCADE")
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


def _webhook_jobs(account_id: str, message: dict, alert_id: str, phase: str) -> int:
    body = json_text(message).encode()
    items = []
    for endpoint in webhooks.endpoints_for(account_id, message["type"]):
        spec = {
            "url": endpoint.url,
            "host": parse_outbound_url(endpoint.url).host,
            "method": "POST",
            "headers": {"Content-Type": "application/json", webhooks.ID_HEADER: f"msg_{alert_id}_{phase}"},
            "body": body,
            "body_kind": "json",
            "timeout_s": WEBHOOK_TIMEOUT_S,
            "max_attempts": WEBHOOK_MAX_ATTEMPTS,
            "backoff": Backoff().to_dict(),
            "run_at": None,
            "sign_with": endpoint.id,
        }
        items.append((spec, f"alert:{alert_id}:{phase}:{endpoint.id}"))
    return sum(1 for outcome in jobs.insert_jobs(account_id, items) if isinstance(outcome, tuple) and outcome[1])


def open_alert(
    rule: AlertRule, inverter_id: str, serial: str, opened_at: float, values: dict, alert_id: str | None = None
) -> tuple[Alert, dict, int] | None:
    """Open an episode and queue its webhooks, in the caller's write transaction; None if one is open already."""
    return _insert_alert(rule, inverter_id, serial, opened_at, values, None, "opened", alert_id)


def _insert_alert(
    rule: AlertRule,
    inverter_id: str,
    serial: str,
    at: float,
    values: dict,
    cleared_at: float | None,
    phase: str,
    alert_id: str | None = None,
) -> tuple[Alert, dict, int] | None:
    """Insert an alert row and queue its webhooks; None when a unique index says it exists already."""
    alert = Alert(
        id=alert_id or new_id(),
        rule=rule.id,
        inverter=inverter_id,
        account=rule.account_id,
        kind=rule.kind,
        opened_at=at,
        cleared_at=cleared_at,
        open_slot=OPEN if cleared_at is None else None,
        values=values,
    )
    try:
        with Alert._meta.database.atomic():
            alert.save(force_insert=True)
    except peewee.IntegrityError:
        return None
    message = payload(EVENT_TYPES[rule.kind][0], alert, serial, at)
    return alert, message, _webhook_jobs(rule.account_id, message, alert.id, phase)


def clear_alert(alert_id: str, serial: str, cleared_at: float, values: dict) -> tuple[Alert, dict, int] | None:
    """Clear an open episode and queue its webhooks; None if it is not open (cleared already, or deleted)."""
    changed = (
        Alert.update(cleared_at=cleared_at, open_slot=None, cleared_values=values)
        .where((Alert.id == alert_id) & (Alert.open_slot == OPEN))
        .execute()
    )
    if not changed:
        return None
    alert = Alert.get_by_id(alert_id)
    event_type = EVENT_TYPES[alert.kind][1]
    message = payload(event_type or EVENT_TYPES[alert.kind][0], alert, serial, cleared_at)
    queued = _webhook_jobs(alert.account_id, message, alert.id, "cleared") if event_type else 0
    return alert, message, queued


def record_daily_summary(
    rule: AlertRule, inverter_id: str, serial: str, sunset: float, values: dict
) -> tuple[Alert, dict, int] | None:
    """Record one site-day's summary (opened and cleared at that day's sunset) and queue its webhooks; None
    if that day's summary exists already: the unique (rule, inverter, opened_at) makes it once per site-day,
    across restarts and engines."""
    return _insert_alert(rule, inverter_id, serial, sunset, values, cleared_at=sunset, phase="summary")


OPENING, CLEARING, SUMMARY = "open", "clear", "summary"


def apply_changes(changes: list[tuple]) -> list[tuple[Alert, dict, int] | None]:
    """An engine's episode changes, in order, in the caller's one write transaction (one commit for a storm
    of alerts instead of one each): (OPENING, rule, inverter id, serial, alert id, at, values),
    (CLEARING, alert id, serial, at, values), (SUMMARY, rule, inverter id, serial, sunset, values). Each
    result is the one of open_alert, clear_alert, record_daily_summary; each change in its own savepoint."""
    results: list[tuple[Alert, dict, int] | None] = []
    for kind, *args in changes:
        with Alert._meta.database.atomic():
            if kind == OPENING:
                rule, inverter_id, serial, alert_id, at, values = args
                results.append(open_alert(rule, inverter_id, serial, at, values, alert_id))
            elif kind == CLEARING:
                results.append(clear_alert(*args))
            else:
                results.append(record_daily_summary(*args))
    return results


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
