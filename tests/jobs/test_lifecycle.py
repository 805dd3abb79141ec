"""The job lifecycle's rules, said once in models/lifecycle.py, and the places that must agree with them."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from models import lifecycle
from models.base import iso


def test_every_status_has_its_moves_and_terminal_ones_only_go_back_to_pending():
    assert set(lifecycle.TRANSITIONS) == set(lifecycle.STATUSES)
    for status in lifecycle.CANCELLABLE:
        assert lifecycle.may_move(status, lifecycle.CANCELLED)
    for status in lifecycle.REQUEUEABLE:
        assert lifecycle.may_move(status, lifecycle.PENDING)
    for status in lifecycle.TERMINAL:
        assert lifecycle.TRANSITIONS[status] <= {lifecycle.PENDING}
    assert not lifecycle.may_move(lifecycle.SUCCEEDED, lifecycle.PENDING)
    assert not lifecycle.may_move(lifecycle.PENDING, lifecycle.SUCCEEDED)


@given(st.booleans(), st.integers(0, 60), st.integers(1, 50))
def test_a_failure_is_retried_only_while_the_budget_lasts(retryable, used, max_attempts):
    outcome, status = lifecycle.after_failure(retryable, used, max_attempts)
    if retryable and used < max_attempts:
        assert (outcome, status) == (lifecycle.RETRY, lifecycle.RETRYING)
    else:
        assert (outcome, status) == (lifecycle.GIVE_UP, lifecycle.DEAD)
    assert lifecycle.may_move(lifecycle.IN_FLIGHT, status)


@given(st.integers(0, 100), st.integers(0, 100), st.integers(1, 50))
def test_attempts_left_counts_the_current_budget_only(budget_start, used, max_attempts):
    attempts = budget_start + used
    left = lifecycle.attempts_left(attempts, budget_start, max_attempts)
    assert 0 <= left <= max_attempts
    assert (left == 0) == lifecycle.budget_spent(lifecycle.attempts_used(attempts, budget_start), max_attempts)


class _Job:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_the_event_is_the_api_view_s_state_plus_the_result_code():
    job = _Job(
        id="j",
        status=lifecycle.RETRYING,
        attempts=2,
        max_attempts=5,
        budget_start=0,
        due_at=100.0,
        updated_at=90.0,
        created_at=80.0,
        last_error={"kind": "http_status"},
        result={"status_code": 503},
        url="http://example.com/",
        method="POST",
        headers={"Authorization": "x", "X-Trace": "t"},
        timeout_s=10.0,
        backoff={},
        run_at=None,
        body=b'{"a":1}',
        body_kind="json",
    )
    view, event = lifecycle.job_view(job), lifecycle.event_view(job)
    assert {k: view[k] for k in lifecycle.state_view(job)} == {k: event[k] for k in lifecycle.state_view(job)}
    assert event["result_status_code"] == 503
    assert view["attempts_left"] == 3 and view["next_attempt_at"] is not None and view["lease_expires_at"] is None
    assert view["request"]["headers"] == {"Authorization": "***", "X-Trace": "t"}
    assert view["request"]["json"] == {"a": 1}


@given(
    st.lists(
        st.sampled_from([*lifecycle._SENSITIVE_PARTS, *lifecycle._SENSITIVE, "x", "-", "_", "T", "API"]), max_size=4
    )
)
def test_a_header_is_masked_when_its_name_holds_a_sensitive_part(pieces):
    """The rule as it was spelled before it became one regex: a sensitive name, or any sensitive part in it."""
    name = "".join(pieces) or "X-Empty"
    lowered = name.lower()
    sensitive = lowered in lifecycle._SENSITIVE or any(part in lowered for part in lifecycle._SENSITIVE_PARTS)
    assert lifecycle.masked_headers({name: "v"}) == {name: "***" if sensitive else "v"}


def test_iso_gives_the_same_text_for_a_timestamp_however_often_it_is_asked():
    for ts in (0.0, 1764590400.1234, 1764590400.9995, 253402300799.0, 1764590400):
        first = iso(ts)
        assert (
            iso(ts)
            == first
            == datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
    assert iso(None) is None
