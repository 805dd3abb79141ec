"""Shared constants for the mock inverter tests (a uniquely named module, not conftest, so imports are unambiguous)."""
SANDBOX = {"X-API-Key": "demo-sandbox-key"}
GROWATT = {"token": "demo-growatt-token"}
