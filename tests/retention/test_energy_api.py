"""GET /inverters/<id>/energy: stored rollups in the inverter's local days, today computed on the fly,
access as for readings, and bad parameters answered with the error envelope."""

from __future__ import annotations

import time
from datetime import date
from zoneinfo import ZoneInfo

import pytest

from models import energy
from models.accounts import create_account
from tests.conftest import make_client
from tests.helpers import run_cli
from tests.retention.conftest import add_inverter, add_readings

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@pytest.fixture
def store(database):
    return database


@pytest.fixture
def owner_api(store, web):
    account, key = store.write(create_account, "energy-owner")
    return account, make_client(web.url, key)


def test_daily_and_hourly_energy_in_the_inverters_local_time(store, env, owner_api):
    account, api = owner_api
    inverter = add_inverter(store, account.id, "Europe/Amsterdam")
    start, _ = energy.day_bounds(date(2024, 10, 26), AMSTERDAM)
    end, _ = energy.day_bounds(date(2024, 10, 28), AMSTERDAM)
    add_readings(
        store,
        inverter,
        [start + 300 * i for i in range(int((end - start) // 300) + 1)],
        {"pv_power_w": 2000.0, "grid_export_w": 500.0},
    )
    assert run_cli(["models", "purge", "--readings-older-than", "3650d"], env).returncode == 0  # roll up only

    reply = api.get(
        f"/inverters/{inverter}/energy",
        params={"period": "day", "since": "2024-10-25T00:00:00Z", "until": "2024-10-27T23:00:00Z"},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["period"], body["timezone"], body["next_since"]) == ("day", "Europe/Amsterdam", None)
    days = body["buckets"]
    assert [(d["local_start"], d["start"], d["end"]) for d in days] == [
        ("2024-10-26T00:00+02:00", "2024-10-25T22:00:00.000Z", "2024-10-26T22:00:00.000Z"),
        ("2024-10-27T00:00+02:00", "2024-10-26T22:00:00.000Z", "2024-10-27T23:00:00.000Z"),
    ]  # 25 hours
    assert [d["pv_wh"] for d in days] == [pytest.approx(48_000), pytest.approx(50_000)]
    assert days[1]["export_wh"] == pytest.approx(12_500) and days[1]["complete"] is True
    assert days[1]["power"]["pv_power_w"] == {"min": 2000.0, "max": 2000.0, "avg": 2000.0}

    hours = api.get(
        f"/inverters/{inverter}/energy", params={"period": "hour", "since": days[1]["start"], "until": days[1]["end"]}
    ).json()["buckets"]
    assert len(hours) == 25
    assert [h["local_start"] for h in hours[1:5]] == [
        "2024-10-27T01:00+02:00",
        "2024-10-27T02:00+02:00",
        "2024-10-27T02:00+01:00",
        "2024-10-27T03:00+01:00",
    ]
    assert sum(h["pv_wh"] for h in hours) == pytest.approx(days[1]["pv_wh"])


def test_today_is_computed_from_raw_readings_and_marked_incomplete(store, owner_api):
    account, api = owner_api
    inverter = add_inverter(store, account.id, None)
    t = time.time()
    times = [t - 3000 + 60 * i for i in range(50)]
    add_readings(store, inverter, times, {"pv_power_w": 600.0})
    reply = api.get(f"/inverters/{inverter}/energy")  # period=day over the last 30 days by default
    assert reply.status_code == 200, reply.text
    buckets = reply.json()["buckets"]
    assert reply.json()["timezone"] == "UTC"
    assert 1 <= len(buckets) <= 2 and buckets[-1]["complete"] is False
    assert sum(b["pv_wh"] for b in buckets) == pytest.approx(600 * (times[-1] - times[0]) / 3600)
    assert sum(b["samples"] for b in buckets) == 50


def test_energy_access_and_bad_parameters(store, env, web, owner_api):
    account, api = owner_api
    inverter = add_inverter(store, account.id, "Asia/Kolkata")
    for params, parameter in [
        ({"period": "week"}, "period"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01T00:00:00Z"}, "until"),
        ({"since": "2024-06-02T00:00:00Z", "until": "2024-06-01T00:00:00Z"}, "since"),
    ]:
        reply = api.get(f"/inverters/{inverter}/energy", params=params)
        assert reply.status_code == 400, (params, reply.text)
        assert reply.json()["error"]["code"] == "invalid_parameter"
        assert reply.json()["error"]["details"] == {"parameter": parameter}
    assert api.get(f"/inverters/{inverter}/energy").json()["buckets"] == []

    _, outsider_key = store.write(create_account, "outsider")
    reply = make_client(web.url, outsider_key).get(f"/inverters/{inverter}/energy")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    reply = make_client(web.url, None).get(f"/inverters/{inverter}/energy")
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"


def test_today_follows_new_and_late_readings_between_requests(store, owner_api):
    account, api = owner_api
    inverter = add_inverter(store, account.id, None)
    t = time.time()
    hour = t - t % 3600

    def today() -> list[dict]:
        reply = api.get(f"/inverters/{inverter}/energy", params={"period": "hour", "since": "2020-01-01T00:00:00Z"})
        assert reply.status_code == 200, reply.text
        return reply.json()["buckets"]

    add_readings(store, inverter, [hour - 600, hour - 300], {"pv_power_w": 600.0})
    assert [b["samples"] for b in today()] == [2] == [b["samples"] for b in today()]
    add_readings(store, inverter, [hour, hour + 1], {"pv_power_w": 600.0})  # newer: the kept hours update
    buckets = today()
    assert [b["samples"] for b in buckets] == [2, 2]
    assert buckets[0]["pv_wh"] == pytest.approx(600 * 600 / 3600)
    add_readings(store, inverter, [hour - 450], {"pv_power_w": 1200.0})  # late: computed afresh
    buckets = today()
    assert [b["samples"] for b in buckets] == [3, 2]
    assert buckets[0]["pv_wh"] == pytest.approx((900 * 150 + 900 * 150 + 600 * 300) / 3600)
    assert buckets[0]["power"]["pv_power_w"]["max"] == 1200.0
