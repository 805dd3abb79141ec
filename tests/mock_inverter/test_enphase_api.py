"""The Enphase v4 dialect over real HTTP: OAuth refresh with rotation, key + bearer on every call, the
endpoints and their shapes, and the plan limits (per minute and per calendar month, 429 without Retry-After)."""

from __future__ import annotations

import json

import pytest
import requests

from mock_inverter.ratelimit import PlanLimits
from tests.mock_inverter.mockinv_support import MockProcess

CLIENT = ("demo-enphase-client", "demo-enphase-secret")
KEY = "demo-enphase-key"
SEEDS = [f"seed-{n}" for n in range(20)]


def fleet_file(tmp_path, **app_extra) -> str:
    fleet = json.loads(MockProcess.demo_fleet().read_text())
    fleet["brands"]["enphase"] = {
        "applications": [
            {
                "client_id": CLIENT[0],
                "client_secret": CLIENT[1],
                "api_key": KEY,
                "plan": "watt",
                "refresh_tokens": SEEDS,
                **app_extra,
            }
        ]
    }
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet))
    return str(path)


@pytest.fixture(scope="module")
def enphase(tmp_path_factory):
    process = MockProcess(
        "--config", fleet_file(tmp_path_factory.mktemp("enphase")), "--start", "2024-06-21T11:00:00Z"
    ).wait_ready()
    yield process.base + "/enphase"
    process.stop()


def refresh(base, refresh_token, auth=CLIENT):
    return requests.post(
        base + "/oauth/token",
        params={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=auth,
        timeout=5,
    )


def get(base, path, token, key=KEY, **params):
    return requests.get(
        base + "/api/v4" + path, params={"key": key, **params}, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def test_a_refresh_token_works_once_and_answers_a_new_one(enphase):
    first = refresh(enphase, SEEDS[0])
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["refresh_token"] != SEEDS[0]
    again = refresh(enphase, SEEDS[0])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    second = refresh(enphase, body["refresh_token"])
    assert second.status_code == 200 and second.json()["refresh_token"] != body["refresh_token"]
    assert refresh(enphase, body["refresh_token"]).status_code == 400, "the rotated-out token is spent"
    assert refresh(enphase, SEEDS[1], auth=(CLIENT[0], "wrong")).json()["error"] == "unauthorized"
    assert refresh(enphase, "rt.forged.token").status_code == 400


def test_a_tokens_reset_makes_a_used_refresh_token_work_again_as_after_a_restart(enphase):
    assert refresh(enphase, SEEDS[19]).status_code == 200
    assert refresh(enphase, SEEDS[19]).status_code == 400
    requests.post(enphase.removesuffix("/enphase") + "/admin/tokens/reset", timeout=5).raise_for_status()
    assert refresh(enphase, SEEDS[19]).status_code == 200


def test_systems_summary_devices_and_battery_telemetry(enphase):
    token = refresh(enphase, SEEDS[2]).json()["access_token"]
    systems = get(enphase, "/systems", token).json()
    assert systems["items"] == "systems" and {s["system_id"] for s in systems["systems"]} == {4001, 4002}
    assert all(s["timezone"] and s["status"] == "normal" for s in systems["systems"])
    pv_only = get(enphase, "/systems/4001/devices", token).json()["devices"]
    assert pv_only["micros"] and "encharges" not in pv_only
    assert get(enphase, "/systems/4002/devices", token).json()["devices"]["encharges"]
    summary = get(enphase, "/systems/4002/summary", token).json()
    assert summary["current_power"] > 0 and summary["energy_lifetime"] >= summary["energy_today"] >= 0
    assert {"battery_charge_w", "battery_discharge_w", "battery_capacity_wh"} <= set(summary)
    battery = get(enphase, "/systems/4002/telemetry/battery", token).json()
    assert battery["last_reported_aggregate_soc"].endswith("%") and battery["intervals"][-1]["soc"]["percent"] >= 0
    assert get(enphase, "/systems/4001/telemetry/battery", token).json()["intervals"] == []
    missing = get(enphase, "/systems/42/summary", token)
    assert missing.status_code == 404 and missing.json()["code"] == 404
    assert get(enphase, "/systems", token, size=101).status_code == 422


def test_every_call_needs_the_key_and_a_live_token_of_the_same_application(enphase):
    token = refresh(enphase, SEEDS[3]).json()["access_token"]
    assert get(enphase, "/systems", token, key="other").status_code == 401
    assert get(enphase, "/systems", "at.bogus.token").status_code == 401
    no_bearer = requests.get(enphase + "/api/v4/systems", params={"key": KEY}, timeout=5)
    assert no_bearer.status_code == 401 and no_bearer.json()["message"] == "Not Authorized"


def test_real_profile_enforces_the_watt_plan_per_minute_with_429_without_retry_after(tmp_path):
    process = MockProcess("--config", fleet_file(tmp_path), "--profile", "real").wait_ready()
    try:
        base = process.base + "/enphase"
        token = refresh(base, SEEDS[0]).json()["access_token"]
        answers = [get(base, "/systems/4001/summary", token) for _ in range(11)]
        assert [a.status_code for a in answers] == [200] * 10 + [429]
        assert "Retry-After" not in answers[-1].headers
        assert answers[-1].json() == {
            "message": "Too Many Requests",
            "details": "Usage limit exceeded for plan Watt",
            "code": 429,
        }
        assert refresh(base, SEEDS[1]).status_code == 200, "token refreshes are not API calls"
        stats = requests.get(process.base + "/admin/stats", timeout=5).json()
        assert stats["tokens"][KEY]["enphase:summary"] == {
            **stats["tokens"][KEY]["enphase:summary"],
            "requests": 11,
            "rate_limited": 1,
        }
    finally:
        process.stop()


def test_real_profile_monthly_budget_from_the_config(tmp_path):
    process = MockProcess(
        "--config", fleet_file(tmp_path, limits={"per_minute": 100, "per_month": 5}), "--profile", "real"
    ).wait_ready()
    try:
        base = process.base + "/enphase"
        token = refresh(base, SEEDS[0]).json()["access_token"]
        assert [get(base, "/systems", token).status_code for _ in range(6)] == [200] * 5 + [429]
    finally:
        process.stop()


def test_the_monthly_budget_resets_at_the_start_of_the_calendar_month_utc():
    clock = {"mono": 0.0, "wall": 1719791990.0}  # 2024-06-30T23:59:50Z
    limits = PlanLimits("real", monotonic=lambda: clock["mono"], wall=lambda: clock["wall"])
    assert [limits.check("k", "watt", {"per_month": 2}) for _ in range(3)] == ["", "", "month"]
    clock["mono"], clock["wall"] = 20.0, 1719792010.0  # 2024-07-01T00:00:10Z
    assert limits.check("k", "watt", {"per_month": 2}) == ""
    assert [limits.check("w", "watt") for _ in range(11)][-1] == "minute"
    clock["mono"] += 60.0
    assert limits.check("w", "watt") == ""
    assert PlanLimits("fast").limits("watt", {}) == (600, 10_000_000), "fast profile: the demo plan"
