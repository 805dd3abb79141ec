"""Growatt OpenAPI v1 (`/v1/`): a `token` header, replies `{"data", "error_code", "error_msg"}` with HTTP 200 even
for errors, and one device per latest-data call, on a route per device type.

The device list is per plant: the plant list (with each plant's time zone) first, then one device list per
plant. Device types are the numeric codes the v1 device list reports (1 inv, 2 storage, 5 sph/mix, 7 min/tlx);
their latest-data rows use the same field names as v4's queryLastData, so v4's per-type tables read them.
"""

from __future__ import annotations

import math

from models.brands import growatt_v4
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
    number,
)
from models.brands.quota import MINUTE, SECOND, Quota, Window

PREFIX = "/v1"
PAGE_SIZE = 100

OK = 0
SYSTEM_ERROR = 10001
NOT_FOUND = 10002  # plant or device does not exist
PARAMETER_ERROR = 10003
PERMISSION_DENIED = 10011
FREQUENTLY_ACCESS = 10012

# v1 device type code -> (latest-data route, the form field naming the serial, v4's name for its field table)
ROUTES = {
    "1": ("device/inverter/last_new_data", "inverter_sn", "inv"),
    "2": ("device/storage/storage_last_data", "storage_sn", "storage"),
    "5": ("device/mix/mix_last_data", "mix_sn", "sph"),
    "7": ("device/tlx/tlx_last_data", "tlx_sn", "min"),
}


class GrowattV1Adapter(BrandAdapter):
    name = "growatt_v1"
    credential_fields = ("token",)
    batch_size = 1
    settings_prefix = "growatt_v1"
    paths = (PREFIX,)
    quota = Quota(
        windows=(
            Window("latest data per device", 1, 5 * MINUTE, scope="device", endpoints=("latest",)),
            Window("latest data per key", 10, SECOND, scope="endpoint", endpoints=("latest",)),
            Window("plant list per key", 1, 5 * SECOND, scope="endpoint", endpoints=("sites",)),
            Window("device list per key", 1, 5 * SECOND, scope="endpoint", endpoints=("devices",)),
        ),
        throttle_signals=("error_code 10012",),
    )

    def _call(self, method: str, path: str, what: str, **kwargs):
        response = self._send(method, f"{PREFIX}/{path}", headers={"token": self.credentials["token"]}, **kwargs)
        body = self._json(response)
        if not isinstance(body, dict) or "error_code" not in body:
            raise BrandError(BAD_REPLY, f"growatt_v1 {what}: reply without an error_code", status=response.status_code)
        code = body.get("error_code")
        if code == OK:
            return body.get("data")
        message = f"growatt_v1 {what}: {body.get('error_msg') or 'error_code ' + str(code)}"
        if code == FREQUENTLY_ACCESS:
            raise BrandError(RATE_LIMITED, message, brand_code=code)
        if code == PERMISSION_DENIED:
            raise BrandError(AUTH, message, brand_code=code)
        if code == NOT_FOUND:
            raise BrandError(UNKNOWN_DEVICE, message, brand_code=code)
        raise BrandError(BAD_REPLY, message, status=response.status_code, brand_code=code)

    def _pages(self, path: str, key: str, params: dict) -> list[dict]:
        rows, page = [], 1
        while True:
            data = self._call("GET", path, path, params={**params, "page": page, "perpage": PAGE_SIZE})
            batch = data.get(key) if isinstance(data, dict) else None
            if not isinstance(batch, list):
                raise BrandError(BAD_REPLY, f"growatt_v1 {path}: reply without a {key!r} list")
            rows.extend(row for row in batch if isinstance(row, dict))
            pages = math.ceil((number(data.get("count")) or 0) / PAGE_SIZE)
            if not batch or page >= pages:
                return rows
            page += 1

    def list_devices(self) -> dict[str, Device]:
        devices = {}
        for plant in self._pages("plant/list", "plants", {}):
            plant_id = plant.get("plant_id")
            if plant_id is None:
                continue
            zone = plant.get("timezone")
            zone = zone if isinstance(zone, str) and growatt_v4._is_zone(zone) else None
            for row in self._pages("device/list", "devices", {"plant_id": plant_id}):
                serial, code = row.get("device_sn"), row.get("type")
                if serial and code is not None:
                    devices[serial] = Device(
                        serial=serial,
                        device_type=str(code),
                        model=row.get("model"),
                        plant_id=str(plant_id),
                        timezone=zone,
                    )
        return devices

    def fetch_latest(self, devices: list[PolledDevice]) -> BatchResult:
        result = BatchResult()
        for device in devices:
            route = ROUTES.get(device.device_type)
            if route is None:
                result.failed[device.serial] = BrandError(
                    BAD_REPLY, f"growatt_v1: no latest-data route for device type {device.device_type!r}"
                )
                continue
            path, field_name, table = route
            try:
                row = self._call("POST", path, path, data={field_name: device.serial})
                if not isinstance(row, dict):
                    raise BrandError(BAD_REPLY, f"growatt_v1 {path}: reply without data for {device.serial}")
                reading = growatt_v4.normalise(PolledDevice(device.serial, table, device.timezone), row)
            except BrandError as exc:
                if exc.kind not in (UNKNOWN_DEVICE, BAD_REPLY):
                    raise
                result.failed[device.serial] = exc
                continue
            if reading.status == "offline" or row.get("lost") is True:
                result.offline.add(device.serial)
            else:
                result.readings[device.serial] = reading
        return result
