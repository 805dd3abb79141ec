"""Sandbox: the mock inverter's clean JSON API (`X-API-Key` header, one device per latest-data call)."""

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
    parse_utc,
    retry_after,
)
from models.brands.quota import SECOND, Quota, Window

PREFIX = "/sandbox/v1"


class SandboxAdapter(BrandAdapter):
    name = "sandbox"
    credential_fields = ("api_key",)
    batch_size = 1
    settings_prefix = "sandbox"
    paths = (PREFIX,)
    # The mock's documented "real" limits (mock_inverter/README.md, Rate limits): latest data 10 calls per
    # second per key and once per device per 5 minutes; the device list once per 5 s.
    quota = Quota(
        windows=(
            Window("latest data per second per key", 10, SECOND, endpoints=("latest",)),
            Window("latest data per device", 1, 300.0, scope="device", endpoints=("latest",)),
            Window("device list per key", 1, 5.0, endpoints=("devices",)),
        ),
        throttle_signals=("HTTP 429",),
    )

    def _get(self, path: str):
        response = self._send("GET", PREFIX + path, headers={"X-API-Key": self.credentials["api_key"]})
        body = self._json(response)
        if response.status_code == 200:
            return body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        code = error.get("code") if isinstance(error, dict) else None
        message = (
            f"sandbox: {error.get('message') or 'HTTP ' + str(response.status_code)}"
            if isinstance(error, dict)
            else f"sandbox: HTTP {response.status_code}"
        )
        if response.status_code == 429:
            raise BrandError(RATE_LIMITED, message, status=429, brand_code=code, retry_after_s=retry_after(response))
        if response.status_code in (401, 403):
            raise BrandError(AUTH, message, status=response.status_code, brand_code=code)
        if response.status_code == 404 and code == "unknown_device":
            raise BrandError(UNKNOWN_DEVICE, message, status=404, brand_code=code)
        raise BrandError(BAD_REPLY, message, status=response.status_code, brand_code=code)

    def list_devices(self) -> dict[str, Device]:
        body = self._get("/devices")
        rows = body.get("devices") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise BrandError(BAD_REPLY, "sandbox: device list without a 'devices' list")
        devices = {}
        for row in rows:
            if isinstance(row, dict) and row.get("serial") and row.get("type"):
                plant = row.get("plant_id")
                devices[row["serial"]] = Device(
                    serial=row["serial"],
                    device_type=str(row["type"]),
                    model=row.get("model"),
                    plant_id=None if plant is None else str(plant),
                    timezone=row.get("timezone"),
                )
        return devices

    def fetch_latest(self, devices: list[PolledDevice]) -> BatchResult:
        result = BatchResult()
        for device in devices:
            try:
                body = self._get(f"/devices/{quote(device.serial, safe='')}/latest")
                reading = normalise(device.serial, body)
            except BrandError as exc:
                if exc.kind not in (UNKNOWN_DEVICE, BAD_REPLY):
                    raise
                result.failed[device.serial] = exc
                continue
            result.add(device.serial, reading)
        return result


def normalise(serial: str, body) -> Reading:
    if not isinstance(body, dict) or not isinstance(body.get("timestamp"), str):
        raise BrandError(BAD_REPLY, f"sandbox: latest data for {serial} has no timestamp")
    try:
        at = parse_utc(body["timestamp"])
    except ValueError:
        raise BrandError(BAD_REPLY, f"sandbox: latest data for {serial} has an unreadable timestamp") from None
    soc = number(body.get("battery_soc_pct"))
    battery = None
    if soc is not None:
        battery = (number(body.get("battery_charge_w")) or 0.0) - (number(body.get("battery_discharge_w")) or 0.0)
    return Reading(
        serial=serial,
        time=at,
        status=str(body.get("status") or "unknown"),
        pv_power_w=number(body.get("pv_power_w")),
        ac_power_w=number(body.get("ac_power_w")),
        load_power_w=number(body.get("load_power_w")),
        grid_import_w=number(body.get("grid_import_w")),
        grid_export_w=number(body.get("grid_export_w")),
        battery_power_w=battery,
        battery_soc_pct=soc,
        energy_today_wh=number(body.get("pv_energy_today_wh")),
        energy_total_wh=number(body.get("pv_energy_total_wh")),
        temperature_c=number(body.get("temperature_c")),
    )
