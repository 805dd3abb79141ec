"""Brand adapters by name: the registry onboarding (web) and polling (actors) share."""
from __future__ import annotations

from models.brands.base import BrandAdapter, BrandError
from models.brands.enphase import EnphaseAdapter
from models.brands.fusionsolar import FusionSolarAdapter
from models.brands.growatt_v1 import GrowattV1Adapter
from models.brands.growatt_v4 import GrowattV4Adapter
from models.brands.sandbox import SandboxAdapter
from models.brands.solaredge import SolarEdgeAdapter

ADAPTERS: dict[str, type[BrandAdapter]] = {
    cls.name: cls for cls in (SandboxAdapter, GrowattV4Adapter, GrowattV1Adapter, SolarEdgeAdapter, EnphaseAdapter,
                              FusionSolarAdapter)}


def adapter_class(brand: str) -> type[BrandAdapter] | None:
    return ADAPTERS.get(brand)


def adapter_for(connection, policy, timeout_s: float = 10.0, on_credentials_changed=None) -> BrandAdapter:
    """An adapter for a stored BrandConnection (or anything with brand, base_url, credentials), calling
    through the destination policy (built from settings.allowed_target_networks). on_credentials_changed(new)
    is called when the adapter rotates its credentials (OAuth tokens), to store them with the connection."""
    return ADAPTERS[connection.brand](connection.base_url, connection.credentials, policy, timeout_s,
                                      on_credentials_changed)


def poll_pace(brand: str, settings) -> tuple[float, float]:
    """(seconds between polls of one device, most requests per second) configured for a brand."""
    prefix = ADAPTERS[brand].settings_prefix
    return getattr(settings, f"{prefix}_poll_interval_s"), getattr(settings, f"{prefix}_requests_per_s")


__all__ = ["ADAPTERS", "BrandAdapter", "BrandError", "adapter_class", "adapter_for", "poll_pace"]
