"""The open-source `solaredge` client (PyPI, 2.x) pointed at the mock's /solaredge prefix reads sites, inventory,
power flow, storage data, overviews (single and bulk) and inverter technical data, unchanged but for its base URL."""

from datetime import datetime, timedelta

import pytest

solaredge = pytest.importorskip("solaredge")

KEY = "demo-solaredge-key"
BATTERY_SITE, PV_SITE = 3001, 3002  # Madrid (kW power flow, StorEdge with battery), Cape Town (W, PV only)
NOON_MADRID = datetime(2024, 6, 21, 13, 0)  # the session mock starts at 11:00Z; its site times are local


@pytest.fixture
def client(base):
    with solaredge.MonitoringClient(KEY, base_url=f"{base}/solaredge") as api:
        yield api


def test_lists_sites_and_equipment(client):
    sites = client.get_site_list()["sites"]
    assert {BATTERY_SITE, PV_SITE} <= {site["id"] for site in sites["site"]} and sites["count"] >= 2
    details = client.get_site_details(BATTERY_SITE)["details"]
    assert details["location"]["timeZone"] == "Europe/Madrid" and details["status"] == "Active"
    inventory = client.get_inventory(BATTERY_SITE)["Inventory"]
    assert [b["connectedInverterSn"] for b in inventory["batteries"]] == [inventory["inverters"][0]["SN"]]
    assert client.get_components_list(PV_SITE)["reporters"]["list"][0]["serialNumber"] == "7F2B3002-11"


def test_reads_power_flow_overviews_storage_and_inverter_data(client):
    flow = client.get_current_power_flow(BATTERY_SITE)["siteCurrentPowerFlow"]
    assert flow["unit"] == "kW" and 0 < flow["PV"]["currentPower"] < 10 and 0 <= flow["STORAGE"]["chargeLevel"] <= 100
    assert client.get_current_power_flow(PV_SITE)["siteCurrentPowerFlow"]["unit"] == "W"
    assert "STORAGE" not in client.get_current_power_flow(PV_SITE)["siteCurrentPowerFlow"]
    single = client.get_overview([BATTERY_SITE])["overview"]
    bulk = client.get_overview([BATTERY_SITE, PV_SITE])["sitesOverviews"]
    assert single["lifeTimeData"]["energy"] >= single["lastDayData"]["energy"] > 0
    assert [row["siteId"] for row in bulk["siteEnergyList"]] == [BATTERY_SITE, PV_SITE]

    start, end = NOON_MADRID - timedelta(hours=2), NOON_MADRID + timedelta(days=1)
    storage = client.get_storage_data(BATTERY_SITE, start, end)["storageData"]
    telemetry = storage["batteries"][0]["telemetries"][-1]
    assert storage["batteryCount"] == 1 and 0 <= telemetry["batteryPercentageState"] <= 100
    assert datetime.strptime(telemetry["timeStamp"], "%Y-%m-%d %H:%M:%S") >= start
    data = client.get_inverter_technical_data(BATTERY_SITE, "7E1A3001-5C", start, end)["data"]
    assert data["count"] >= 1 and data["telemetries"][-1]["inverterMode"] == "MPPT"


def test_the_library_raises_its_own_errors(base):
    with solaredge.MonitoringClient("wrong", base_url=f"{base}/solaredge") as api:
        with pytest.raises(solaredge.SolarEdgeAuthError):
            api.get_site_list()
    with solaredge.MonitoringClient(KEY, base_url=f"{base}/solaredge") as api:
        with pytest.raises(solaredge.SolarEdgeAPIError) as raised:
            api.get_site_details(999999)
        assert raised.value.status_code == 403
