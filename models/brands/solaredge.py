"""SolarEdge Monitoring API: GET requests authenticated by an `api_key` query parameter; the site is the unit.

An onboarded inverter's serial is `<siteId>:<inverter SN>` (the SN as the site's inventory lists it): every
data call needs the site ID, and the pollers know an inverter only by its serial. Its device type comes from
the inventory: "storedge" when a battery there names it as its connectedInverterSn, else "inverter".

SolarEdge reports per site, not per inverter: one poll of a site is its current power flow (PV, load, grid and
storage powers, whose unit is W or kW as the reply says, with directions only in `connections`, and the
battery's charge level) plus its overview (the time of the data, energy today and lifetime). Every inverter of
the site gets that site-level reading. Times are the site's local wall time, read in the site's time zone.

Limits (the API document's "Usage Limitations"): 300 calls a day per account key for calls without a site ID
(site list), 300 a day per site for the others, a bulk call charging each site it names; 3 requests in
progress per source address; HTTP 429 beyond any of them.
"""

from __future__ import annotations

from urllib.parse import quote

from models.brands.base import (
    AUTH,
    BAD_REPLY,
    RATE_LIMITED,
    UNKNOWN_DEVICE,
    BatchResult,
    BrandAdapter,
    BrandError,
    Device,
    PolledDevice,
    Reading,
    number,
    parse_local,
    retry_after,
)
from models.brands.quota import DAY, Bulk, Quota, Window

PREFIX = "/solaredge"
PAGE_SIZE = 100
SEPARATOR = ":"
INVALID_TOKEN = "Invalid token"
# Calls that name no site count against the key; all others against each site they name. "latest" is the
# poller's call: one site's power flow and overview, two requests (quota.requests_per_latest).
KEY_ENDPOINTS = ("sites",)
SITE_ENDPOINTS = ("inventory", "powerflow", "overview", "latest")
WATTS_PER = {"w": 1.0, "kw": 1000.0, "mw": 1_000_000.0}
STATUS = {"active": "normal", "idle": "waiting"}


def site_of(serial: str) -> str:
    return serial.partition(SEPARATOR)[0]


class SolarEdgeAdapter(BrandAdapter):
    name = "solaredge"
    credential_fields = ("api_key",)
    batch_size = 100  # every inverter of one site: one poll serves them all
    settings_prefix = "solaredge"
    paths = ("/sites", "/site")
    root_prefixes = ("", PREFIX)
    quota = Quota(
        windows=(
            Window("daily per key", 300, DAY, scope="key", endpoints=KEY_ENDPOINTS, calendar=True),
            Window("daily per site", 300, DAY, scope="site", endpoints=SITE_ENDPOINTS, calendar=True),
        ),
        concurrency=3,
        # One latest call serves every inverter of a site (batch_key), charged once to the site.
        bulk=(Bulk("overview", 100, per="site", charge="each"), Bulk("latest", 100, per="device", charge="once")),
        throttle_signals=("HTTP 429",),
        requests_per_latest={"*": 2},
    )

    @staticmethod
    def batch_key(device: PolledDevice) -> str:
        return site_of(device.serial)

    def _get(self, path: str, **params):
        response = self._send("GET", path, params={"api_key": self.credentials["api_key"], **params})
        body = self._json(response)
        if response.status_code == 200:
            if not isinstance(body, dict):
                raise BrandError(BAD_REPLY, f"solaredge {path}: the reply is not a JSON object", status=200)
            return body
        text = body.get("String") if isinstance(body, dict) else None
        message = f"solaredge: {text or 'HTTP ' + str(response.status_code)}"
        if response.status_code == 429:
            raise BrandError(RATE_LIMITED, message, status=429, retry_after_s=retry_after(response))
        if response.status_code in (401, 403) and (text is None or text == INVALID_TOKEN):
            raise BrandError(AUTH, message, status=response.status_code)
        if response.status_code == 403:  # a site or inverter this key cannot see
            raise BrandError(UNKNOWN_DEVICE, message, status=403)
        raise BrandError(BAD_REPLY, message, status=response.status_code)

    # -- onboarding --------------------------------------------------------------------------------
    def list_devices(self) -> dict[str, Device]:
        """Every inverter of every site the key sees: the site list (key budget), then each site's inventory."""
        devices = {}
        for site in self._sites():
            site_id = str(site["id"])
            location = site.get("location") if isinstance(site.get("location"), dict) else {}
            zone = location.get("timeZone") if isinstance(location.get("timeZone"), str) else None
            inventory = self._get(f"/site/{quote(site_id)}/inventory").get("Inventory")
            if not isinstance(inventory, dict):
                raise BrandError(BAD_REPLY, f"solaredge inventory of site {site_id}: no 'Inventory' object")
            with_battery = {
                b.get("connectedInverterSn") for b in inventory.get("batteries") or [] if isinstance(b, dict)
            }
            for inverter in inventory.get("inverters") or []:
                if not isinstance(inverter, dict) or not inverter.get("SN"):
                    continue
                serial = f"{site_id}{SEPARATOR}{inverter['SN']}"
                devices[serial] = Device(
                    serial=serial,
                    device_type="storedge" if inverter["SN"] in with_battery else "inverter",
                    model=inverter.get("model"),
                    plant_id=site_id,
                    timezone=zone,
                )
        return devices

    def _sites(self) -> list[dict]:
        sites, start = [], 0
        while True:
            body = self._get("/sites/list", size=PAGE_SIZE, startIndex=start)
            page = body.get("sites") if isinstance(body.get("sites"), dict) else None
            rows = page.get("site") if page else None
            if not isinstance(rows, list):
                raise BrandError(BAD_REPLY, "solaredge sites/list: reply without a site list")
            sites.extend(row for row in rows if isinstance(row, dict) and row.get("id") is not None)
            start += len(rows)
            if not rows or start >= (number(page.get("count")) or 0):
                return sites

    def found(self, devices: dict[str, Device], serial: str) -> Device:
        if serial not in devices and SEPARATOR not in serial:
            matches = sorted(s for s in devices if s.partition(SEPARATOR)[2] == serial)
            hint = f"; onboard it as {matches[0]!r}" if matches else ""
            raise BrandError(UNKNOWN_DEVICE, f"solaredge: serials are <siteId>{SEPARATOR}<inverter SN>{hint}")
        return super().found(devices, serial)

    # -- polling -----------------------------------------------------------------------------------
    def fetch_latest(self, devices: list[PolledDevice]) -> BatchResult:
        """The site's power flow and overview, as one reading for each of its inverters asked for."""
        site_id = site_of(devices[0].serial)
        result = BatchResult()
        try:
            flow = self._get(f"/site/{quote(site_id)}/currentPowerFlow").get("siteCurrentPowerFlow")
            overview = self._get(f"/site/{quote(site_id)}/overview").get("overview")
            if not isinstance(flow, dict) or not isinstance(overview, dict):
                raise BrandError(BAD_REPLY, f"solaredge site {site_id}: power flow or overview missing")
            for device in devices:
                result.readings[device.serial] = normalise(device, flow, overview)
        except BrandError as exc:
            if exc.kind not in (UNKNOWN_DEVICE, BAD_REPLY):
                raise
            for device in devices:
                result.failed[device.serial] = exc
        return result


def _watts(node, scale: float) -> float | None:
    value = number(node.get("currentPower")) if isinstance(node, dict) else None
    return None if value is None else round(value * scale, 3)


def normalise(device: PolledDevice, flow: dict, overview: dict) -> Reading:
    unit = str(flow.get("unit") or "").strip().lower()
    if unit not in WATTS_PER:
        raise BrandError(BAD_REPLY, f"solaredge: power flow in an unknown unit {flow.get('unit')!r}")
    scale = WATTS_PER[unit]
    try:
        at = parse_local(str(overview.get("lastUpdateTime")), device.timezone)
    except ValueError:
        raise BrandError(BAD_REPLY, f"solaredge: overview of {device.serial} has an unreadable time") from None
    # Powers are magnitudes; which way they flow is only in the connections.
    links = {
        (str(c.get("from", "")).lower(), str(c.get("to", "")).lower())
        for c in flow.get("connections") or []
        if isinstance(c, dict)
    }
    grid = _watts(flow.get("GRID"), scale)
    importing, exporting = ("grid", "load") in links, ("load", "grid") in links
    storage = flow.get("STORAGE") if isinstance(flow.get("STORAGE"), dict) else None
    battery = soc = None
    if storage is not None:
        magnitude = _watts(storage, scale) or 0.0
        status = str(storage.get("status", "")).lower()
        charging = status == "charging" or any(to == "storage" for _, to in links)
        discharging = status == "discharging" or any(source == "storage" for source, _ in links)
        battery = magnitude if charging else -magnitude if discharging else 0.0
        soc = number(storage.get("chargeLevel"))
    pv = flow.get("PV") if isinstance(flow.get("PV"), dict) else {}
    day = overview.get("lastDayData") if isinstance(overview.get("lastDayData"), dict) else {}
    life = overview.get("lifeTimeData") if isinstance(overview.get("lifeTimeData"), dict) else {}
    return Reading(
        serial=device.serial,
        time=at,
        status=STATUS.get(str(pv.get("status", "")).lower(), "normal"),
        pv_power_w=_watts(pv, scale),
        load_power_w=_watts(flow.get("LOAD"), scale),
        grid_import_w=(grid if importing else 0.0) if grid is not None else None,
        grid_export_w=(grid if exporting else 0.0) if grid is not None else None,
        battery_power_w=battery,
        battery_soc_pct=soc,
        energy_today_wh=number(day.get("energy")),
        energy_total_wh=number(life.get("energy")),
    )
