"""Enphase Enlighten API v4 (/enphase): OAuth 2.0 tokens plus the application's API key on every call.

- `POST /enphase/oauth/token?grant_type=refresh_token&refresh_token=...` with HTTP Basic client_id:client_secret
  answers a new access token and a NEW refresh token; the refresh token used stops working (rotation).
- `GET /enphase/api/v4/...?key=<api key>` with `Authorization: Bearer <access token>`; the token must have been
  minted for the application that owns the key.
- Plan limits per API key (a rolling minute and a calendar month, all endpoints together); HTTP 429 without
  Retry-After when spent.

Tokens are signed, not stored: a restarted mock still accepts the tokens it issued (only the set of refresh
tokens already used is lost, in memory). Each Enphase system is one simulated site; its system_id is the plant id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..stats import INVALID_TOKEN

PREFIX = "/enphase"
bp = Blueprint("enphase", __name__, url_prefix=PREFIX)
API = "/api/v4"
ACCESS_LIFETIME_S = {"fast": 600.0, "real": 86400.0}  # a day at the brand; short under fast to show refreshes
REFRESH_LIFETIME_S = 30 * 86400.0  # a month
MICRO_W = 400.0  # one IQ8 microinverter per ~400 W of PV
PLAN_NAMES = {"watt": "Watt", "kilowatt": "Kilowatt", "megawatt": "Megawatt", "demo": "Demo"}
TELEMETRY_INTERVAL_S = 900


def _world():
    return current_app.extensions["mock_inverter"]


def _auth() -> Auth:
    return current_app.extensions.setdefault("enphase_auth", Auth(_world()))


def forget_used_refresh_tokens() -> None:
    """What a restart forgets: which refresh tokens were used (every token issued stays valid until it expires)."""
    current_app.extensions.pop("enphase_auth", None)


def api_error(status: int, message: str, details: str):
    response = jsonify({"message": message, "details": details, "code": status})
    response.status_code = status
    return response


def oauth_error(status: int, error: str, description: str):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


class Auth:
    """Signed tokens: '<kind>.<base64 claims>.<signature>', the signature keyed by the application's secret."""

    def __init__(self, world):
        self.world = world
        self.apps = {app.client_id: app for app in world.fleet.enphase_apps}
        self.by_key = {app.api_key: app for app in world.fleet.enphase_apps}
        self.used: set[str] = set()  # refresh tokens (their ids) already exchanged
        lifetimes = world.fleet.enphase_token_lifetime_s
        self.access_s = lifetimes.get("access", ACCESS_LIFETIME_S.get(world.limits.profile, 86400.0))
        self.refresh_s = lifetimes.get("refresh", REFRESH_LIFETIME_S)

    @staticmethod
    def _sign(app, body: str) -> str:
        key = hashlib.sha256(b"mock-enphase:" + app.client_secret.encode()).digest()
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def mint(self, app, kind: str, lifetime_s: float) -> str:
        claims = {"cid": app.client_id, "exp": int(time.time() + lifetime_s), "jti": secrets.token_hex(8)}
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{kind}.{body}.{self._sign(app, kind + '.' + body)}"

    def claims(self, token: str, kind: str) -> dict | None:
        """The token's claims if it is a well-formed, correctly signed token of this kind (expiry not checked)."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != kind:
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, binascii.Error):
            return None
        app = self.apps.get(claims.get("cid")) if isinstance(claims, dict) else None
        if app is None or not hmac.compare_digest(self._sign(app, f"{kind}.{parts[1]}"), parts[2]):
            return None
        return claims


def _client():
    """The application named by HTTP Basic client_id:client_secret, or an error reply."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None, oauth_error(401, "unauthorized", "Full authentication is required to access this resource")
    try:
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None, oauth_error(401, "unauthorized", "Bad credentials")
    app = _auth().apps.get(client_id)
    if app is None or not hmac.compare_digest(app.client_secret, secret):
        return None, oauth_error(401, "unauthorized", "Bad credentials")
    return app, None


@bp.post("/oauth/token")
def token():
    world, auth = _world(), _auth()
    app, refused = _client()
    if refused is not None:
        world.stats.record(INVALID_TOKEN, "enphase:token")
        return refused
    world.stats.record(app.api_key, "enphase:token")
    grant = request.values.get("grant_type")
    if grant != "refresh_token":
        # The authorization-code step happens in the homeowner's browser, outside the service and the mock.
        return oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")
    given = request.values.get("refresh_token") or ""
    if given in app.refresh_tokens:  # a refresh token from the fleet config: valid until used
        token_id = "seed:" + given
    else:
        claims = auth.claims(given, "rt")
        if claims is None or claims["cid"] != app.client_id:
            return oauth_error(400, "invalid_grant", f"Invalid refresh token: {given[:12]}")
        if claims["exp"] <= time.time():
            return oauth_error(400, "invalid_grant", f"Invalid refresh token (expired): {given[:12]}")
        token_id = claims["jti"]
    if token_id in auth.used:
        return oauth_error(400, "invalid_grant", f"Invalid refresh token: {given[:12]}")
    auth.used.add(token_id)
    access = auth.mint(app, "at", auth.access_s)
    return jsonify(
        {
            "access_token": access,
            "token_type": "bearer",
            "refresh_token": auth.mint(app, "rt", auth.refresh_s),
            "expires_in": int(auth.access_s),
            "scope": "read write",
            "enl_uid": "1001",
            "enl_cid": "",
            "enl_password_last_changed": "1700000000",
            "is_internal_app": False,
            "app_type": "system",
            "jti": access[-16:],
        }
    )


def _admit(endpoint: str, system_ids=()):
    """Authenticate (API key and bearer token of the same application), apply the plan limits and count."""
    world, auth = _world(), _auth()
    app = auth.by_key.get(request.args.get("key") or "")
    header = request.headers.get("Authorization", "")
    bearer = header[7:] if header.startswith("Bearer ") else ""
    if app is None:
        world.stats.record(INVALID_TOKEN, endpoint)
        return api_error(401, "Not Authorized", "API Key missing or invalid")
    claims = auth.claims(bearer, "at")
    if claims is None:
        world.stats.record(INVALID_TOKEN, endpoint)
        return api_error(401, "Not Authorized", "User is not authorized")
    if claims["cid"] != app.client_id:
        world.stats.record(INVALID_TOKEN, endpoint)
        return api_error(401, "Not Authorized", "API Key -Client mismatch")
    if claims["exp"] <= time.time():
        world.stats.record(INVALID_TOKEN, endpoint)
        return api_error(401, "Not Authorized", "Access token expired")
    refused = world.limits.plans.check(app.api_key, app.plan, app.limits)
    window = ""
    if refused:
        per_minute, per_month = world.limits.plans.limits(app.plan, app.limits)
        window = f"enphase plan {app.plan} per {refused}: {per_minute if refused == 'minute' else per_month}"
    world.stats.record(app.api_key, endpoint, [str(s) for s in system_ids], rate_limited=bool(refused), window=window)
    if refused:
        plan = PLAN_NAMES["demo" if world.limits.profile == "fast" else app.plan]
        return api_error(429, "Too Many Requests", f"Usage limit exceeded for plan {plan}")
    return None


def _plants():
    return _world().fleet.plants_of("enphase")


def _admitted_system(endpoint: str, system_id: int):
    """(the system, None) when a call of `endpoint` on it may be answered; else (None, the refusal: the
    plan's 429, or 404 for an unknown system, which is counted but charged to no system)."""
    plant = _system(system_id)
    refused = _admit(endpoint, [system_id] if plant else [])
    if refused:
        return None, refused
    if plant is None:
        return None, _not_found(system_id)
    return plant, None


def _system(system_id: int):
    plant = _world().plants.get(system_id)
    return plant if plant is not None and plant.brand == "enphase" else None


def _not_found(system_id):
    return api_error(404, "Not Found", f'System not found for {{:id=>"{system_id}"}}')


def _status(reading) -> str:
    return "comm" if reading["status"] == "offline" else "normal"


def _system_view(plant) -> dict:
    device = plant.devices[0]
    reading = _world().simulator.reading(device.serial)
    return {
        "system_id": plant.plant_id,
        "name": plant.name,
        "public_name": "Residential System",
        "timezone": plant.timezone,
        "address": {"city": plant.city, "state": None, "country": plant.country, "postal_code": None},
        "connection_type": "ethernet",
        "energy_lifetime": -1,
        "energy_today": -1,
        "system_size": -1,
        "status": _status(reading),
        "last_report_at": int(reading["t"]),
        "last_energy_at": int(reading["t"]),
        "operational_at": 1_600_000_000,
        "attachment_type": "rack_mount",
        "interconnect_date": None,
    }


def _page_args():
    page, size = request.args.get("page", "1"), request.args.get("size", "10")
    if not page.isdigit() or not size.isdigit() or int(page) < 1 or not 1 <= int(size) <= 100:
        return None, api_error(422, "Unprocessable Entity", "page must be >= 1 and size between 1 and 100")
    return (int(page), int(size)), None


@bp.get(f"{API}/systems")
def systems():
    refused = _admit("enphase:systems")
    if refused:
        return refused
    paging, invalid = _page_args()
    if invalid:
        return invalid
    page, size = paging
    plants = sorted(_plants(), key=lambda p: p.plant_id)
    rows = [_system_view(p) for p in plants[(page - 1) * size : page * size]]
    return jsonify(
        {
            "total": len(plants),
            "current_page": page,
            "size": size,
            "count": len(rows),
            "items": "systems",
            "systems": rows,
        }
    )


@bp.get(f"{API}/systems/<int:system_id>")
def system(system_id: int):
    plant, refused = _admitted_system("enphase:system", system_id)
    if refused:
        return refused
    return jsonify(_system_view(plant))


@bp.get(f"{API}/systems/<int:system_id>/summary")
def summary(system_id: int):
    plant, refused = _admitted_system("enphase:summary", system_id)
    if refused:
        return refused
    device = plant.devices[0]
    reading = _world().simulator.reading(device.serial)
    local_date = datetime.fromtimestamp(reading["t"], ZoneInfo(plant.timezone)).date().isoformat()
    body = {
        "system_id": system_id,
        "current_power": round(reading["pv_power_w"]),
        "energy_lifetime": round(reading["pv_energy_total_wh"]),
        "energy_today": round(reading["pv_energy_today_wh"]),
        "last_interval_end_at": int(reading["t"] // TELEMETRY_INTERVAL_S * TELEMETRY_INTERVAL_S),
        "last_report_at": int(reading["t"]),
        "modules": _micro_count(device),
        "operational_at": 1_600_000_000,
        "size_w": round(device.pv_peak_w),
        "source": "microinverters",
        "status": _status(reading),
        "summary_date": local_date,
    }
    if device.battery is not None:
        body.update(
            battery_charge_w=round(reading["battery_charge_w"]),
            battery_discharge_w=round(reading["battery_discharge_w"]),
            battery_capacity_wh=round(device.battery.capacity_wh),
        )
    return jsonify(body)


def _micro_count(device) -> int:
    return max(1, math.ceil(device.pv_peak_w / MICRO_W))


@bp.get(f"{API}/systems/<int:system_id>/devices")
def devices(system_id: int):
    plant, refused = _admitted_system("enphase:devices", system_id)
    if refused:
        return refused
    device = plant.devices[0]
    reading = _world().simulator.reading(device.serial)
    seen, status = int(reading["t"]), "normal" if reading["status"] != "offline" else "comm"

    def row(kind: str, n: int, serial: str, **extra):
        return {
            "id": plant.plant_id * 100 + n,
            "last_report_at": seen,
            "name": f"{kind} {serial}",
            "serial_number": serial,
            "part_number": "800-00000-r01",
            "model": "",
            "status": status,
            "active": True,
            **extra,
        }

    groups = {
        "micros": [
            row("Microinverter", n, f"{plant.plant_id}{n:06d}", sku="IQ8A-72-2-US", model="IQ8A")
            for n in range(1, _micro_count(device) + 1)
        ],
        "meters": [row("production", 90, f"{device.serial}EIM1", state="enabled", config_type="Production")],
        "gateways": [row("Envoy", 91, device.serial, sku="ENV-IQ-AM1-240", emu_sw_version="D7.6.175")],
    }
    if device.battery is not None:
        count = max(1, round(device.battery.capacity_wh / 5000))
        groups["encharges"] = [
            row("Encharge", 95 + n, f"{plant.plant_id}E{n:05d}", sku="B05-T02-ROW00-1-2") for n in range(count)
        ]
    return jsonify(
        {
            "system_id": system_id,
            "total_devices": sum(len(v) for v in groups.values()),
            "items": "devices",
            "devices": groups,
        }
    )


@bp.get(f"{API}/systems/<int:system_id>/telemetry/battery")
def battery_telemetry(system_id: int):
    """The latest 15-minute interval only (the mock keeps no history)."""
    plant, refused = _admitted_system("enphase:telemetry/battery", system_id)
    if refused:
        return refused
    device = plant.devices[0]
    reading = _world().simulator.reading(device.serial)
    end_at = int(reading["t"] // TELEMETRY_INTERVAL_S * TELEMETRY_INTERVAL_S)
    body = {
        "system_id": system_id,
        "granularity": "day",
        "total_devices": 0,
        "start_at": end_at - TELEMETRY_INTERVAL_S,
        "end_at": end_at,
        "items": "intervals",
        "intervals": [],
    }
    if device.battery is not None:
        count = max(1, round(device.battery.capacity_wh / 5000))
        hours = TELEMETRY_INTERVAL_S / 3600.0
        soc = round(reading["battery_soc_pct"])
        body.update(
            total_devices=count,
            intervals=[
                {
                    "end_at": end_at,
                    "charge": {"enwh": round(reading["battery_charge_w"] * hours), "devices_reporting": count},
                    "discharge": {"enwh": round(reading["battery_discharge_w"] * hours), "devices_reporting": count},
                    "soc": {"percent": soc, "devices_reporting": count},
                }
            ],
            last_reported_aggregate_soc=f"{soc}%",
        )
    return jsonify(body)


def http_error(exc: HTTPException):
    if exc.code in (405, 501):
        response = jsonify({"reason": str(exc.code), "message": [exc.name]})
        response.status_code = exc.code
        return response
    return api_error(exc.code or 500, exc.name, exc.description or exc.name)


@bp.errorhandler(Exception)
def unexpected(exc):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    current_app.logger.exception("enphase request failed")
    return api_error(500, "Internal Server Error", "unable to fetch data")
