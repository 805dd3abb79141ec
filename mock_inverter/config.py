"""Fleet configuration: parsing, validation and a generator for large benchmark fleets.

A broken config must stop the process with one line naming the file, the device and the field, so every
check raises ConfigError with those three pieces instead of letting a KeyError escape later.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEMO_FLEET_PATH = Path(__file__).with_name("demo_fleet.json")

SANDBOX_TYPES = ("hybrid", "inverter", "storage")
GROWATT_TYPES = ("inv", "storage", "sph", "min")
GROWATT_TYPE_ALIASES = {"mix": "sph", "tlx": "min"}
SOLAREDGE_TYPES = ("inverter", "storedge")  # storedge: an inverter with a battery connected
SOLAREDGE_POWER_UNITS = ("W", "kW")
ENPHASE_TYPES = ("micros", "encharges")  # the device group a system's devices list names: PV only, or with IQ Batteries
# FusionSolar: residential inverters (devTypeId 38); a battery (39) and a grid meter (47) are listed beside each.
FUSIONSOLAR_TYPES = ("inverter",)
FUSIONSOLAR_DEFAULT_ACCOUNTS = [{"userName": "demo-fusionsolar", "systemCode": "demo-fusionsolar-code"}]
DEVICE_TYPES = {
    "sandbox": SANDBOX_TYPES,
    "growatt": GROWATT_TYPES,
    "solaredge": SOLAREDGE_TYPES,
    "enphase": ENPHASE_TYPES,
    "fusionsolar": FUSIONSOLAR_TYPES,
}
DEFAULT_CREDENTIALS = {
    "sandbox": ["demo-sandbox-key"],
    "growatt": ["demo-growatt-token"],
    "solaredge": ["demo-solaredge-key"],
}
# The config field listing each brand's keys: what the brand itself calls its credential.
CREDENTIAL_FIELDS = {"sandbox": "api_keys", "growatt": "tokens", "solaredge": "api_keys"}
ENPHASE_PLANS = ("watt", "kilowatt", "megawatt", "demo")
DEFAULT_ENPHASE_APP = {
    "client_id": "demo-enphase-client",
    "client_secret": "demo-enphase-secret",
    "api_key": "demo-enphase-key",
    "plan": "watt",
    "refresh_tokens": ["demo-enphase-refresh"],
}


class ConfigError(Exception):
    def __init__(self, source: str, device: str, field_name: str, problem: str):
        self.line = f"{source}: device {device}: field {field_name}: {problem}"
        super().__init__(self.line)


@dataclass(frozen=True)
class Battery:
    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    soc_min_pct: float = 10.0
    soc_max_pct: float = 100.0
    round_trip_efficiency: float = 0.9
    initial_soc_pct: float = 50.0


@dataclass(frozen=True)
class LoadProfile:
    base_w: float = 250.0
    morning_peak_w: float = 800.0
    evening_peak_w: float = 1500.0
    spike_w: float = 2000.0
    spikes_per_hour: float = 0.5


@dataclass(frozen=True)
class Device:
    serial: str
    brand: str
    type: str
    model: str
    plant_id: int
    latitude: float
    longitude: float
    timezone: str
    pv_peak_w: float
    tilt: float
    azimuth: float
    battery: Battery | None
    load: LoadProfile
    seed: int
    weather_seed: int
    cloudiness: float
    tick_s: float


@dataclass(frozen=True)
class Plant:
    plant_id: int
    name: str
    brand: str
    city: str
    country: str
    latitude: float
    longitude: float
    timezone: str
    devices: tuple[Device, ...]
    power_unit: str = "W"  # solaredge: the unit its currentPowerFlow reports in (W or kW)


@dataclass(frozen=True)
class EnphaseApp:
    """A developer application (client id/secret, API key, plan) and the refresh tokens its users granted."""

    client_id: str
    client_secret: str
    api_key: str
    plan: str
    refresh_tokens: tuple[str, ...]
    limits: dict  # {"per_minute", "per_month"}: overrides the plan's numbers (tests)


@dataclass(frozen=True)
class Fleet:
    source: str
    seed: int
    tick_s: float
    credentials: dict[str, tuple[str, ...]]
    rate_limits: dict[str, dict]
    plants: tuple[Plant, ...]
    devices: tuple[Device, ...] = field(default=())
    enphase_apps: tuple[EnphaseApp, ...] = ()
    enphase_token_lifetime_s: dict = field(default_factory=dict)  # {"access", "refresh"} overrides

    def plants_of(self, brand: str) -> list[Plant]:
        return [p for p in self.plants if p.brand == brand]


def load_fleet(path: str | Path | None = None, seed: int | None = None) -> Fleet:
    path = Path(path) if path else DEMO_FLEET_PATH
    source = str(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(source, "-", "-", f"cannot read file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(source, "-", "-", f"invalid JSON at line {exc.lineno} column {exc.colno}") from None
    return parse_fleet(raw, source, seed)


def parse_fleet(raw: dict, source: str, seed: int | None = None) -> Fleet:
    if not isinstance(raw, dict):
        raise ConfigError(source, "-", "-", "top level must be a JSON object")
    fleet_seed = seed if seed is not None else _number(raw, "seed", source, "-", default=0, integer=True)
    tick_s = _number(raw, "tick_s", source, "-", default=1.0, minimum=0.01)
    credentials, rate_limits = _brands(raw.get("brands", {}), source)
    plants_raw = raw.get("plants")
    if not isinstance(plants_raw, list) or not plants_raw:
        raise ConfigError(source, "-", "plants", "must be a non-empty list")
    plants, serials, plant_ids = [], set(), set()
    for index, plant_raw in enumerate(plants_raw):
        plant = _plant(plant_raw, index, source, fleet_seed, tick_s)
        if plant.plant_id in plant_ids:
            raise ConfigError(source, "-", f"plants[{index}].plant_id", f"duplicate plant id {plant.plant_id}")
        plant_ids.add(plant.plant_id)
        for device in plant.devices:
            if device.serial in serials:
                raise ConfigError(source, device.serial, "serial", "duplicate serial")
            serials.add(device.serial)
        plants.append(plant)
    devices = tuple(d for p in plants for d in p.devices)
    apps, lifetimes = _enphase(raw.get("brands", {}).get("enphase", {}), source)
    return Fleet(source, fleet_seed, tick_s, credentials, rate_limits, tuple(plants), devices, apps, lifetimes)


def _enphase(raw, source):
    where = "brands.enphase"
    if not isinstance(raw, dict):
        raise ConfigError(source, "-", where, "must be an object")
    apps = []
    for index, app in enumerate(raw.get("applications", [DEFAULT_ENPHASE_APP])):
        label = f"{where}.applications[{index}]"
        if not isinstance(app, dict):
            raise ConfigError(source, "-", label, "must be an object")
        for name in ("client_id", "client_secret", "api_key"):
            if not isinstance(app.get(name), str) or not app[name]:
                raise ConfigError(source, "-", f"{label}.{name}", "must be a non-empty string")
        plan = app.get("plan", "watt")
        if plan not in ENPHASE_PLANS:
            raise ConfigError(source, "-", f"{label}.plan", f"must be one of {', '.join(ENPHASE_PLANS)}")
        tokens = app.get("refresh_tokens", [])
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ConfigError(source, "-", f"{label}.refresh_tokens", "must be a list of non-empty strings")
        limits = app.get("limits", {})
        if not isinstance(limits, dict) or not all(
            k in ("per_minute", "per_month") and isinstance(v, int) and v > 0 for k, v in limits.items()
        ):
            raise ConfigError(source, "-", f"{label}.limits", "per_minute and per_month must be positive integers")
        apps.append(EnphaseApp(app["client_id"], app["client_secret"], app["api_key"], plan, tuple(tokens), limits))
    lifetimes = raw.get("token_lifetime_s", {})
    if not isinstance(lifetimes, dict) or not all(
        k in ("access", "refresh") and isinstance(v, (int, float)) and v > 0 for k, v in lifetimes.items()
    ):
        raise ConfigError(source, "-", f"{where}.token_lifetime_s", "access and refresh must be positive numbers")
    return tuple(apps), {k: float(v) for k, v in lifetimes.items()}


def _brands(raw, source):
    if not isinstance(raw, dict):
        raise ConfigError(source, "-", "brands", "must be an object")
    credentials, rate_limits = {}, {}
    for brand, default in DEFAULT_CREDENTIALS.items():
        entry = raw.get(brand, {})
        keys = entry.get(CREDENTIAL_FIELDS[brand], default)
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError(source, "-", f"brands.{brand}", "keys must be a list of non-empty strings")
        credentials[brand] = tuple(keys)
        limits = entry.get("rate_limits", {})
        if not isinstance(limits, dict):
            raise ConfigError(source, "-", f"brands.{brand}.rate_limits", "must be an object")
        rate_limits[brand] = limits
    credentials["fusionsolar"], rate_limits["fusionsolar"] = _fusionsolar_accounts(raw.get("fusionsolar", {}), source)
    return credentials, rate_limits


def _fusionsolar_accounts(entry, source):
    """FusionSolar northbound accounts: (userName, systemCode) pairs, and the brand's limit overrides."""
    where = "brands.fusionsolar"
    accounts = entry.get("accounts", FUSIONSOLAR_DEFAULT_ACCOUNTS) if isinstance(entry, dict) else None
    if not isinstance(accounts, list) or not all(
        isinstance(a, dict) and all(isinstance(a.get(k), str) and a.get(k) for k in ("userName", "systemCode"))
        for a in accounts
    ):
        raise ConfigError(source, "-", f"{where}.accounts", "must be a list of {userName, systemCode} strings")
    limits = entry.get("rate_limits", {})
    if not isinstance(limits, dict):
        raise ConfigError(source, "-", f"{where}.rate_limits", "must be an object")
    return tuple((a["userName"], a["systemCode"]) for a in accounts), limits


def _plant(raw, index, source, fleet_seed, tick_s) -> Plant:
    where = f"plants[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(source, "-", where, "must be an object")
    plant_id = _number(raw, "plant_id", source, "-", integer=True, prefix=where)
    brand = raw.get("brand")
    if brand not in DEVICE_TYPES:
        raise ConfigError(source, "-", f"{where}.brand", f"must be one of {', '.join(DEVICE_TYPES)}")
    power_unit = raw.get("power_unit", "W")
    if power_unit not in SOLAREDGE_POWER_UNITS:
        raise ConfigError(source, "-", f"{where}.power_unit", "must be 'W' or 'kW'")
    lat = _number(raw, "latitude", source, "-", minimum=-66.0, maximum=66.0, prefix=where)
    lon = _number(raw, "longitude", source, "-", minimum=-180.0, maximum=180.0, prefix=where)
    tz = raw.get("timezone")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, TypeError, ValueError):
        raise ConfigError(source, "-", f"{where}.timezone", f"unknown time zone {tz!r}") from None
    weather_seed = _number(raw, "seed", source, "-", default=fleet_seed * 7919 + plant_id, integer=True, prefix=where)
    devices_raw = raw.get("devices")
    if not isinstance(devices_raw, list) or not devices_raw:
        raise ConfigError(source, "-", f"{where}.devices", "must be a non-empty list")
    if brand == "enphase" and len(devices_raw) != 1:
        # An Enphase system is one site behind one gateway: the API reports it as a whole.
        raise ConfigError(source, "-", f"{where}.devices", "an enphase plant (system) simulates exactly one site")
    devices = tuple(
        _device(d, i, source, where, plant_id, brand, lat, lon, tz, fleet_seed, weather_seed, tick_s)
        for i, d in enumerate(devices_raw)
    )
    return Plant(
        plant_id,
        str(raw.get("name", f"Plant {plant_id}")),
        brand,
        str(raw.get("city", "")),
        str(raw.get("country", "")),
        lat,
        lon,
        tz,
        devices,
        power_unit,
    )


def _device(raw, index, source, where, plant_id, brand, lat, lon, tz, fleet_seed, weather_seed, tick_s):
    if not isinstance(raw, dict):
        raise ConfigError(source, f"{where}.devices[{index}]", "-", "must be an object")
    serial = raw.get("serial")
    if not isinstance(serial, str) or not serial or "," in serial:
        raise ConfigError(source, f"{where}.devices[{index}]", "serial", "must be a non-empty string without commas")
    kind = raw.get("type")
    kind = GROWATT_TYPE_ALIASES.get(kind, kind) if brand == "growatt" else kind
    allowed = DEVICE_TYPES[brand]
    if kind not in allowed:
        raise ConfigError(source, serial, "type", f"must be one of {', '.join(allowed)} for brand {brand}")
    battery = None
    if raw.get("battery") is not None:
        battery = _battery(raw["battery"], source, serial)
    if kind in ("sph", "storage", "hybrid", "storedge", "encharges") and battery is None:
        raise ConfigError(source, serial, "battery", f"a {kind} device needs a battery")
    if kind in ("inv", "inverter", "micros") and battery is not None and brand != "fusionsolar":
        raise ConfigError(source, serial, "battery", f"a {kind} device has no battery")
    load_raw = raw.get("load", {})
    if not isinstance(load_raw, dict):
        raise ConfigError(source, serial, "load", "must be an object")
    load = LoadProfile(
        **{
            k: _number(load_raw, k, source, serial, default=getattr(LoadProfile, k), minimum=0.0, prefix="load")
            for k in LoadProfile.__dataclass_fields__
        }
    )
    device_tick = _number(raw, "tick_s", source, serial, default=tick_s, minimum=tick_s)
    if not math.isclose(device_tick / tick_s, round(device_tick / tick_s)):
        raise ConfigError(source, serial, "tick_s", f"must be a multiple of the fleet tick ({tick_s} s)")
    return Device(
        serial=serial,
        brand=brand,
        type=kind,
        model=str(raw.get("model", f"{kind.upper()}-{serial[-4:]}")),
        plant_id=plant_id,
        latitude=lat,
        longitude=lon,
        timezone=tz,
        pv_peak_w=_number(
            raw, "pv_peak_w", source, serial, default=0.0 if kind == "storage" else None, minimum=0.0, maximum=1e6
        ),
        tilt=_number(raw, "tilt", source, serial, default=20.0, minimum=0.0, maximum=90.0),
        azimuth=_number(raw, "azimuth", source, serial, default=180.0, minimum=0.0, maximum=360.0),
        battery=battery,
        load=load,
        seed=_number(raw, "seed", source, serial, default=hash_seed(fleet_seed, serial), integer=True),
        weather_seed=weather_seed,
        cloudiness=_number(raw, "cloudiness", source, serial, default=0.5, minimum=0.0, maximum=0.95),
        tick_s=device_tick,
    )


def _battery(raw, source, serial) -> Battery:
    if not isinstance(raw, dict):
        raise ConfigError(source, serial, "battery", "must be an object")
    values = {}
    for name in Battery.__dataclass_fields__:
        default = getattr(Battery, name, None)
        values[name] = _number(raw, name, source, serial, default=default, minimum=0.0, prefix="battery")
    if values["capacity_wh"] <= 0:
        raise ConfigError(source, serial, "battery.capacity_wh", "must be positive")
    if not 0 < values["round_trip_efficiency"] <= 1:
        raise ConfigError(source, serial, "battery.round_trip_efficiency", "must be in (0, 1]")
    if not 0 <= values["soc_min_pct"] < values["soc_max_pct"] <= 100:
        raise ConfigError(source, serial, "battery.soc_min_pct", "need 0 <= soc_min_pct < soc_max_pct <= 100")
    if not values["soc_min_pct"] <= values["initial_soc_pct"] <= values["soc_max_pct"]:
        raise ConfigError(source, serial, "battery.initial_soc_pct", "must lie within soc_min_pct..soc_max_pct")
    return Battery(**values)


_REQUIRED = object()


def _number(raw, name, source, device, default=_REQUIRED, minimum=None, maximum=None, integer=False, prefix=""):
    label = f"{prefix}.{name}" if prefix else name
    if name not in raw or raw[name] is None:
        if default is _REQUIRED or default is None:
            raise ConfigError(source, device, label, "is required")
        return default
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(source, device, label, f"must be a number, got {value!r}")
    if integer and value != int(value):
        raise ConfigError(source, device, label, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(source, device, label, f"must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(source, device, label, f"must be <= {maximum}, got {value!r}")
    return int(value) if integer else float(value)


def hash_seed(seed: int, text: str) -> int:
    """A per-device seed that does not depend on Python's randomised str hash."""
    value = seed & 0xFFFFFFFF
    for ch in text.encode():
        value = (value * 1_000_003 ^ ch) & 0xFFFFFFFF
    return value


CITIES = (
    ("Lagos", "Nigeria", 6.45, 3.39, "Africa/Lagos"),
    ("Amsterdam", "Netherlands", 52.37, 4.90, "Europe/Amsterdam"),
    ("Nairobi", "Kenya", -1.29, 36.82, "Africa/Nairobi"),
    ("Madrid", "Spain", 40.42, -3.70, "Europe/Madrid"),
    ("Cape Town", "South Africa", -33.92, 18.42, "Africa/Johannesburg"),
    ("Mumbai", "India", 19.08, 72.88, "Asia/Kolkata"),
    ("Sydney", "Australia", -33.87, 151.21, "Australia/Sydney"),
    ("Phoenix", "United States", 33.45, -112.07, "America/Phoenix"),
    ("Sao Paulo", "Brazil", -23.55, -46.63, "America/Sao_Paulo"),
    ("Berlin", "Germany", 52.52, 13.40, "Europe/Berlin"),
    ("Accra", "Ghana", 5.60, -0.19, "Africa/Accra"),
    ("Tokyo", "Japan", 35.68, 139.69, "Asia/Tokyo"),
)
_KIND_CYCLE = (
    ("sandbox", "hybrid"),
    ("growatt", "min"),
    ("growatt", "sph"),
    ("sandbox", "inverter"),
    ("growatt", "storage"),
    ("growatt", "inv"),
    ("sandbox", "storage"),
)


def generate_fleet(count: int, seed: int = 0) -> dict:
    """A raw config of `count` devices across brands, types and cities, grouped in plants of up to 4.

    Tilts and azimuths come from a few values so sites share day curves (pvlib cost stays bounded).
    """
    rng = random.Random(seed)
    plants, plant_devices, plant_key = [], [], None
    for n in range(count):
        brand, kind = _KIND_CYCLE[n % len(_KIND_CYCLE)]
        city = CITIES[(n // 4) % len(CITIES)]
        key = (brand, city[0], n // 4)
        if key != plant_key:
            plant_devices = []
            plants.append(
                {
                    "plant_id": 10_000 + len(plants),
                    "name": f"{city[0]} plant {len(plants) + 1}",
                    "brand": brand,
                    "city": city[0],
                    "country": city[1],
                    "latitude": city[2],
                    "longitude": city[3],
                    "timezone": city[4],
                    "devices": plant_devices,
                }
            )
            plant_key = key
        prefix = "SBX" if brand == "sandbox" else "GRT" + kind[:3].upper()
        device = {
            "serial": f"{prefix}{n:06d}",
            "type": kind,
            "pv_peak_w": 0.0 if kind == "storage" and brand == "sandbox" else rng.choice((3000, 5000, 8000)),
            "tilt": rng.choice((10, 20, 30)),
            "azimuth": 180 if city[2] >= 0 else 0,
            "load": {"base_w": rng.choice((150, 250, 400))},
        }
        if kind in ("hybrid", "sph", "storage"):
            device["battery"] = {
                "capacity_wh": rng.choice((5000, 10000)),
                "max_charge_w": 2500,
                "max_discharge_w": 2500,
                "initial_soc_pct": rng.choice((30, 50, 80)),
            }
        plant_devices.append(device)
    return {"seed": seed, "tick_s": 1.0, "plants": plants}
