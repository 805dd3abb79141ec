"""The inverters API: onboard through a brand adapter, list, inspect, remove, manage team members,
and read the latest and stored readings. Only the owner and members see an inverter; to anyone else
it does not exist (404). A brand connection (one set of credentials) is shown and its poll interval set
by whoever owns inverters on it (GET/PATCH /connections/<id>)."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import gevent.lock
from flask import Blueprint, current_app, g, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field, create_model

from models import energy, inverters, live_events
from models.accounts import account_by_id_or_name
from models.base import iso, parse_iso
from models.brands import ADAPTERS, adapter_class, plan_device, requested_interval
from models.brands.base import AUTH, BLOCKED, RATE_LIMITED, UNKNOWN_DEVICE, BrandError
from models.brands.budget import QuotaBudget
from models.brands.clock import clock_from_settings
from models.brands.planner import charges, plan
from models.channels import INVERTER_ACCESS_REVOKED, INVERTERS_CHANGED
from models.ids import looks_like_id
from models.net.policy import BlockedDestination
from models.net.urls import InvalidUrl, parse_base_url
from web.auth import require_account
from web.errors import ApiError, not_found
from web.extensions import app_settings, destination_policy, owner, redis_client
from web.json_body import ApiModel, RequestModel, RequestRootModel, body_as, limit_param
from web.openapi import operation, query

log = logging.getLogger(__name__)

bp = Blueprint("inverters", __name__)
TAG = "inverters"

MAX_READINGS = 1000
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DeviceDirectory:
    """Brands' device lists, cached briefly per connection: onboarding a fleet then costs one (rate-
    limited) list call, not one per inverter. A serial missing from a list older than REFETCH_S
    triggers a fresh list, so a device just added at the brand is found."""

    FRESH_S = 30.0
    REFETCH_S = 2.0

    def __init__(self):
        self.lists: dict[tuple, tuple[float, dict]] = {}
        self.locks: dict[tuple, gevent.lock.Semaphore] = {}

    def find(self, adapter, key: tuple, serial: str):
        return adapter.found(self._devices(adapter, key, serial), serial)

    #: most devices discovery describes with a call each, for brands whose list lacks their type (Enphase)
    TYPED_AT_MOST = 20

    def all(self, adapter, key: tuple) -> dict:
        """The whole list for discovery: asked afresh unless asked within REFETCH_S, and kept, so onboarding
        the devices a person then picks from it costs no second list call. A type the list lacks is asked for
        (one call per device, up to TYPED_AT_MOST; a refused call leaves the rest untyped) and kept with it."""
        devices = dict(self._devices(adapter, key, None))
        untyped = [serial for serial, device in sorted(devices.items()) if not device.device_type]
        for serial in untyped[: self.TYPED_AT_MOST]:
            try:
                devices[serial] = adapter.found(devices, serial)
            except BrandError as exc:
                log.info("discovery left %s untyped: %s", serial, exc.message)
                break
        if untyped:
            with self.locks.setdefault(key, gevent.lock.Semaphore()):
                fetched_at, _ = self.lists.get(key, (time.monotonic(), {}))
                self.lists[key] = (fetched_at, devices)
        return devices

    def _devices(self, adapter, key: tuple, serial: str | None) -> dict:
        lock = self.locks.setdefault(key, gevent.lock.Semaphore())
        with lock:  # one list call per connection at a time; the others wait for its answer
            fetched_at, devices = self.lists.get(key, (float("-inf"), {}))
            age = time.monotonic() - fetched_at
            if age > self.FRESH_S or (serial not in devices and age > self.REFETCH_S):
                devices = adapter.list_devices()
                self._prune()
                self.lists[key] = (time.monotonic(), devices)
        return devices

    def _prune(self):
        cutoff = time.monotonic() - self.FRESH_S
        for key in [k for k, (at, _) in self.lists.items() if at < cutoff]:
            del self.lists[key]


# -- views ---------------------------------------------------------------------------------------
def inverter_view(inverter, account_id: str, members: list[str] | None = None) -> dict:
    view = {
        "id": inverter.id,
        "brand": inverter.brand,
        "serial": inverter.serial,
        "device_type": inverter.device_type,
        "model": inverter.model,
        "plant_id": inverter.plant_id,
        "timezone": inverter.timezone,
        "connection_id": inverter.connection_id,
        "owner": inverter.owner_id,
        "role": "owner" if inverter.owner_id == account_id else "member",
        "status": inverter.status,
        "status_changed_at": iso(inverter.status_changed_at),
        "created_at": iso(inverter.created_at),
    }
    if members is not None:
        view["members"] = members
    return view


def reading_view(reading) -> dict:
    return {"event_id": reading.event_id, **reading.data}


def latest_readings(devices) -> list[tuple[str | None, dict | None, str | None]]:
    """(event id, reading, live status) per inverter: from Redis in one round trip, else the stored one."""
    try:
        replies = live_events.snapshot(redis_client(), [i.id for i in devices], None) if devices else []
    except Exception as exc:  # Redis down: the recorder's copy is a moment older but still true
        log.warning("latest readings from the database, Redis failed: %s", exc)
        replies = [(None, None, None)] * len(devices)
    readings = [json.loads(data) if data else None for _, data, _ in replies]
    missing = [inverter.id for inverter, reading in zip(devices, readings) if reading is None]
    stored = owner().call(inverters.latest_stored, missing) if missing else {}
    latest = []
    for inverter, reading, (event_id, _, status) in zip(devices, readings, replies):
        if reading is None and inverter.id in stored:
            event_id, reading = stored[inverter.id].event_id, stored[inverter.id].data
        latest.append((event_id, reading, status))
    return latest


def _visible_or_404(inverter_id: str):
    inverter = (
        owner().call(inverters.visible_inverter, g.account.id, inverter_id) if looks_like_id(inverter_id) else None
    )
    if inverter is None:
        raise not_found("inverter")
    return inverter


def _owned_or_403(inverter_id: str):
    inverter = _visible_or_404(inverter_id)
    if inverter.owner_id != g.account.id:
        raise ApiError(403, "forbidden", "only the inverter's owner may do this")
    return inverter


def _revoke_streams(inverter_id: str, account_id: str | None) -> None:
    """Close open streams of this inverter (of one account, or everyone's) in every web process."""
    try:
        redis_client().publish(
            INVERTER_ACCESS_REVOKED, json.dumps({"inverter_id": inverter_id, "account_id": account_id})
        )
    except Exception as exc:  # the streams stay open until they reconnect, and then get 404
        log.warning("could not close streams of inverter=%s account=%s: %s", inverter_id, account_id, exc)


def _notify_pollers(connection_id: str) -> None:
    try:
        redis_client().publish(INVERTERS_CHANGED, connection_id)
    except Exception as exc:  # the pollers' resync timer still picks the change up
        log.warning("could not notify pollers of connection=%s: %s", connection_id, exc)


# -- onboarding ----------------------------------------------------------------------------------
def _field(body: dict, name: str, where: str = "") -> str:
    value = body.get(name)
    label = f"{where}{name}"
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "invalid_field", f"{label} is required and must be a non-empty string", {"field": label})
    if len(value) > 500:
        raise ApiError(400, "invalid_field", f"{label} is too long", {"field": label})
    if _CONTROL.search(value.strip()):
        # No serial, URL, key or account name has one; a NUL would also be refused by PostgreSQL, as a 500.
        raise ApiError(400, "invalid_field", f"{label} must not contain control characters", {"field": label})
    return value.strip()


def _base_url(connection: dict, cls) -> str:
    """The brand's origin, checked by the one URL parser and the destination policy, without connecting:
    a refused destination gets the same answer whatever listens there."""
    field = "connection.base_url"
    value = _field(connection, "base_url", "connection.")
    try:
        url = parse_base_url(value, cls.root_prefixes)
    except InvalidUrl as exc:
        if exc.problem in ("scheme", "missing"):
            raise ApiError(
                400, "invalid_field", f"{field} must be an http(s) URL with a host", {"field": field}
            ) from None
        expected = " or ".join(f"scheme://host[:port]{prefix}" for prefix in cls.root_prefixes)
        if exc.problem == "userinfo":
            message = "must not carry credentials; give the brand's credentials in " + ", ".join(
                f"connection.{name}" for name in cls.credential_fields
            )
        elif exc.problem == "not_origin":
            message = (
                f"must be the brand's API root, {expected} (e.g. https://api.example.com or "
                f"http://127.0.0.1:5100), without any other path: the {cls.name} adapter adds "
                f"{' and '.join(cls.paths)}"
            )
        else:
            message = exc.message
        raise ApiError(422, "validation_failed", f"{field} {message}", {"field": field, "expected": expected}) from None
    try:
        destination_policy().check_host_at_submission(url.host, url.port)
    except BlockedDestination as exc:
        raise _blocked(str(exc), exc.reason) from None
    return url.origin + url.path


def _blocked(message: str, reason: str | None) -> ApiError:
    return ApiError(422, "blocked_destination", message, {"field": "connection.base_url", "reason": reason})


def _credential(connection: dict, name: str) -> str:
    """An API key or token: the brand's client sends it in a header or a query string, so only visible ASCII
    can travel; anything else is refused here (422, never echoing it) rather than fail in the client. It is
    sent exactly as given: nothing is stripped."""
    value = connection.get(name)
    if isinstance(value, str) and value.strip() and not _VISIBLE_ASCII.fullmatch(value):
        raise ApiError(
            422,
            "invalid_field",
            f"connection.{name} must be visible ASCII characters only (no spaces, control or non-ASCII characters)",
            {"field": f"connection.{name}"},
        )
    return _field(connection, name, "connection.")  # present, at most 500 characters


def _parse_brand(body):
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "send a JSON object")
    brand = body.get("brand")
    cls = adapter_class(brand) if isinstance(brand, str) else None
    if cls is None:
        raise ApiError(400, "unknown_brand", f"unknown brand {brand!r}", {"brands": sorted(ADAPTERS)})
    return brand, cls


def _parse_connection(body: dict, cls) -> tuple[str, dict]:
    """The connection's base URL and credentials, as onboarding and discovery take them."""
    connection = body.get("connection")
    if not isinstance(connection, dict):
        raise ApiError(
            400,
            "invalid_field",
            "connection must be an object with base_url and " + ", ".join(cls.credential_fields),
            {"field": "connection"},
        )
    base_url = _base_url(connection, cls)
    credentials = {name: _credential(connection, name) for name in cls.credential_fields}
    for name, allowed in cls.credential_options.items():
        value = connection.get(name, allowed[0])
        if value not in allowed:
            raise ApiError(
                400,
                "invalid_field",
                f"connection.{name} must be one of {', '.join(allowed)}",
                {"field": f"connection.{name}", "allowed": list(allowed)},
            )
        credentials[name] = value
    return base_url, credentials


def _parse_onboarding(body) -> dict:
    brand, cls = _parse_brand(body)
    serial = _field(body, "serial")
    if "," in serial or len(serial) > 100:
        raise ApiError(
            400, "invalid_field", "serial must be at most 100 characters without commas", {"field": "serial"}
        )
    base_url, credentials = _parse_connection(body, cls)
    timezone = body.get("timezone")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, TypeError, ValueError, OSError):  # OSError: a name too long for a file
            raise ApiError(
                400, "invalid_field", "timezone must be an IANA zone such as Africa/Lagos", {"field": "timezone"}
            ) from None
    return {"brand": brand, "serial": serial, "base_url": base_url, "credentials": credentials, "timezone": timezone}


def _parse_discovery(body) -> dict:
    brand, cls = _parse_brand(body)
    base_url, credentials = _parse_connection(body, cls)
    return {"brand": brand, "serial": None, "base_url": base_url, "credentials": credentials}


def _brand_failure(exc: BrandError, spec: dict) -> ApiError:
    if exc.kind == BLOCKED:  # the name resolved to a refused address at connect: nothing was sent
        return _blocked(exc.message, None)
    details = {"brand": spec["brand"], "brand_error": exc.details()}
    if exc.kind == UNKNOWN_DEVICE:
        return ApiError(422, "unknown_serial", f"the brand does not know serial {spec['serial']!r}", details)
    if exc.kind == AUTH:
        return ApiError(422, "brand_rejected_credentials", "the brand refused these credentials", details)
    if exc.kind == RATE_LIMITED:
        retry = max(1, round(exc.retry_after_s or 1))
        return ApiError(
            503,
            "brand_rate_limited",
            "the brand asks us to slow down; try again shortly",
            details,
            headers={"Retry-After": str(retry)},
        )
    return ApiError(502, "brand_unreachable", f"the brand could not be asked: {exc.message}", details)


class _ConnectionBody(ApiModel):
    """What every brand's connection model shares: fields besides the brand's own are let through to its rules."""

    model_config = ConfigDict(extra="allow")


def _connection_model(cls) -> type[BaseModel]:
    """A brand's connection as a body carries it: its API root and the brand's own credentials."""
    fields: dict[str, Any] = {
        "base_url": (
            str,
            Field(
                max_length=500,
                json_schema_extra={"format": "uri"},
                description=f"the brand's API root, such as https://api.example.com{cls.root_prefixes[0]}",
            ),
        )
    }
    fields.update(
        {
            name: (str, Field(min_length=1, max_length=500, description="visible ASCII"))
            for name in cls.credential_fields
        }
    )
    fields.update({name: (Literal[allowed], allowed[0]) for name, allowed in cls.credential_options.items()})
    return create_model(f"{_title(cls)}Connection", __base__=_ConnectionBody, **fields)


def _title(cls) -> str:
    return "".join(part.title() for part in cls.name.split("_"))


_CONNECTIONS = {name: _connection_model(ADAPTERS[name]) for name in sorted(ADAPTERS)}


def _onboarding_model(cls) -> type[BaseModel]:
    """The body that onboards an inverter of this brand: its connection names the brand's own credentials."""
    return create_model(
        f"{_title(cls)}Onboarding",
        __base__=ApiModel,
        brand=(Literal[cls.name], ...),
        serial=(str, Field(min_length=1, max_length=500, description="at most 100 characters without commas")),
        connection=(_CONNECTIONS[cls.name], ...),
        timezone=(str | None, Field(None, description="an IANA zone such as Africa/Lagos; default: the brand's")),
    )


def _discovery_model(cls) -> type[BaseModel]:
    return create_model(
        f"{_title(cls)}Discovery",
        __base__=ApiModel,
        brand=(Literal[cls.name], ...),
        connection=(_CONNECTIONS[cls.name], ...),
    )


_ONBOARDINGS = tuple(_onboarding_model(ADAPTERS[name]) for name in sorted(ADAPTERS))
_DISCOVERIES = tuple(_discovery_model(ADAPTERS[name]) for name in sorted(ADAPTERS))


class OnboardingRequest(RequestRootModel[Annotated[Union[_ONBOARDINGS], Field(discriminator="brand")]]):  # noqa: UP007
    """One brand's body, chosen by `brand`."""

    @classmethod
    def rules(cls, data, context: dict):
        return _parse_onboarding(data)


class DiscoveryRequest(RequestRootModel[Annotated[Union[_DISCOVERIES], Field(discriminator="brand")]]):  # noqa: UP007
    """One brand's connection, chosen by `brand`."""

    @classmethod
    def rules(cls, data, context: dict):
        return _parse_discovery(data)


class DiscoveredDevice(ApiModel):
    serial: str = Field(description="what POST /inverters takes as serial")
    device_type: str | None = Field(
        description="as the brand reports it; null when the brand would be asked once more for it (it is on onboarding)"
    )
    model: str | None
    plant_id: str | None
    timezone: str | None
    onboarded: Literal["by_you", "by_another_account"] | None = Field(
        description="whether this device is already onboarded on this connection, and by whom"
    )
    inverter_id: str | None = Field(description="the inverter's id when it is yours")


class DiscoveredDevices(ApiModel):
    brand: str
    devices: list[DiscoveredDevice]


class InverterView(ApiModel):
    id: str
    brand: str
    serial: str
    device_type: str | None
    model: str | None
    plant_id: str | None
    timezone: str | None
    connection_id: str
    owner: str
    role: Literal["owner", "member"]
    status: str | None
    status_changed_at: str | None = Field(json_schema_extra={"format": "date-time"})
    created_at: str | None = Field(json_schema_extra={"format": "date-time"})
    members: list[str] = Field([], description="account ids; on GET /inverters/{id} only")


class InverterList(ApiModel):
    inverters: list[InverterView]


def _brand_adapter(spec: dict):
    """(the stored connection or None, an adapter, its device directory key, the credentials it rotated)."""
    digest = inverters.credentials_hash(spec["credentials"])
    # A connection is known by the credentials first given for it. Some brands rotate them (an OAuth refresh
    # token works once): then the stored ones are the current ones, and the given ones may be spent.
    existing = owner().call(inverters.find_connection, spec["brand"], spec["base_url"], digest)
    rotated: dict = {}
    adapter = ADAPTERS[spec["brand"]](
        spec["base_url"],
        existing.credentials if existing else spec["credentials"],
        destination_policy(),
        app_settings().brand_timeout_s,
        rotated.update,
    )
    return existing, adapter, (spec["brand"], spec["base_url"], digest), rotated


@bp.post("/inverters")
@operation(
    "Onboard an inverter through its brand's API",
    {201: InverterView, 200: InverterView},
    body=OnboardingRequest,
    errors=(409, 502, 503),
    tag=TAG,
)
@require_account
def onboard():
    spec = body_as(OnboardingRequest)
    _, adapter, key, rotated = _brand_adapter(spec)
    try:
        device = current_app.extensions["device_directory"].find(adapter, key, spec["serial"])
    except BrandError as exc:
        log.info(
            "onboarding refused brand=%s serial=%s kind=%s: %s", spec["brand"], spec["serial"], exc.kind, exc.message
        )
        raise _brand_failure(exc, spec) from None
    finally:
        adapter.close()

    account_id = g.account.id  # the closure may run on the database thread, outside this request

    def create():
        connection = inverters.connection_for(spec["brand"], spec["base_url"], spec["credentials"])
        if rotated:
            inverters.store_credentials(connection.id, rotated)
        return inverters.onboard(
            account_id,
            connection,
            spec["serial"],
            device.device_type,
            device.model,
            device.plant_id,
            spec["timezone"] or device.timezone,
        )

    try:
        inverter, created = owner().write(create)
    except inverters.AlreadyOnboarded:
        raise ApiError(
            409,
            "already_onboarded",
            "another account has onboarded this inverter; ask its owner to add you as a member",
        ) from None
    if created:
        log.info(
            "inverter onboarded inverter=%s brand=%s serial=%s device_type=%s connection=%s",
            inverter.id,
            inverter.brand,
            inverter.serial,
            inverter.device_type,
            inverter.connection_id,
        )
        _notify_pollers(inverter.connection_id)
    response = jsonify(inverter_view(inverter, g.account.id))
    response.status_code = 201 if created else 200
    response.headers["Location"] = url_for("inverters.show", inverter_id=inverter.id)
    return response


@bp.post("/connections/discover")
@operation(
    "List the devices a brand account holds, to pick which to onboard",
    {200: DiscoveredDevices},
    body=DiscoveryRequest,
    errors=(502, 503),
    tag="connections",
)
@require_account
def discover():
    """The brand's device list through its adapter, as onboarding reads it (and kept briefly, so onboarding
    the devices picked from it asks the brand nothing more). Nothing is stored, unless the brand rotated the
    credentials (an OAuth refresh token works once): then the connection is stored with the new ones, which
    onboarding with the credentials given here finds and uses."""
    spec = body_as(DiscoveryRequest)
    existing, adapter, key, rotated = _brand_adapter(spec)
    try:
        devices = current_app.extensions["device_directory"].all(adapter, key)
    except BrandError as exc:
        log.info("discovery refused brand=%s kind=%s: %s", spec["brand"], exc.kind, exc.message)
        raise _brand_failure(exc, spec) from None
    finally:
        adapter.close()
    if rotated:

        def keep():
            connection = inverters.connection_for(spec["brand"], spec["base_url"], spec["credentials"])
            inverters.store_credentials(connection.id, rotated)

        owner().write(keep)
    onboarded = owner().call(inverters.onboarded_serials, existing.id) if existing else {}
    account_id = g.account.id
    views = []
    for serial in sorted(devices):
        device = devices[serial]
        inverter_id, owner_id = onboarded.get(serial, (None, None))
        mine = owner_id == account_id
        views.append(
            {
                "serial": device.serial,
                "device_type": device.device_type or None,
                "model": device.model,
                "plant_id": device.plant_id,
                "timezone": device.timezone,
                "onboarded": None if owner_id is None else "by_you" if mine else "by_another_account",
                "inverter_id": inverter_id if mine else None,
            }
        )
    return jsonify({"brand": spec["brand"], "devices": views})


# -- reading and managing ------------------------------------------------------------------------
@bp.get("/inverters")
@operation("The inverters the caller owns or is a member of", {200: InverterList}, tag=TAG)
@require_account
def index():
    rows = owner().call(inverters.list_visible, g.account.id)
    return jsonify({"inverters": [inverter_view(row, g.account.id) for row in rows]})


@bp.get("/inverters/<inverter_id>")
@operation("An inverter, with its members", {200: InverterView}, errors=(404,), tag=TAG)
@require_account
def show(inverter_id):
    inverter = _visible_or_404(inverter_id)
    return jsonify(inverter_view(inverter, g.account.id, owner().call(inverters.member_ids, inverter.id)))


@bp.delete("/inverters/<inverter_id>")
@operation("Remove an inverter (its owner only)", {204: None}, errors=(404,), tag=TAG)
@require_account
def remove(inverter_id):
    inverter = _owned_or_403(inverter_id)
    owner().write(inverters.delete_inverter, inverter.id)
    try:
        live_events.forget(redis_client(), inverter.id)
    except Exception as exc:  # the log is capped and the key harmless; note it and go on
        log.warning("could not drop live data of inverter=%s: %s", inverter.id, exc)
    log.info(
        "inverter removed inverter=%s brand=%s serial=%s connection=%s",
        inverter.id,
        inverter.brand,
        inverter.serial,
        inverter.connection_id,
    )
    _notify_pollers(inverter.connection_id)
    _revoke_streams(inverter.id, None)
    return "", 204


class MemberRequest(RequestModel):
    account: str = Field(min_length=1, max_length=500, description="an account id or name")

    @classmethod
    def rules(cls, data, context: dict):
        return _field(data if isinstance(data, dict) else {}, "account")


class MemberAdded(ApiModel):
    inverter_id: str
    account: str
    added: bool = Field(description="false: the account already was a member")


@bp.post("/inverters/<inverter_id>/members")
@operation(
    "Add a member (the owner only)",
    {201: MemberAdded, 200: MemberAdded},
    body=MemberRequest,
    errors=(404, 409),
    tag=TAG,
)
@require_account
def add_member(inverter_id):
    inverter = _owned_or_403(inverter_id)
    ref = body_as(MemberRequest)
    account = owner().call(account_by_id_or_name, ref)
    if account is None:
        raise ApiError(404, "unknown_account", "no such account", {"account": ref})
    if account.id == inverter.owner_id:
        raise ApiError(409, "already_owner", "the owner is not added as a member")
    added = owner().write(inverters.add_member, inverter.id, account.id)
    return jsonify({"inverter_id": inverter.id, "account": account.id, "added": added}), (201 if added else 200)


@bp.delete("/inverters/<inverter_id>/members/<ref>")
@operation("Remove a member (the owner only)", {204: None}, errors=(404,), tag=TAG)
@require_account
def remove_member(inverter_id, ref):
    """The member is named by account id or name, as when added."""
    inverter = _owned_or_403(inverter_id)
    account = owner().call(account_by_id_or_name, ref) if not _CONTROL.search(ref) else None
    if account is None or not owner().write(inverters.remove_member, inverter.id, account.id):
        raise ApiError(404, "not_a_member", "that account is not a member of this inverter", {"account": ref})
    _revoke_streams(inverter.id, account.id)
    return "", 204


class LatestReading(ApiModel):
    inverter_id: str
    status: str | None
    reading: dict[str, Any] | None = Field(description="the latest reading with its event_id, or null")


class ReadingList(ApiModel):
    inverter_id: str
    readings: list[dict[str, Any]]
    next_since: str | None = Field(
        description="give as since for the next page; null on the last", json_schema_extra={"format": "date-time"}
    )


class EnergyBucket(ApiModel):
    model_config = ConfigDict(extra="allow")
    start: str = Field(json_schema_extra={"format": "date-time"})
    end: str = Field(json_schema_extra={"format": "date-time"})


class EnergyList(ApiModel):
    inverter_id: str
    period: Literal[energy.PERIODS]  # type: ignore[valid-type]
    timezone: str
    buckets: list[EnergyBucket]
    next_since: str | None = Field(json_schema_extra={"format": "date-time"})


_SINCE = query("since", {"type": "string", "format": "date-time"})
_UNTIL = query("until", {"type": "string", "format": "date-time"})


@bp.get("/inverters/<inverter_id>/latest")
@operation("An inverter's latest reading", {200: LatestReading}, errors=(404,), tag=TAG)
@require_account
def latest(inverter_id):
    inverter = _visible_or_404(inverter_id)
    [(event_id, reading, live_status)] = latest_readings([inverter])
    return jsonify(
        {
            "inverter_id": inverter.id,
            "status": live_status or inverter.status,
            "reading": {"event_id": event_id, **reading} if reading is not None else None,
        }
    )


@bp.get("/inverters/<inverter_id>/readings")
@operation(
    "An inverter's stored readings, oldest first",
    {200: ReadingList},
    errors=(400, 404),
    tag=TAG,
    params=(_SINCE, _UNTIL, query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_READINGS})),
)
@require_account
def readings(inverter_id):
    inverter = _visible_or_404(inverter_id)
    bounds = _time_bounds()
    limit = limit_param(100, MAX_READINGS)
    rows = owner().call(inverters.readings_between, inverter.id, bounds.get("since"), bounds.get("until"), limit + 1)
    next_since = iso(rows[limit].time) if len(rows) > limit else None
    return jsonify(
        {"inverter_id": inverter.id, "readings": [reading_view(r) for r in rows[:limit]], "next_since": next_since}
    )


def _time_bounds() -> dict:
    """The request's `since` and `until` (ISO-8601) as epoch seconds, where given."""
    bounds = {}
    for name in ("since", "until"):
        raw = request.args.get(name)
        if raw:
            try:
                bounds[name] = parse_iso(raw)
            except ValueError:
                raise ApiError(
                    400, "invalid_parameter", f"{name} must be an ISO-8601 date-time", {"parameter": name}
                ) from None
    return bounds


MAX_ENERGY_BUCKETS = 1000
DEFAULT_ENERGY_SPAN_S = {energy.HOUR: 2 * 86400, energy.DAY: 30 * 86400}


def energy_bucket_view(bucket: dict) -> dict:
    return {**bucket, "start": iso(bucket["start"]), "end": iso(bucket["end"])}


@bp.get("/inverters/<inverter_id>/energy", endpoint="energy")
@operation(
    "An inverter's energy by hour or day, in its time zone",
    {200: EnergyList},
    errors=(400, 404),
    tag=TAG,
    params=(query("period", {"type": "string", "enum": list(energy.PERIODS)}), _SINCE, _UNTIL),
)
@require_account
def energy_series(inverter_id):
    inverter = _visible_or_404(inverter_id)
    period = request.args.get("period", energy.DAY)
    if period not in energy.PERIODS:
        raise ApiError(400, "invalid_parameter", "period must be hour or day", {"parameter": "period"})
    bounds = _time_bounds()
    at = time.time()
    until = bounds.get("until", at)
    since = bounds.get("since", until - DEFAULT_ENERGY_SPAN_S[period])
    if since >= until:
        raise ApiError(400, "invalid_parameter", "since must be before until", {"parameter": "since"})
    zone = energy.zone_of(inverter.timezone)
    buckets = energy.buckets_between(owner().call, inverter.id, zone, period, since, until, at, MAX_ENERGY_BUCKETS + 1)
    next_since = iso(buckets[MAX_ENERGY_BUCKETS]["start"]) if len(buckets) > MAX_ENERGY_BUCKETS else None
    return jsonify(
        {
            "inverter_id": inverter.id,
            "period": period,
            "timezone": inverter.timezone or "UTC",
            "buckets": [energy_bucket_view(b) for b in buckets[:MAX_ENERGY_BUCKETS]],
            "next_since": next_since,
        }
    )


# -- connections -----------------------------------------------------------------------------------
#: The longest poll interval an owner may ask for (a month).
MAX_POLL_INTERVAL_S = 31 * 86400.0


def _owned_connection_or_404(connection_id: str):
    found = (
        owner().call(inverters.owned_connection, g.account.id, connection_id) if looks_like_id(connection_id) else None
    )
    if found is None:
        raise not_found("connection")
    return found


def _connection_plan(connection, members, asked_s: float | None = None):
    """(plan, budget, now) for a connection as its poller would plan it now, from the budget in Redis."""
    settings = app_settings()
    cls = ADAPTERS[connection.brand]
    clock = clock_from_settings(settings)
    now = clock.now()
    guard_s = 0.1 / clock.real_seconds(1.0)  # as actors/poller.py CLOCK_JITTER_S
    quota = cls.quota_for(dict(connection.credentials or {}))  # an Enphase plan sets the connection's own
    budget = QuotaBudget(redis_client(), connection.id, quota, guard_s)
    try:
        used = budget.calendar_used(now)
    except Exception as exc:
        raise ApiError(
            503, "budget_unavailable", "the quota budget cannot be read now; try again", {"reason": str(exc)}
        ) from None
    devices = [plan_device(connection.brand, i) for i in members]
    asked = asked_s if asked_s is not None else requested_interval(connection, settings)
    return plan(quota, devices, asked, now, used, cls.batch_size, guard_s), budget, now


def connection_view(connection, members) -> dict:
    planned, budget, now = _connection_plan(connection, members)
    quota = budget.quota
    instances: dict[int, set[str]] = {}
    for call in planned.calls:
        for charge in charges(quota, call):
            instances.setdefault(charge.window, set()).add(charge.instance)
    try:
        windows = budget.usage(now, instances)
        throttle = budget.throttle_record()
    except Exception as exc:
        raise ApiError(
            503, "budget_unavailable", "the quota budget cannot be read now; try again", {"reason": str(exc)}
        ) from None
    return {
        "id": connection.id,
        "brand": connection.brand,
        "inverters": len(members),
        "requested_interval_s": requested_interval(connection, app_settings()),
        "poll_interval_s": connection.poll_interval_s,
        "planned_interval_s": round(planned.interval_s, 3),
        "min_interval_s": math.ceil(planned.min_interval_s * 1000) / 1000,
        "binding_window": planned.binding,
        "calls_per_round": len(planned.calls),
        "windows": [
            {"name": w.name, "limit": w.limit, "used": w.used, "remaining": w.remaining, "resets_at": iso(w.resets_at)}
            for w in windows
        ],
        "throttling": {
            "last_at": iso(throttle["throttled_at"]),
            "reason": throttle["throttled_reason"],
            "count": throttle["throttled_count"],
            "paused_until": iso(throttle["paused_until"]),
        },
    }


class QuotaWindow(ApiModel):
    name: str
    limit: int
    used: int
    remaining: int
    resets_at: str | None = Field(json_schema_extra={"format": "date-time"})


class Throttling(ApiModel):
    last_at: str | None = Field(json_schema_extra={"format": "date-time"})
    reason: str | None
    count: int
    paused_until: str | None = Field(json_schema_extra={"format": "date-time"})


class ConnectionView(ApiModel):
    id: str
    brand: str
    inverters: int
    requested_interval_s: float
    poll_interval_s: float | None
    planned_interval_s: float
    min_interval_s: float
    binding_window: str | None
    calls_per_round: int
    windows: list[QuotaWindow]
    throttling: Throttling


class ConnectionUpdate(RequestModel):
    poll_interval_s: float | None = Field(
        gt=0, le=MAX_POLL_INTERVAL_S, description="seconds between polls; null: the brand's default"
    )

    @classmethod
    def rules(cls, data, context: dict):
        if not isinstance(data, dict) or "poll_interval_s" not in data:
            raise ApiError(
                400,
                "invalid_field",
                'send {"poll_interval_s": seconds} (null: the brand\'s default)',
                {"field": "poll_interval_s"},
            )
        asked = data["poll_interval_s"]
        if asked is not None and (
            isinstance(asked, bool) or not isinstance(asked, (int, float)) or not 0 < asked <= MAX_POLL_INTERVAL_S
        ):
            raise ApiError(
                400,
                "invalid_field",
                f"poll_interval_s must be a number of seconds above 0 and at most {MAX_POLL_INTERVAL_S:g}, or null",
                {"field": "poll_interval_s"},
            )
        return asked


@bp.get("/connections/<connection_id>")
@operation(
    "A brand connection the caller owns inverters on: its poll plan and quota",
    {200: ConnectionView},
    errors=(404, 503),
    tag="connections",
)
@require_account
def show_connection(connection_id):
    connection, members = _owned_connection_or_404(connection_id)
    return jsonify(connection_view(connection, members))


@bp.patch("/connections/<connection_id>")
@operation(
    "Set a connection's poll interval",
    {200: ConnectionView},
    body=ConnectionUpdate,
    errors=(404, 503),
    tag="connections",
)
@require_account
def update_connection(connection_id):
    connection, members = _owned_connection_or_404(connection_id)
    asked = body_as(ConnectionUpdate)
    if asked is not None:
        planned, _, _ = _connection_plan(connection, members, float(asked))
        if asked < planned.min_interval_s:
            raise ApiError(
                422,
                "interval_not_feasible",
                f"the brand's limits cannot sustain a poll every {asked:g} s "
                f"for {len(members)} inverters; the fastest is {planned.min_interval_s:.1f} s",
                {
                    "field": "poll_interval_s",
                    "min_interval_s": math.ceil(planned.min_interval_s * 1000) / 1000,
                    "binding_window": planned.binding,
                },
            )
    owner().write(inverters.set_poll_interval, connection.id, None if asked is None else float(asked))
    log.info("poll interval set connection=%s brand=%s poll_interval_s=%s", connection.id, connection.brand, asked)
    _notify_pollers(connection.id)
    connection.poll_interval_s = None if asked is None else float(asked)
    return jsonify(connection_view(connection, members))


def install(app) -> None:
    app.extensions["device_directory"] = DeviceDirectory()
    app.register_blueprint(bp)
