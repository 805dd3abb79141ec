"""Onboarding through the brand adapters, access control, members and browser sessions (web + mock)."""

from __future__ import annotations

from tests.app_on_own_database import app, new_app_key  # noqa: F401 - this module's tests use their own database
from tests.conftest import make_client
from tests.helpers import create_account, free_port
from tests.metrics.conftest import GROWATT_TOKEN, connection, mock_stats, onboard

DEMO_FLEET = [
    ("sandbox", "SBX-AMS-0001", "hybrid", "Europe/Amsterdam"),
    ("sandbox", "SBX-LOS-0001", "inverter", "Africa/Lagos"),
    ("sandbox", "SBX-NBO-0001", "storage", "Africa/Nairobi"),
    ("growatt_v4", "GRTSPH0001", "sph", "Africa/Lagos"),
    ("growatt_v4", "GRTSTO0001", "storage", "Africa/Lagos"),
    ("growatt_v4", "GRTMIN0001", "min", "Europe/Amsterdam"),
    ("growatt_v4", "GRTINV0001", "inv", "Europe/Amsterdam"),
]


def test_onboarding_takes_the_device_type_from_the_brand(mock, client):
    onboarded = []
    for brand, serial, device_type, zone in DEMO_FLEET:
        reply = client.post(
            "/inverters", json={"brand": brand, "serial": serial, "connection": connection(mock, brand)}
        )
        assert reply.status_code == 201, reply.get_data(as_text=True)
        inverter = reply.get_json()
        assert (inverter["device_type"], inverter["serial"], inverter["role"]) == (device_type, serial, "owner")
        assert inverter["timezone"] == zone, "the plant's zone comes from the brand (Growatt: its v1 plant list)"
        assert reply.headers["Location"] == f"/inverters/{inverter['id']}"
        again = client.post(
            "/inverters", json={"brand": brand, "serial": serial, "connection": connection(mock, brand)}
        )
        assert again.status_code == 200 and again.get_json()["id"] == inverter["id"]
        onboarded.append(inverter["id"])
    assert [i["id"] for i in client.get("/inverters").get_json()["inverters"]] == onboarded
    # One connection per brand credential, shared by that brand's inverters.
    connections = {i["brand"]: i["connection_id"] for i in client.get("/inverters").get_json()["inverters"]}
    assert len(set(connections.values())) == 2
    # A fleet's onboarding costs one (rate-limited) device list, zones included, not one per inverter.
    growatt_lists = mock_stats(mock)["tokens"][GROWATT_TOKEN]
    assert growatt_lists["v4:queryDeviceList"]["requests"] == 1, growatt_lists
    assert growatt_lists["v1:plant/list"]["requests"] == 1, growatt_lists


def test_onboarding_errors(mock, client):
    def post(body):
        return client.post("/inverters", json=body)

    reply = post({"brand": "solarcorp", "serial": "X", "connection": connection(mock, "sandbox")})
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "unknown_brand"
    assert "growatt_v4" in reply.get_json()["error"]["details"]["brands"]

    reply = post({"brand": "growatt_v4", "serial": "NOPE0001", "connection": connection(mock, "growatt_v4")})
    assert reply.status_code == 422 and reply.get_json()["error"]["code"] == "unknown_serial"
    reply = post({"brand": "sandbox", "serial": "NOPE", "connection": connection(mock, "sandbox")})
    assert reply.status_code == 422 and reply.get_json()["error"]["code"] == "unknown_serial"

    closed = f"http://127.0.0.1:{free_port()}"
    reply = post({"brand": "sandbox", "serial": "SBX-AMS-0001", "connection": {"base_url": closed, "api_key": "k"}})
    assert reply.status_code == 502 and reply.get_json()["error"]["code"] == "brand_unreachable"
    assert reply.get_json()["error"]["details"]["brand_error"]["kind"] == "unreachable"

    reply = post({"brand": "growatt_v4", "serial": "GRTSPH0001", "connection": {"base_url": mock.url, "token": "bad"}})
    assert reply.status_code == 422 and reply.get_json()["error"]["code"] == "brand_rejected_credentials"
    assert reply.get_json()["error"]["details"]["brand_error"]["brand_code"] == 2

    for body, field in [
        ({"brand": "sandbox", "connection": connection(mock, "sandbox")}, "serial"),
        ({"brand": "sandbox", "serial": "A", "connection": {"base_url": mock.url}}, "connection.api_key"),
        (
            {"brand": "sandbox", "serial": "A", "connection": {"base_url": "ftp://x", "api_key": "k"}},
            "connection.base_url",
        ),
        ({"brand": "sandbox", "serial": "A,B", "connection": connection(mock, "sandbox")}, "serial"),
        (
            {
                "brand": "growatt_v4",
                "serial": "GRTSPH0001",
                "timezone": "Mars/Olympus",
                "connection": connection(mock, "growatt_v4"),
            },
            "timezone",
        ),
    ]:
        reply = post(body)
        assert reply.status_code == 400, (body, reply.get_data(as_text=True))
        assert reply.get_json()["error"]["details"]["field"] == field
    assert client.post("/inverters", data="x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.get("/inverters").get_json()["inverters"] == []


def test_only_owner_and_members_see_an_inverter(env, mock, web, api, account_key, sse):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    other_key = create_account(env, "outsider")
    other = make_client(web.url, other_key)
    paths = [
        f"/inverters/{inverter['id']}",
        f"/inverters/{inverter['id']}/latest",
        f"/inverters/{inverter['id']}/readings",
    ]
    for path in paths:
        reply = other.get(path)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found", path
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=other_key)
    assert stream.wait_status() == 404
    multi = sse(web.url, f"/stream?inverters={inverter['id']}", key=other_key)
    assert multi.wait_status() == 404
    assert other.get("/inverters").json()["inverters"] == []
    assert other.delete(f"/inverters/{inverter['id']}").status_code == 404
    # Someone else onboarding the same device is told to ask the owner.
    reply = other.post(
        "/inverters", json={"brand": "sandbox", "serial": "SBX-AMS-0001", "connection": connection(mock, "sandbox")}
    )
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "already_onboarded"

    added = api.post(f"/inverters/{inverter['id']}/members", json={"account": "outsider"})
    assert added.status_code == 201, added.text
    member_id = added.json()["account"]
    for path in paths:
        assert other.get(path).status_code == 200, path
    assert other.get(f"/inverters/{inverter['id']}").json()["role"] == "member"
    assert api.get(f"/inverters/{inverter['id']}").json()["members"] == [member_id]
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=other_key)
    assert stream.wait_status() == 200
    # Members read but do not manage.
    assert other.delete(f"/inverters/{inverter['id']}").status_code == 403
    assert other.post(f"/inverters/{inverter['id']}/members", json={"account": "x"}).status_code == 403

    owners_stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    assert owners_stream.wait_status() == 200
    assert api.delete(f"/inverters/{inverter['id']}/members/{member_id}").status_code == 204
    assert other.get(f"/inverters/{inverter['id']}").status_code == 404
    # The removed member's open stream is closed at once, and a new one is refused.
    assert stream.ended.wait(5), "the removed member's stream was not closed"
    assert sse(web.url, f"/inverters/{inverter['id']}/stream", key=other_key).wait_status() == 404
    assert not owners_stream.ended.is_set(), "the owner's stream must stay open"
    assert api.post(f"/inverters/{inverter['id']}/members", json={"account": "nobody"}).status_code == 404
    assert api.delete(f"/inverters/{inverter['id']}").status_code == 204
    assert api.get(f"/inverters/{inverter['id']}").status_code == 404
    assert owners_stream.ended.wait(5), "deleting the inverter closes its streams"


def test_session_cookie_opens_a_stream_without_a_key_in_the_url(mock, web, api, account_key, sse):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    browser = make_client(web.url, None)
    assert browser.post("/session", json={"api_key": "sk_wrong"}).status_code == 401
    login = browser.post("/session", json={"api_key": account_key})
    assert login.status_code == 201, login.text
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    token = browser.cookies["session"]
    assert browser.get(f"/inverters/{inverter['id']}").status_code == 200
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", cookie=token)
    assert stream.wait_status() == 200
    assert browser.delete("/session").status_code == 204
    assert sse(web.url, f"/inverters/{inverter['id']}/stream", cookie=token).wait_status() == 401
