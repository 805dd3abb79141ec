"""The FusionSolar (SmartPVMS northbound) dialect: sessions, the lists, real-time data per device type, and
its limits answered in HTTP 200 bodies."""

import pytest
import requests

from tests.mock_inverter.mockinv_support import MockProcess

ACCOUNT = {"userName": "demo-fusionsolar", "systemCode": "demo-fusionsolar-code"}


def call(base, name, body, token=None):
    headers = {"XSRF-TOKEN": token} if token else {}
    r = requests.post(f"{base}/fusionsolar/thirdData/{name}", json=body, headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def login(base):
    r = requests.post(f"{base}/fusionsolar/thirdData/login", json=ACCOUNT, timeout=5)
    assert r.status_code == 200 and r.json()["failCode"] == 0 and r.json()["success"] is True
    assert r.cookies["XSRF-TOKEN"] == r.headers["xsrf-token"]
    return r.headers["xsrf-token"]


def dev_ids(base, token, type_id):
    devices = call(base, "getDevList", {"stationCodes": "NE=33005001,NE=33005002"}, token)["data"]
    return ",".join(str(d["id"]) for d in devices if d["devTypeId"] == type_id)


def test_login_sessions_and_their_end(base):
    assert call(base, "login", {**ACCOUNT, "systemCode": "wrong"})["failCode"] == 20400
    assert call(base, "stations", {"pageNo": 1}) == {
        "failCode": 305,
        "immediately": True,
        "message": "USER_MUST_RELOGIN",
    }
    first = login(base)
    assert call(base, "stations", {"pageNo": 1}, first)["failCode"] == 0
    second = login(base)  # one online session per account
    assert call(base, "stations", {"pageNo": 1}, first)["failCode"] == 305
    assert call(base, "stations", {"pageNo": 1}, second)["failCode"] == 0
    r = requests.post(
        f"{base}/fusionsolar/thirdData/stations", json={"pageNo": 1}, timeout=5, cookies={"XSRF-TOKEN": second}
    )
    assert r.json()["failCode"] == 0, "the token is read from the cookie too"
    assert call(base, "logout", {"xsrfToken": second})["failCode"] == 0
    assert call(base, "stations", {"pageNo": 1}, second)["failCode"] == 305


def test_lists_and_real_time_data_per_device_type(base):
    token = login(base)
    plants = call(base, "stations", {"pageNo": 1}, token)["data"]
    assert plants["total"] == 2 and {p["plantCode"] for p in plants["list"]} == {"NE=33005001", "NE=33005002"}
    old = call(base, "getStationList", {}, token)["data"]
    assert {s["stationCode"]: s["capacity"] for s in old} == {"NE=33005001": 0.006, "NE=33005002": 0.004}  # MW
    devices = call(base, "getDevList", {"stationCodes": "NE=33005001"}, token)["data"]
    assert {d["esnCode"]: d["devTypeId"] for d in devices} == {"HWINV0001": 38, "HWINV0001B": 39, "HWINV0001M": 47}
    inverter = call(base, "getDevRealKpi", {"devIds": dev_ids(base, token, 38), "devTypeId": 38}, token)
    assert inverter["params"]["devTypeId"] == 38 and inverter["params"]["currentTime"] > 1.7e12
    for row in inverter["data"]:
        items = row["dataItemMap"]
        assert 0.1 < items["mppt_power"] <= 6.0 and items["inverter_state"] == 512, "kW"
        assert items["total_cap"] > items["day_cap"] > 0 and items["run_state"] == 1
    battery = call(base, "getDevRealKpi", {"devIds": dev_ids(base, token, 39), "devTypeId": 39}, token)["data"]
    assert [row["sn"] for row in battery] == ["HWINV0001B"]
    assert 5 <= battery[0]["dataItemMap"]["battery_soc"] <= 100
    meters = call(base, "getDevRealKpi", {"devIds": dev_ids(base, token, 47), "devTypeId": 47}, token)["data"]
    assert all(abs(row["dataItemMap"]["active_power"]) < 20_000 for row in meters), "W"
    wrong_type = call(base, "getDevRealKpi", {"devIds": dev_ids(base, token, 47), "devTypeId": 38}, token)
    assert wrong_type["failCode"] == 0 and wrong_type["data"] == []
    too_many = ",".join(str(n) for n in range(101))
    assert call(base, "getDevRealKpi", {"devIds": too_many, "devTypeId": 38}, token)["success"] is False


@pytest.fixture(scope="module")
def real():
    process = MockProcess("--profile", "real").wait_ready()
    yield process.base
    process.stop()


def test_real_profile_answers_407_in_a_200_body_per_device_type_and_per_daily_list_budget(real):
    token = login(real)
    inverters, meters = dev_ids(real, token, 38), dev_ids(real, token, 47)
    assert call(real, "getDevRealKpi", {"devIds": inverters, "devTypeId": 38}, token)["failCode"] == 0
    refused = call(real, "getDevRealKpi", {"devIds": inverters, "devTypeId": 38}, token)
    assert (refused["failCode"], refused["success"], refused["data"]) == (407, False, "ACCESS_FREQUENCY_IS_TOO_HIGH")
    assert call(real, "getDevRealKpi", {"devIds": meters, "devTypeId": 47}, token)["failCode"] == 0
    # Two plants: Roundup(2/100) + 24 = 25 device-list calls a day, two of them made above.
    codes = [call(real, "getDevList", {"stationCodes": "NE=33005001"}, token)["failCode"] for _ in range(24)]
    assert codes == [0] * 23 + [407]
    stats = requests.get(real + "/admin/stats", timeout=5).json()["tokens"]["demo-fusionsolar"]
    assert stats["fs:getDevRealKpi"] == {**stats["fs:getDevRealKpi"], "requests": 3, "rate_limited": 1}
    assert stats["fs:getDevList"]["rate_limited"] == 1
    assert stats["fs:getDevRealKpi"]["refused_by"] == {"fs:getDevRealKpi per user devTypeId 38: 1 per 300 s": 1}
    assert stats["fs:getDevList"]["refused_by"] == {"fs:getDevList per user: 25 per 86400 s": 1}
