"""Alerts end to end: the mock takes a device offline, the alert engine opens one episode, the retry engine
delivers it as a Standard Webhooks request that an independent library verifies, and one more when the
device is back. Real processes: web, worker, mock inverter, a receiver on 127.0.0.1. (Across a worker's SIGKILL:
test_alerts_after_a_kill.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from tests.helpers import wait_until
from tests.metrics.conftest import CLOCK_SPEED, onboard, set_faults

# Minutes of the poll clock (actors/alerts.py), which runs CLOCK_SPEED times real time here: 8 real seconds,
# three and a half of the pollers' 2.3 s intervals.
OFFLINE_MINUTES = 20.0
OFFLINE_DELAY_S = OFFLINE_MINUTES * 60 / CLOCK_SPEED


def _delivered(partner, path: str) -> list:
    """Requests the receiver answered 200 (the flaky path fails the first ones)."""
    return [r for r in partner.received(path)]


def _by_type(requests_, event_type: str) -> list:
    return [r for r in requests_ if json.loads(r.body)["type"] == event_type]


def test_an_outage_gives_one_signed_offline_alert_and_one_back_online_delivered_after_retries(
    services, metrics_env, mock, web, api, partner, sse, account_key
):
    inverter = onboard(api, mock, "sandbox", "SBX-LOS-0001")
    healthy = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    # The receiver refuses the first two requests (503): the alert arrives later, after retries with backoff.
    path = "/flaky/alerts"
    created = api.post(
        "/webhook-endpoints",
        json={
            "url": partner.url + path + "?fail=2",
            "description": "pager",
            "event_types": ["inverter.offline", "inverter.online"],
        },
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_")
    assert "secret" not in api.get(f"/webhook-endpoints/{endpoint['id']}").json()
    rule = api.post("/alert-rules", json={"kind": "offline", "params": {"minutes": OFFLINE_MINUTES}})
    assert rule.status_code == 201, rule.text

    services.worker(metrics_env, role="all")
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    stream.wait_for(lambda events: any(e.event == "reading" for e in events), 20, "a first reading")

    set_faults(mock, offline=["SBX-LOS-0001"])
    wait_until(
        lambda: any(
            r for r in _by_type(_delivered(partner, path), "inverter.offline") if partner.failures["alerts"] > 2
        ),
        60,
        0.1,
        "the offline alert, delivered",
    )
    set_faults(mock, offline=[])
    wait_until(lambda: _by_type(_delivered(partner, path), "inverter.online"), 30, 0.1, "the back-online alert")

    verifier = Webhook(endpoint["secret"])
    received = _delivered(partner, path)
    offline, online = _by_type(received, "inverter.offline"), _by_type(received, "inverter.online")
    # Three attempts of one message (two refused): one webhook-id, each attempt signed afresh and verifiable.
    assert len(offline) == 3 and len({r.headers["webhook-id"] for r in offline}) == 1
    assert len(online) == 1
    for request in received:
        payload = verifier.verify(request.body, {k.lower(): v for k, v in request.headers.items()})
        assert payload["data"]["inverter_id"] == inverter["id"], "only the device taken offline alerts"
        assert payload["data"]["serial"] == "SBX-LOS-0001"
    assert {r.headers["webhook-id"] for r in offline}.isdisjoint({r.headers["webhook-id"] for r in online})
    assert json.loads(online[0].body)["data"]["cleared_at"] is not None

    # The deliveries are ordinary jobs: attempts and backoff in the jobs console.
    jobs = api.get("/jobs").json()["jobs"]
    assert len(jobs) == 2 and all(job["request"]["sign_with"] == endpoint["id"] for job in jobs)
    offline_job = next(
        job for job in jobs if json.loads(json.dumps(job["request"]["json"]))["type"] == "inverter.offline"
    )
    outcomes = [a["outcome"] for a in api.get(f"/jobs/{offline_job['id']}/attempts").json()["attempts"]]
    assert outcomes == ["retry", "retry", "success"]

    # The stream of the inverter carried both alerts.
    stream.wait_for(
        lambda events: (
            [e.data["type"] for e in events if e.event == "alert"] == ["inverter.offline", "inverter.online"]
        ),
        10,
        "alert events on the stream",
    )
    alerts = api.get(f"/inverters/{inverter['id']}/alerts").json()["alerts"]
    assert len(alerts) == 1 and alerts[0]["cleared_at"] is not None
    assert api.get(f"/inverters/{healthy['id']}/alerts").json()["alerts"] == []


def test_a_device_fault_status_gives_one_signed_fault_alert_and_its_stream_event(
    services, metrics_env, mock, web, api, partner, sse, account_key
):
    inverter = onboard(api, mock, "sandbox", "SBX-LOS-0001")
    healthy = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    path = "/ok/faults"
    endpoint = api.post(
        "/webhook-endpoints", json={"url": partner.url + path, "event_types": ["inverter.fault"]}
    ).json()
    assert api.post("/alert-rules", json={"kind": "fault"}).status_code == 201
    services.worker(metrics_env, role="all")
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    stream.wait_for(lambda events: any(e.event == "reading" for e in events), 20, "a first reading")

    set_faults(mock, faulted=["SBX-LOS-0001"])
    wait_until(lambda: _by_type(partner.received(path), "inverter.fault"), 30, 0.1, "the fault alert")
    # Several more fault readings arrive while the device stays faulted: still the one episode.
    stream.wait_for(
        lambda events: sum(1 for e in events if e.event == "reading" and e.data.get("status") == "fault") >= 3,
        30,
        "more fault readings",
    )
    set_faults(mock, faulted=[])
    wait_until(
        lambda: api.get(f"/inverters/{inverter['id']}/alerts").json()["alerts"][0]["cleared_at"],
        30,
        0.1,
        "the episode cleared by a normal reading",
    )
    received = partner.received(path)
    assert len(received) == 1
    payload = Webhook(endpoint["secret"]).verify(
        received[0].body, {k.lower(): v for k, v in received[0].headers.items()}
    )
    assert payload["data"]["serial"] == "SBX-LOS-0001" and payload["data"]["values"] == {"status": "fault"}
    alert_events = [e for e in stream.events if e.event == "alert"]
    assert [e.data["type"] for e in alert_events][:1] == ["inverter.fault"] and alert_events[0].id
    # A stream that reconnects from the reading before the alert replays the alert, with the same id.
    position = lambda e: tuple(map(int, e.id.split("-")))  # noqa: E731
    before = max(
        (e for e in stream.events if e.event == "reading" and position(e) < position(alert_events[0])), key=position
    )
    resumed = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key, last_event_id=before.id)
    resumed.wait_for(
        lambda events: any(e.event == "alert" and e.id == alert_events[0].id for e in events),
        10,
        "the alert replayed after Last-Event-ID",
    )
    assert api.get(f"/inverters/{healthy['id']}/alerts").json()["alerts"] == []


def _verified(endpoint: dict, requests_: list) -> list[dict]:
    """Each request's payload, its signature checked by the standardwebhooks package."""
    verifier = Webhook(endpoint["secret"])
    return [verifier.verify(r.body, {k.lower(): v for k, v in r.headers.items()}) for r in requests_]


def test_a_drained_battery_gives_one_battery_low_and_one_recovered_whatever_it_does_in_between(
    services, metrics_env, mock, web, api, partner, sse, account_key
):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    healthy = onboard(api, mock, "sandbox", "SBX-NBO-0001")
    path = "/ok/battery"
    endpoint = api.post(
        "/webhook-endpoints", json={"url": partner.url + path, "event_types": ["battery.low", "battery.recovered"]}
    ).json()
    rule = api.post("/alert-rules", json={"kind": "battery_low", "params": {"below_pct": 20, "clear_above_pct": 30}})
    assert rule.status_code == 201, rule.text
    # Both batteries held well above the threshold (their own charge depends on the simulated morning).
    set_faults(mock, battery_soc={"SBX-AMS-0001": 60, "SBX-NBO-0001": 60})
    services.worker(metrics_env, role="all")
    stream = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    stream.wait_for(lambda events: any(e.event == "reading" for e in events), 20, "a first reading")

    set_faults(mock, battery_soc={"SBX-AMS-0001": 12, "SBX-NBO-0001": 60})
    wait_until(lambda: _by_type(partner.received(path), "battery.low"), 30, 0.1, "the battery.low alert")
    # Flapping between the thresholds, and below again: the same episode, nothing sent.
    for soc in (25, 15, 28):
        set_faults(mock, battery_soc={"SBX-AMS-0001": soc, "SBX-NBO-0001": 60})
        stream.wait_for(
            lambda events, soc=soc: any(e.event == "reading" and e.data["battery_soc_pct"] == soc for e in events),
            20,
            f"a reading at {soc} %",
        )
    set_faults(mock, battery_soc={"SBX-AMS-0001": 80, "SBX-NBO-0001": 60})
    wait_until(lambda: _by_type(partner.received(path), "battery.recovered"), 30, 0.1, "the battery.recovered alert")

    received = partner.received(path)
    low, recovered = _by_type(received, "battery.low"), _by_type(received, "battery.recovered")
    assert len(low) == 1 and len(recovered) == 1, [json.loads(r.body)["type"] for r in received]
    payloads = _verified(endpoint, received)
    assert {p["data"]["inverter_id"] for p in payloads} == {inverter["id"]}
    opened = next(p for p in payloads if p["type"] == "battery.low")
    assert opened["data"]["values"]["battery_soc_pct"] == 12.0
    cleared = next(p for p in payloads if p["type"] == "battery.recovered")
    assert cleared["data"]["cleared_values"]["battery_soc_pct"] == 80.0 and cleared["data"]["cleared_at"]
    assert low[0].headers["webhook-id"] != recovered[0].headers["webhook-id"]
    assert api.get(f"/inverters/{healthy['id']}/alerts").json()["alerts"] == []
    stream.wait_for(
        lambda events: [e.data["type"] for e in events if e.event == "alert"] == ["battery.low", "battery.recovered"],
        10,
        "both alerts on the inverter's stream",
    )


def _site(serial: str) -> dict:
    """The production_low params of a demo-fleet device: its place and panels, as its owner would enter them."""
    fleet = json.loads((Path(__file__).resolve().parents[2] / "mock_inverter" / "demo_fleet.json").read_text())
    for plant in fleet["plants"]:
        for device in plant["devices"]:
            if device["serial"] == serial:
                return {
                    "latitude": plant["latitude"],
                    "longitude": plant["longitude"],
                    "peak_power_w": device["pv_peak_w"],
                    "tilt": device["tilt"],
                    "azimuth": device["azimuth"],
                }
    raise AssertionError(serial)


def test_a_shaded_device_gives_one_production_low_and_one_recovered_and_healthy_ones_at_other_latitudes_none(
    services, metrics_env, mock, web, api, partner, sse, account_key
):
    # Amsterdam (52 N) shaded; Lagos (7 N) and Nairobi (1 S, panels facing north) healthy. The mock's clock
    # runs 60 times real time: the rule's 0.25 minutes of low production pass in a quarter of a second.
    shaded = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    healthy = [onboard(api, mock, "sandbox", serial) for serial in ("SBX-LOS-0001", "SBX-NBO-0001")]
    path = "/ok/production"
    endpoint = api.post(
        "/webhook-endpoints",
        json={"url": partner.url + path, "event_types": ["production.low", "production.recovered"]},
    ).json()
    for inverter in [shaded, *healthy]:
        # Clouds take the mock's healthy devices down to 40-50 % of the clear sky; shading to 5 %.
        params = {**_site(inverter["serial"]), "below_pct": 25, "clear_above_pct": 30, "minutes": 0.25}
        rule = api.post(
            "/alert-rules", json={"inverter_id": inverter["id"], "kind": "production_low", "params": params}
        )
        assert rule.status_code == 201, rule.text
    services.worker(metrics_env, role="all")
    stream = sse(web.url, f"/inverters/{shaded['id']}/stream", key=account_key)
    stream.wait_for(lambda events: any(e.event == "reading" for e in events), 20, "a first reading")

    set_faults(mock, shaded={"SBX-AMS-0001": 0.05})
    wait_until(lambda: _by_type(partner.received(path), "production.low"), 60, 0.1, "the production.low alert")
    set_faults(mock, shaded={})
    wait_until(lambda: _by_type(partner.received(path), "production.recovered"), 60, 0.1, "production.recovered")

    received = partner.received(path)
    assert len(_by_type(received, "production.low")) == 1 and len(_by_type(received, "production.recovered")) == 1
    payloads = _verified(endpoint, received)
    assert {p["data"]["inverter_id"] for p in payloads} == {shaded["id"]}
    opened = next(p for p in payloads if p["type"] == "production.low")["data"]["values"]
    assert opened["pv_power_w"] < 0.25 * opened["expected_w"] and opened["expected_w"] > 1000
    for inverter in healthy:
        assert api.get(f"/inverters/{inverter['id']}/alerts").json()["alerts"] == [], inverter["serial"]
        assert api.get(f"/inverters/{inverter['id']}/latest").json().get("reading"), "it was judged: it reported"
