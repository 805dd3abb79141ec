"""Growatt OpenAPI v1 dialect (/v1/): `token` header, {"data", "error_code", "error_msg"} envelope."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import growatt_fields

PREFIX = "/v1"
bp = Blueprint("growatt_v1", __name__, url_prefix=PREFIX)
# (route, form field naming the serial, Growatt device type served by it)
LAST_DATA_ROUTES = (
    ("/device/tlx/tlx_last_data", "tlx_sn", "min"),
    ("/device/mix/mix_last_data", "mix_sn", "sph"),
    ("/device/storage/storage_last_data", "storage_sn", "storage"),
    ("/device/inverter/last_new_data", "inverter_sn", "inv"),
)


def reply(data=None, error_code: int = 0, error_msg: str = "", status: int = 200):
    response = jsonify({"data": data, "error_code": error_code, "error_msg": error_msg})
    response.status_code = status
    return response


def _refused(endpoint: str, serials=()):
    world = current_app.extensions["mock_inverter"]
    admission = world.admit("growatt", request.headers.get("token"), endpoint, serials)
    if admission.reason == "unauthorized":
        return reply(error_code=10011, error_msg="error_permission_denied")
    if not admission.ok:
        return reply(error_code=10012, error_msg="error_frequently_access")
    return None


@bp.route("/plant/list", methods=["GET", "POST"])
def plant_list():
    # Real clients send page/perpage as a form body even on GET; request.values reads both places.
    refused = _refused("v1:plant/list")
    if refused:
        return refused
    world = current_app.extensions["mock_inverter"]
    plants = []
    for plant in world.fleet.plants_of("growatt"):
        readings = [world.simulator.reading(d.serial) for d in plant.devices]
        plants.append(
            {
                "plant_id": plant.plant_id,
                "name": plant.name,
                "city": plant.city,
                "country": plant.country,
                "latitude": str(plant.latitude),
                "longitude": str(plant.longitude),
                "timezone": plant.timezone,
                "peak_power": round(sum(d.pv_peak_w for d in plant.devices) / 1000.0, 2),
                "current_power": round(sum(r["pv_power_w"] for r in readings), 1),
                "total_energy": f"{sum(r['pv_energy_total_wh'] for r in readings) / 1000.0:.1f}",
                "status": 1 if any(r["status"] == "normal" for r in readings) else 0,
                "create_date": "2021-03-01",
            }
        )
    return reply({"count": len(plants), "plants": plants})


@bp.get("/device/list")
def device_list():
    plant_id = request.values.get("plant_id", "")
    if not plant_id.isdigit():
        return reply(error_code=10003, error_msg="error_param")
    refused = _refused("v1:device/list")
    if refused:
        return refused
    world = current_app.extensions["mock_inverter"]
    plant = world.plants.get(int(plant_id))
    if plant is None or plant.brand != "growatt":
        return reply(error_code=10002, error_msg="error_plant_not_exist")
    devices = []
    for n, d in enumerate(plant.devices):
        reading = world.simulator.reading(d.serial)
        devices.append(
            {
                "device_sn": d.serial,
                "device_id": plant.plant_id * 100 + n,
                "type": growatt_fields.TYPE_CODES[d.type],
                "model": d.model,
                "manufacturer": "Growatt",
                "datalogger_sn": f"DL{d.serial[-8:]}",
                "status": growatt_fields.STATUS[reading["status"]][0],
                "lost": reading["status"] == "offline",
                "last_update_time": growatt_fields.local_time(reading),
            }
        )
    return reply({"count": len(devices), "devices": devices})


def _last_data_view(field_name: str, device_type: str):
    def view():
        if request.content_length and request.mimetype != "application/x-www-form-urlencoded":
            return reply(error_code=10003, error_msg="error_param")
        serial = (request.values.get(field_name) or "").strip()
        if not serial:
            return reply(error_code=10003, error_msg="error_param")
        world = current_app.extensions["mock_inverter"]
        device = world.devices.get(serial)
        known = device is not None and device.brand == "growatt" and device.type == device_type
        refused = _refused("v1:last_data", [serial] if known else [])
        if refused:
            return refused
        if not known:
            return reply(error_code=10002, error_msg="error_device_not_exist")
        return reply(growatt_fields.row(device_type, world.simulator.reading(serial)))

    view.__name__ = f"last_data_{device_type}"
    return view


for _route, _field, _type in LAST_DATA_ROUTES:
    bp.add_url_rule(_route, view_func=_last_data_view(_field, _type), methods=["POST"])


def http_error(exc: HTTPException):
    return reply(
        error_code=10003 if exc.code == 405 else 10002,
        error_msg="error_param" if exc.code == 405 else "error_not_found",
        status=exc.code,
    )


@bp.errorhandler(Exception)
def unexpected(exc):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    current_app.logger.exception("growatt v1 request failed")
    return reply(error_code=10001, error_msg="error_system", status=500)
