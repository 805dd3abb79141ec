"""SolarEdge Monitoring API dialect (/solaredge): `api_key` query parameter, site-centred JSON resources.

A plant of brand "solaredge" is a site; its devices are the site's inverters ("storedge" ones have a battery).
Budgets are per calendar day (per key for calls without a site ID, per site for the others, bulk calls charge
every listed site) and at most N requests may be in progress per source address; both answer HTTP 429.
Times are the site's local wall time, "YYYY-MM-DD hh:mm:ss". See the README for the cited sections.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .growatt_fields import local_time

PREFIX = "/solaredge"
BRAND = "solaredge"
bp = Blueprint("solaredge", __name__, url_prefix=PREFIX)

MAX_BULK_SITES = 100
MAX_PAGE_SIZE = 100
MAX_PERIOD = timedelta(days=7)  # storage data and inverter technical data: at most one week per call
SAMPLE_S = 300.0  # telemetries (storage, inverter data) are 5-minute samples
SAMPLES_KEPT = 7 * 288 + 1
FLOW_THRESHOLD_W = 1.0  # below this a flow is shown as none (no connection, status Idle)
ACCOUNT_ID = 4242
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
COUNTRY_CODES = {
    "Netherlands": "NL",
    "Nigeria": "NG",
    "Kenya": "KE",
    "Spain": "ES",
    "South Africa": "ZA",
    "Germany": "DE",
    "Ghana": "GH",
    "India": "IN",
    "Australia": "AU",
    "United States": "US",
}
# Stats endpoint names by view function (also used when a request is refused before its view runs).
ENDPOINTS = {
    "site_list": "solaredge:sites/list",
    "site_details": "solaredge:details",
    "overview": "solaredge:overview",
    "overview_bulk": "solaredge:overview",
    "current_power_flow": "solaredge:currentPowerFlow",
    "storage_data": "solaredge:storageData",
    "inventory": "solaredge:inventory",
    "components_list": "solaredge:equipment/list",
    "inverter_data": "solaredge:inverter/data",
    "inverter_data_by_site": "solaredge:inverter/data",
}


def reply(body, status: int = 200):
    response = jsonify(body)
    response.status_code = status
    return response


def refusal(status: int, message: str):
    # The service answers errors with an HTTP status and a one-field JSON body.
    return reply({"String": message}, status)


def _world():
    return current_app.extensions["mock_inverter"]


# -- limits -------------------------------------------------------------------------------------------
def arrive():
    """Called by the app before any other work (injected latency included): count the request in progress."""
    world = _world()
    source = request.remote_addr or "-"
    if not world.limits.enter(BRAND, source):
        view = (request.endpoint or "").rpartition(".")[2]
        token = request.args.get("api_key")
        world.stats.record(
            token if token in world.fleet.credentials[BRAND] else "<invalid>",
            ENDPOINTS.get(view, "solaredge:other"),
            rate_limited=True,
            window=f"solaredge concurrency per source: {world.limits.budget(BRAND, 'concurrency')}",
        )
        return refusal(429, "Too many concurrent requests")
    g.setdefault("departures", []).append(lambda: world.limits.leave(BRAND, source))
    return None


def _admit(endpoint: str, sites=()):
    """None when the call may go ahead (and is charged), else the refusal to send."""
    world = _world()
    buckets = [("site", site.plant_id) for site in sites] or [("key", request.args.get("api_key"))]
    serials = [d.serial for site in sites for d in site.devices]
    admission = world.admit_daily(BRAND, request.args.get("api_key"), endpoint, buckets, serials)
    if admission.reason == "unauthorized":
        return refusal(403, "Invalid token")
    if not admission.ok:
        return refusal(429, "Too many requests")
    return None


def _sites(ids_text: str, bulk_allowed: bool):
    """The sites named in the path, or the refusal: more than one only where a bulk form exists."""
    world = _world()
    ids = [part.strip() for part in ids_text.split(",") if part.strip()]
    if not ids or not all(part.isdigit() for part in ids):
        return None, refusal(400, "Invalid site ID")
    if len(ids) > (MAX_BULK_SITES if bulk_allowed else 1):
        return None, refusal(400, f"At most {MAX_BULK_SITES if bulk_allowed else 1} site IDs per request")
    sites = []
    for part in ids:
        plant = world.plants.get(int(part))
        if plant is None or plant.brand != BRAND:
            # A wrong key is never told which sites exist.
            token = request.args.get("api_key")
            valid = token in world.fleet.credentials[BRAND]
            world.stats.record(token if valid else "<invalid>", "solaredge:unknown_site")
            return None, refusal(403, f"Site {part} is not accessible with this token" if valid else "Invalid token")
        sites.append(plant)
    return sites, None


# -- telemetry samples --------------------------------------------------------------------------------
class Samples:
    """5-minute samples per device, recorded whenever the dialect is asked anything (the simulator keeps only
    the present); storage data and inverter technical data answer from them."""

    def __init__(self):
        self.by_serial: dict[str, deque] = {}

    def record(self, world) -> None:
        for device in world.brand_devices(BRAND):
            reading = world.simulator.reading(device.serial)
            slot = math.floor(reading["t"] / SAMPLE_S) * SAMPLE_S
            kept = self.by_serial.setdefault(device.serial, deque(maxlen=SAMPLES_KEPT))
            if not kept or kept[-1][0] < slot:
                kept.append((slot, reading))

    def between(self, serial: str, start: float, end: float) -> list[dict]:
        return [reading for slot, reading in self.by_serial.get(serial, ()) if start <= slot <= end]


@bp.record_once
def _install_samples(state):
    state.app.extensions["solaredge_samples"] = Samples()


@bp.before_request
def sample():
    _samples().record(_world())


def _samples() -> Samples:
    return current_app.extensions["solaredge_samples"]


# -- shapes -------------------------------------------------------------------------------------------
def _readings(site):
    world = _world()
    return [world.simulator.reading(d.serial) for d in site.devices]


def _local(reading) -> str:
    return local_time(reading)


def _battery_serial(device) -> str:
    return "BT" + device.serial.replace("-", "")[-8:]


def site_view(site) -> dict:
    readings = _readings(site)
    return {
        "id": site.plant_id,
        "name": site.name,
        "accountId": ACCOUNT_ID,
        "status": "Active",
        "peakPower": round(sum(d.pv_peak_w for d in site.devices) / 1000.0, 2),
        "lastUpdateTime": _local(max(readings, key=lambda r: r["t"]))[:10],
        "installationDate": "2021-03-01",
        "ptoDate": None,
        "notes": "",
        "type": "Optimizers & Inverters",
        "location": {
            "country": site.country,
            "city": site.city,
            "address": "",
            "address2": "",
            "zip": "",
            "timeZone": site.timezone,
            "countryCode": COUNTRY_CODES.get(site.country, ""),
        },
        "primaryModule": {
            "manufacturerName": "Generic",
            "modelName": "400W Mono",
            "maximumPower": 400.0,
            "temperatureCoef": -0.35,
        },
        "uris": {
            "DETAILS": f"/site/{site.plant_id}/details",
            "DATA_PERIOD": f"/site/{site.plant_id}/dataPeriod",
            "OVERVIEW": f"/site/{site.plant_id}/overview",
        },
        "publicSettings": {"isPublic": False},
    }


def overview_view(site) -> dict:
    readings = _readings(site)
    latest = max(readings, key=lambda r: r["t"])
    today = sum(r["pv_energy_today_wh"] for r in readings)
    typical_day = sum(d.pv_peak_w for d in site.devices) * 3.5
    local = datetime.strptime(_local(latest), TIME_FORMAT)
    # The simulator keeps no history: month and year to date are today plus typical days before it.
    return {
        "lastUpdateTime": _local(latest),
        "lifeTimeData": {"energy": round(sum(r["pv_energy_total_wh"] for r in readings), 1), "revenue": 0.0},
        "lastYearData": {"energy": round(today + (local.timetuple().tm_yday - 1) * typical_day, 1)},
        "lastMonthData": {"energy": round(today + (local.day - 1) * typical_day, 1)},
        "lastDayData": {"energy": round(today, 1)},
        "currentPower": {"power": round(sum(r["pv_power_w"] for r in readings), 1)},
        "measuredBy": "INVERTER",
    }


def power_flow_view(site) -> dict:
    readings = _readings(site)
    scale = 1000.0 if site.power_unit == "kW" else 1.0

    def power(watts):
        return round(abs(watts) / scale, 3 if scale > 1 else 1)

    pv = sum(r["pv_power_w"] for r in readings)
    load = sum(r["load_power_w"] for r in readings)
    # One grid connection per site: several inverters' imports and exports net out at the meter.
    grid = sum(r["grid_import_w"] - r["grid_export_w"] for r in readings)
    battery = sum(r["battery_charge_w"] - r["battery_discharge_w"] for r in readings)
    pv, grid, battery = (0.0 if abs(w) < FLOW_THRESHOLD_W else w for w in (pv, grid, battery))
    connections = []
    if pv > 0 and load > 0:
        connections.append({"from": "PV", "to": "Load"})
    if battery > 0:
        connections.append({"from": "PV" if pv > 0 else "GRID", "to": "Storage"})
    elif battery < 0:
        connections.append({"from": "STORAGE", "to": "Load"})
    if grid > 0:
        connections.append({"from": "GRID", "to": "Load"})
    elif grid < 0:
        connections.append({"from": "LOAD", "to": "Grid"})
    flow = {
        "updateRefreshRate": 3,
        "unit": site.power_unit,
        "connections": connections,
        "GRID": {"status": "Active", "currentPower": power(grid)},
        "LOAD": {"status": "Active", "currentPower": power(load)},
        "PV": {"status": "Active" if pv > 0 else "Idle", "currentPower": power(pv)},
    }
    batteries = [(d, r) for d, r in zip(site.devices, readings) if d.battery is not None]
    if batteries:
        capacity = sum(d.battery.capacity_wh for d, _ in batteries)
        stored = sum(d.battery.capacity_wh * r["battery_soc_pct"] / 100.0 for d, r in batteries)
        floor = sum(d.battery.capacity_wh * d.battery.soc_min_pct / 100.0 for d, _ in batteries)
        flow["STORAGE"] = {
            "status": "Charging" if battery > 0 else "Discharging" if battery < 0 else "Idle",
            "currentPower": power(battery),
            "chargeLevel": round(100.0 * stored / capacity),
            "critical": stored <= floor + 0.01 * capacity,
        }
    return flow


def inventory_view(site) -> dict:
    inverters, batteries = [], []
    for n, device in enumerate(site.devices, start=1):
        inverters.append(
            {
                "name": f"Inverter {n}",
                "manufacturer": "SolarEdge",
                "model": device.model,
                "communicationMethod": "ETHERNET",
                "cpuVersion": "4.18.36",
                "SN": device.serial,
                "connectedOptimizers": max(1, int(device.pv_peak_w // 400)),
            }
        )
        if device.battery is not None:
            batteries.append(
                {
                    "name": f"Battery {n}.1",
                    "manufacturer": "SolarEdge",
                    "model": "BAT-10K1P",
                    "firmwareVersion": "2.0.4",
                    "connectedInverterSn": device.serial,
                    "nameplateCapacity": device.battery.capacity_wh,
                    "SN": _battery_serial(device),
                }
            )
    meters = [
        {
            "name": "Consumption Meter",
            "manufacturer": "SolarEdge",
            "model": "SE-MTR-3Y-400V-A",
            "firmwareVersion": "1.3.8",
            "connectedSolaredgeDeviceSN": site.devices[0].serial,
            "type": "Consumption",
            "form": "physical",
        }
    ]
    return {"meters": meters, "sensors": [], "gateways": [], "batteries": batteries, "inverters": inverters}


def battery_telemetry(device, reading) -> dict:
    net = reading["battery_charge_w"] - reading["battery_discharge_w"]
    return {
        "timeStamp": _local(reading),
        "power": round(net, 1),
        "batteryState": 3 if net else 1,
        "lifeTimeEnergyCharged": round(reading["charge_energy_total_wh"]),
        "lifeTimeEnergyDischarged": round(reading["discharge_energy_total_wh"]),
        "fullPackEnergyAvailable": round(device.battery.capacity_wh),
        "internalTemp": round(reading["temperature_c"] - 5.0, 1),
        "ACGridCharging": 0,
        "batteryPercentageState": round(reading["battery_soc_pct"], 1),
    }


def inverter_telemetry(reading) -> dict:
    ac = reading["ac_power_w"]
    mode = "OFF" if reading["status"] == "offline" else "MPPT" if reading["pv_power_w"] > 0 else "SLEEPING"
    volts = 230.0
    return {
        "date": _local(reading),
        "totalActivePower": round(ac, 1),
        "dcVoltage": round(380.0 if reading["pv_power_w"] > 0 else 0.0, 1),
        "groundFaultResistance": 11000.0,
        "powerLimit": 100.0,
        "totalEnergy": round(reading["pv_energy_total_wh"], 1),
        "temperature": round(reading["temperature_c"], 1),
        "inverterMode": mode,
        "operationMode": 0,
        "L1Data": {
            "acCurrent": round(abs(ac) / volts, 3),
            "acVoltage": volts,
            "acFrequency": 50.0,
            "apparentPower": round(abs(ac), 1),
            "activePower": round(ac, 1),
            "reactivePower": 0.0,
            "cosPhi": 1.0,
        },
    }


def _period(site, start_name: str = "startTime", end_name: str = "endTime"):
    """(start, end) as epoch seconds from the site's local times, or the refusal."""
    try:
        start = datetime.strptime(request.args.get(start_name) or "", TIME_FORMAT)
        end = datetime.strptime(request.args.get(end_name) or "", TIME_FORMAT)
    except ValueError:
        return None, refusal(400, f"{start_name} and {end_name} are required, formatted yyyy-MM-dd hh:mm:ss")
    if end < start:
        return None, refusal(400, f"{end_name} must not be before {start_name}")
    if end - start > MAX_PERIOD:
        return None, refusal(403, "The requested period exceeds one week")
    offset = _readings(site)[0]["utc_offset_s"]
    epoch = datetime(1970, 1, 1)
    return ((start - epoch).total_seconds() - offset, (end - epoch).total_seconds() - offset), None


# -- routes -------------------------------------------------------------------------------------------
@bp.get("/sites/list")
def site_list():
    refused = _admit(ENDPOINTS["site_list"])
    if refused:
        return refused
    size = request.args.get("size", "100")
    start = request.args.get("startIndex", "0")
    if not size.isdigit() or not start.isdigit() or not 0 < int(size) <= MAX_PAGE_SIZE:
        return refusal(400, f"size must be 1..{MAX_PAGE_SIZE} and startIndex a non-negative integer")
    wanted = {s.strip().lower() for s in request.args.get("status", "Active,Pending").split(",")}
    text = (request.args.get("searchText") or "").lower()
    sites = [
        s
        for s in _world().fleet.plants_of(BRAND)
        if ("all" in wanted or "active" in wanted) and (not text or text in f"{s.name} {s.city} {s.country}".lower())
    ]
    order = {
        "Name": lambda s: s.name,
        "Country": lambda s: s.country,
        "City": lambda s: s.city,
        "PeakPower": lambda s: sum(d.pv_peak_w for d in s.devices),
    }.get(request.args.get("sortProperty"), lambda s: s.plant_id)
    sites.sort(key=order, reverse=request.args.get("sortOrder", "ASC").upper() == "DESC")
    page = sites[int(start) : int(start) + int(size)]
    return reply({"sites": {"count": len(sites), "site": [site_view(s) for s in page]}})


@bp.get("/site/<site_id>/details")
def site_details(site_id):
    sites, refused = _sites(site_id, bulk_allowed=False)
    refused = refused or _admit(ENDPOINTS["site_details"], sites)
    return refused or reply({"details": site_view(sites[0])})


@bp.get("/site/<site_ids>/overview")
def overview(site_ids):
    sites, refused = _sites(site_ids, bulk_allowed=True)
    refused = refused or _admit(ENDPOINTS["overview"], sites)
    if refused:
        return refused
    if len(sites) == 1:
        return reply({"overview": overview_view(sites[0])})
    return _bulk_overview(sites)


@bp.get("/sites/<site_ids>/overview")
def overview_bulk(site_ids):
    sites, refused = _sites(site_ids, bulk_allowed=True)
    refused = refused or _admit(ENDPOINTS["overview"], sites)
    return refused or _bulk_overview(sites)


def _bulk_overview(sites):
    return reply(
        {
            "sitesOverviews": {
                "count": len(sites),
                "siteEnergyList": [{"siteId": site.plant_id, "siteOverview": overview_view(site)} for site in sites],
            }
        }
    )


@bp.get("/site/<site_id>/currentPowerFlow")
def current_power_flow(site_id):
    sites, refused = _sites(site_id, bulk_allowed=False)
    refused = refused or _admit(ENDPOINTS["current_power_flow"], sites)
    return refused or reply({"siteCurrentPowerFlow": power_flow_view(sites[0])})


@bp.get("/site/<site_id>/storageData")
def storage_data(site_id):
    sites, refused = _sites(site_id, bulk_allowed=False)
    refused = refused or _admit(ENDPOINTS["storage_data"], sites)
    if refused:
        return refused
    site = sites[0]
    period, refused = _period(site)
    if refused:
        return refused
    wanted = {s.strip() for s in (request.args.get("serials") or "").split(",") if s.strip()}
    batteries = []
    for device in site.devices:
        if device.battery is None or (wanted and _battery_serial(device) not in wanted):
            continue
        telemetries = [battery_telemetry(device, r) for r in _samples().between(device.serial, *period)]
        batteries.append(
            {
                "nameplate": device.battery.capacity_wh,
                "serialNumber": _battery_serial(device),
                "modelNumber": "BAT-10K1P",
                "telemetryCount": len(telemetries),
                "telemetries": telemetries,
            }
        )
    return reply({"storageData": {"batteryCount": len(batteries), "batteries": batteries}})


@bp.get("/site/<site_id>/inventory")
def inventory(site_id):
    sites, refused = _sites(site_id, bulk_allowed=False)
    refused = refused or _admit(ENDPOINTS["inventory"], sites)
    return refused or reply({"Inventory": inventory_view(sites[0])})


@bp.get("/equipment/<site_id>/list")
def components_list(site_id):
    sites, refused = _sites(site_id, bulk_allowed=False)
    refused = refused or _admit(ENDPOINTS["components_list"], sites)
    if refused:
        return refused
    rows = [
        {
            "name": f"Inverter {n}",
            "manufacturer": "SolarEdge",
            "model": d.model,
            "serialNumber": d.serial,
            "kWpDC": round(d.pv_peak_w / 1000.0, 2),
        }
        for n, d in enumerate(sites[0].devices, start=1)
    ]
    return reply({"reporters": {"count": len(rows), "list": rows}})


def _inverter_data(site_id, serial):
    sites, refused = _sites(site_id, bulk_allowed=False)
    refused = refused or _admit(ENDPOINTS["inverter_data"], sites)
    if refused:
        return refused
    device = next((d for d in sites[0].devices if d.serial == serial), None)
    if device is None:
        return refusal(403, f"Inverter {serial} is not part of site {site_id}")
    period, refused = _period(sites[0])
    if refused:
        return refused
    telemetries = [inverter_telemetry(r) for r in _samples().between(serial, *period)]
    return reply({"data": {"count": len(telemetries), "telemetries": telemetries}})


@bp.get("/equipment/<site_id>/<serial>/data")
def inverter_data(site_id, serial):
    return _inverter_data(site_id, serial)


@bp.get("/site/<site_id>/inverter/<serial>/data")
def inverter_data_by_site(site_id, serial):
    # The path the PyPI `solaredge` client (2.x) builds for inverter technical data.
    return _inverter_data(site_id, serial)


def http_error(exc: HTTPException):
    return refusal(exc.code, exc.description or exc.name)


@bp.errorhandler(Exception)
def unexpected(exc):
    if isinstance(exc, HTTPException):
        return http_error(exc)
    current_app.logger.exception("solaredge request failed")
    return refusal(500, "Internal server error")
