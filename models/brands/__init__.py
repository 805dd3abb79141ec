"""Brand adapters by name: the registry onboarding (web) and polling (actors) share."""

from __future__ import annotations

from models.brands.base import BrandAdapter, BrandError, PolledDevice
from models.brands.enphase import EnphaseAdapter
from models.brands.fusionsolar import FusionSolarAdapter
from models.brands.growatt_v1 import GrowattV1Adapter
from models.brands.growatt_v4 import GrowattV4Adapter
from models.brands.planner import PlanDevice
from models.brands.sandbox import SandboxAdapter
from models.brands.solaredge import SolarEdgeAdapter

ADAPTERS: dict[str, type[BrandAdapter]] = {
    cls.name: cls
    for cls in (
        SandboxAdapter,
        GrowattV4Adapter,
        GrowattV1Adapter,
        SolarEdgeAdapter,
        EnphaseAdapter,
        FusionSolarAdapter,
    )
}


def adapter_class(brand: str) -> type[BrandAdapter] | None:
    return ADAPTERS.get(brand)


def adapter_for(connection, policy, timeout_s: float = 10.0, on_credentials_changed=None) -> BrandAdapter:
    """An adapter for a stored BrandConnection (or anything with brand, base_url, credentials), calling
    through the destination policy (built from settings.allowed_target_networks). on_credentials_changed(new)
    is called when the adapter rotates its credentials (OAuth tokens), to store them with the connection."""
    return ADAPTERS[connection.brand](
        connection.base_url, connection.credentials, policy, timeout_s, on_credentials_changed
    )


def requested_interval(connection, settings) -> float:
    """The poll interval asked for a connection: its owner's (PATCH /connections/<id>), else the brand's setting.
    The quota planner (planner.py) polls no faster than the brand's limits allow, whatever is asked."""
    asked = getattr(connection, "poll_interval_s", None)
    if asked:
        return float(asked)
    return float(getattr(settings, f"{ADAPTERS[connection.brand].settings_prefix}_poll_interval_s"))


def plan_device(brand: str, inverter) -> PlanDevice:
    """An inverter row as the quota planner sees it: its site is its plant (or itself when it has none)."""
    device = PolledDevice(inverter.serial, inverter.device_type, inverter.timezone)
    return PlanDevice(
        inverter.id, inverter.plant_id or inverter.serial, ADAPTERS[brand].batch_key(device), inverter.device_type or ""
    )


__all__ = [
    "ADAPTERS",
    "BrandAdapter",
    "BrandError",
    "adapter_class",
    "adapter_for",
    "plan_device",
    "requested_interval",
]
