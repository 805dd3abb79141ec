"""Signing in and out with an API key, and what a visitor without a session or with a bad address sees."""

from urllib.parse import parse_qs, urlsplit

import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.dashboard.conftest import sign_in, wait_for_state


def test_wrong_key_is_refused_on_the_page(system, new_page):
    page = new_page()
    page.goto(system.url + "/ui/inverters")
    assert "/ui/sign-in" in page.url  # no session: sent to sign in first
    page.get_by_label("API key").fill("sk_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "not valid" in alert.inner_text()
    assert page.get_by_label("API key").get_attribute("aria-invalid") == "true"
    assert "/ui/sign-in" in page.url
    assert not [c for c in page.context.cookies() if c["name"] == "session"]


def test_sign_in_lands_on_the_page_asked_for_and_sign_out_ends_the_session(system, new_page):
    name, key = system.new_account()
    page = new_page()
    sign_in(page, system.url, key, next_path="/ui/jobs")
    assert page.get_by_role("heading", level=1).inner_text() == "Jobs"
    assert name in page.locator(".account").inner_text()
    [cookie] = [c for c in page.context.cookies() if c["name"] == "session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert key not in page.content()  # the key never sits in the page

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/sign-in")
    page.goto(system.url + "/ui/jobs")
    assert "/ui/sign-in" in page.url


def test_unknown_job_and_page_show_not_found(system, new_page):
    _, key = system.new_account()
    page = new_page()
    sign_in(page, system.url, key)
    for path in ("/ui/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/ui/jobs/not-an-id", "/ui/no-such-page"):
        response = page.goto(system.url + path)
        assert response.status == 404, path
        assert page.get_by_role("heading", level=1).inner_text() == "Not found"
    assert not page.errors


def _revoke_session(system, page) -> None:
    """End the page's session on the server, as an expiry or a sign-out elsewhere would; the browser keeps its cookie."""
    [cookie] = [c for c in page.context.cookies() if c["name"] == "session"]
    reply = requests.delete(system.url + "/session", cookies={"session": cookie["value"]}, timeout=5)
    assert reply.status_code == 204


def _wait_for_sign_in(page, back_to: str) -> None:
    """Until the page shows sign-in, to come back to `back_to`. The failed action and the page's stream probe
    may both send the page there, and the second navigation aborts the first, which wait_for_url reports as
    an error: wait again then."""

    def there(address: str) -> bool:
        url = urlsplit(address)
        return url.path == "/ui/sign-in" and parse_qs(url.query).get("next") == [back_to]

    for _ in range(3):
        try:
            page.wait_for_url(there, timeout=15_000)
            return
        except PlaywrightError as exc:
            if "ERR_ABORTED" not in str(exc):
                raise
    page.wait_for_url(there, timeout=15_000)


def test_an_ended_session_sends_an_open_page_to_sign_in_and_back(system, new_page):
    _, key = system.new_account()
    job_id = (
        system.api(key)
        .post("/jobs", json={"url": "http://127.0.0.1:9/", "run_at": "2099-01-01T00:00:00Z"})
        .json()["id"]
    )
    page = new_page()
    sign_in(page, system.url, key, f"/ui/jobs/{job_id}")
    wait_for_state(page, "live")
    _revoke_session(system, page)
    # An action answered 401: to sign in, keeping where the person was.
    page.get_by_role("button", name="Cancel job").click()
    _wait_for_sign_in(page, f"/ui/jobs/{job_id}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{system.url}/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("pending")  # the click before signing in did nothing
    wait_for_state(page, "live")

    # A live stream that drops and finds its session gone does the same (not "reconnecting" for ever).
    _revoke_session(system, page)
    system.web.stop()
    system.web.start()
    _wait_for_sign_in(page, f"/ui/jobs/{job_id}")
    assert not page.errors
