"""Growatt v4 dialect (/v4/new-api/): form-urlencoded POSTs, {"code", "message", "data"} replies."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import growatt_fields

PREFIX = "/v4/new-api"
bp = Blueprint("growatt_v4", __name__, url_prefix=PREFIX)
MAX_SERIALS = 100
PAGE_SIZE = 100
DEVICE_TYPES = ("inv", "storage", "max", "sph", "spa", "min", "wit", "sph-s", "noah")


def reply(code: int, message: str, data=None, status: int = 200):
    response = jsonify({"code": code, "message": message, "data": data})
    response.status_code = status
    return response


def _form():
    """Form fields, or None when the body is not form-urlencoded (the real service reads only forms)."""
    if request.content_length and request.mimetype != "application/x-www-form-urlencoded":
        return None
    return request.values


def _refused(endpoint: str, serials=()):
    world = current_app.extensions["mock_inverter"]
    admission = world.admit("growatt", request.headers.get("token"), endpoint, serials)
    if admission.reason == "unauthorized":
        return reply(2, "TOKEN_IS_INVALID")
    if admission.scope == "device":
        return reply(102, "DEVICE_ACCESS_FREQUENCY_LIMIT")
    if not admission.ok:
        return reply(100, "ACCESS_FREQUENCY_LIMIT")
    return None


@bp.post("/queryDeviceList")
def query_device_list():
    form = _form()
    if form is None:
        return reply(1, "PARAMETER_ERROR", "Content-Type must be application/x-www-form-urlencoded")
    refused = _refused("v4:queryDeviceList")
    if refused:
        return refused
    page = form.get("page", "1") or "1"
    if not page.isdigit() or int(page) < 1:
        return reply(1, "PARAMETER_ERROR", "page must be a positive integer")
    world = current_app.extensions["mock_inverter"]
    devices = world.brand_devices("growatt")
    start = (int(page) - 1) * PAGE_SIZE
    rows = [
        {"deviceSn": d.serial, "deviceType": d.type, "datalogSn": f"DL{d.serial[-8:]}", "plantId": d.plant_id}
        for d in devices[start : start + PAGE_SIZE]
    ]
    return reply(0, "SUCCESSFUL_OPERATION", {"count": len(devices), "data": rows})


@bp.post("/queryLastData")
def query_last_data():
    form = _form()
    if form is None:
        return reply(1, "PARAMETER_ERROR", "Content-Type must be application/x-www-form-urlencoded")
    device_type = (form.get("deviceType") or "").strip()
    serials = [s.strip() for s in (form.get("deviceSn") or "").split(",") if s.strip()]
    if not device_type or not serials:
        return reply(1, "PARAMETER_ERROR", "deviceSn and deviceType are required")
    if len(serials) > MAX_SERIALS:
        return reply(1, "PARAMETER_ERROR", f"at most {MAX_SERIALS} deviceSn per request")
    world = current_app.extensions["mock_inverter"]
    unknown = [s for s in serials if s not in world.devices or world.devices[s].brand != "growatt"]
    refused = _refused("v4:queryLastData", [s for s in serials if s not in unknown])
    if refused:
        return refused
    if unknown:
        return reply(4, "DEVICE_NOT_FOUND", {"deviceSn": unknown})
    matching = [s for s in serials if world.devices[s].type == device_type]
    readings = [world.simulator.reading(s) for s in matching]
    online = [r for r in readings if r["status"] != "offline"]
    if readings and not online:
        return reply(5, "DEVICE_OFFLINE")
    rows = [{**growatt_fields.row(device_type, r), "deviceSn": r["serial"]} for r in online]
    return reply(0, "SUCCESSFUL_OPERATION", {device_type: rows})


def http_error(exc: HTTPException):
    return reply(1, "PARAMETER_ERROR" if exc.code == 405 else "NOT_FOUND", exc.description, status=exc.code)


@bp.errorhandler(Exception)
def unexpected(exc):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    current_app.logger.exception("growatt v4 request failed")
    return reply(1, "SYSTEM_ERROR", status=500)
