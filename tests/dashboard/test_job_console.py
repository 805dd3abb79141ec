"""The jobs console in a real browser: submit a job by hand to a failing endpoint, watch it retry and
die without reloading, retry it, and watch it succeed once the endpoint has recovered."""
import re
import uuid

from playwright.sync_api import expect

from tests.dashboard.conftest import sign_in, wait_for_state


def test_failing_job_goes_retrying_then_dead_live_and_succeeds_after_retry(system, new_page, partner, artifacts):
    _, key = system.new_account()
    page = new_page()
    sign_in(page, system.url, key, "/ui/jobs/new")
    # Fails twice, then recovers: with two attempts per run the job dies, and a retry succeeds.
    url = f"{partner.url}/flaky/{uuid.uuid4().hex}?fail=2"
    page.get_by_label("URL").fill(url)
    page.get_by_label("Headers").fill("Authorization: Bearer very-secret\nX-Trace: dashboard-test")
    page.get_by_label("Body", exact=True).fill('{"order": 42}')
    page.get_by_label("The body is JSON").check()
    page.get_by_label("Most attempts").fill("2")
    page.get_by_label("First delay (s)").fill("1.5")
    page.get_by_label("Jitter").select_option("none")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9A-Z]{26}$"))
    job_id = page.url.rsplit("/", 1)[-1]
    wait_for_state(page, "live")
    page.evaluate("window.notReloaded = true")  # a reload would drop this

    expect(page.locator("#job-status")).to_have_text("retrying")
    expect(page.locator("#job-status")).to_have_text("dead")
    assert page.evaluate("window.notReloaded") is True
    # The status badge changes at once; the panel with the attempts is redrawn right after it.
    expect(page.locator(".timeline-attempt")).to_have_count(2)
    assert "HTTP 503" in page.locator('[data-attempt="1"]').inner_text()
    assert "waited 1.5" in page.locator(".timeline-wait").first.inner_text()
    request_text = page.get_by_label("The request").inner_text()
    assert "very-secret" not in request_text and "Authorization: ***" in request_text
    assert '"order": 42' in request_text

    page.get_by_role("button", name="Retry job").click()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    assert page.evaluate("window.notReloaded") is True
    page.locator('[data-attempt="3"]').wait_for()
    assert "success" in page.locator('[data-attempt="3"]').inner_text()
    assert page.get_by_label("Response body").inner_text() == "recovered"
    assert page.get_by_role("button", name="Retry job").count() == 0
    page.screenshot(path=str(artifacts / "job-page.png"), full_page=True)

    api_job = system.api(key).get(f"/jobs/{job_id}").json()
    assert api_job["status"] == "succeeded" and api_job["attempts"] == 3
    assert len(partner.received("/flaky/")) == 3
    assert not page.errors


def test_cancel_a_waiting_job_and_list_jobs_by_status(system, new_page, partner, artifacts):
    _, key = system.new_account()
    api = system.api(key)
    delivered = api.post("/jobs", json={"url": partner.url + "/ok"}).json()["id"]
    waiting = api.post("/jobs", json={"url": partner.url + "/ok", "run_at": "2099-01-01T00:00:00Z"}).json()["id"]
    page = new_page()
    sign_in(page, system.url, key, f"/ui/jobs/{waiting}")
    expect(page.locator("#job-status")).to_have_text("pending")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("cancelled")
    page.get_by_role("button", name="Retry job").wait_for()

    page.goto(system.url + "/ui/jobs")
    filters = page.get_by_role("navigation", name="Filter jobs by status")
    assert filters.get_by_role("link", name="cancelled 1").count() == 1
    rows = page.locator("tr[data-job-id]")
    assert [rows.nth(i).get_attribute("data-job-id") for i in range(rows.count())] == [waiting, delivered]  # newest first
    filters.get_by_role("link", name="cancelled 1").click()
    page.wait_for_url("**/ui/jobs?status=cancelled")
    assert page.locator("tr[data-job-id]").count() == 1
    page.screenshot(path=str(artifacts / "jobs-list.png"), full_page=True)
    assert not page.errors


def test_submission_errors_are_shown_by_their_field(system, new_page):
    _, key = system.new_account()
    page = new_page()
    sign_in(page, system.url, key, "/ui/jobs/new")
    page.get_by_label("URL").fill("ftp://example.com/file")
    page.get_by_role("button", name="Submit job").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "scheme must be http or https" in alert.inner_text()
    assert page.get_by_label("URL").get_attribute("aria-invalid") == "true"
    assert "/ui/jobs/new" in page.url
