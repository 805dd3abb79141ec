"""Enphase Enlighten API v4: OAuth 2.0 access tokens that expire, plus the application's API key on every call.

The homeowner authorizes the application outside this service; a connection carries the application's
`client_id`, `client_secret` and `api_key`, a `refresh_token`, and the `plan` the application is on. The
adapter exchanges the refresh token for an access token (HTTP Basic client_id:client_secret on
`POST /oauth/token`), refreshes before the access token expires and once more on a 401, and keeps the
newest tokens in `self.credentials`: every refresh answers a new refresh token and the used one stops
working, so each change is handed to `on_credentials_changed` at once for the owner to store.

A device here is an Enphase *system* (a site behind one gateway): its serial is the system_id, its device
type the battery group of its devices list ("encharges" or "acbs") or "micros" for PV only. Latest data is
the system summary (production, energy, battery power), plus the battery telemetry's state of charge for a
system with batteries. Plans limit calls per API key per minute and per calendar month; a 429 has no
Retry-After.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

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
    retry_after,
)
from models.brands.quota import MINUTE, MONTH, Quota, Window

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

API = "/api/v4"
TOKEN_PATH = "/oauth/token"
PAGE_SIZE = 100
BATTERY_GROUPS = ("encharges", "acbs")
# "latest" is the poller's call: a system's summary, plus its battery telemetry when it has a battery.
API_ENDPOINTS = ("systems", "devices", "summary", "battery", "latest")
REFRESH_MARGIN_S = 300.0  # refresh when 5 minutes (or 10% of a shorter lifetime) remain
REFRESH_MARGIN_SHARE = 0.1


def plan_quota(per_minute: int, per_month: int) -> Quota:
    """A plan's limits: per API key, all API calls together, a rolling minute and a calendar month (UTC).
    Token refreshes go to the OAuth endpoint and are not API calls."""
    return Quota(
        windows=(
            Window("per minute per API key", per_minute, MINUTE, endpoints=API_ENDPOINTS),
            Window("monthly per API key", per_month, MONTH, endpoints=API_ENDPOINTS, calendar=True),
        ),
        throttle_signals=("HTTP 429 (no Retry-After)",),
        requests_per_latest={group: 2 for group in BATTERY_GROUPS},
    )


# The developer plans' documented limits; "demo" is the mock's fast profile, for `make run` and tests.
PLANS = {
    "watt": plan_quota(10, 1_000),
    "kilowatt": plan_quota(50, 50_000),
    "megawatt": plan_quota(100, 300_000),
    "demo": plan_quota(600, 10_000_000),
}
DEFAULT_PLAN = "watt"

SYSTEM_STATUS = {"normal": "normal", "storage_idle": "normal", "comm": "offline"}


class EnphaseAdapter(BrandAdapter):
    name = "enphase"
    credential_fields = ("client_id", "client_secret", "api_key", "refresh_token")
    credential_options = {"plan": tuple(PLANS)}  # first value is the default
    batch_size = 1
    settings_prefix = "enphase"
    quota = PLANS[DEFAULT_PLAN]
    paths = (API, TOKEN_PATH)
    root_prefixes = ("", "/enphase")

    def __init__(
        self,
        base_url: str,
        credentials: dict,
        policy,
        timeout_s: float = 10.0,
        on_credentials_changed: Callable[[dict], None] | None = None,
    ):
        super().__init__(base_url, dict(credentials), policy, timeout_s, on_credentials_changed)
        self.quota = self.quota_for(self.credentials)
        # One refresh at a time: concurrent calls wait for it and then use its token (a refresh token works once).
        self._refresh_lock = threading.Lock()

    @classmethod
    def quota_for(cls, credentials: dict) -> Quota:
        return PLANS.get(credentials.get("plan") or DEFAULT_PLAN, PLANS[DEFAULT_PLAN])

    # -- tokens ------------------------------------------------------------------------------------
    def _token_fresh(self) -> bool:
        expires_at = number(self.credentials.get("access_expires_at"))
        if not self.credentials.get("access_token") or expires_at is None:
            return False
        lifetime = number(self.credentials.get("access_lifetime_s")) or 0.0
        margin = min(REFRESH_MARGIN_S, REFRESH_MARGIN_SHARE * lifetime)
        return expires_at - time.time() > margin

    def _access_token(self) -> str:
        if not self._token_fresh():
            with self._refresh_lock:
                if not self._token_fresh():
                    self._refresh()
        return self.credentials["access_token"]

    def _refresh_after_401(self, rejected: str) -> None:
        with self._refresh_lock:
            if self.credentials.get("access_token") == rejected:  # nobody refreshed meanwhile
                self._refresh()

    def _refresh(self) -> None:
        creds = self.credentials
        response = self._send(
            "POST",
            TOKEN_PATH,
            params={"grant_type": "refresh_token", "refresh_token": creds["refresh_token"]},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        body = self._json(response)
        if response.status_code == 429:
            raise BrandError(
                RATE_LIMITED,
                "enphase token refresh: too many requests",
                status=429,
                retry_after_s=retry_after(response),
            )
        error = body if isinstance(body, dict) else {}
        if response.status_code in (400, 401):  # unauthorized client, or invalid_grant: refresh token spent/expired
            described = error.get("error_description") or f"HTTP {response.status_code}"
            raise BrandError(
                AUTH,
                f"enphase token refresh refused: {described} (the homeowner may need to "
                "authorize the application again)",
                status=response.status_code,
                brand_code=error.get("error"),
            )
        if response.status_code != 200:
            raise BrandError(
                BAD_REPLY, f"enphase token refresh: HTTP {response.status_code}", status=response.status_code
            )
        expires_in = number(error.get("expires_in"))
        if not error.get("access_token") or not error.get("refresh_token") or not expires_in:
            raise BrandError(BAD_REPLY, "enphase token refresh: reply without access_token, refresh_token, expires_in")
        creds.update(
            access_token=body["access_token"],
            refresh_token=body["refresh_token"],
            access_expires_at=round(time.time() + expires_in, 3),
            access_lifetime_s=expires_in,
        )
        log.info("enphase: access token refreshed for client %s, valid %.0f s", creds["client_id"], expires_in)
        self.credentials_changed()

    # -- calls -------------------------------------------------------------------------------------
    def _get(self, path: str, params: dict | None = None):
        token = self._access_token()
        response = self._call(path, token, params)
        if response.status_code == 401:  # expired or revoked early: one refresh, one retry
            self._refresh_after_401(token)
            response = self._call(path, self.credentials["access_token"], params)
        body = self._json(response)
        if response.status_code == 200:
            return body
        details = body.get("details") if isinstance(body, dict) else None
        message = f"enphase {path}: HTTP {response.status_code}" + (f" {details}" if details else "")
        if response.status_code == 429:
            raise BrandError(RATE_LIMITED, message, status=429, retry_after_s=retry_after(response))
        if response.status_code == 401:
            raise BrandError(AUTH, message, status=401)
        if response.status_code in (403, 404):  # a system these credentials may not see is, to us, unknown
            raise BrandError(UNKNOWN_DEVICE, message, status=response.status_code)
        raise BrandError(BAD_REPLY, message, status=response.status_code)

    def _call(self, path: str, token: str, params: dict | None) -> requests.Response:
        return self._send(
            "GET",
            API + path,
            params={**(params or {}), "key": self.credentials["api_key"]},
            headers={"Authorization": f"Bearer {token}"},
        )

    # -- the interface -----------------------------------------------------------------------------
    def list_devices(self) -> dict[str, Device]:
        """Every system these credentials see (paged, 100 a call). The device type comes from each system's
        devices list, asked only for the serial being onboarded (see found): one call per onboarding."""
        systems, page = {}, 1
        while True:
            body = self._get("/systems", {"page": page, "size": PAGE_SIZE})
            rows = body.get("systems") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise BrandError(BAD_REPLY, "enphase /systems: reply without a systems list")
            for row in rows:
                if isinstance(row, dict) and row.get("system_id") is not None:
                    serial = str(row["system_id"])
                    systems[serial] = Device(
                        serial=serial,
                        device_type="",
                        model=row.get("name"),
                        plant_id=serial,
                        timezone=row.get("timezone") or None,
                    )
            if not rows or page * PAGE_SIZE >= (number(body.get("total")) or 0):
                return systems
            page += 1

    def found(self, devices: dict[str, Device], serial: str) -> Device:
        device = super().found(devices, serial)
        if device.device_type:
            return device
        body = self._get(f"/systems/{serial}/devices")
        groups = body.get("devices") if isinstance(body, dict) else None
        if not isinstance(groups, dict):
            raise BrandError(BAD_REPLY, f"enphase /systems/{serial}/devices: reply without a devices object")
        kind = next((g for g in BATTERY_GROUPS if groups.get(g)), "micros")
        return dataclasses.replace(device, device_type=kind)

    def fetch_latest(self, devices: list[PolledDevice]) -> BatchResult:
        result = BatchResult()
        for device in devices:
            try:
                reading = self._latest(device)
            except BrandError as exc:
                if exc.kind not in (UNKNOWN_DEVICE, BAD_REPLY):
                    raise
                result.failed[device.serial] = exc
                continue
            result.add(device.serial, reading)
        return result

    def _latest(self, device: PolledDevice) -> Reading:
        summary = self._get(f"/systems/{device.serial}/summary")
        if not isinstance(summary, dict) or number(summary.get("last_report_at")) is None:
            raise BrandError(BAD_REPLY, f"enphase summary of {device.serial}: no last_report_at")
        soc = None
        raw_status = summary.get("status")
        if device.device_type in BATTERY_GROUPS and raw_status != "comm":
            soc = battery_soc(self._get(f"/systems/{device.serial}/telemetry/battery"))
        return normalise(device, summary, soc)


def battery_soc(body) -> float | None:
    """The aggregate state of charge ("97%"), else the latest interval's."""
    if not isinstance(body, dict):
        return None
    aggregate = body.get("last_reported_aggregate_soc")
    if isinstance(aggregate, str) and number(aggregate.rstrip("%").strip()) is not None:
        return number(aggregate.rstrip("%").strip())
    intervals = body.get("intervals")
    if isinstance(intervals, list) and intervals and isinstance(intervals[-1], dict):
        soc = intervals[-1].get("soc")
        return number(soc.get("percent")) if isinstance(soc, dict) else None
    return None


def normalise(device: PolledDevice, summary: dict, soc: float | None) -> Reading:
    power = number(summary.get("current_power"))
    raw_status = summary.get("status")
    status = SYSTEM_STATUS.get(raw_status, "fault")
    if status == "normal" and not power:
        status = "waiting"
    charge, discharge = number(summary.get("battery_charge_w")), number(summary.get("battery_discharge_w"))
    battery = None if charge is None and discharge is None else (charge or 0.0) - (discharge or 0.0)
    return Reading(
        serial=device.serial,
        time=float(number(summary["last_report_at"])),
        status=status,
        pv_power_w=power,
        ac_power_w=power,  # microinverters: production is AC at the panel
        battery_power_w=battery,
        battery_soc_pct=soc,
        energy_today_wh=number(summary.get("energy_today")),
        energy_total_wh=number(summary.get("energy_lifetime")),
    )
