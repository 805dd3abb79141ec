"""FusionSolar and Growatt v1 end to end: onboarding through POST /inverters with the brand's credential
fields, then readings arriving through a pollers worker (real mock, web, worker and Redis)."""

from __future__ import annotations

from tests.helpers import wait_until
from tests.metrics.conftest import connection, mock_stats, onboard

FUSIONSOLAR = {"HWINV0001": "38", "HWINV0001B": "39", "HWINV0001M": "47", "HWINV0002": "38", "HWINV0002M": "47"}
GROWATT_V1 = {"GRTSPH0001": "5", "GRTSTO0001": "2", "GRTMIN0001": "7", "GRTINV0001": "1"}


def test_fusionsolar_and_growatt_v1_devices_onboard_and_stream_readings(services, metrics_env, mock, api):
    fleet = {("fusionsolar", s): t for s, t in FUSIONSOLAR.items()}
    fleet.update({("growatt_v1", s): t for s, t in GROWATT_V1.items()})
    inverters = {}
    for (brand, serial), device_type in fleet.items():
        inverter = onboard(api, mock, brand, serial)
        assert inverter["device_type"] == device_type
        inverters[serial] = inverter
    assert inverters["GRTSPH0001"]["timezone"] == "Africa/Lagos"
    assert len({inverters[s]["connection_id"] for s in FUSIONSOLAR}) == 1, "one connection per account"

    services.worker(metrics_env, role="pollers")

    def latest():
        replies = {s: api.get(f"/inverters/{i['id']}/latest").json()["reading"] for s, i in inverters.items()}
        return replies if all(replies.values()) else None

    readings = wait_until(latest, 30, 0.3, "a reading of every onboarded device")
    assert readings["HWINV0001B"]["battery_soc_pct"] is not None, "the battery's samples are stored"
    assert readings["HWINV0001"]["pv_power_w"] > 100 and readings["HWINV0002M"]["grid_import_w"] is not None
    assert readings["GRTSTO0001"]["battery_soc_pct"] is not None and readings["GRTINV0001"]["pv_power_w"] > 0
    calls = mock_stats(mock)["tokens"]
    assert calls["demo-fusionsolar"]["fs:getDevList"]["requests"] == 2, "onboarding's list and the poller's"
    assert sum(endpoint["rate_limited"] for endpoint in calls["demo-fusionsolar"].values()) == 0


def test_fusionsolar_onboarding_needs_every_credential_field(mock, api):
    fields = connection(mock, "fusionsolar")
    del fields["system_code"]
    reply = api.post("/inverters", json={"brand": "fusionsolar", "serial": "HWINV0001", "connection": fields})
    assert reply.status_code == 400 and reply.json()["error"]["details"]["field"] == "connection.system_code"
    fields = {**connection(mock, "fusionsolar"), "system_code": "wrong"}
    reply = api.post("/inverters", json={"brand": "fusionsolar", "serial": "HWINV0001", "connection": fields})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "brand_rejected_credentials"
    assert reply.json()["error"]["details"]["brand_error"]["brand_code"] == 20400
