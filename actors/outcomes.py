"""What an attempt's response means for its job: success, retry later, or give up.

Retryable: connection, DNS and timeout failures; 408, 425, 429; 5xx except 501 and 505.
Every other failure is permanent. Retry-After (on 429/503) is a floor on the backoff delay.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

from actors.transport import Response
from models import lifecycle
from models.backoff import Backoff

RETRYABLE_STATUSES = frozenset({408, 425, 429}) | (frozenset(range(500, 600)) - {501, 505})
RETRYABLE_ERRORS = frozenset({"timeout", "connection", "dns"})
_KEPT_HEADERS_LIMIT = 64


class AttemptError(TypedDict):
    """Why an attempt failed, as the job's `last_error` and the attempt's `error` keep it."""

    kind: str  # timeout | connection | dns | tls | too_large | blocked_destination | redirect | http_status
    message: str
    status_code: int | None


class AttemptedJob(Protocol):
    """What decide() reads of a job."""

    budget_start: int
    max_attempts: int
    backoff: dict[str, Any] | None
    last_delay_s: float | None


@dataclass
class Decision:
    outcome: str  # success | retry | dead (the attempt row's outcome)
    status: str  # the job's next status
    due_at: float | None
    delay_s: float | None
    error: AttemptError | None
    result: dict[str, Any] | None


def retry_after_seconds(headers: dict[str, str], at: float) -> float | None:
    """Retry-After as seconds from `at`: delta-seconds or an HTTP date; None if absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are always UTC, never local time
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - at)


def result_of(response: Response, body_cap: int | None = None) -> dict[str, Any]:
    """The response as kept: the job's result, or (with `body_cap`) an attempt's response."""
    raw, truncated = response.body, response.body_truncated
    if body_cap is not None and len(raw) > body_cap:
        raw, truncated = raw[:body_cap], True
    try:
        body, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(raw) - 3 and exc.reason == "unexpected end of data":
            body, encoding = raw[: exc.start].decode("utf-8"), "utf-8"  # the cap cut a character in two
        else:
            body, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    headers = dict(list(response.headers.items())[:_KEPT_HEADERS_LIMIT])
    return {
        "status_code": response.status_code,
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
        "body_truncated": truncated,
    }


def attempt_response(response: Response, body_cap: int, result: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What an attempt's row keeps of its response; None when none came (timeout, connection, DNS, ...).

    `result`: the job's result made of this response (the decision's), given back as it is when the body cap
    cuts nothing, so that the outcome stores one JSON text for both."""
    if response.error_kind is not None:
        return None
    if result is not None and len(response.body) <= body_cap:
        return result
    return result_of(response, body_cap)


def _status_failure(code: int, headers: dict[str, str]) -> tuple[AttemptError, bool]:
    """Why a response with a status other than 2xx failed, and whether another attempt may succeed."""
    if 300 <= code < 400:
        location = headers.get("Location") or headers.get("location")
        message = f"HTTP {code} redirect to {location!r}; redirects are not followed"
        return {"kind": "redirect", "status_code": code, "message": message}, False
    return {"kind": "http_status", "status_code": code, "message": f"HTTP {code}"}, code in RETRYABLE_STATUSES


def decide(job: AttemptedJob, response: Response, attempt_number: int) -> Decision:
    """The next state of `job` after attempt `attempt_number` produced `response`."""
    code = response.status_code
    result: dict[str, Any] | None = None
    if response.error_kind is not None:
        message = response.error_message or response.error_kind
        error: AttemptError = {"kind": response.error_kind, "message": message, "status_code": code}
        retryable = response.error_kind in RETRYABLE_ERRORS
    else:
        assert code is not None, "the transport gives every response without an error its status code"
        if 200 <= code < 300:
            return Decision(lifecycle.SUCCESS, lifecycle.SUCCEEDED, None, None, None, result_of(response))
        result = result_of(response)
        error, retryable = _status_failure(code, response.headers)

    used = lifecycle.attempts_used(attempt_number, job.budget_start)
    outcome, status = lifecycle.after_failure(retryable, used, job.max_attempts)
    if outcome == lifecycle.GIVE_UP:
        if retryable:
            error["message"] += f"; gave up after {used} attempt{'s' if used != 1 else ''}"
        return Decision(outcome, status, None, None, error, result)

    retry_after = retry_after_seconds(response.headers, response.finished_at) if code in (429, 503) else None
    delay = Backoff.from_dict(job.backoff).delay(used, previous=job.last_delay_s, retry_after=retry_after)
    return Decision(outcome, status, response.finished_at + delay, delay, error, result)
