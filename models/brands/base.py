"""The small interface every brand adapter implements, and the one normalised reading they all produce.

An adapter knows one brand's HTTP dialect: how to discover a device (its type comes from the brand's
device list), how to fetch the latest data of a batch of devices, and how a reply signals rate
limiting, an offline device or an error. It knows nothing about scheduling: the poller decides when.
Adapters call the brand through a guarded `requests` session (models/net/transport.py: the destination
policy at every connect, no proxies, no redirects), cooperative under gevent, with a timeout on every call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from models.base import parse_iso
from models.brands.quota import Quota
from models.net.policy import BlockedDestination, DestinationPolicy
from models.net.urls import InvalidUrl, parse_base_url, redact_urls

if TYPE_CHECKING:
    import requests

# BrandError kinds. The poller backs the whole brand off on RATE_LIMITED, SERVER_ERROR and
# UNREACHABLE; onboarding turns each into its own HTTP answer.
UNREACHABLE = "unreachable"  # connection refused/reset, DNS, timeout
SERVER_ERROR = "server_error"  # the brand answered 5xx
RATE_LIMITED = "rate_limited"  # the brand says we call too often
AUTH = "auth"  # the brand refused our credentials
BAD_REPLY = "bad_reply"  # a reply we cannot read (malformed JSON, unexpected shape)
UNKNOWN_DEVICE = "unknown_device"
OFFLINE = "offline"  # the brand says the device (or every device of a batch) is offline
BLOCKED = "blocked_destination"  # the base URL leads to an address the destination policy refuses
BRAND_WIDE = (UNREACHABLE, SERVER_ERROR, RATE_LIMITED, AUTH, BLOCKED)


class BrandError(Exception):
    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        brand_code=None,
        retry_after_s: float | None = None,
        serials: tuple = (),
    ):
        message = redact_urls(message)  # a brand's URLs may carry keys in their query strings
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.brand_code = brand_code
        self.retry_after_s = retry_after_s
        self.serials = tuple(serials)

    def details(self) -> dict:
        return {
            k: v
            for k, v in {
                "kind": self.kind,
                "message": self.message,
                "http_status": self.status,
                "brand_code": self.brand_code,
            }.items()
            if v is not None
        }


@dataclass(frozen=True)
class Device:
    """What the brand's device list says about one device."""

    serial: str
    device_type: str
    model: str | None = None
    plant_id: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class PolledDevice:
    """What the poller hands an adapter: one onboarded device."""

    serial: str
    device_type: str
    timezone: str | None = None


@dataclass(frozen=True)
class Reading:
    """One normalised reading. Powers in W, energies in Wh, time in UTC epoch seconds.

    battery_power_w is positive while charging and negative while discharging; it, the state of
    charge and the battery voltage are None for a device without a battery. status is the device's
    own: waiting (no sun), normal, offline, or fault.
    """

    serial: str
    time: float
    status: str
    pv_power_w: float | None = None
    ac_power_w: float | None = None
    load_power_w: float | None = None
    grid_import_w: float | None = None
    grid_export_w: float | None = None
    battery_power_w: float | None = None
    battery_soc_pct: float | None = None
    battery_voltage_v: float | None = None
    energy_today_wh: float | None = None
    energy_total_wh: float | None = None
    temperature_c: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BatchResult:
    """The outcome of one latest-data call: readings by serial, devices reported offline, and
    devices the brand does not know (or answered unreadably for)."""

    readings: dict = field(default_factory=dict)
    offline: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)  # serial -> BrandError

    def add(self, serial: str, reading: Reading) -> None:
        """A device's reading, or the device counted offline when the brand says so in it."""
        if reading.status == "offline":
            self.offline.add(serial)
        else:
            self.readings[serial] = reading


class BrandAdapter:
    #: the name in the registry and in POST /inverters
    name = ""
    #: the credential fields POST /inverters expects in "connection", beside base_url (all required)
    credential_fields: tuple[str, ...] = ()
    #: optional connection fields with their allowed values, the first being the default (e.g. a plan)
    credential_options: dict[str, tuple[str, ...]] = {}
    #: most serials one latest-data call may carry
    batch_size = 1
    #: Settings attribute prefix for this brand's default requested poll interval (<prefix>_poll_interval_s)
    settings_prefix = ""
    #: the brand's documented limits, as data for the poll planner (models/brands/quota.py)
    quota: Quota = Quota()
    #: the paths this brand's calls start with: the adapter adds them to the base URL
    paths: tuple = ()
    #: path prefixes a base URL may carry before them ("": none), e.g. ("", "/solaredge") when the brand's
    #: real API is at a host's root and the mock serves it under a prefix
    root_prefixes: tuple[str, ...] = ("",)

    def __init__(
        self,
        base_url: str,
        credentials: dict,
        policy: DestinationPolicy,
        timeout_s: float = 10.0,
        on_credentials_changed: Callable[[dict], None] | None = None,
    ):
        self.credentials = credentials
        self.on_credentials_changed = on_credentials_changed
        self.timeout_s = timeout_s
        # requests (~50 ms of CPU to import) comes with the first adapter, not with this module: the web
        # imports the registry at start for its forms, and needs requests only when it onboards.
        from models.net.transport import GuardedSession

        self.session = GuardedSession(policy)
        try:
            root = parse_base_url(base_url, self.root_prefixes)
            self.base_url, self.unusable = root.origin + root.path, None
        except InvalidUrl as exc:  # a connection stored before base URLs were checked: every call says why
            self.base_url, self.unusable = "<invalid base URL>", exc.message

    @classmethod
    def quota_for(cls, credentials: dict) -> Quota:
        """The limits of a connection with these credentials (a brand whose plans differ overrides this)."""
        return cls.quota

    def credentials_changed(self) -> None:
        """The adapter rotated its credentials (e.g. a new OAuth refresh token): hand the new set to whoever stores
        the connection, at once, since the old refresh token no longer works."""
        if self.on_credentials_changed is not None:
            self.on_credentials_changed(dict(self.credentials))

    # -- the interface -----------------------------------------------------------------------------
    def list_devices(self) -> dict[str, Device]:
        """Every device these credentials see, by serial, with all onboarding needs (a cached list is reused)."""
        raise NotImplementedError

    def discover(self, serial: str) -> Device:
        """The device as the brand's device list describes it; BrandError(UNKNOWN_DEVICE) if absent."""
        return self.found(self.list_devices(), serial)

    def found(self, devices: dict[str, Device], serial: str) -> Device:
        """`serial` from a device list (possibly a cached one); BrandError(UNKNOWN_DEVICE) if absent."""
        device = devices.get(serial)
        if device is None:
            raise BrandError(UNKNOWN_DEVICE, f"{self.name}: no device {serial!r} in the device list")
        return device

    def fetch_latest(self, devices: list[PolledDevice]) -> BatchResult:
        """Latest data of up to batch_size devices that share batch_key; BrandError if the whole call failed."""
        raise NotImplementedError

    @staticmethod
    def batch_key(device: PolledDevice) -> str:
        """Devices with the same key may share one latest-data call."""
        return ""

    # -- shared plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self.session.close()

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        import requests

        from models.net.transport import describe_failure

        if self.unusable:
            raise BrandError(UNREACHABLE, f"{self.name}: the connection's base URL {self.unusable}")
        try:
            return self.session.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
        except BlockedDestination as exc:
            raise BrandError(BLOCKED, str(exc)) from None
        except requests.Timeout:
            raise BrandError(UNREACHABLE, f"{self.name}: no answer within {self.timeout_s:g} s") from None
        except requests.RequestException as exc:
            kind, message = describe_failure(exc, self.timeout_s)
            if kind == "blocked_destination":
                raise BrandError(BLOCKED, message) from None
            raise BrandError(UNREACHABLE, f"{self.name}: cannot reach {self.base_url}: {message}") from None

    def _json(self, response: requests.Response):
        if response.status_code >= 500:
            raise BrandError(
                SERVER_ERROR,
                f"{self.name} answered HTTP {response.status_code}",
                status=response.status_code,
                retry_after_s=retry_after(response),
            )
        try:
            return response.json()
        except ValueError:
            raise BrandError(
                BAD_REPLY,
                f"{self.name} answered HTTP {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from None


def retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def number(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_utc(text: str) -> float:
    """ISO-8601 with Z or an offset to epoch seconds, rounded to the millisecond (readings' unique key)."""
    return round(parse_iso(text), 3)


def parse_local(text: str, zone: str | None) -> float:
    """A brand's local wall time without offset ("YYYY-MM-DD HH:MM:SS") in the plant's zone (UTC if unknown)."""
    value = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    value = value.replace(tzinfo=ZoneInfo(zone) if zone else timezone.utc)
    return round(value.timestamp(), 3)
