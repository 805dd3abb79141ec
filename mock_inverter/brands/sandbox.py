"""Sandbox: a clean JSON API with an API key header; the simplest brand."""

from __future__ import annotations

import math

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..clock import iso_utc

PREFIX = "/sandbox/v1"
bp = Blueprint("sandbox", __name__, url_prefix=PREFIX)
READING_FIELDS = (
    "status",
    "pv_power_w",
    "ac_power_w",
    "load_power_w",
    "grid_import_w",
    "grid_export_w",
    "battery_charge_w",
    "battery_discharge_w",
    "battery_soc_pct",
    "temperature_c",
    "pv_energy_today_wh",
    "pv_energy_total_wh",
    "load_energy_today_wh",
    "load_energy_total_wh",
    "import_energy_today_wh",
    "import_energy_total_wh",
    "export_energy_today_wh",
    "export_energy_total_wh",
    "charge_energy_today_wh",
    "charge_energy_total_wh",
    "discharge_energy_today_wh",
    "discharge_energy_total_wh",
)


def error(status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _admit(endpoint: str, serials=()):
    world = current_app.extensions["mock_inverter"]
    admission = world.admit("sandbox", request.headers.get("X-API-Key"), endpoint, serials)
    if admission.reason == "unauthorized":
        return error(401, "unauthorized", "missing or invalid X-API-Key header")
    if not admission.ok:
        retry = max(1, math.ceil(admission.retry_after_s))
        return error(
            429,
            "rate_limited",
            "too many requests",
            {"retry_after_s": round(admission.retry_after_s, 3), "window": admission.window},
            {"Retry-After": str(retry)},
        )
    return None


@bp.get("/devices")
def list_devices():
    world = current_app.extensions["mock_inverter"]
    refused = _admit("sandbox:devices")
    if refused:
        return refused
    devices = []
    for d in world.brand_devices("sandbox"):
        plant = world.plants[d.plant_id]
        devices.append(
            {
                "serial": d.serial,
                "type": d.type,
                "model": d.model,
                "plant_id": d.plant_id,
                "plant_name": plant.name,
                "latitude": d.latitude,
                "longitude": d.longitude,
                "timezone": d.timezone,
                "pv_peak_w": d.pv_peak_w,
                "battery_capacity_wh": d.battery.capacity_wh if d.battery else None,
            }
        )
    return jsonify({"count": len(devices), "devices": devices})


@bp.get("/devices/<serial>/latest")
def latest(serial: str):
    world = current_app.extensions["mock_inverter"]
    device = world.devices.get(serial)
    known = device is not None and device.brand == "sandbox"
    refused = _admit("sandbox:latest", [serial] if known else [])
    if refused:
        return refused
    if not known:
        return error(404, "unknown_device", f"no device with serial {serial!r}", {"serial": serial})
    reading = world.simulator.reading(serial)
    body = {"serial": serial, "timestamp": iso_utc(reading["t"])}
    body.update({name: _round(reading[name]) for name in READING_FIELDS})
    return jsonify(body)


def _round(value):
    return round(value, 2) if isinstance(value, float) else value


def http_error(exc: HTTPException):
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.code, "bad_request")
    return error(exc.code, code, exc.description or code)


@bp.errorhandler(Exception)
def unexpected(exc):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    current_app.logger.exception("sandbox request failed")
    return error(500, "internal_error", "unexpected server error")
