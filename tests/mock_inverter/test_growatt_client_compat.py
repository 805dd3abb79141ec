"""An existing open-source Growatt client (growattServer's OpenApiV1) pointed at the mock's base URL
lists plants and devices and reads latest data, unchanged: the v1 dialect is faithful enough."""

import pytest

growattServer = pytest.importorskip("growattServer")


@pytest.fixture
def client(base):
    api = growattServer.OpenApiV1(token="demo-growatt-token")
    api.api_url = f"{base}/v1/"  # the library's only knob for the server: its base URL
    return api


def test_lists_plants_and_devices_and_reads_latest_data(client):
    plants = client.plant_list()["plants"]
    assert plants and all("plant_id" in plant for plant in plants)
    devices = {d["device_sn"]: d for plant in plants for d in client.device_list(plant["plant_id"])["devices"]}
    assert {"GRTSPH0001": 5, "GRTMIN0001": 7}.items() <= {sn: d["type"] for sn, d in devices.items()}.items()

    sph = client.sph_energy("GRTSPH0001")  # POST device/mix/mix_last_data, form mix_sn
    assert {"ppv", "pac", "soc", "bmsSOC", "time"} <= set(sph)
    tlx = client.min_energy("GRTMIN0001")  # POST device/tlx/tlx_last_data, form tlx_sn
    assert {"ppv", "pac", "bdc1Soc", "bmsSoc", "time"} <= set(tlx)


def test_the_library_raises_its_own_error_for_a_wrong_token(base):
    api = growattServer.OpenApiV1(token="wrong")
    api.api_url = f"{base}/v1/"
    with pytest.raises(growattServer.GrowattV1ApiError) as raised:
        api.plant_list()
    assert raised.value.error_code == 10011
