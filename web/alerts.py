"""Webhook endpoints and alert rules: registered by an account, used by the alert engine (actors/alerts.py).

An endpoint's URL goes through the one outbound URL parser and the destination policy, like a job's.
Its signing secret is answered only by the creation and by rotate-secret. A rule belongs to the account
that made it: the owner lists, changes and deletes it; members of its inverter can read it.
"""

from __future__ import annotations

import math

from flask import Blueprint, g, jsonify

from models import alerts, webhooks
from models.base import iso, now
from models.channels import ALERT_RULES_CHANGED
from models.ids import looks_like_id
from models.inverters import visible_inverter
from models.net.policy import BlockedDestination
from models.net.urls import InvalidUrl, parse_outbound_url
from web.auth import require_account
from web.errors import ApiError, not_found
from web.extensions import app_settings, destination_policy, owner, redis_client
from web.json_body import json_body

bp = Blueprint("alerts", __name__)

MIN_MINUTES, MAX_MINUTES = 0.25, 7 * 24 * 60.0
PRODUCTION_PARAMS = {
    "latitude",
    "longitude",
    "peak_power_w",
    "tilt",
    "azimuth",
    "below_pct",
    "clear_above_pct",
    "minutes",
    "daylight_min_pct",
}


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_failed", f"{field}: {message}", {"field": field})


def _object(payload, known: set) -> dict:
    if not isinstance(payload, dict):
        raise ApiError(422, "validation_failed", "the body must be a JSON object", {"field": None})
    unknown = sorted(set(payload) - known)
    if unknown:
        raise _invalid(unknown[0], "is not a known field")
    return payload


# -- webhook endpoints ---------------------------------------------------------------------------
def endpoint_view(endpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "created_at": iso(endpoint.created_at),
        "rotated_at": iso(endpoint.rotated_at),
    }


def _endpoint_url(value) -> str:
    try:
        url = parse_outbound_url(value)
    except InvalidUrl as exc:
        raise _invalid("url", "is required" if value is None else exc.message) from None
    try:
        destination_policy().check_host_at_submission(url.host, url.port)
    except BlockedDestination as exc:
        raise ApiError(
            422,
            "blocked_destination",
            str(exc),
            {"field": "url", "host": exc.host, "address": exc.address, "reason": exc.reason},
        ) from None
    return url.url


def _event_types(value) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _invalid("event_types", f"must be a non-empty list of: {', '.join(webhooks.EVENT_TYPES)}")
    unknown = [v for v in value if v not in webhooks.EVENT_TYPES]
    if unknown:
        raise _invalid("event_types", f"{unknown[0]!r} is not one of {', '.join(webhooks.EVENT_TYPES)}")
    return list(dict.fromkeys(value))


def _endpoint_or_404(endpoint_id: str):
    endpoint = owner().call(webhooks.get_endpoint, g.account.id, endpoint_id) if looks_like_id(endpoint_id) else None
    if endpoint is None:
        raise not_found("webhook endpoint")
    return endpoint


@bp.post("/webhook-endpoints")
@require_account
def create_endpoint():
    payload = _object(json_body(), {"url", "description", "event_types"})
    url = _endpoint_url(payload.get("url"))
    description = payload.get("description") or ""
    if not isinstance(description, str) or len(description) > 500:
        raise _invalid("description", "must be text of at most 500 characters")
    event_types = _event_types(payload.get("event_types"))
    endpoint, secret = owner().write(webhooks.create_endpoint, g.account.id, url, description, event_types)
    return jsonify({**endpoint_view(endpoint), "secret": secret}), 201


@bp.get("/webhook-endpoints")
@require_account
def list_endpoints():
    return jsonify(
        {"webhook_endpoints": [endpoint_view(e) for e in owner().call(webhooks.list_endpoints, g.account.id)]}
    )


@bp.get("/webhook-endpoints/<endpoint_id>")
@require_account
def show_endpoint(endpoint_id):
    return jsonify(endpoint_view(_endpoint_or_404(endpoint_id)))


@bp.delete("/webhook-endpoints/<endpoint_id>")
@require_account
def delete_endpoint(endpoint_id):
    if not (looks_like_id(endpoint_id) and owner().write(webhooks.delete_endpoint, g.account.id, endpoint_id)):
        raise not_found("webhook endpoint")
    return "", 204


@bp.post("/webhook-endpoints/<endpoint_id>/rotate-secret")
@require_account
def rotate_secret(endpoint_id):
    _endpoint_or_404(endpoint_id)
    overlap_s = app_settings().webhook_secret_overlap_s
    rotated = owner().write(webhooks.rotate_secret, g.account.id, endpoint_id, overlap_s)
    if rotated is None:
        raise not_found("webhook endpoint")
    endpoint, secret = rotated
    return jsonify(
        {
            **endpoint_view(endpoint),
            "secret": secret,
            "previous_secret_valid_until": iso(endpoint.secrets["previous_until"]),
        }
    )


# -- alert rules ---------------------------------------------------------------------------------
def rule_view(rule) -> dict:
    return {
        "id": rule.id,
        "account": rule.account_id,
        "inverter_id": rule.inverter_id,
        "kind": rule.kind,
        "params": rule.params,
        "created_at": iso(rule.created_at),
    }


def _number(params: dict, name: str, lo: float, hi: float, default=None) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(f"params.{name}", "must be a number")
    if not lo <= value <= hi:
        raise _invalid(f"params.{name}", f"must be between {lo:g} and {hi:g}")
    return float(value)


def _params(kind: str, params) -> dict:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _invalid("params", "must be an object")
    known = {
        "offline": {"minutes"},
        "fault": set(),
        "battery_low": {"below_pct", "clear_above_pct"},
        "production_low": PRODUCTION_PARAMS,
        "daily_summary": {"latitude", "longitude"},
    }[kind]
    unknown = sorted(set(params) - known)
    if unknown:
        raise _invalid(f"params.{unknown[0]}", f"is not a parameter of {kind} rules")
    if kind == "offline":
        return {"minutes": _number(params, "minutes", MIN_MINUTES, MAX_MINUTES, 10.0)}
    if kind == "battery_low":
        below = _number(params, "below_pct", 0, 100, 20.0)
        clear_above = _number(params, "clear_above_pct", below, 100, min(100.0, below + 10))
        if clear_above <= below and below < 100:
            raise _invalid("params.clear_above_pct", "must be above below_pct (the hysteresis margin)")
        return {"below_pct": below, "clear_above_pct": clear_above}
    if kind == "production_low":
        return _production_params(params)
    if kind == "daily_summary":
        for name in ("latitude", "longitude"):
            if name not in params:
                raise _invalid(f"params.{name}", "is required for daily_summary rules (the site's sunset)")
        return {"latitude": _number(params, "latitude", -90, 90), "longitude": _number(params, "longitude", -180, 180)}
    return {}


def _production_params(params: dict) -> dict:
    """The site (where the clear-sky expectation comes from) travels with the rule: see the README."""
    for name in ("latitude", "longitude", "peak_power_w"):
        if name not in params:
            raise _invalid(f"params.{name}", "is required for production_low rules (the site's clear-sky expectation)")
    below = _number(params, "below_pct", 1, 100, 50.0)
    return {
        "latitude": _number(params, "latitude", -90, 90),
        "longitude": _number(params, "longitude", -180, 180),
        "peak_power_w": _number(params, "peak_power_w", 1, 1e8),
        "tilt": _number(params, "tilt", 0, 90, 0.0),
        "azimuth": _number(params, "azimuth", 0, 360, 180.0),
        "below_pct": below,
        "clear_above_pct": _number(params, "clear_above_pct", below, 100, min(100.0, below + 10)),
        "minutes": _number(params, "minutes", MIN_MINUTES, MAX_MINUTES, 30.0),
        "daylight_min_pct": _number(params, "daylight_min_pct", 1, 100, 10.0),
    }


def _kind(value) -> str:
    if value not in alerts.KINDS:
        raise _invalid("kind", f"must be one of {', '.join(alerts.KINDS)}")
    return value


def _rules_changed() -> None:
    try:
        redis_client().publish(ALERT_RULES_CHANGED, "1")
    except Exception:  # engines also reload on their own resubscription; the rule is stored either way
        pass


def _rule_or_404(rule_id: str, owned: bool):
    rules = owner().call(alerts.visible_rules, g.account.id) if looks_like_id(rule_id) else []
    rule = next((r for r in rules if r.id == rule_id), None)
    if rule is None:
        raise not_found("alert rule")
    if owned and rule.account_id != g.account.id:
        raise ApiError(403, "forbidden", "only the rule's owner may do this")
    return rule


@bp.post("/alert-rules")
@require_account
def create_rule():
    payload = _object(json_body(), {"inverter_id", "kind", "params"})
    kind = _kind(payload.get("kind"))
    params = _params(kind, payload.get("params"))
    inverter_id = payload.get("inverter_id")
    if inverter_id is not None:
        inverter = (
            owner().call(visible_inverter, g.account.id, inverter_id)
            if isinstance(inverter_id, str) and looks_like_id(inverter_id)
            else None
        )
        if inverter is None:
            raise ApiError(422, "validation_failed", "inverter_id: no such inverter of yours", {"field": "inverter_id"})
        if inverter.owner_id != g.account.id:
            raise ApiError(403, "forbidden", "only the inverter's owner may set its alert rules")
    rule = owner().write(alerts.create_rule, g.account.id, inverter_id, kind, params)
    _rules_changed()
    return jsonify(rule_view(rule)), 201


@bp.get("/alert-rules")
@require_account
def list_rules():
    return jsonify({"alert_rules": [rule_view(r) for r in owner().call(alerts.visible_rules, g.account.id)]})


@bp.get("/alert-rules/<rule_id>")
@require_account
def show_rule(rule_id):
    return jsonify(rule_view(_rule_or_404(rule_id, owned=False)))


@bp.patch("/alert-rules/<rule_id>")
@require_account
def patch_rule(rule_id):
    rule = _rule_or_404(rule_id, owned=True)
    payload = _object(json_body(), {"params"})
    params = _params(
        rule.kind,
        {**rule.params, **(payload.get("params") or {})}
        if isinstance(payload.get("params"), dict)
        else payload.get("params"),
    )
    rule = owner().write(alerts.update_rule, rule, params)
    _rules_changed()
    return jsonify(rule_view(rule))


@bp.delete("/alert-rules/<rule_id>")
@require_account
def delete_rule(rule_id):
    _rule_or_404(rule_id, owned=True)
    owner().write(alerts.delete_rule, rule_id)
    _rules_changed()
    return "", 204


def alert_view(alert, serial: str) -> dict:
    """What a webhook's data says of an alert, and whether the owner acknowledged it (the dashboard's)."""
    data = alerts.payload(alerts.EVENT_TYPES[alert.kind][0], alert, serial, alert.opened_at)["data"]
    return {**data, "acknowledged_at": iso(alert.acknowledged_at)}


def _inverter_or_404(inverter_id: str):
    inverter = owner().call(visible_inverter, g.account.id, inverter_id) if looks_like_id(inverter_id) else None
    if inverter is None:
        raise not_found("inverter")
    return inverter


@bp.get("/inverters/<inverter_id>/alerts")
@require_account
def inverter_alerts(inverter_id):
    inverter = _inverter_or_404(inverter_id)
    rows = owner().call(alerts.alerts_of, inverter.id, 100)
    return jsonify({"alerts": [alert_view(a, inverter.serial) for a in rows]})


@bp.post("/inverters/<inverter_id>/alerts/<alert_id>/acknowledge")
@require_account
def acknowledge_alert(inverter_id, alert_id):
    """The owner says they have seen it; members only read. Acknowledging again keeps the first time."""
    inverter = _inverter_or_404(inverter_id)
    if inverter.owner_id != g.account.id:
        raise ApiError(403, "forbidden", "only the inverter's owner may acknowledge its alerts")
    alert = owner().write(alerts.acknowledge, inverter.id, alert_id, now()) if looks_like_id(alert_id) else None
    if alert is None:
        raise not_found("alert")
    return jsonify(alert_view(alert, inverter.serial))
