"""Classification of an attempt's response into the job's next state (in-process, no I/O)."""

from __future__ import annotations

import email.utils
import time
from types import SimpleNamespace

import pytest

from actors.outcomes import decide, retry_after_seconds
from actors.transport import Response

BACKOFF = {"base_s": 1.0, "cap_s": 10.0, "multiplier": 2.0, "jitter": "none"}


def job(max_attempts=5, budget_start=0, backoff=BACKOFF, last_delay_s=None):
    return SimpleNamespace(
        max_attempts=max_attempts, budget_start=budget_start, backoff=backoff, last_delay_s=last_delay_s
    )


def reply(code=None, headers=None, body=b"", kind=None, at=1000.0):
    return Response(
        at - 0.1,
        at,
        status_code=code,
        headers=headers or {},
        body=body,
        error_kind=kind,
        error_message=kind and f"{kind} happened",
    )


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_2xx_is_success(code):
    decision = decide(job(), reply(code, body=b"fine"), 1)
    assert (decision.outcome, decision.status, decision.due_at, decision.error) == ("success", "succeeded", None, None)
    assert decision.result["body"] == "fine"


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504, 507, 511, 599])
def test_retryable_statuses(code):
    decision = decide(job(), reply(code), 1)
    assert (decision.outcome, decision.status) == ("retry", "retrying")
    assert decision.due_at == pytest.approx(1000.0 + 1.0)
    assert decision.error["kind"] == "http_status"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 405, 409, 410, 413, 422, 451, 501, 505])
def test_permanent_statuses(code):
    decision = decide(job(), reply(code), 1)
    assert (decision.outcome, decision.status, decision.due_at) == ("dead", "dead", None)
    assert decision.error == {"kind": "http_status", "status_code": code, "message": f"HTTP {code}"}


@pytest.mark.parametrize("code", [300, 301, 302, 303, 307, 308])
def test_redirects_are_permanent(code):
    decision = decide(job(), reply(code, headers={"Location": "https://elsewhere/"}), 1)
    assert decision.status == "dead"
    assert decision.error["kind"] == "redirect"
    assert "https://elsewhere/" in decision.error["message"]


@pytest.mark.parametrize(
    "kind,retryable",
    [
        ("timeout", True),
        ("connection", True),
        ("dns", True),
        ("tls", False),
        ("too_large", False),
        ("blocked_destination", False),
    ],
)
def test_transport_errors(kind, retryable):
    decision = decide(job(), reply(kind=kind), 1)
    assert decision.status == ("retrying" if retryable else "dead")
    assert decision.error["kind"] == kind
    assert decision.result is None


def test_a_failure_without_a_message_gives_up_naming_its_kind():
    # Response.error_message is optional; the last attempt's "gave up" was appended to None (a TypeError).
    failure = Response(999.9, 1000.0, error_kind="timeout", error_message=None)
    decision = decide(job(max_attempts=1), failure, 1)
    assert decision.status == "dead"
    assert decision.error == {"kind": "timeout", "message": "timeout; gave up after 1 attempt", "status_code": None}


def test_the_budget_counts_from_its_start():
    assert decide(job(max_attempts=3), reply(503), 3).status == "dead"
    assert decide(job(max_attempts=3, budget_start=3), reply(503), 4).status == "retrying"
    assert decide(job(max_attempts=3, budget_start=3), reply(503), 6).status == "dead"
    # The delay restarts with the new budget: attempt 4 is the first of its budget.
    assert decide(job(max_attempts=3, budget_start=3), reply(503), 4).delay_s == 1.0


def test_delay_grows_with_the_attempt_number():
    delays = [decide(job(max_attempts=50), reply(500), n).delay_s for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_after_is_a_floor_only_on_429_and_503():
    assert decide(job(), reply(503, headers={"Retry-After": "5"}), 1).delay_s == 5.0
    assert decide(job(), reply(429, headers={"retry-after": "5"}), 1).delay_s == 5.0
    assert decide(job(), reply(500, headers={"Retry-After": "5"}), 1).delay_s == 1.0
    assert decide(job(), reply(503, headers={"Retry-After": "0"}), 1).delay_s == 1.0
    assert decide(job(), reply(503, headers={"Retry-After": "99999"}), 1).delay_s == 10.0


@pytest.mark.parametrize(
    "value,expected",
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_values(value, expected):
    assert retry_after_seconds({"Retry-After": value}, 1000.0) == expected


def test_retry_after_http_dates():
    now = time.time()
    assert retry_after_seconds({"Retry-After": email.utils.formatdate(now + 30, usegmt=True)}, now) == pytest.approx(
        30, abs=1
    )
    assert retry_after_seconds({"Retry-After": email.utils.formatdate(now - 30, usegmt=True)}, now) == 0.0


def test_retry_after_date_without_a_zone_is_utc(monkeypatch):
    """An HTTP date with -0000 parses as a naive datetime: it must still be read as UTC, not local time."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        at = 1445412450.0  # 2015-10-21T07:27:30Z
        assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}, at) == pytest.approx(30.0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_non_utf8_body_is_base64():
    decision = decide(job(), reply(200, body=b"\xff\xfe"), 1)
    assert decision.result["body_encoding"] == "base64"
    assert decision.result["body"] == "//4="


def test_an_attempts_response_keeps_the_body_up_to_its_own_cap():
    from actors.outcomes import attempt_response

    kept = attempt_response(reply(503, {"X-Reason": "busy"}, body=b"x" * 100), body_cap=10)
    assert kept == {
        "status_code": 503,
        "headers": {"X-Reason": "busy"},
        "body": "x" * 10,
        "body_encoding": "utf-8",
        "body_truncated": True,
    }
    assert attempt_response(reply(200, body=b"short"), body_cap=10)["body_truncated"] is False
    # A cut through a character keeps the text before it rather than turning the body into base64.
    assert attempt_response(reply(200, body="é".encode() * 10), body_cap=5)["body"] == "éé"
    assert attempt_response(reply(200, body=b"\xff\xfe binary"), body_cap=5)["body_encoding"] == "base64"
    assert attempt_response(reply(kind="timeout"), body_cap=10) is None
