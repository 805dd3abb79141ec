"""Signing in and out with an API key, and what a visitor without a session or with a bad address sees."""
from tests.dashboard.conftest import sign_in


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
