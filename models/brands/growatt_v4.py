"""Growatt OpenAPI v4 (`/v4/new-api/`): form-urlencoded POSTs with a `token` header, replies
`{"code", "message", "data"}` with HTTP 200 even for errors, and up to 100 serials per latest-data call.

Field names differ per device type (see FIELDS); a batch must share one deviceType. Time is the plant's
local wall time without an offset, so it is read in the inverter's time zone (UTC if not given).
"""

from __future__ import annotations

import dataclasses
import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.brands.base import (
    AUTH,
    BAD_REPLY,
    OFFLINE,
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
)
from models.brands.quota import Bulk, Quota, Window

log = logging.getLogger(__name__)

PREFIX = "/v4/new-api"
PAGE_SIZE = 100

OK = 0
PARAMETER_ERROR = 1
TOKEN_IS_INVALID = 2
DEVICE_NOT_FOUND = 4
DEVICE_OFFLINE = 5
ACCESS_FREQUENCY_LIMIT = 100
DEVICE_ACCESS_FREQUENCY_LIMIT = 102

STATUS = {0: "waiting", 1: "normal", -1: "offline"}

# Which Growatt field carries each normalised value, per device type. soc lists fields in order of
# preference; energies are kWh at the brand and Wh here.
FIELDS = {
    "inv": {"ac": "pac", "today": "powerToday", "total": "powerTotal", "temp": "temperature"},
    "storage": {
        "ac": "outPutPower",
        "load": "outPutPower",
        "import": "pAcInPut",
        "export": "pacToGridTotal",
        "charge": "pCharge",
        "discharge": "pDischarge",
        "soc": ("capacity",),
        "vbat": "vBat",
        "today": "epvToday",
        "total": "epvTotal",
        "temp": "invTemperature",
    },
    "sph": {
        "ac": "pac",
        "load": "pLocalLoad",
        "import": "pacToUserTotal",
        "export": "pacToGridTotal",
        "charge": "pcharge1",
        "discharge": "pdischarge1",
        "soc": ("soc", "bmsSOC"),
        "vbat": "vbat",
        "today": "epvToday",
        "total": "epvTotal",
        "temp": "temp1",
    },
    "min": {
        "ac": "pac",
        "load": "pLocalLoadTotal",
        "import": "pacToUserTotal",
        "export": "pacToGridTotal",
        "charge": "bdc1ChargePower",
        "discharge": "bdc1DischargePower",
        "soc": ("bdc1Soc", "bmsSoc"),
        "today": "epvToday",
        "total": "epvTotal",
        "temp": "temp1",
    },
}
# Types we have no specific table for still give PV, AC, energy and temperature where present.
GENERIC = {"ac": "pac", "today": "epvToday", "total": "epvTotal", "temp": "temperature"}


class GrowattV4Adapter(BrandAdapter):
    name = "growatt_v4"
    credential_fields = ("token",)
    batch_size = 100
    settings_prefix = "growatt_v4"
    paths = (PREFIX, "/v1")  # v1: the plant list, for time zones
    # Growatt's documented v4 limits, as the mock's "real" profile enforces them (mock_inverter/ratelimit.py):
    # queryLastData once per 5 s per token and once per device per 5 minutes (a batch of up to 100 serials of
    # one type is one call, and each serial in it uses its device interval); the device list once per 5 s.
    quota = Quota(
        windows=(
            Window("queryLastData per token", 1, 5.0, scope="endpoint", endpoints=("latest",)),
            Window("queryLastData per device", 1, 300.0, scope="device", endpoints=("latest",)),
            Window("queryDeviceList per token", 1, 5.0, scope="endpoint", endpoints=("devices",)),
        ),
        bulk=(Bulk("latest", size=100, per="device", charge="once"),),
        throttle_signals=("code 100 ACCESS_FREQUENCY_LIMIT", "code 102 DEVICE_ACCESS_FREQUENCY_LIMIT"),
    )

    @staticmethod
    def batch_key(device: PolledDevice) -> str:
        return device.device_type

    def _post(self, endpoint: str, form: dict):
        response = self._send("POST", f"{PREFIX}/{endpoint}", data=form, headers={"token": self.credentials["token"]})
        body = self._json(response)
        if not isinstance(body, dict) or "code" not in body:
            raise BrandError(BAD_REPLY, f"growatt_v4 {endpoint}: reply without a code", status=response.status_code)
        code = body.get("code")
        if code == OK:
            return body.get("data")
        message = f"growatt_v4 {endpoint}: {body.get('message') or 'code ' + str(code)}"
        if code in (ACCESS_FREQUENCY_LIMIT, DEVICE_ACCESS_FREQUENCY_LIMIT):
            raise BrandError(RATE_LIMITED, message, brand_code=code)
        if code == TOKEN_IS_INVALID:
            raise BrandError(AUTH, message, brand_code=code)
        if code == DEVICE_NOT_FOUND:
            data = body.get("data")
            serials = data.get("deviceSn", []) if isinstance(data, dict) else []
            raise BrandError(UNKNOWN_DEVICE, message, brand_code=code, serials=tuple(serials))
        if code == DEVICE_OFFLINE:
            raise BrandError(OFFLINE, message, brand_code=code)
        raise BrandError(BAD_REPLY, message, status=response.status_code, brand_code=code)

    def list_devices(self) -> dict[str, Device]:
        """The device list, each device with its plant's time zone (one plant-list call per device list)."""
        devices, page = {}, 1
        while True:
            data = self._post("queryDeviceList", {"page": page})
            rows = data.get("data") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise BrandError(BAD_REPLY, "growatt_v4 queryDeviceList: reply without a device list")
            for row in rows:
                if isinstance(row, dict) and row.get("deviceSn") and row.get("deviceType"):
                    plant = row.get("plantId")
                    devices[row["deviceSn"]] = Device(
                        serial=row["deviceSn"],
                        device_type=str(row["deviceType"]),
                        plant_id=None if plant is None else str(plant),
                    )
            if not rows or page * PAGE_SIZE >= (number(data.get("count")) or 0):
                break
            page += 1
        zones = self._plant_timezones() if any(d.plant_id is not None for d in devices.values()) else {}
        return {
            serial: dataclasses.replace(device, timezone=zones[device.plant_id]) if device.plant_id in zones else device
            for serial, device in devices.items()
        }

    def _plant_timezones(self) -> dict[str, str]:
        """Plant time zones from the v1 plant list, served on the same host with the same token.

        v4 replies carry local wall time without an offset and the v4 device list names no zone, so
        without this a reading would be read as UTC and be off by the plant's offset.
        """
        try:
            response = self._send(
                "GET",
                "/v1/plant/list",
                params={"page": 1, "perpage": 200},
                headers={"token": self.credentials["token"]},
            )
            body = self._json(response)
        except BrandError as exc:
            log.warning("growatt_v4: no plant time zones from /v1/plant/list (%s); reading times as UTC", exc)
            return {}
        plants = (body.get("data") or {}).get("plants") if isinstance(body, dict) else None
        zones = {}
        for plant in plants if isinstance(plants, list) else []:
            zone = plant.get("timezone") if isinstance(plant, dict) else None
            if isinstance(zone, str) and plant.get("plant_id") is not None and _is_zone(zone):
                zones[str(plant["plant_id"])] = zone
        return zones

    def fetch_latest(self, devices: list[PolledDevice]) -> BatchResult:
        device_type = devices[0].device_type
        by_serial = {d.serial: d for d in devices}
        result = BatchResult()
        try:
            data = self._post("queryLastData", {"deviceType": device_type, "deviceSn": ",".join(by_serial)})
        except BrandError as exc:
            if exc.kind == OFFLINE:  # every serial of the batch is offline
                result.offline.update(by_serial)
                return result
            if exc.kind == UNKNOWN_DEVICE:  # the brand names the serials it does not know
                unknown = [s for s in exc.serials if s in by_serial] or list(by_serial)
                for serial in unknown:
                    result.failed[serial] = exc
                return result
            raise
        rows = data.get(device_type) if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise BrandError(BAD_REPLY, f"growatt_v4 queryLastData: reply without a {device_type!r} list")
        for row in rows:
            serial = row.get("deviceSn") if isinstance(row, dict) else None
            if serial not in by_serial:
                continue
            try:
                reading = normalise(by_serial[serial], row)
            except BrandError as exc:
                result.failed[serial] = exc
                continue
            result.add(serial, reading)
        # In a batch the brand leaves offline devices out.
        result.offline.update(s for s in by_serial if s not in result.readings and s not in result.failed)
        return result


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _kwh_to_wh(value) -> float | None:
    kwh = number(value)
    return None if kwh is None else round(kwh * 1000.0, 1)


def normalise(device: PolledDevice, row: dict) -> Reading:
    fields = FIELDS.get(device.device_type, GENERIC)
    try:
        at = parse_local(str(row.get("time")), device.timezone)
    except ValueError:
        raise BrandError(BAD_REPLY, f"growatt_v4: row for {device.serial} has an unreadable time") from None

    def value(name):
        key = fields.get(name)
        return number(row.get(key)) if key else None

    soc = next((v for v in (number(row.get(k)) for k in fields.get("soc", ())) if v is not None), None)
    charge, discharge = value("charge"), value("discharge")
    battery = None if charge is None and discharge is None else (charge or 0.0) - (discharge or 0.0)
    if device.device_type == "min" and not soc and not battery:
        # A min/tlx without a battery reports 0 for its battery fields; that is no battery, not an empty one.
        soc = battery = None
    try:
        raw_status = int(row.get("status"))
    except (TypeError, ValueError):
        raw_status = None
    return Reading(
        serial=device.serial,
        time=at,
        status=STATUS.get(raw_status, "fault"),
        pv_power_w=number(row.get("ppv")),
        ac_power_w=value("ac"),
        load_power_w=value("load"),
        grid_import_w=value("import"),
        grid_export_w=value("export"),
        battery_power_w=battery,
        battery_soc_pct=soc,
        battery_voltage_v=value("vbat"),
        energy_today_wh=_kwh_to_wh(row.get(fields["today"])),
        energy_total_wh=_kwh_to_wh(row.get(fields["total"])),
        temperature_c=value("temp"),
    )
