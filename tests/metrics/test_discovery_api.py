"""POST /connections/discover: a brand account's devices through its adapter, before onboarding (web + mock)."""

from __future__ import annotations

import pytest

from tests.conftest import make_client
from tests.helpers import create_account, free_port
from tests.metrics.conftest import SANDBOX_KEY, connection, mock_stats

ENPHASE = {
    "client_id": "demo-enphase-client",
    "client_secret": "demo-enphase-secret",
    "api_key": "demo-enphase-key",
    "refresh_token": "demo-enphase-refresh",
}


@pytest.fixture
def mock(shared_mock):
    return shared_mock


def discover(api, brand: str, conn: dict):
    return api.post("/connections/discover", json={"brand": brand, "connection": conn})


def test_lists_the_devices_with_their_types_and_onboarding_them_asks_the_brand_nothing_more(env, mock, web, api):
    reply = discover(api, "sandbox", connection(mock, "sandbox"))
    assert reply.status_code == 200, reply.text
    devices = {d["serial"]: d for d in reply.json()["devices"]}
    assert {serial: d["device_type"] for serial, d in devices.items()} == {
        "SBX-AMS-0001": "hybrid",
        "SBX-LOS-0001": "inverter",
        "SBX-NBO-0001": "storage",
    }
    assert devices["SBX-LOS-0001"]["timezone"] == "Africa/Lagos"
    assert all(d["onboarded"] is None and d["inverter_id"] is None for d in devices.values())

    for serial in ("SBX-AMS-0001", "SBX-LOS-0001"):
        body = {"brand": "sandbox", "serial": serial, "connection": connection(mock, "sandbox")}
        assert api.post("/inverters", json=body).status_code == 201
    # The list discovery fetched served the onboarding too: the brand's device list was asked once.
    assert mock_stats(mock)["tokens"][SANDBOX_KEY]["sandbox:devices"]["requests"] == 1

    mine = {i["serial"]: i["id"] for i in api.get("/inverters").json()["inverters"]}
    again = {d["serial"]: d for d in discover(api, "sandbox", connection(mock, "sandbox")).json()["devices"]}
    assert again["SBX-AMS-0001"]["onboarded"] == "by_you"
    assert again["SBX-AMS-0001"]["inverter_id"] == mine["SBX-AMS-0001"]
    assert again["SBX-NBO-0001"]["onboarded"] is None
    other = make_client(web.url, create_account(env, "neighbour"))
    theirs = {d["serial"]: d for d in discover(other, "sandbox", connection(mock, "sandbox")).json()["devices"]}
    assert theirs["SBX-AMS-0001"]["onboarded"] == "by_another_account"
    assert theirs["SBX-AMS-0001"]["inverter_id"] is None, "another account's inverter id is not shown"


def test_errors_name_what_to_fix(mock, api):
    reply = discover(api, "sandbox", {"base_url": mock.url, "api_key": "wrong"})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "brand_rejected_credentials"
    closed = f"http://127.0.0.1:{free_port()}"
    reply = discover(api, "sandbox", {"base_url": closed, "api_key": "k"})
    assert reply.status_code == 502 and reply.json()["error"]["code"] == "brand_unreachable"
    reply = discover(api, "growatt_v4", {"base_url": mock.url})
    assert reply.status_code == 400 and reply.json()["error"]["details"]["field"] == "connection.token"
    reply = discover(api, "solarcorp", {"base_url": mock.url})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "unknown_brand"
    reply = discover(api, "sandbox", {"base_url": "http://10.1.2.3", "api_key": "k"})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "blocked_destination"


def test_enphase_tokens_rotated_by_discovery_are_kept_for_onboarding(mock, api):
    """Discovery spends the refresh token given (Enphase rotates it); onboarding with the same one still works."""
    conn = {"base_url": mock.url + "/enphase", **ENPHASE, "plan": "demo"}
    reply = discover(api, "enphase", conn)
    assert reply.status_code == 200, reply.text
    assert {d["serial"]: d["device_type"] for d in reply.json()["devices"]} == {"4001": "micros", "4002": "encharges"}
    onboarded = api.post("/inverters", json={"brand": "enphase", "serial": "4002", "connection": conn})
    assert onboarded.status_code == 201, onboarded.text
