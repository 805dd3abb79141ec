import requests

from tests.mock_inverter.mockinv_support import GROWATT

V4 = "/v4/new-api/"


def v4(base, path, data=None, **kwargs):
    r = requests.post(base + V4 + path, headers=kwargs.pop("headers", GROWATT), data=data, timeout=5, **kwargs)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"code", "message", "data"}
    return body


def test_query_device_list(base):
    body = v4(base, "queryDeviceList", {"page": "1"})
    assert body["code"] == 0 and body["message"] == "SUCCESSFUL_OPERATION"
    assert {d["deviceSn"]: d["deviceType"] for d in body["data"]["data"]} == {
        "GRTSPH0001": "sph",
        "GRTSTO0001": "storage",
        "GRTMIN0001": "min",
        "GRTINV0001": "inv",
    }


def test_query_last_data_batch(base):
    body = v4(base, "queryLastData", {"deviceType": "sph", "deviceSn": "GRTSPH0001"})
    assert body["code"] == 0
    [row] = body["data"]["sph"]
    assert row["deviceSn"] == "GRTSPH0001" and row["ppv"] > 0 and "bmsSOC" in row
    body = v4(base, "queryLastData", {"deviceType": "min", "deviceSn": "GRTMIN0001,GRTINV0001"})
    assert [r["deviceSn"] for r in body["data"]["min"]] == ["GRTMIN0001"], "other types are left out"


def test_query_string_fields_are_read_too(base):
    r = requests.post(base + V4 + "queryLastData?deviceType=inv&deviceSn=GRTINV0001", headers=GROWATT, timeout=5)
    assert r.json()["data"]["inv"][0]["deviceSn"] == "GRTINV0001"


def test_wrong_device_type_answers_an_empty_list(base):
    body = v4(base, "queryLastData", {"deviceType": "storage", "deviceSn": "GRTMIN0001"})
    assert body["code"] == 0 and body["data"] == {"storage": []}


def test_bad_input_in_growatt_shape(base):
    assert v4(base, "queryDeviceList", headers={"token": "bad"})["code"] == 2
    assert v4(base, "queryLastData", {"deviceType": "min"})["code"] == 1
    json_body = v4(base, "queryLastData", json={"deviceType": "min", "deviceSn": "GRTMIN0001"})
    assert json_body["code"] == 1 and json_body["message"] == "PARAMETER_ERROR"
    many = ",".join(f"GRT{i:07d}" for i in range(101))
    assert v4(base, "queryLastData", {"deviceType": "min", "deviceSn": many})["code"] == 1
    unknown = v4(base, "queryLastData", {"deviceType": "min", "deviceSn": "NOPE"})
    assert unknown["code"] == 4 and unknown["data"] == {"deviceSn": ["NOPE"]}
    r = requests.get(base + V4 + "queryLastData", headers=GROWATT, timeout=5)
    assert r.status_code == 405 and r.json()["code"] == 1


def test_frequency_limits(base):
    form = {"deviceType": "min", "deviceSn": "GRTMIN0001"}
    assert v4(base, "queryLastData", form)["code"] == 0
    assert v4(base, "queryLastData", form)["code"] == 102, "same device again within its interval"
    codes = [v4(base, "queryDeviceList", {"page": "1"})["code"] for _ in range(12)]
    assert codes[:10] == [0] * 10 and codes[10:] == [100, 100], "fast profile: 10 list calls per second"
    stats = requests.get(base + "/admin/stats", timeout=5).json()["tokens"]["demo-growatt-token"]
    assert stats["v4:queryDeviceList"]["requests"] == 12 and stats["v4:queryDeviceList"]["rate_limited"] == 2
