"""The jobs console in a real browser: submit a job by hand to a failing endpoint, watch it retry and
die without reloading, retry it, and watch it succeed once the endpoint has recovered."""

import re
import uuid

from playwright.sync_api import expect

from tests.dashboard.conftest import sign_in, wait_for_state
from tests.helpers import wait_until


def test_failing_job_goes_retrying_then_dead_live_and_succeeds_after_retry(system, new_page, partner, artifacts):
    _, key = system.new_account()
    page = new_page()
    sign_in(page, system.url, key, "/ui/jobs/new")
    # Fails twice, then recovers: with two attempts per run the job dies, and a retry succeeds.
    # The first attempt is held until the page is live: its "retrying" lasts only the 1.5 s delay, which a
    # page still loading on a busy machine would miss.
    flaky = uuid.uuid4().hex
    url = f"{partner.url}/flaky/{flaky}?fail=2&hold=1"
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
    partner.let_go(flaky)

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

    page.wait_for_timeout(400)  # a person's pause before retrying, which the timeline must not call a wait
    page.get_by_role("button", name="Retry job").click()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    assert page.evaluate("window.notReloaded") is True
    page.locator('[data-attempt="3"]').wait_for()
    assert "success" in page.locator('[data-attempt="3"]').inner_text()
    # The person's delay before pressing Retry is not a backoff wait: the timeline says the retry was by hand.
    waits = page.locator(".timeline-wait")
    expect(waits).to_have_count(2)
    assert "waited" not in waits.nth(1).inner_text() and "retried by hand" in waits.nth(1).inner_text()
    # Each attempt's response is kept: the failures' too.
    page.get_by_text("Response of attempt 1: HTTP 503").click()
    expect(page.get_by_label("Response body of attempt 1")).to_have_text("not yet")
    assert "Content-Type: text/plain" in page.get_by_label("Response headers of attempt 1").inner_text()
    assert page.get_by_label("Response body", exact=True).inner_text() == "recovered"
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
    assert [rows.nth(i).get_attribute("data-job-id") for i in range(rows.count())] == [
        waiting,
        delivered,
    ]  # newest first
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


def test_search_the_jobs_list_and_retry_or_cancel_what_it_finds_at_once(system, new_page, partner, artifacts):
    _, key = system.new_account()
    api = system.api(key)
    host = "localhost"  # another host than 127.0.0.1 for the same partner: the search tells them apart
    dead = [
        api.post("/jobs", json={"url": f"http://{host}:{partner.port}/status/404", "max_attempts": 1}).json()["id"]
        for _ in range(2)
    ]
    waiting = [
        api.post(
            "/jobs",
            json={"url": partner.url + "/ok", "run_at": "2099-01-01T00:00:00Z"},
            headers={"Idempotency-Key": f"order-{n}"},
        ).json()["id"]
        for n in range(3)
    ]
    wait_until(lambda: all(api.get(f"/jobs/{job_id}").json()["status"] == "dead" for job_id in dead), 10)
    page = new_page()
    sign_in(page, system.url, key, "/ui/jobs")
    rows = page.locator("tr[data-job-id]")
    expect(rows).to_have_count(5)

    # Search by idempotency key, then by host, with the keyboard alone.
    page.get_by_label("Find a job").fill("order-1")
    page.keyboard.press("Enter")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-job-id") == waiting[1]
    page.get_by_label("Find a job").fill(host)
    page.get_by_label("Created").select_option("1h")
    page.get_by_role("button", name="Search").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/jobs?q=localhost&within=1h")
    expect(rows).to_have_count(2)

    # Retry every dead job found: one call; the message and the list say what happened.
    page.get_by_role("button", name="Retry all dead jobs found").focus()
    with page.expect_navigation():  # the page draws the list again by reloading itself
        page.keyboard.press("Enter")
    expect(page.locator("#bulk-message")).to_have_text("2 jobs queued again.")
    wait_until(lambda: all(api.get(f"/jobs/{job_id}").json()["attempts"] == 2 for job_id in dead), 10)

    # Cancel every waiting job (no search): pending and retrying ones, one call.
    page.goto(system.url + "/ui/jobs?status=pending")
    with page.expect_navigation():
        page.get_by_role("button", name="Cancel all pending jobs").click()
    expect(page.locator("#bulk-message")).to_have_text("3 jobs cancelled.")
    expect(page.locator("tr[data-job-id]")).to_have_count(0)
    assert {api.get(f"/jobs/{job_id}").json()["status"] for job_id in waiting} == {"cancelled"}
    filters = page.get_by_role("navigation", name="Filter jobs by status")
    assert filters.get_by_role("link", name="cancelled 3").count() == 1
    page.screenshot(path=str(artifacts / "jobs-bulk-actions.png"), full_page=True)
    assert not page.errors


def test_the_jobs_list_and_its_counts_follow_the_jobs_live(system, new_page, partner, artifacts):
    _, key = system.new_account()
    api = system.api(key)
    waiting = api.post("/jobs", json={"url": partner.url + "/ok", "run_at": "2099-01-01T00:00:00Z"}).json()["id"]
    page = new_page()
    sign_in(page, system.url, key, "/ui/jobs")
    wait_for_state(page, "live")
    page.evaluate("window.notReloaded = true")
    filters = page.get_by_role("navigation", name="Filter jobs by status")
    row = page.locator(f'tr[data-job-id="{waiting}"]')

    assert api.post(f"/jobs/{waiting}/cancel").status_code == 200
    expect(row.locator(".badge")).to_have_text("cancelled")
    expect(filters.get_by_role("link", name="cancelled 1")).to_have_count(1)
    expect(filters.get_by_role("link", name="pending 0")).to_have_count(1)

    delivered = api.post("/jobs", json={"url": partner.url + "/ok"}).json()["id"]
    expect(page.locator("#jobs-news")).to_contain_text("1 new job.")
    expect(filters.get_by_role("link", name="succeeded 1")).to_have_count(1)
    expect(filters.get_by_role("link", name="All 2")).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(artifacts / "jobs-live.png"), full_page=True)
    page.get_by_role("link", name="Show them").click()
    expect(page.locator(f'tr[data-job-id="{delivered}"] .badge')).to_have_text("succeeded")
    assert not page.errors


def test_the_forms_idempotency_key_gives_back_the_first_job(system, new_page, partner):
    _, key = system.new_account()
    page = new_page()
    sign_in(page, system.url, key, "/ui/jobs")
    landed = []
    for _ in range(2):
        page.goto(system.url + "/ui/jobs/new")
        page.get_by_label("URL").fill(partner.url + "/ok")
        page.get_by_label("Idempotency key").fill("form-order-7")
        page.get_by_role("button", name="Submit job").click()
        page.wait_for_url(re.compile(r"/ui/jobs/[0-9A-Z]{26}$"))
        landed.append(page.url.rsplit("/", 1)[-1])
    assert landed[0] == landed[1]
    assert not page.errors
