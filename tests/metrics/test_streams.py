"""SSE streams end to end: mock inverter -> poller -> Redis -> web hub -> client, with real processes."""

from __future__ import annotations

import redis as redis_lib

from models.channels import inverter_latest, inverter_log
from tests.helpers import wait_until
from tests.metrics.conftest import onboard, set_faults


def key(event_id: str) -> tuple:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def test_stream_sends_latest_first_then_live_readings_and_resumes_without_gaps(
    services, metrics_env, mock, web, api, account_key, sse, redis_url
):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    services.worker(metrics_env, role="pollers")
    # Wait until a reading and the online status have been published, so a new viewer has both to see first.
    log = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    wait_until(
        lambda: all(log.hmget(inverter_latest(inverter["id"]), "data", "status")),
        15,
        0.05,
        "a first reading and status",
    )

    first = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    assert first.wait_status() == 200
    assert first.headers["content-type"].startswith("text/event-stream")
    first.wait_for(lambda events: len([e for e in events if e.event == "reading"]) >= 3, 20, "three readings")
    readings = first.of("reading")
    assert first.retry == 200
    # The latest reading first, as the README promises, then the status it was sent with.
    assert [e.event for e in first.events[:2]] == ["reading", "status"], first.events[:3]
    assert first.events[1].data["inverter_id"] == inverter["id"]
    assert readings[0].id is not None and readings[0].data["inverter_id"] == inverter["id"]
    assert readings[0].data["serial"] == "SBX-AMS-0001" and readings[0].data["time"].endswith("Z")
    ids = [key(e.id) for e in readings]
    assert ids == sorted(set(ids)), "ids strictly increase"
    first.close()

    # Missed events while disconnected come back from the replay log, then live ones follow.
    resume_from = readings[-1].id
    wait_until(
        lambda: len(log.xrange(inverter_log(inverter["id"]), min="(" + resume_from)) >= 2,
        15,
        0.05,
        "two readings published while away",
    )
    second = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key, last_event_id=resume_from)
    second.wait_for(lambda events: len(events) >= 4, 20, "replay then live readings")
    logged = [entry_id for entry_id, _ in log.xrange(inverter_log(inverter["id"]), min="(" + resume_from)]
    received = [e.id for e in second.events if e.id]
    assert received[: len(logged)] == logged, "replay is exactly the log after Last-Event-ID"
    assert len(received) == len(set(received)), "no duplicates"
    assert [key(i) for i in received] == sorted(key(i) for i in received)
    # Live events continue the log with no gap: every logged id up to the last received was received.
    final = [
        entry_id for entry_id, _ in log.xrange(inverter_log(inverter["id"]), min="(" + resume_from, max=received[-1])
    ]
    assert final == received


def test_one_stream_carries_several_inverters_and_status_changes(
    services, metrics_env, mock, web, api, account_key, sse
):
    a = onboard(api, mock, "sandbox", "SBX-LOS-0001")
    b = onboard(api, mock, "growatt_v4", "GRTSPH0001", timezone="Africa/Lagos")
    services.worker(metrics_env, role="pollers")
    stream = sse(web.url, f"/stream?inverters={a['id']},{b['id']}", key=account_key)
    stream.wait_for(
        lambda events: {e.data["inverter_id"] for e in events if e.event == "reading"} == {a["id"], b["id"]},
        20,
        "readings of both inverters",
    )
    by_b = [e for e in stream.of("reading") if e.data["inverter_id"] == b["id"]]
    assert by_b[0].data["brand"] == "growatt_v4" and by_b[0].data["battery_soc_pct"] is not None

    set_faults(mock, offline=["SBX-LOS-0001"])
    stream.wait_for(
        lambda events: any(
            e.event == "status" and e.data["status"] == "offline" and e.data["inverter_id"] == a["id"] for e in events
        ),
        20,
        "offline status",
    )
    wait_until(
        lambda: api.get(f"/inverters/{a['id']}").json()["status"] == "offline",
        5,
        0.05,
        "the API to report the inverter offline",
    )
    set_faults(mock, offline=[])
    stream.wait_for(
        lambda events: any(
            e.event == "status" and e.data["status"] == "online" and e.data["inverter_id"] == a["id"] for e in events
        ),
        20,
        "back online",
    )
    ids = [key(e.id) for e in stream.events if e.id]
    assert ids == sorted(set(ids)), "one ordered id sequence across inverters"


def test_a_later_viewer_first_sees_the_newest_reading_not_the_one_cached_for_an_earlier_viewer(
    services, metrics_env, mock, web, api, account_key, sse, redis_url
):
    inverter = onboard(api, mock, "sandbox", "SBX-AMS-0001")
    services.worker(metrics_env, role="pollers")
    log = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    wait_until(lambda: log.xlen(inverter_log(inverter["id"])) >= 1, 15, 0.05, "a first reading")
    first = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)  # fills the hub's cache
    first.wait_for(lambda events: len(first.of("reading")) >= 1, 10, "the latest reading")
    seen = first.of("reading")[0].id
    wait_until(
        lambda: any(key(i) > key(seen) for i, _ in log.xrange(inverter_log(inverter["id"]), min="(" + seen)),
        15,
        0.05,
        "a newer reading published",
    )
    newest = log.xrevrange(inverter_log(inverter["id"]), count=1)[0][0]
    later = sse(web.url, f"/inverters/{inverter['id']}/stream", key=account_key)
    later.wait_for(lambda events: len(later.of("reading")) >= 1, 10, "the later viewer's first reading")
    assert key(later.of("reading")[0].id) >= key(newest)
    first.close()
    later.close()
