"""Huawei FusionSolar (SmartPVMS) northbound dialect (/fusionsolar/thirdData/): JSON POSTs, a session opened
by logging in with a user name and system code, its XSRF token sent back on every call, and replies
`{"success", "failCode", "data", "params", "message"}` with HTTP 200 even for errors.

Each simulated FusionSolar device is a residential inverter (devTypeId 38); the device list shows beside it
its grid meter (47) and, when it has one, its battery (39), each with its own devId and SN, as a real plant
lists them. See mock_inverter/README.md for the sources of every name, unit, code and limit.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..ratelimit import Limit
from ..stats import INVALID_TOKEN

PREFIX = "/fusionsolar"
bp = Blueprint("fusionsolar", __name__, url_prefix=PREFIX + "/thirdData")
BRAND = "fusionsolar"
MAX_DEVICES = 100  # devIds per getDevRealKpi call
MAX_STATIONS = 100  # stationCodes per getDevList call
PAGE_SIZE = 100  # plants per page of the stations interface
INVERTER, BATTERY, METER = 38, 39, 47
DAY_S = 86400.0

SESSION_EXPIRED = 305
FREQUENCY_TOO_HIGH = 407
LOGIN_INVALID = 20400
PARAMETER_ERROR = 20000  # the mock's own code: the reference's list is not reproduced for parameter errors


@dataclass(frozen=True)
class ListedDevice:
    dev_id: int
    sn: str
    dev_type_id: int
    serial: str  # the simulated device behind it
    station_code: str
    name: str
    model: str


@dataclass
class Sessions:
    """One online session per user: a new login ends the previous one (its token answers 305). Idle time is
    counted on the limits' clock (`clock`): real time, or the simulated time under `--limits-clock sim`."""

    clock: Callable[[], float] = time.monotonic
    tokens: dict = field(default_factory=dict)  # token -> [user, last used (on `clock`)]
    current: dict = field(default_factory=dict)  # user -> token

    def open(self, user: str) -> str:
        self.tokens.pop(self.current.get(user), None)
        token = "x-" + secrets.token_hex(24)
        self.tokens[token], self.current[user] = [user, self.clock()], token
        return token

    def user(self, token: str | None, ttl_s: float) -> str | None:
        entry = self.tokens.get(token or "")
        if entry is None:
            return None
        now = self.clock()
        if now - entry[1] > ttl_s:
            del self.tokens[token]
            return None
        entry[1] = now  # every call extends the session
        return entry[0]

    def close(self, token: str | None) -> None:
        entry = self.tokens.pop(token or "", None)
        if entry and self.current.get(entry[0]) == token:
            del self.current[entry[0]]


def station_code(plant_id: int) -> str:
    return f"NE={33_000_000 + plant_id}"


def _state(world):
    """This brand's part of the world, built on first use: sessions and the device directory."""
    state = world.__dict__.get("_fusionsolar")
    if state is None:
        devices = []
        for plant in world.fleet.plants_of(BRAND):
            for n, d in enumerate(plant.devices):
                base = 1_000_000_000_000 + plant.plant_id * 1000 + n * 10
                code = station_code(plant.plant_id)
                devices.append(ListedDevice(base + 1, d.serial, INVERTER, d.serial, code, f"Inverter-{n + 1}", d.model))
                if d.battery is not None:
                    devices.append(
                        ListedDevice(base + 2, f"{d.serial}B", BATTERY, d.serial, code, f"Battery-{n + 1}", "LUNA2000")
                    )
                devices.append(
                    ListedDevice(base + 3, f"{d.serial}M", METER, d.serial, code, f"Meter-{n + 1}", "DTSU666-H")
                )
        sessions = Sessions(clock=world.limits.now)
        state = world.__dict__["_fusionsolar"] = {"sessions": sessions, "devices": {d.dev_id: d for d in devices}}
    return state


def reply(data=None, fail_code: int = 0, params: dict | None = None, message=None):
    return jsonify(
        {"success": fail_code == 0, "failCode": fail_code, "data": data, "params": params or {}, "message": message}
    )


def _body() -> dict | None:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def _token() -> str | None:
    return request.headers.get("XSRF-TOKEN") or request.cookies.get("XSRF-TOKEN")


def _admit(endpoint: str, windows, serials=()):
    """(user, None) when the session is live and the call within the limits (it is counted); else (None, reply)."""
    world = current_app.extensions["mock_inverter"]
    user = _state(world)["sessions"].user(_token(), world.limits.fusionsolar("session_ttl_s"))
    if user is None:
        world.stats.record(INVALID_TOKEN, endpoint)
        return None, jsonify({"failCode": SESSION_EXPIRED, "immediately": True, "message": "USER_MUST_RELOGIN"})
    wait, index = world.limits.check_windows([((endpoint, user, *key), limit) for key, limit in windows])
    window = ""
    if wait > 0:
        key, limit = windows[index]
        scope = f" devTypeId {key[0]}" if key else ""
        window = f"{endpoint} per user{scope}: {limit.limit} per {limit.window_s:g} s"
    world.stats.record(user, endpoint, serials, rate_limited=wait > 0, window=window)
    if wait > 0:
        return None, reply("ACCESS_FREQUENCY_IS_TOO_HIGH", FREQUENCY_TOO_HIGH)
    return user, None


def _daily_list_limit(world) -> Limit:
    plants = len(world.fleet.plants_of(BRAND))
    return Limit(int(world.limits.fusionsolar("list_per_day")) + math.ceil(plants / 100), DAY_S)


@bp.post("/login")
def login():
    world = current_app.extensions["mock_inverter"]
    body = _body() or {}
    user, code = body.get("userName"), body.get("systemCode")
    if (user, code) not in world.fleet.credentials[BRAND]:
        world.stats.record(INVALID_TOKEN, "fs:login")
        return reply(None, LOGIN_INVALID, message="USER_OR_VALUE_INVALID")
    world.stats.record(user, "fs:login")
    token = _state(world)["sessions"].open(user)
    response = reply()
    response.headers["xsrf-token"] = token
    response.set_cookie("XSRF-TOKEN", token, path="/", httponly=True)
    return response


@bp.post("/logout")
def logout():
    world = current_app.extensions["mock_inverter"]
    token = (_body() or {}).get("xsrfToken") or _token()
    sessions = _state(world)["sessions"]
    world.stats.record(sessions.tokens.get(token, [INVALID_TOKEN])[0], "fs:logout")
    sessions.close(token)
    return reply()


def _plant_rows(world):
    for plant in world.fleet.plants_of(BRAND):
        capacity_kwp = sum(d.pv_peak_w for d in plant.devices) / 1000.0
        yield plant, capacity_kwp


@bp.post("/stations")
def stations():
    world = current_app.extensions["mock_inverter"]
    body = _body()
    page = body.get("pageNo") if body is not None else None
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        return reply(None, PARAMETER_ERROR, message="pageNo must be a positive integer")
    _, refused = _admit("fs:stations", [((), _daily_list_limit(world))])
    if refused:
        return refused
    rows = [
        {
            "plantCode": station_code(p.plant_id),
            "plantName": p.name,
            "plantAddress": f"{p.city}, {p.country}",
            "longitude": p.longitude,
            "latitude": p.latitude,
            "capacity": round(kwp, 3),
            "contactPerson": "",
            "contactMethod": "",
            "gridConnectionDate": _grid_date(p.timezone),
        }
        for p, kwp in _plant_rows(world)
    ]
    start = (page - 1) * PAGE_SIZE
    return reply(
        {
            "list": rows[start : start + PAGE_SIZE],
            "pageCount": max(1, math.ceil(len(rows) / PAGE_SIZE)),
            "pageNo": page,
            "pageSize": PAGE_SIZE,
            "total": len(rows),
        }
    )


def _grid_date(zone: str) -> str:
    """A date with the plant's UTC offset, as the reference gives it (the offset is the only zone hint)."""
    return datetime(2021, 3, 1, 12, 0, tzinfo=ZoneInfo(zone)).isoformat()


@bp.post("/getStationList")
def get_station_list():
    world = current_app.extensions["mock_inverter"]
    _, refused = _admit("fs:getStationList", [((), _daily_list_limit(world))])
    if refused:
        return refused
    return reply(
        [
            {
                "stationCode": station_code(p.plant_id),
                "stationName": p.name,
                "stationAddr": f"{p.city}, {p.country}",
                "capacity": round(kwp / 1000.0, 6),
                "buildState": None,
                "combineType": None,
                "aidType": 0,
                "stationLinkman": "",
                "linkmanPho": "",
            }
            for p, kwp in _plant_rows(world)
        ],
        params={"currentTime": _now_ms(world)},
    )


@bp.post("/getDevList")
def get_dev_list():
    world = current_app.extensions["mock_inverter"]
    body = _body() or {}
    codes = [c.strip() for c in str(body.get("stationCodes") or "").split(",") if c.strip()]
    if not codes or len(codes) > MAX_STATIONS:
        return reply(None, PARAMETER_ERROR, message=f"stationCodes: 1 to {MAX_STATIONS} plant codes")
    _, refused = _admit("fs:getDevList", [((), _daily_list_limit(world))])
    if refused:
        return refused
    wanted = set(codes)
    rows = []
    for d in _state(world)["devices"].values():
        if d.station_code not in wanted:
            continue
        device = world.devices[d.serial]
        rows.append(
            {
                "id": d.dev_id,
                "devDn": f"NE={d.dev_id}",
                "devName": d.name,
                "stationCode": d.station_code,
                "esnCode": d.sn,
                "devTypeId": d.dev_type_id,
                "softwareVersion": "V100R001C00SPC200",
                "invType": d.model if d.dev_type_id == INVERTER else None,
                "model": d.model,
                "longitude": device.longitude,
                "latitude": device.latitude,
            }
        )
    return reply(rows, params={"stationCodes": ",".join(codes), "currentTime": _now_ms(world)})


@bp.post("/getDevRealKpi")
def get_dev_real_kpi():
    world = current_app.extensions["mock_inverter"]
    body = _body() or {}
    type_id = body.get("devTypeId")
    try:
        type_id = int(type_id)
        ids = [int(i) for i in str(body.get("devIds") or "").split(",") if i.strip()]
    except (TypeError, ValueError):
        return reply(None, PARAMETER_ERROR, message="devIds (comma-separated numbers) and devTypeId are required")
    if not ids or len(ids) > MAX_DEVICES:
        return reply(None, PARAMETER_ERROR, message=f"devIds: 1 to {MAX_DEVICES} device ids")
    directory = _state(world)["devices"]
    matching = [directory[i] for i in ids if i in directory and directory[i].dev_type_id == type_id]
    of_type = sum(1 for d in directory.values() if d.dev_type_id == type_id)
    limit = Limit(
        max(1, int(world.limits.fusionsolar("kpi_calls")) + math.ceil(of_type / 100)),
        world.limits.fusionsolar("kpi_window_s"),
    )
    _, refused = _admit("fs:getDevRealKpi", [((type_id,), limit)], [d.sn for d in matching])
    if refused:
        return refused
    data = [{"devId": d.dev_id, "sn": d.sn, "dataItemMap": item_map(d, world)} for d in matching]
    return reply(data, params={"devIds": ",".join(map(str, ids)), "devTypeId": type_id, "currentTime": _now_ms(world)})


def _now_ms(world) -> int:
    return int(world.simulator.t * 1000)


def item_map(device: ListedDevice, world) -> dict:
    """The dataItemMap of one device: powers as the reference gives them (inverter kW, battery and meter W)."""
    r = world.simulator.reading(device.serial)
    online = r["status"] != "offline"
    run_state = 1 if online else 0
    if device.dev_type_id == INVERTER:
        producing = r["status"] == "normal"
        return {
            "inverter_state": 512 if producing else 40960,
            "run_state": run_state,
            "active_power": round(r["ac_power_w"] / 1000.0, 3),
            "mppt_power": round(r["pv_power_w"] / 1000.0, 3),
            "reactive_power": 0.0,
            "power_factor": 1.0 if producing else 0.0,
            "elec_freq": 50.0,
            "efficiency": 97.5 if producing else 0.0,
            "temperature": round(r["temperature_c"], 1),
            "a_u": 230.0,
            "a_i": round(max(r["ac_power_w"], 0.0) / 230.0, 3),
            "pv1_u": 360.0 if producing else 0.0,
            "pv1_i": round(r["pv_power_w"] / 360.0, 3),
            "day_cap": round(r["pv_energy_today_wh"] / 1000.0, 2),
            "total_cap": round(r["pv_energy_total_wh"] / 1000.0, 2),
        }
    if device.dev_type_id == BATTERY:
        battery = world.devices[device.serial].battery
        flow = r["battery_charge_w"] - r["battery_discharge_w"]
        return {
            "battery_status": (2 if abs(flow) > 0.5 else 1) if online else 0,
            "run_state": run_state,
            "ch_discharge_power": round(flow, 1),
            "battery_soc": round(r["battery_soc_pct"] or 0.0, 1),
            "battery_soh": 100.0,
            "busbar_u": round(r["battery_voltage_v"] or 0.0, 1),
            "max_charge_power": battery.max_charge_w,
            "max_discharge_power": battery.max_discharge_w,
            "ch_discharge_model": 2,
            "charge_cap": round(r["charge_energy_today_wh"] / 1000.0, 2),
            "discharge_cap": round(r["discharge_energy_today_wh"] / 1000.0, 2),
        }
    net = r["grid_export_w"] - r["grid_import_w"]  # positive: fed into the grid
    return {
        "meter_status": 1 if online else 0,
        "run_state": run_state,
        "active_power": round(net, 1),
        "reactive_power": 0.0,
        "power_factor": 1.0,
        "grid_frequency": 50.0,
        "meter_u": 230.0,
        "meter_i": round(abs(net) / 230.0, 3),
        "active_cap": round(r["export_energy_total_wh"] / 1000.0, 2),
        "reverse_active_cap": round(r["import_energy_total_wh"] / 1000.0, 2),
    }


def http_error(exc: HTTPException):
    response = jsonify({"success": False, "failCode": exc.code, "data": None, "params": {}, "message": exc.name})
    response.status_code = exc.code
    return response


@bp.errorhandler(Exception)
def unexpected(exc):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    current_app.logger.exception("fusionsolar request failed")
    response = jsonify({"success": False, "failCode": 500, "data": None, "params": {}, "message": "SYSTEM_ERROR"})
    response.status_code = 500
    return response
