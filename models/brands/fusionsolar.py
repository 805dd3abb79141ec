"""Huawei FusionSolar (SmartPVMS) northbound interface (`/thirdData/`): JSON POSTs within a session.

Logging in with the account's user name and system code returns an XSRF token (response header and
cookie) that every later call carries. A session ends after idle time or when the same account logs in
elsewhere; the brand then answers failCode 305, and the adapter logs in once more and repeats the call.
Replies are HTTP 200 `{"success", "failCode", "data", "params", "message"}`, throttling included (failCode
407). Devices are known by SN (esnCode) to users and by devId to the real-time call, which takes up to 100
devIds of one devTypeId; the device list maps one to the other. Real-time data carries no time of its own:
a reading's time is the reply's `params.currentTime` (UTC, ms).
"""

from __future__ import annotations

import time

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
)
from models.brands.quota import DAY, MINUTE, Bulk, Quota, Window

PREFIX = "/thirdData"
PAGE_SIZE = 100
MAX_STATIONS = 100
LIST_REFRESH_S = 3600.0  # a serial missing from the cached device list asks the brand again at most this often

OK = 0
NO_INTERFACE_RIGHT = 401
SESSION_EXPIRED = 305
FREQUENCY_TOO_HIGH = 407
LOGIN_INVALID = 20400
NOT_AUTHORIZED_BY_OWNER = 20056

INVERTER_TYPES = ("1", "38")  # string inverter, residential inverter
BATTERY_TYPE = "39"
METER_TYPE = "47"
GRID_CONNECTED = range(512, 515)  # inverter_state: grid-connected, power-limited, self-derating
STANDBY_NO_IRRADIATION = 40960


class FusionSolarAdapter(BrandAdapter):
    name = "fusionsolar"
    credential_fields = ("user_name", "system_code")
    batch_size = 100
    settings_prefix = "fusionsolar"
    paths = (PREFIX,)
    root_prefixes = ("", "/fusionsolar")
    quota = Quota(
        windows=(
            Window("plant list per user per day", 25, DAY, scope="key", endpoints=("sites",)),
            Window("device list per user per day", 25, DAY, scope="key", endpoints=("devices",)),
            Window("real-time device data per device type", 1, 5 * MINUTE, scope="batch", endpoints=("latest",)),
        ),
        bulk=(Bulk("latest", 100, per="device", charge="once"), Bulk("devices", 100, per="site", charge="once")),
        throttle_signals=("failCode 407",),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._token: str | None = None
        self._dev_ids: dict[str, int] = {}
        self._listed_at = float("-inf")

    @staticmethod
    def batch_key(device: PolledDevice) -> str:
        return device.device_type

    # -- session -----------------------------------------------------------------------------------
    def _post(self, path: str, body: dict, headers: dict | None = None):
        response = self._send("POST", f"{PREFIX}/{path}", json=body, headers=headers or {})
        reply = self._json(response)
        if not isinstance(reply, dict) or "failCode" not in reply:
            raise BrandError(BAD_REPLY, f"fusionsolar {path}: reply without a failCode", status=response.status_code)
        return response, reply

    def _login(self) -> None:
        self._token = None
        response, reply = self._post(
            "login", {"userName": self.credentials["user_name"], "systemCode": self.credentials["system_code"]}
        )
        self._check("login", reply)
        token = response.headers.get("xsrf-token") or self.session.cookies.get("XSRF-TOKEN")
        if not token:
            raise BrandError(BAD_REPLY, "fusionsolar login: no XSRF token in the reply")
        self._token = token

    def _call(self, path: str, body: dict):
        """The call's data, logging in first when there is no session, and once more when the brand says the
        session ended (305)."""
        if self._token is None:
            self._login()
        _, reply = self._post(path, body, {"XSRF-TOKEN": self._token})
        if reply.get("failCode") == SESSION_EXPIRED:
            self._login()
            _, reply = self._post(path, body, {"XSRF-TOKEN": self._token})
        return self._check(path, reply), reply

    def _check(self, what: str, reply: dict):
        code = reply.get("failCode")
        if code == OK:
            return reply.get("data")
        detail = reply.get("message") or (reply.get("data") if isinstance(reply.get("data"), str) else None)
        message = f"fusionsolar {what}: failCode {code}" + (f" ({detail})" if detail else "")
        if code == FREQUENCY_TOO_HIGH:
            raise BrandError(RATE_LIMITED, message, brand_code=code)
        if code in (SESSION_EXPIRED, LOGIN_INVALID, NO_INTERFACE_RIGHT, NOT_AUTHORIZED_BY_OWNER):
            raise BrandError(AUTH, message, brand_code=code)
        raise BrandError(BAD_REPLY, message, brand_code=code)

    # -- devices -----------------------------------------------------------------------------------
    def _plant_codes(self) -> list[str]:
        codes, page = [], 1
        while True:
            data, _ = self._call("stations", {"pageNo": page})
            rows = data.get("list") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise BrandError(BAD_REPLY, "fusionsolar stations: reply without a plant list")
            codes.extend(row["plantCode"] for row in rows if isinstance(row, dict) and row.get("plantCode"))
            if not rows or page >= (number(data.get("pageCount")) or 1):
                return codes
            page += 1

    def list_devices(self) -> dict[str, Device]:
        codes, devices = self._plant_codes(), {}
        for start in range(0, len(codes), MAX_STATIONS):
            rows, _ = self._call("getDevList", {"stationCodes": ",".join(codes[start : start + MAX_STATIONS])})
            if not isinstance(rows, list):
                raise BrandError(BAD_REPLY, "fusionsolar getDevList: reply without a device list")
            for row in rows:
                if not isinstance(row, dict) or not row.get("esnCode") or row.get("devTypeId") is None:
                    continue  # a device without an SN cannot be onboarded by serial
                try:
                    self._dev_ids[row["esnCode"]] = int(row["id"])
                except (KeyError, TypeError, ValueError):
                    continue
                devices[row["esnCode"]] = Device(
                    serial=row["esnCode"],
                    device_type=str(row["devTypeId"]),
                    model=row.get("model") or row.get("invType"),
                    plant_id=row.get("stationCode"),
                )
        self._listed_at = time.monotonic()
        return devices

    def fetch_latest(self, devices: list[PolledDevice]) -> BatchResult:
        result = BatchResult()
        if any(d.serial not in self._dev_ids for d in devices) and time.monotonic() - self._listed_at > LIST_REFRESH_S:
            self.list_devices()
        by_id = {}
        for device in devices:
            if device.serial in self._dev_ids:
                by_id[self._dev_ids[device.serial]] = device
            else:
                result.failed[device.serial] = BrandError(
                    UNKNOWN_DEVICE, f"fusionsolar: no device with SN {device.serial!r} in the device list"
                )
        if not by_id:
            return result
        device_type = devices[0].device_type
        try:
            type_id = int(device_type)
        except ValueError:
            raise BrandError(BAD_REPLY, f"fusionsolar: device type {device_type!r} is not a devTypeId") from None
        rows, reply = self._call("getDevRealKpi", {"devIds": ",".join(map(str, by_id)), "devTypeId": type_id})
        current = (
            number((reply.get("params") or {}).get("currentTime")) if isinstance(reply.get("params"), dict) else None
        )
        if not isinstance(rows, list) or current is None:
            raise BrandError(BAD_REPLY, "fusionsolar getDevRealKpi: reply without data or params.currentTime")
        for row in rows:
            device = by_id.pop(_int(row.get("devId")), None) if isinstance(row, dict) else None
            if device is None:
                continue
            try:
                reading = normalise(device, row.get("dataItemMap"), round(current / 1000.0, 3))
            except BrandError as exc:
                result.failed[device.serial] = exc
                continue
            result.add(device.serial, reading)
        for device in by_id.values():  # the brand answers for the devIds of that devTypeId it knows
            result.failed[device.serial] = BrandError(
                UNKNOWN_DEVICE, f"fusionsolar: no real-time data for {device.serial} as devTypeId {device_type}"
            )
        return result


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _kilo(value) -> float | None:
    kilo = number(value)
    return None if kilo is None else round(kilo * 1000.0, 1)


def normalise(device: PolledDevice, items, at: float) -> Reading:
    """One dataItemMap as a Reading: inverter powers are kW and energies kWh at the brand; battery and meter
    powers W (the meter's positive active power is fed into the grid)."""
    if not isinstance(items, dict):
        raise BrandError(BAD_REPLY, f"fusionsolar: real-time data for {device.serial} without a dataItemMap")
    if number(items.get("run_state")) == 0:
        return Reading(serial=device.serial, time=at, status="offline")
    kind = device.device_type
    if kind in INVERTER_TYPES:
        state = number(items.get("inverter_state"))
        status = (
            "normal"
            if state in GRID_CONNECTED
            else "waiting"
            if state == STANDBY_NO_IRRADIATION or (state is not None and state < 512)
            else "fault"
        )
        return Reading(
            serial=device.serial,
            time=at,
            status=status,
            pv_power_w=_kilo(items.get("mppt_power")),
            ac_power_w=_kilo(items.get("active_power")),
            energy_today_wh=_kilo(items.get("day_cap")),
            energy_total_wh=_kilo(items.get("total_cap")),
            temperature_c=number(items.get("temperature")),
        )
    if kind == BATTERY_TYPE:
        state = number(items.get("battery_status"))
        status = {0: "offline", 3: "fault"}.get(state, "normal")
        return Reading(
            serial=device.serial,
            time=at,
            status=status,
            battery_power_w=number(items.get("ch_discharge_power")),
            battery_soc_pct=number(items.get("battery_soc")),
            battery_voltage_v=number(items.get("busbar_u")),
        )
    if kind == METER_TYPE:
        power = number(items.get("active_power"))
        status = "offline" if number(items.get("meter_status")) == 0 else "normal"
        return Reading(
            serial=device.serial,
            time=at,
            status=status,
            grid_export_w=None if power is None else max(power, 0.0),
            grid_import_w=None if power is None else max(-power, 0.0),
        )
    # Other device types still say whether they run.
    return Reading(serial=device.serial, time=at, status="normal")
