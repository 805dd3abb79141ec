"""The mock's own Prometheus metrics (it imports nothing of the service's): calls per brand endpoint."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

BRAND_CALLS = Counter(
    "mock_inverter_brand_calls",
    "Brand API calls answered, by '<dialect>:<endpoint>' and outcome",
    ["endpoint", "outcome"],
)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
