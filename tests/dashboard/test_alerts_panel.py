"""An inverter's alerts in a real browser: an alert appears on the page live (the stream's `alert` event) and
clears live; the owner acknowledges it from the keyboard; a member sees it and cannot acknowledge it."""

import re

import requests

from tests.dashboard.conftest import sign_in, wait_for_state
from tests.helpers import wait_until


def set_faults(system, **faults) -> None:
    requests.post(system.mock.url + "/admin/faults", json=faults, timeout=5).raise_for_status()


def focused_text(page) -> str:
    return page.evaluate("document.activeElement ? document.activeElement.textContent.trim() : ''")


def test_an_alert_appears_and_clears_live_and_the_owner_acknowledges_it_by_keyboard(system, new_page):
    inverter_id = system.inverters["SBX-AMS-0001"]
    owner_api = system.api(system.owner_key)
    reply = owner_api.post("/alert-rules", json={"inverter_id": inverter_id, "kind": "fault"})
    assert reply.status_code == 201, reply.text
    member_name, member_key = system.new_account()
    assert owner_api.post(f"/inverters/{inverter_id}/members", json={"account": member_name}).status_code == 201

    page = new_page()
    sign_in(page, system.url, system.owner_key, f"/ui/inverters/{inverter_id}")
    wait_for_state(page, "live")
    section = page.locator("#alerts")
    section.get_by_text("No alerts.").wait_for()

    set_faults(system, faulted=["SBX-AMS-0001"])
    try:
        item = section.locator("li.alert-item").first
        item.wait_for()  # no reload: it came on the page's stream
        assert "Fault reported" in item.inner_text() and item.get_attribute("data-state") == "open"
    finally:
        set_faults(system, faulted=[])
    wait_until(lambda: item.get_attribute("data-state") == "cleared", 30, 0.1, "the episode shown cleared, live")
    assert section.locator("li.alert-item").count() == 1

    # Reachable with Tab from the top of the page, and acknowledged with Enter.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(60):
        page.keyboard.press("Tab")
        if focused_text(page) == "Acknowledge":
            break
    else:
        raise AssertionError("the Acknowledge button is not reachable with Tab")
    page.keyboard.press("Enter")
    item.get_by_text(re.compile("^Acknowledged")).wait_for()
    assert item.get_by_role("button", name=re.compile("Acknowledge")).count() == 0
    assert focused_text(page).startswith("Acknowledged"), "the keyboard's place is kept on what replaced the button"
    [alert] = owner_api.get(f"/inverters/{inverter_id}/alerts").json()["alerts"]
    assert alert["acknowledged_at"] and alert["cleared_at"]

    # A member reads the alerts but cannot acknowledge them (no button; the API says 403).
    member_page = new_page()
    sign_in(member_page, system.url, member_key, f"/ui/inverters/{inverter_id}")
    member_item = member_page.locator("#alerts li.alert-item").first
    member_item.wait_for()
    assert "Acknowledged" in member_item.inner_text()
    assert member_page.locator("#alerts").get_by_role("button").count() == 0
    refused = system.api(member_key).post(f"/inverters/{inverter_id}/alerts/{alert['alert_id']}/acknowledge")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    missing = owner_api.post(f"/inverters/{inverter_id}/alerts/{'0' * 26}/acknowledge")
    assert missing.status_code == 404
    assert not page.errors and not member_page.errors
