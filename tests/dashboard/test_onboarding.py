"""Adding inverters in a real browser: pick a brand, enter its credentials, pick devices from the brand's own
list, and see each one's first reading arrive; errors that say what to fix; the whole form by keyboard."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.dashboard.conftest import SANDBOX_KEY, sign_in
from tests.helpers import free_port, wait_until

GROWATT_TOKEN = "demo-growatt-token"
FIRST_READING_MS = 20_000


def console_errors(page) -> list:
    """Every console error from now on (a failed request the page expected is logged as one too)."""
    errors: list = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


class SlowRemoval:
    """Routes an inverter page's requests: its history's first answer is held until the inverter has been removed,
    its first energy request reaches the server only after the removal (as a request on its way could, on another
    connection), and the removal's answer reaches the page 1.5 s after the server gave it."""

    REPLY_LATE_S = 1.5

    def __init__(self, inverter_id: str):
        self.inverter_id = inverter_id
        self.held: list = []
        self.unsent: list = []

    def handle(self, route) -> None:
        request = route.request
        inverter = f"/inverters/{self.inverter_id}"
        if request.method == "GET" and request.url.endswith(f"{inverter}/latest"):
            self.held.append((route, route.fetch()))  # answered before the removal; reaches the page after it
        elif request.method == "GET" and f"{inverter}/energy?period=day" in request.url and not self.unsent:
            self.unsent.append(route)
        elif request.method == "DELETE" and request.url.endswith(inverter):
            reply = route.fetch()  # the server has removed it
            for held, answer in self.held:
                held.fulfill(response=answer)
            for unsent in self.unsent:
                late = unsent.fetch()  # the server answers 404 now
                assert late.status == 404
                try:
                    unsent.fulfill(response=late)
                except PlaywrightError:
                    pass  # the page aborted it: nothing to answer
            time.sleep(self.REPLY_LATE_S)  # the network's delay, not a wait for anything
            route.fulfill(response=reply)
        else:
            route.continue_()


def test_add_a_device_and_see_its_first_reading(system, new_page, artifacts):
    name, key = system.new_account()
    page = new_page()
    errors = console_errors(page)
    sign_in(page, system.url, key)
    page.get_by_role("link", name="Add yours").click()
    page.wait_for_url(f"{system.url}/ui/inverters/new")
    page.get_by_label("Brand").select_option("sandbox")
    page.get_by_label("API address").fill(system.mock.url)
    api_key = page.locator("#sandbox-api-key")
    assert api_key.get_attribute("type") == "password", "credentials are masked"
    api_key.fill(SANDBOX_KEY)
    page.screenshot(path=str(artifacts / "onboarding-credentials.png"), full_page=True)
    page.get_by_role("button", name="Find my devices").click()

    rows = page.locator(".device-list tbody tr")
    expect(rows).to_have_count(3)
    # The types are the brand's own; the fleet owner's devices cannot be added by someone else.
    expect(page.locator('tr[data-serial="SBX-LOS-0001"]')).to_contain_text("inverter")
    expect(page.locator('tr[data-serial="SBX-AMS-0001"]')).to_contain_text("added by another account")
    expect(page.locator('tr[data-serial="SBX-AMS-0001"]')).to_contain_text("hybrid")
    # The credentials left the form once the brand accepted them, and are nowhere on the page.
    assert api_key.input_value() == ""
    assert SANDBOX_KEY not in page.content()
    expect(page.locator("#credentials-kept")).to_contain_text("never shown again")
    page.screenshot(path=str(artifacts / "onboarding-devices.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    wait_until(
        lambda: page.evaluate("document.documentElement.scrollWidth") <= 390, 5, 0.05, "the page to fit a phone's width"
    )
    page.screenshot(path=str(artifacts / "onboarding-devices-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_label("Add SBX-LOS-0001").check()
    page.get_by_role("button", name="Add selected devices").click()
    item = page.locator('#progress-list li[data-serial="SBX-LOS-0001"]')
    expect(item).to_contain_text("Added (inverter, Africa/Lagos)")
    expect(item).to_contain_text(re.compile(r"First reading at .*solar"), timeout=FIRST_READING_MS)
    expect(page.locator('tr[data-serial="SBX-LOS-0001"]')).to_contain_text("added")
    page.screenshot(path=str(artifacts / "onboarding-first-reading.png"), full_page=True)

    inverter_id = item.get_attribute("data-inverter-id")
    [listed] = system.api(key).get("/inverters").json()["inverters"]
    assert (listed["id"], listed["serial"], listed["device_type"]) == (inverter_id, "SBX-LOS-0001", "inverter")
    item.get_by_role("link", name="SBX-LOS-0001").click()
    page.wait_for_url(f"{system.url}/ui/inverters/{inverter_id}")
    # Removing it and its team stay on its own page. The page asks nothing more about what it removes, even when
    # its history is still loading and the removal's reply comes late (a slow network): the server ends the page's
    # stream when the inverter goes, and a stream that came back then (after the 0.3 s the server asks for), or
    # opened only once the history was in, would find a 404.
    removal = SlowRemoval(inverter_id)
    page.route("**/inverters/**", removal.handle)
    page.reload()
    page.get_by_role("heading", name="Team").wait_for()
    wait_until(lambda: removal.held and removal.unsent, 10, 0.05, "the page's history and energy to be on their way")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove inverter").click()
    page.wait_for_url(f"{system.url}/ui/inverters")
    expect(page.get_by_role("link", name="Add yours")).to_be_visible()
    assert system.api(key).get("/inverters").json()["inverters"] == []
    assert not page.errors and not errors, (page.errors, errors)


def test_errors_say_what_to_fix(system, new_page, artifacts):
    _, key = system.new_account()
    page = new_page()
    errors = console_errors(page)
    sign_in(page, system.url, key, "/ui/inverters/new")
    page.get_by_label("Brand").select_option("sandbox")
    address = page.get_by_label("API address")
    api_key = page.locator("#sandbox-api-key")

    address.fill(system.mock.url)
    page.get_by_role("button", name="Find my devices").click()
    expect(page.get_by_role("alert")).to_have_text("Enter your API key.")
    expect(api_key).to_be_focused()

    api_key.fill("not-the-key")
    page.get_by_role("button", name="Find my devices").click()
    expect(page.get_by_role("alert")).to_contain_text("did not accept these credentials. Check the API key")
    expect(api_key).to_have_attribute("aria-invalid", "true")
    expect(api_key).to_be_focused()
    page.screenshot(path=str(artifacts / "onboarding-wrong-key.png"), full_page=True)

    closed = f"http://127.0.0.1:{free_port()}"
    address.fill(closed)
    api_key.fill(SANDBOX_KEY)
    page.get_by_role("button", name="Find my devices").click()
    expect(page.get_by_role("alert")).to_contain_text(f"could not be reached at {closed}. Check the API address")
    expect(address).to_be_focused()

    address.fill(system.mock.url + "/some/path")
    page.get_by_role("button", name="Find my devices").click()
    expect(page.get_by_role("alert")).to_contain_text("Check the API address: enter only the address, such as http")

    address.fill("http://10.20.30.40")
    page.get_by_role("button", name="Find my devices").click()
    expect(page.get_by_role("alert")).to_contain_text("may not connect to http://10.20.30.40")
    assert not page.errors
    # The only console errors are the refused requests themselves (Chromium logs every 4xx/5xx it loads).
    assert all("Failed to load resource" in e for e in errors), errors


def test_the_form_by_keyboard_alone_with_growatt(system, new_page, artifacts):
    _, key = system.new_account()
    page = new_page()
    errors = console_errors(page)
    sign_in(page, system.url, key, "/ui/inverters/new")

    def focused() -> str:
        return page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")

    for _ in range(15):  # from the top of the page: the skip link, the header, then the form
        page.keyboard.press("Tab")
        if focused() == "brand":
            break
    assert focused() == "brand"
    page.keyboard.press("ArrowDown")
    assert page.locator("#brand").input_value() == "growatt_v4"
    page.keyboard.press("Tab")
    assert focused() == "base-url"
    assert page.locator("#base-url").input_value() == "https://openapi.growatt.com", "the brand's usual address"
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(system.mock.url)
    page.keyboard.press("Tab")
    assert focused() == "growatt_v4-token"
    page.keyboard.type(GROWATT_TOKEN)
    page.keyboard.press("Tab")
    assert focused() == "discover-button"
    page.keyboard.press("Enter")

    expect(page.locator(".device-list tbody tr")).to_have_count(4)
    expect(page.locator("#devices-heading")).to_be_focused()
    expect(page.locator('tr[data-serial="GRTSPH0001"]')).to_contain_text("sph")
    page.keyboard.press("Tab")  # the first device: GRTINV0001 (sorted by serial)
    assert focused() == "pick-GRTINV0001"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused() == "pick-GRTSTO0001"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    assert focused() == "onboard-button"
    page.screenshot(path=str(artifacts / "onboarding-keyboard.png"), full_page=True)
    page.keyboard.press("Enter")

    for serial, device_type in (("GRTINV0001", "inv"), ("GRTSTO0001", "storage")):
        item = page.locator(f'#progress-list li[data-serial="{serial}"]')
        expect(item).to_contain_text(f"Added ({device_type}")
        expect(item).to_contain_text("First reading at", timeout=FIRST_READING_MS)
    assert {i["serial"] for i in system.api(key).get("/inverters").json()["inverters"]} == {"GRTINV0001", "GRTSTO0001"}
    assert not page.errors and not errors, (page.errors, errors)
