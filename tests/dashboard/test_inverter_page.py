"""An inverter's page in a real browser: history at once, live readings on the charts, resuming
without gaps after the web process restarts, and only the team may look."""

import json
import re
import time

import redis as redis_lib

from models.channels import inverter_channel, inverter_log
from tests.dashboard.conftest import sign_in, wait_for_state
from tests.helpers import wait_until

PUBLISH_TO_PAGE_S = 3.0


def page_event_ids(page) -> set:
    return set(page.evaluate("window.inverterPage.eventIds()"))


def stored_readings(system, inverter_id) -> list:
    return system.api(system.owner_key).get(f"/inverters/{inverter_id}/readings?limit=1000").json()["readings"]


def next_published_reading(redis, inverter_id: str, timeout: float = 10) -> str:
    """Wait for the next reading published on the inverter's channel; its event id."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(inverter_channel(inverter_id))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and json.loads(message["data"])["event"] == "reading":
                return json.loads(message["data"])["id"]
        raise AssertionError(f"no reading published for inverter {inverter_id} within {timeout} s")
    finally:
        pubsub.close()


def test_history_at_once_then_live_points_within_seconds(system, new_page, redis_server, artifacts):
    inverter_id = system.inverters["SBX-AMS-0001"]
    stored = wait_until(
        lambda: len(r := stored_readings(system, inverter_id)) >= 3 and r, 20, 0.2, "three stored readings"
    )
    page = new_page()
    sign_in(page, system.url, system.owner_key, f"/ui/inverters/{inverter_id}")
    wait_for_state(page, "live")
    # The stored history is on the charts at once, not only what the stream brings from now on.
    assert {r["event_id"] for r in stored} <= page_event_ids(page)
    assert page.evaluate("window.inverterPage.pointCount()") >= len(stored)

    redis = redis_lib.Redis.from_url(redis_server.url)
    event_id = next_published_reading(redis, inverter_id)
    published = time.monotonic()
    wait_until(
        lambda: event_id in page_event_ids(page),
        PUBLISH_TO_PAGE_S,
        0.02,
        f"reading {event_id} on the page within {PUBLISH_TO_PAGE_S} s of being published",
    )
    print(f"published -> on the page in {time.monotonic() - published:.3f} s")
    redis.close()

    assert page.locator('[data-figure="load_power_w"]').inner_text() != "–"
    assert page.locator('[data-figure="battery_soc_pct"]').inner_text().endswith("%")
    assert page.locator(".chart-area canvas").count() == 4
    # Today's bar of daily energy, computed from the readings stored so far.
    wait_until(lambda: page.evaluate("window.inverterPage.energyDays") >= 1, 10, 0.1, "a daily energy bar")
    assert "today so far" in page.locator("#energy-note").inner_text()
    assert page.locator('[data-field="device-status"]').inner_text() == "online"
    page.screenshot(path=str(artifacts / "inverter-page.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    wait_until(
        lambda: page.evaluate("document.documentElement.scrollWidth") <= 390, 5, 0.05, "the page to fit a phone's width"
    )
    page.screenshot(path=str(artifacts / "inverter-page-phone.png"), full_page=True)
    assert not page.errors


def test_web_restart_shows_reconnecting_then_live_with_missed_readings_filled_in(system, new_page, redis_server):
    inverter_id = system.inverters["SBX-AMS-0001"]
    page = new_page()
    sign_in(page, system.url, system.owner_key, f"/ui/inverters/{inverter_id}")
    wait_for_state(page, "live")
    redis = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    next_published_reading(redis, inverter_id)
    seen_before = page_event_ids(page)
    last_seen = max(seen_before, key=lambda i: tuple(map(int, i.split("-"))))

    system.web.stop()
    wait_for_state(page, "reconnecting", 5)
    wait_until(
        lambda: redis.xrange(inverter_log(inverter_id), min="(" + last_seen, max="+"),
        10,
        0.1,
        "readings published while the web process is down",
    )
    system.web.start()
    wait_for_state(page, "live", 20)

    logged = [
        entry_id
        for entry_id, fields in redis.xrange(inverter_log(inverter_id), min="(" + last_seen, max="+")
        if fields.get("event") == "reading"
    ]
    assert logged
    wait_until(lambda: set(logged) <= page_event_ids(page), 5, 0.05, "every reading missed while away on the page")
    # One point per reading: the replay and the live stream overlap, and neither adds a point twice.
    times = page.evaluate("window.inverterPage.readings.times")
    assert len(times) == len(set(times))
    redis.close()
    assert not page.errors


def test_non_member_can_open_neither_the_page_nor_the_stream(system, new_page):
    inverter_id = system.inverters["SBX-AMS-0001"]
    _, stranger_key = system.new_account()
    page = new_page()
    sign_in(page, system.url, stranger_key)
    assert page.locator(f'tr[data-inverter-id="{inverter_id}"]').count() == 0
    response = page.goto(f"{system.url}/ui/inverters/{inverter_id}")
    assert response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Not found"
    assert page.request.get(f"{system.url}/inverters/{inverter_id}/stream").status == 404
    assert page.request.get(f"{system.url}/inverters/{inverter_id}/readings").status == 404


def test_owner_adds_and_removes_a_member_who_then_sees_the_inverter_or_not(system, new_page):
    inverter_id = system.inverters["SBX-NBO-0001"]
    member_name, member_key = system.new_account()
    owner_page = new_page()
    sign_in(owner_page, system.url, system.owner_key, f"/ui/inverters/{inverter_id}")
    owner_page.get_by_label("Account name or id").fill("nobody-by-this-name")
    owner_page.get_by_role("button", name="Add member").click()
    owner_page.get_by_text("There is no account").wait_for()
    owner_page.get_by_label("Account name or id").fill(member_name)
    owner_page.get_by_role("button", name="Add member").click()
    owner_page.get_by_role("button", name=f"Remove {member_name} from the team").wait_for()

    member_page = new_page(width=390, height=844)
    sign_in(member_page, system.url, member_key)
    [row] = member_page.locator(f'tr[data-inverter-id="{inverter_id}"]').all()
    assert "shared with you" in row.inner_text()
    member_page.get_by_role("link", name="SBX-NBO-0001").click()
    wait_for_state(member_page, "live")
    assert "shared" not in member_page.get_by_role("heading", name="Team").inner_text()
    assert member_page.get_by_role("button", name="Add member").count() == 0  # members cannot manage the team
    assert member_page.get_by_role("button", name="Remove inverter").count() == 0  # nor remove the inverter

    owner_page.get_by_role("button", name=f"Remove {member_name} from the team").click()
    owner_page.get_by_text("No members yet").wait_for()
    assert member_page.goto(f"{system.url}/ui/inverters/{inverter_id}").status == 404
    assert not owner_page.errors and not member_page.errors


def test_inverters_list_shows_status_and_a_live_reading_age(system, new_page, artifacts):
    page = new_page()
    sign_in(page, system.url, system.owner_key)
    rows = page.locator("tr[data-inverter-id]")
    assert {rows.nth(i).get_attribute("data-inverter-id") for i in range(rows.count())} == set(
        system.inverters.values()
    )
    for serial, inverter_id in system.inverters.items():
        row = page.locator(f'tr[data-inverter-id="{inverter_id}"]')
        assert serial in row.inner_text() and "owner" in row.inner_text()
        wait_until(lambda: row.locator('[data-field="status"]').inner_text() == "online", 10, 0.1, f"{serial} online")
        age = row.locator('[data-field="last-reading"] time')
        wait_until(lambda: re.fullmatch(r"just now|\d+ s ago", age.inner_text()), 10, 0.1, "a reading age in seconds")
    page.screenshot(path=str(artifacts / "inverters-list.png"), full_page=True)
    assert not page.errors


def test_a_removal_that_fails_says_why_and_the_page_stays_live(system, new_page):
    inverter_id = system.inverters["SBX-AMS-0001"]
    page = new_page()
    sign_in(page, system.url, system.owner_key, f"/ui/inverters/{inverter_id}")
    wait_for_state(page, "live")

    def refused(route):
        if route.request.method != "DELETE":
            route.continue_()
            return
        route.fulfill(
            status=503,
            content_type="application/json",
            body=json.dumps({"error": {"code": "unavailable", "message": "try again in a minute", "details": {}}}),
        )

    page.route(f"**/inverters/{inverter_id}", refused)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove inverter").click()
    page.get_by_text("try again in a minute").wait_for()
    assert page.get_by_role("button", name="Remove inverter").is_enabled()
    # The page let go of its stream while it asked, and took it up again from the last event it had.
    wait_until(
        lambda: page.evaluate("window.inverterPage.stream.source.readyState === EventSource.OPEN"),
        10,
        0.05,
        "the stream open again",
    )
    wait_for_state(page, "live")
    assert not page.errors


def test_a_removal_that_fails_while_the_history_loads_loads_it_again_and_goes_live(system, new_page):
    """Remove aborts the page's reads on their way; if the removal fails, the history cut short starts over and
    the daily energy is asked again."""
    inverter_id = system.inverters["SBX-AMS-0001"]
    page = new_page()
    # The first read of the history and of the daily energy: on their way when Remove is clicked, never answered.
    held: dict = {}

    def routed(route):
        request = route.request
        path = request.url.split(f"/inverters/{inverter_id}", 1)[-1]
        if request.method == "GET" and path in ("/latest", "/energy?period=day") and path not in held:
            held[path] = route
        elif request.method == "DELETE":
            route.fulfill(
                status=503,
                content_type="application/json",
                body=json.dumps({"error": {"code": "unavailable", "message": "try again in a minute", "details": {}}}),
            )
        else:
            route.continue_()

    page.route(f"**/inverters/{inverter_id}**", routed)
    sign_in(page, system.url, system.owner_key, f"/ui/inverters/{inverter_id}")
    wait_until(lambda: len(held) == 2, 10, 0.05, "the page's history and energy to be on their way")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove inverter").click()
    page.get_by_text("try again in a minute").wait_for()
    wait_for_state(page, "live")
    wait_until(lambda: page.evaluate("window.inverterPage.pointCount()") > 1, 10, 0.05, "the history on the charts")
    wait_until(lambda: page.evaluate("window.inverterPage.energyDays") > 0, 10, 0.05, "the daily energy on its chart")
    assert not page.errors
