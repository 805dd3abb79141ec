"""The mock's own Prometheus metrics (it imports nothing of the service's): calls per brand endpoint."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

BRAND_CALLS = Counter(
    "mock_inverter_brand_calls",
    "Brand API calls answered, by '<dialect>:<endpoint>' and outcome",
    ["endpoint", "outcome"],
)

BRAND_REFUSALS = Counter(
    "mock_inverter_brand_refusals",
    "Brand API calls refused for a limit, by '<dialect>:<endpoint>' and the limit (window) that refused",
    ["endpoint", "window"],
)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
