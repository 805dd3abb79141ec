"""Webhook endpoints and alert rules: registered by an account, used by the alert engine (actors/alerts.py).

An endpoint's URL goes through the one outbound URL parser and the destination policy, like a job's.
Its signing secret is answered only by the creation and by rotate-secret. A rule belongs to the account
that made it: the owner lists, changes and deletes it; members of its inverter can read it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from flask import Blueprint, g, jsonify
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models import alerts, webhooks
from models.base import iso, now
from models.channels import ALERT_RULES_CHANGED
from models.ids import looks_like_id
from models.inverters import visible_inverter
from models.net.policy import BlockedDestination
from models.net.urls import InvalidUrl, parse_outbound_url
from web.auth import require_account
from web.errors import ApiError, blocked_destination, not_found
from web.extensions import app_settings, destination_policy, owner, redis_client
from web.job_request import DestinationUrl
from web.json_body import ApiModel, ApiRootModel, RequestModel, RequestRootModel, body_as, validated
from web.openapi import operation

bp = Blueprint("alerts", __name__)

MIN_MINUTES, MAX_MINUTES = 0.25, 7 * 24 * 60.0
DATE_TIME = {"format": "date-time"}


def _invalid(message: str) -> PydanticCustomError:
    """A refusal of one field, answered as 422 validation_failed naming it (web/json_body.py `validated`)."""
    return PydanticCustomError("invalid", message)


# -- webhook endpoints ---------------------------------------------------------------------------
EventType = Literal[webhooks.EVENT_TYPES]  # type: ignore[valid-type]


class WebhookEndpointRequest(RequestModel):
    """Where to send the account's alerts of the event types named, signed with the endpoint's secret."""

    model_config = ConfigDict(extra="forbid")
    url: DestinationUrl
    # No control characters: it is text for people, and PostgreSQL refuses a NUL in text (a 500, not a 422).
    description: str | None = Field(
        "", max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$", description="for people, without control characters"
    )
    event_types: list[EventType] = Field(min_length=1, description="the events sent to it (repeats are kept once)")

    @field_validator("url")
    @classmethod
    def _outbound(cls, value: str, info: ValidationInfo) -> str:
        try:
            url = parse_outbound_url(value)
        except InvalidUrl as exc:
            raise _invalid(exc.message) from None
        try:
            info.context["policy"].check_host_at_submission(url.host, url.port)
        except BlockedDestination as exc:
            raise blocked_destination(exc) from None
        return url.url

    @field_validator("description")
    @classmethod
    def _text(cls, value: str | None) -> str:
        return value or ""

    @field_validator("event_types", mode="before")
    @classmethod
    def _known_types(cls, value):
        # Checked here rather than item by item so the refusal names the field, listing what it takes.
        known = ", ".join(webhooks.EVENT_TYPES)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise _invalid(f"must be a non-empty list of: {known}")
        unknown = [v for v in value if v not in webhooks.EVENT_TYPES]
        if unknown:
            raise _invalid(f"{unknown[0]!r} is not one of {known}")
        return list(dict.fromkeys(value))


class WebhookEndpointView(ApiModel):
    id: str
    url: str
    description: str
    event_types: list[EventType]
    created_at: str = Field(json_schema_extra=DATE_TIME)
    rotated_at: str | None = Field(json_schema_extra=DATE_TIME)


class WebhookEndpointCreated(WebhookEndpointView):
    secret: str = Field(description="the signing secret (whsec_...): shown only now and on rotate-secret")


class WebhookEndpointRotated(WebhookEndpointCreated):
    previous_secret_valid_until: str | None = Field(
        description="until when the previous secret also signs", json_schema_extra=DATE_TIME
    )


class WebhookEndpointList(ApiModel):
    webhook_endpoints: list[WebhookEndpointView]


def endpoint_view(endpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "created_at": iso(endpoint.created_at),
        "rotated_at": iso(endpoint.rotated_at),
    }


def _endpoint_or_404(endpoint_id: str):
    endpoint = owner().call(webhooks.get_endpoint, g.account.id, endpoint_id) if looks_like_id(endpoint_id) else None
    if endpoint is None:
        raise not_found("webhook endpoint")
    return endpoint


ENDPOINTS = "webhook endpoints"


@bp.post("/webhook-endpoints")
@operation(
    "Register a webhook endpoint; its signing secret is in this answer only",
    {201: WebhookEndpointCreated},
    body=WebhookEndpointRequest,
    tag=ENDPOINTS,
)
@require_account
def create_endpoint():
    asked = body_as(WebhookEndpointRequest, policy=destination_policy())
    endpoint, secret = owner().write(
        webhooks.create_endpoint, g.account.id, asked.url, asked.description, asked.event_types
    )
    return jsonify({**endpoint_view(endpoint), "secret": secret}), 201


@bp.get("/webhook-endpoints")
@operation("The caller's webhook endpoints (without their secrets)", {200: WebhookEndpointList}, tag=ENDPOINTS)
@require_account
def list_endpoints():
    return jsonify(
        {"webhook_endpoints": [endpoint_view(e) for e in owner().call(webhooks.list_endpoints, g.account.id)]}
    )


@bp.get("/webhook-endpoints/<endpoint_id>")
@operation("A webhook endpoint (without its secret)", {200: WebhookEndpointView}, errors=(404,), tag=ENDPOINTS)
@require_account
def show_endpoint(endpoint_id):
    return jsonify(endpoint_view(_endpoint_or_404(endpoint_id)))


@bp.delete("/webhook-endpoints/<endpoint_id>")
@operation("Delete a webhook endpoint", {204: None}, errors=(404,), tag=ENDPOINTS)
@require_account
def delete_endpoint(endpoint_id):
    if not (looks_like_id(endpoint_id) and owner().write(webhooks.delete_endpoint, g.account.id, endpoint_id)):
        raise not_found("webhook endpoint")
    return "", 204


@bp.post("/webhook-endpoints/<endpoint_id>/rotate-secret")
@operation(
    "Give a webhook endpoint a new secret; the previous one also signs for an overlap",
    {200: WebhookEndpointRotated},
    errors=(404,),
    tag=ENDPOINTS,
)
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
Number = Annotated[float, Field(strict=True)]  # a JSON number: not a boolean, nor a numeric string
MINUTES = "how long the condition must hold, in minutes (fractions allowed)"


class _Params(ApiModel):
    model_config = ConfigDict(extra="forbid")


class OfflineParams(_Params):
    minutes: Number = Field(10.0, ge=MIN_MINUTES, le=MAX_MINUTES, description=MINUTES)


class FaultParams(_Params):
    pass


class _Hysteresis(_Params):
    """Opens below below_pct and clears at clear_above_pct (default below_pct + 10, at most 100), from
    below_pct to 100; `margin` asks that it be above below_pct."""

    margin: ClassVar[bool] = False

    @field_validator("clear_above_pct", check_fields=False)
    @classmethod
    def _not_below(cls, value: float | None, info: ValidationInfo) -> float | None:
        below = info.data.get("below_pct")  # validated before: declared first
        if value is None or below is None:
            return value
        if not below <= value <= 100:
            raise _invalid(f"must be between {below:g} and 100")
        if cls.margin and value <= below < 100:
            raise _invalid("must be above below_pct (the hysteresis margin)")
        return value

    @model_validator(mode="after")
    def _default_clear_above(self):
        if getattr(self, "clear_above_pct", None) is None:
            self.clear_above_pct = min(100.0, self.below_pct + 10)  # type: ignore[attr-defined]
        return self


class BatteryLowParams(_Hysteresis):
    margin = True
    below_pct: Number = Field(20.0, ge=0, le=100, description="open when the state of charge falls below this")
    clear_above_pct: Annotated[Number, Field(ge=0, le=100)] | None = Field(
        None, description="clear when it rises above this (above below_pct); default below_pct + 10"
    )


class ProductionLowParams(_Hysteresis):
    """The site (where the clear-sky expectation comes from) travels with the rule: see the README."""

    latitude: Number = Field(ge=-90, le=90)
    longitude: Number = Field(ge=-180, le=180)
    peak_power_w: Number = Field(ge=1, le=1e8, description="the array's peak power, watts")
    tilt: Number = Field(0.0, ge=0, le=90, description="the panels' tilt, degrees")
    azimuth: Number = Field(180.0, ge=0, le=360, description="the panels' azimuth, degrees (180: south)")
    below_pct: Number = Field(50.0, ge=1, le=100, description="open when production falls below this % of clear-sky")
    clear_above_pct: Annotated[Number, Field(ge=1, le=100)] | None = Field(
        None, description="clear when it rises to this (not below below_pct); default below_pct + 10"
    )
    minutes: Number = Field(30.0, ge=MIN_MINUTES, le=MAX_MINUTES, description=MINUTES)
    daylight_min_pct: Number = Field(
        10.0, ge=1, le=100, description="moments whose clear-sky expectation is below this % of peak are not judged"
    )


class DailySummaryParams(_Params):
    """The site's sunset is when its day is summed up."""

    latitude: Number = Field(ge=-90, le=90)
    longitude: Number = Field(ge=-180, le=180)


#: Each rule kind's parameters.
PARAMS: dict[str, type[_Params]] = {
    "offline": OfflineParams,
    "fault": FaultParams,
    "battery_low": BatteryLowParams,
    "production_low": ProductionLowParams,
    "daily_summary": DailySummaryParams,
}
assert tuple(PARAMS) == alerts.KINDS


def _title(kind: str) -> str:
    return "".join(part.title() for part in kind.split("_"))


class _RuleRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("params", mode="before", check_fields=False)
    @classmethod
    def _no_params_is_defaults(cls, value):
        return {} if value is None else value


def _rule_request(kind: str) -> type[BaseModel]:
    params = PARAMS[kind]
    required = any(field.is_required() for field in params.model_fields.values())
    return create_model(
        f"{_title(kind)}RuleRequest",
        __base__=_RuleRequest,
        inverter_id=(str | None, Field(None, description="one of your inverters; omitted: all of them")),
        kind=(Literal[kind], ...),
        params=(params | None, ... if required else Field(default_factory=params, description="omitted: the defaults")),
    )


_RULE_REQUESTS = tuple(_rule_request(kind) for kind in alerts.KINDS)


class AlertRuleRequest(RequestRootModel[Annotated[Union[_RULE_REQUESTS], Field(discriminator="kind")]]):  # noqa: UP007
    """A rule of one kind, chosen by `kind`, with that kind's parameters."""


class AlertRulePatch(RequestModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] | None = Field(
        None, description="parameters of the rule's kind (see AlertRuleRequest): those given replace the current ones"
    )


def _rule_view_model(kind: str) -> type[BaseModel]:
    return create_model(
        f"{_title(kind)}RuleView",
        __base__=ApiModel,
        id=(str, ...),
        account=(str, Field(description="the owner's account id")),
        inverter_id=(str | None, Field(description="null: every inverter the owner has")),
        kind=(Literal[kind], ...),
        params=(PARAMS[kind], ...),
        created_at=(str, Field(json_schema_extra=DATE_TIME)),
    )


_RULE_VIEWS = tuple(_rule_view_model(kind) for kind in alerts.KINDS)


class AlertRuleView(ApiRootModel[Annotated[Union[_RULE_VIEWS], Field(discriminator="kind")]]):  # noqa: UP007
    """A rule, with its kind's parameters (the defaults filled in)."""


class AlertRuleList(ApiModel):
    alert_rules: list[AlertRuleView]


def rule_view(rule) -> dict:
    return {
        "id": rule.id,
        "account": rule.account_id,
        "inverter_id": rule.inverter_id,
        "kind": rule.kind,
        "params": rule.params,
        "created_at": iso(rule.created_at),
    }


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


RULES = "alert rules"


@bp.post("/alert-rules")
@operation(
    "Make an alert rule on one of your inverters, or all of them",
    {201: AlertRuleView},
    body=AlertRuleRequest,
    tag=RULES,
)
@require_account
def create_rule():
    asked = body_as(AlertRuleRequest).root
    if asked.inverter_id is not None:
        inverter = (
            owner().call(visible_inverter, g.account.id, asked.inverter_id)
            if looks_like_id(asked.inverter_id)
            else None
        )
        if inverter is None:
            raise ApiError(422, "validation_failed", "inverter_id: no such inverter of yours", {"field": "inverter_id"})
        if inverter.owner_id != g.account.id:
            raise ApiError(403, "forbidden", "only the inverter's owner may set its alert rules")
    rule = owner().write(alerts.create_rule, g.account.id, asked.inverter_id, asked.kind, asked.params.model_dump())
    _rules_changed()
    return jsonify(rule_view(rule)), 201


@bp.get("/alert-rules")
@operation("Your alert rules and those on inverters you are a member of", {200: AlertRuleList}, tag=RULES)
@require_account
def list_rules():
    return jsonify({"alert_rules": [rule_view(r) for r in owner().call(alerts.visible_rules, g.account.id)]})


@bp.get("/alert-rules/<rule_id>")
@operation("An alert rule", {200: AlertRuleView}, errors=(404,), tag=RULES)
@require_account
def show_rule(rule_id):
    return jsonify(rule_view(_rule_or_404(rule_id, owned=False)))


@bp.patch("/alert-rules/<rule_id>")
@operation(
    "Change some of an alert rule's parameters (its owner only)",
    {200: AlertRuleView},
    body=AlertRulePatch,
    errors=(404,),
    tag=RULES,
)
@require_account
def patch_rule(rule_id):
    rule = _rule_or_404(rule_id, owned=True)
    changes = body_as(AlertRulePatch).params or {}
    changed = validated(AlertRuleRequest, {"kind": rule.kind, "params": {**rule.params, **changes}}).root
    rule = owner().write(alerts.update_rule, rule, changed.params.model_dump())
    _rules_changed()
    return jsonify(rule_view(rule))


@bp.delete("/alert-rules/<rule_id>")
@operation("Delete an alert rule and its alerts (its owner only)", {204: None}, errors=(404,), tag=RULES)
@require_account
def delete_rule(rule_id):
    _rule_or_404(rule_id, owned=True)
    owner().write(alerts.delete_rule, rule_id)
    _rules_changed()
    return "", 204


# -- alerts --------------------------------------------------------------------------------------
MAX_ALERTS = 100


class AlertView(ApiModel):
    """An alert (an episode of a rule's condition on one inverter), as its webhooks' data says it."""

    alert_id: str
    inverter_id: str
    serial: str
    rule_id: str
    kind: Literal[alerts.KINDS]  # type: ignore[valid-type]
    values: dict[str, Any] = Field(description="the readings that opened it")
    cleared_values: dict[str, Any] | None = Field(description="the readings that cleared it")
    opened_at: str = Field(json_schema_extra=DATE_TIME)
    cleared_at: str | None = Field(json_schema_extra=DATE_TIME)
    acknowledged_at: str | None = Field(description="when the owner acknowledged it", json_schema_extra=DATE_TIME)


class AlertList(ApiModel):
    alerts: list[AlertView] = Field(description=f"newest first, at most {MAX_ALERTS}")


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
@operation("An inverter's alerts, newest first", {200: AlertList}, errors=(404,), tag="alerts")
@require_account
def inverter_alerts(inverter_id):
    inverter = _inverter_or_404(inverter_id)
    rows = owner().call(alerts.alerts_of, inverter.id, MAX_ALERTS)
    return jsonify({"alerts": [alert_view(a, inverter.serial) for a in rows]})


@bp.post("/inverters/<inverter_id>/alerts/<alert_id>/acknowledge")
@operation("Acknowledge an alert (the inverter's owner only)", {200: AlertView}, errors=(404,), tag="alerts")
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
