"""Webhook endpoints, signed jobs and alert rules through the API (the app in this process, real SQLite
and Redis). Signatures are checked with the `standardwebhooks` package, an independent implementation."""

from __future__ import annotations

import time

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from models import alerts, webhooks
from models.db import owner
from models.inverters import BrandConnection, Inverter

PARTNER = "http://127.0.0.1:9/hook"


def _endpoint(client, **fields) -> dict:
    reply = client.post("/webhook-endpoints", json={"url": PARTNER, "event_types": ["inverter.offline"], **fields})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def test_an_endpoint_shows_its_secret_only_at_creation_and_can_be_deleted(client):
    created = _endpoint(client, description="pager")
    assert created["secret"].startswith("whsec_") and created["url"] == PARTNER
    shown = client.get(f"/webhook-endpoints/{created['id']}").get_json()
    listed = client.get("/webhook-endpoints").get_json()["webhook_endpoints"]
    assert "secret" not in shown and [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert client.delete(f"/webhook-endpoints/{created['id']}").status_code == 204
    assert client.get(f"/webhook-endpoints/{created['id']}").status_code == 404


def test_bad_endpoints_are_refused_with_the_field_named(client):
    cases = [
        ({"url": "http://10.1.2.3/hook"}, "blocked_destination", "url"),  # a literal address: no packet sent
        ({"url": "ftp://example.org/x"}, "validation_failed", "url"),
        ({"event_types": ["inverter.exploded"]}, "validation_failed", "event_types"),
        ({"event_types": []}, "validation_failed", "event_types"),
        ({"secret": "mine"}, "validation_failed", "secret"),
    ]
    for fields, code, field in cases:
        reply = client.post("/webhook-endpoints", json={"url": PARTNER, "event_types": ["battery.low"], **fields})
        assert reply.status_code == 422, fields
        assert reply.get_json()["error"]["code"] == code and reply.get_json()["error"]["details"]["field"] == field


def test_after_rotation_both_secrets_sign_until_the_overlap_ends(client):
    endpoint = _endpoint(client)
    rotated = client.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret").get_json()
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_valid_until"]
    stored = owner().call(webhooks.endpoint_secrets, endpoint["id"])
    body, now = b'{"type":"inverter.offline"}', time.time()
    headers = webhooks.signed({"webhook-id": "msg_1"}, stored, "unused", body, now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (endpoint["secret"], rotated["secret"]):
        assert Webhook(secret).verify(body, headers) == {"type": "inverter.offline"}
    # Once the overlap is over only the new secret signs.
    later = webhooks.signed({}, stored, "msg_2", body, stored["previous_until"] + 1)
    assert len(later["webhook-signature"].split(" ")) == 1
    try:
        Webhook(endpoint["secret"]).verify(body, {**later, "webhook-timestamp": later["webhook-timestamp"]})
    except WebhookVerificationError:
        pass
    else:
        raise AssertionError("the old secret must no longer verify")


def test_a_job_may_be_signed_only_with_one_of_its_own_accounts_endpoints(client, app, new_app_key):
    endpoint = _endpoint(client)
    accepted = client.post("/jobs", json={"url": PARTNER, "json": {"a": 1}, "sign_with": endpoint["id"]})
    assert accepted.status_code == 202 and accepted.get_json()["request"]["sign_with"] == endpoint["id"]
    stranger = app.test_client()
    stranger.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {new_app_key()}"
    refused = stranger.post("/jobs", json={"url": PARTNER, "sign_with": endpoint["id"]})
    assert refused.status_code == 422 and refused.get_json()["error"]["details"]["field"] == "sign_with"
    assert client.post("/jobs", json={"url": PARTNER, "sign_with": 42}).status_code == 422


def test_alert_rules_are_validated_and_belong_to_their_owner(client, app, new_app_key):
    made = client.post("/alert-rules", json={"kind": "offline", "params": {"minutes": 0.25}})
    assert made.status_code == 201 and made.get_json()["params"] == {"minutes": 0.25}
    battery = client.post("/alert-rules", json={"kind": "battery_low", "params": {"below_pct": 20}}).get_json()
    assert battery["params"] == {"below_pct": 20.0, "clear_above_pct": 30.0}
    bad = [
        ({"kind": "offline", "params": {"minutes": 0.1}}, "params.minutes"),
        ({"kind": "offline", "params": {"minutes": True}}, "params.minutes"),
        ({"kind": "battery_low", "params": {"below_pct": 20, "clear_above_pct": 10}}, "params.clear_above_pct"),
        ({"kind": "battery_low", "params": {"below_pct": 20, "clear_above_pct": 20}}, "params.clear_above_pct"),
        ({"kind": "offline", "params": {"hours": 1}}, "params.hours"),
        ({"kind": "sunburn"}, "kind"),
        ({"params": {"minutes": 5}}, "kind"),
        ({"kind": "offline", "colour": "red"}, "colour"),
        ({"kind": "production_low"}, "params"),
        (
            {"kind": "production_low", "params": {"latitude": 95, "longitude": 0, "peak_power_w": 4000}},
            "params.latitude",
        ),
        ({"kind": "daily_summary", "params": {"latitude": 52}}, "params.longitude"),
        ({"kind": "offline", "inverter_id": "01HZZZZZZZZZZZZZZZZZZZZZZZ"}, "inverter_id"),
        ({"kind": "offline", "inverter_id": 7}, "inverter_id"),
    ]
    for body, field in bad:
        reply = client.post("/alert-rules", json=body)
        assert reply.status_code == 422 and reply.get_json()["error"]["code"] == "validation_failed", body
        assert reply.get_json()["error"]["details"] == {"field": field}, body
    rule_id = made.get_json()["id"]
    patched = client.patch(f"/alert-rules/{rule_id}", json={"params": {"minutes": 2}})
    assert patched.status_code == 200 and patched.get_json()["params"] == {"minutes": 2.0}
    unchanged = client.patch(f"/alert-rules/{rule_id}", json={})
    assert unchanged.status_code == 200 and unchanged.get_json()["params"] == {"minutes": 2.0}
    refused = client.patch(f"/alert-rules/{rule_id}", json={"params": {"below_pct": 5}})
    assert refused.status_code == 422 and refused.get_json()["error"]["details"] == {"field": "params.below_pct"}
    # The parameters not given are kept: clear_above_pct stays 30, no longer above the new below_pct.
    raised = client.patch(f"/alert-rules/{battery['id']}", json={"params": {"below_pct": 30}})
    assert raised.status_code == 422 and raised.get_json()["error"]["details"] == {"field": "params.clear_above_pct"}
    stranger = app.test_client()
    stranger.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {new_app_key()}"
    assert stranger.get(f"/alert-rules/{rule_id}").status_code == 404
    assert stranger.delete(f"/alert-rules/{rule_id}").status_code == 404
    assert client.delete(f"/alert-rules/{rule_id}").status_code == 204
    assert [r["id"] for r in client.get("/alert-rules").get_json()["alert_rules"]] == [battery["id"]]


def test_production_low_and_daily_summary_rules_carry_their_site_with_defaults(client):
    site = {"latitude": 52.37, "longitude": 4.9}
    production = client.post(
        "/alert-rules", json={"kind": "production_low", "params": {**site, "peak_power_w": 4000, "below_pct": 40}}
    )
    assert production.status_code == 201, production.get_json()
    assert production.get_json()["params"] == {
        **site,
        "peak_power_w": 4000.0,
        "tilt": 0.0,
        "azimuth": 180.0,
        "below_pct": 40.0,
        "clear_above_pct": 50.0,
        "minutes": 30.0,
        "daylight_min_pct": 10.0,
    }
    missing = client.post("/alert-rules", json={"kind": "production_low", "params": site}).get_json()
    assert missing["error"]["details"] == {"field": "params.peak_power_w"}
    summary = client.post("/alert-rules", json={"kind": "daily_summary", "params": site})
    assert summary.status_code == 201 and summary.get_json()["params"] == site


def _inverter_of(account_id: str) -> str:
    connection = BrandConnection.create(
        brand="sandbox", base_url="http://127.0.0.1:9", credentials={"token": "t"}, credentials_hash=account_id
    )
    return Inverter.create(
        connection=connection, brand="sandbox", serial="SBX-SUM-0001", device_type="inverter", owner=account_id
    ).id


def test_a_site_days_summary_is_recorded_and_queued_once_whoever_tries_again(client):
    """An engine restarted after sunset, or a second engine, tries the same site-day again: one summary, one job."""
    _endpoint(client, event_types=["energy.daily_summary"])
    made = client.post("/alert-rules", json={"kind": "daily_summary", "params": {"latitude": 52.37, "longitude": 4.9}})
    rule = owner().call(alerts.AlertRule.get_by_id, made.get_json()["id"])
    inverter_id = owner().write(_inverter_of, rule.account_id)
    sunset = 1781726714.0  # 2026-06-17 20:05:14 UTC, Amsterdam
    first = owner().write(
        alerts.record_daily_summary, rule, inverter_id, "SBX-SUM-0001", sunset, {"energy_today_wh": 21000.0}
    )
    assert first is not None and first[1]["type"] == "energy.daily_summary" and first[2] == 1
    assert owner().write(alerts.record_daily_summary, rule, inverter_id, "SBX-SUM-0001", sunset, {}) is None
    assert len(client.get("/jobs").get_json()["jobs"]) == 1
    next_day = owner().write(alerts.record_daily_summary, rule, inverter_id, "SBX-SUM-0001", sunset + 86400, {})
    assert next_day is not None
