import requests

from tests.mock_inverter.mockinv_support import GROWATT


def v1(base, path, method="get", **kwargs):
    r = requests.request(method, base + "/v1/" + path, headers=kwargs.pop("headers", GROWATT), timeout=5, **kwargs)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"data", "error_code", "error_msg"}
    return body


def test_plant_list_accepts_a_form_body_on_get(base):
    body = v1(base, "plant/list", data={"page": "", "perpage": "", "search_type": "", "search_keyword": ""})
    assert body["error_code"] == 0
    plants = {p["plant_id"]: p for p in body["data"]["plants"]}
    assert body["data"]["count"] == 2 and set(plants) == {2001, 2002}
    assert plants[2001]["city"] == "Lagos" and plants[2001]["current_power"] > 0


def test_device_list_uses_numeric_type_codes(base):
    devices = v1(base, "device/list", params={"plant_id": 2001})["data"]["devices"]
    assert {d["device_sn"]: d["type"] for d in devices} == {"GRTSPH0001": 5, "GRTSTO0001": 2}
    devices = v1(base, "device/list", params={"plant_id": 2002})["data"]["devices"]
    assert {d["device_sn"]: d["type"] for d in devices} == {"GRTMIN0001": 7, "GRTINV0001": 1}
    assert all(d["lost"] is False and d["status"] == 1 for d in devices)


def test_last_data_per_type_with_growatt_field_names(base):
    mix = v1(base, "device/mix/mix_last_data", "post", data={"mix_sn": "GRTSPH0001"})["data"]
    assert {"ppv", "pac", "soc", "bmsSOC", "pcharge1", "pdischarge1", "pLocalLoad", "epvToday"} <= set(mix)
    assert mix["ppv"] > 0 and 10 <= mix["soc"] <= 100
    assert len(mix["time"]) == 19 and mix["time"][10] == " "
    tlx = v1(base, "device/tlx/tlx_last_data", "post", data={"tlx_sn": "GRTMIN0001"})["data"]
    assert {"ppv", "pac", "bdc1Soc", "bmsSoc", "pacToGridTotal", "eacTotal"} <= set(tlx)
    storage = v1(base, "device/storage/storage_last_data", "post", data={"storage_sn": "GRTSTO0001"})["data"]
    assert {"capacity", "vBat", "ppv", "pCharge", "pDischarge"} <= set(storage)
    assert 40 < storage["vBat"] < 60
    inv = v1(base, "device/inverter/last_new_data", "post", data={"inverter_sn": "GRTINV0001"})["data"]
    assert {"ppv", "pac", "powerToday", "powerTotal", "temperature"} <= set(inv)


def test_errors_in_growatt_envelope(base):
    assert v1(base, "plant/list", headers={"token": "wrong"})["error_code"] == 10011
    assert v1(base, "plant/list", headers={})["error_msg"] == "error_permission_denied"
    assert v1(base, "device/tlx/tlx_last_data", "post", data={"tlx_sn": "NOPE"})["error_code"] == 10002
    wrong_type = v1(base, "device/tlx/tlx_last_data", "post", data={"tlx_sn": "GRTSPH0001"})
    assert wrong_type["error_code"] == 10002
    assert v1(base, "device/tlx/tlx_last_data", "post", data={})["error_code"] == 10003
    assert v1(base, "device/tlx/tlx_last_data", "post", json={"tlx_sn": "GRTMIN0001"})["error_code"] == 10003
    assert v1(base, "device/list", params={"plant_id": "abc"})["error_code"] == 10003
    assert v1(base, "device/list", params={"plant_id": 1001})["error_code"] == 10002, "a sandbox plant"
    r = requests.get(base + "/v1/no/such/route", headers=GROWATT, timeout=5)
    assert r.status_code == 404 and r.json()["error_code"] != 0


def test_rate_limit_is_http_200_with_10012(base):
    assert v1(base, "device/mix/mix_last_data", "post", data={"mix_sn": "GRTSPH0001"})["error_code"] == 0
    again = v1(base, "device/mix/mix_last_data", "post", data={"mix_sn": "GRTSPH0001"})
    assert again == {"data": None, "error_code": 10012, "error_msg": "error_frequently_access"}
    stats = requests.get(base + "/admin/stats", timeout=5).json()
    assert stats["tokens"]["demo-growatt-token"]["v1:last_data"]["rate_limited"] == 1
