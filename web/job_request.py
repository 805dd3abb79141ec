"""Validation of a POST /jobs body into the job spec the database stores.

Every problem becomes an ApiError with code `validation_failed` (422) or `blocked_destination`
(422) naming the field, so a caller can fix its request without reading our code.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from models.backoff import JITTER_KINDS, Backoff
from models.base import NoTimeZone, parse_iso
from models.ids import looks_like_id
from models.net.policy import BlockedDestination, DestinationPolicy
from models.net.urls import InvalidUrl, OutboundUrl, parse_outbound_url
from web.errors import ApiError, blocked_destination
from web.json_body import ApiModel, RequestModel

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
MAX_TIMEOUT_S = 120.0
MAX_ATTEMPTS = 50
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # used with fullmatch: "$" would let a final newline in
# Headers the transport owns: letting a caller set them would corrupt framing or the target.
_RESERVED_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
}
# RFC 9110 field-value: visible characters (obs-text 0x80-0xFF included, as HTTP/1.1 carries it) with spaces
# or tabs only between them. Anything else is refused at submission: it would fail, or be sent as
# something else, at every attempt.
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
_RUN_AT_MIN = 0.0
_RUN_AT_MAX = 253402300799.0  # 9999-12-31T23:59:59Z
_KNOWN_FIELDS = {
    "url",
    "method",
    "headers",
    "body",
    "json",
    "timeout_s",
    "max_attempts",
    "backoff",
    "run_at",
    "sign_with",
}
# 1..255 characters, none a control character (a NUL would also be refused by PostgreSQL, as a 500).
IDEMPOTENCY_KEY_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_failed", f"{field}: {message}", {"field": field})


def _number(payload: dict, field: str, default, lo, hi, integer=False):
    if field not in payload or payload[field] is None:
        return default
    value = payload[field]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise _invalid(field, "must be a number")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise _invalid(field, "must be a whole number")
    if not lo <= value <= hi:
        raise _invalid(field, f"must be between {lo} and {hi}")
    return int(value) if integer else float(value)


def _url(payload: dict) -> OutboundUrl:
    try:
        return parse_outbound_url(payload.get("url"))
    except InvalidUrl as exc:
        if exc.problem == "userinfo":
            raise _invalid("url", "must not carry credentials; send them in headers") from None
        raise _invalid("url", "is required" if payload.get("url") is None else exc.message) from None


def _headers(payload: dict) -> dict:
    headers = payload.get("headers")
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        raise _invalid("headers", "must be an object of string to string")
    if len(headers) > 100:
        raise _invalid("headers", "at most 100 headers")
    clean = {}
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise _invalid("headers", f"{name!r} is not a valid header name")
        field = f"headers.{name}"
        if not isinstance(value, str):
            raise _invalid(field, "must be a string")
        if name.lower() in _RESERVED_HEADERS:
            raise _invalid(field, "is set by the transport and cannot be given")
        if not _FIELD_VALUE.fullmatch(value):
            raise _invalid(field, _field_value_problem(value))
        clean[name] = value
    return clean


def _field_value_problem(value: str) -> str:
    if any(ord(c) > 0xFF for c in value):
        return "must be ISO-8859-1 text (encode other characters)"
    if value[0] in " \t" or value[-1] in " \t":
        return "must not start or end with a space or tab"
    return "must not contain control characters (tab between words is allowed)"


def _body(payload: dict, headers: dict) -> tuple[bytes | None, str]:
    has_body, has_json = "body" in payload and payload["body"] is not None, "json" in payload
    if has_body and has_json:
        raise _invalid("body", "give either body or json, not both")
    if has_body:
        if not isinstance(payload["body"], str):
            raise _invalid("body", "must be a string (use json for structured data)")
        return payload["body"].encode("utf-8"), "text"
    if has_json:
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
        return json.dumps(payload["json"], separators=(",", ":")).encode("utf-8"), "json"
    return None, "none"


def _backoff(payload: dict) -> dict:
    raw = payload.get("backoff")
    if raw is None:
        return Backoff().to_dict()
    if not isinstance(raw, dict):
        raise _invalid("backoff", "must be an object")
    unknown = set(raw) - {"base_s", "cap_s", "multiplier", "jitter"}
    if unknown:
        raise _invalid("backoff", f"unknown fields: {', '.join(sorted(unknown))}")
    defaults = Backoff()
    jitter = raw.get("jitter", defaults.jitter)
    if jitter not in JITTER_KINDS:
        raise _invalid("backoff.jitter", f"must be one of {', '.join(JITTER_KINDS)}")
    base = _number(raw, "base_s", defaults.base_s, 0.0, 86400.0)
    cap = _number(raw, "cap_s", defaults.cap_s, 0.0, 7 * 86400.0)
    multiplier = _number(raw, "multiplier", defaults.multiplier, 1.0, 100.0)
    if cap < base:
        raise _invalid("backoff.cap_s", "must not be smaller than base_s")
    return Backoff(base_s=base, cap_s=cap, multiplier=multiplier, jitter=jitter).to_dict()


def parse_job_request(payload, policy: DestinationPolicy) -> dict:
    """Turn a decoded JSON body into a job spec, or raise ApiError."""
    if not isinstance(payload, dict):
        raise ApiError(422, "validation_failed", "the body must be a JSON object", {"field": None})
    unknown = payload.keys() - _REQUEST_FIELDS
    if unknown:
        field = sorted(unknown)[0]
        raise _invalid(field, "is not a known field")
    url = _url(payload)
    method = payload.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _invalid("method", f"must be one of {', '.join(METHODS)}")
    method = method.upper()
    headers = _headers(payload)
    body, body_kind = _body(payload, headers)
    timeout_s = _number(payload, "timeout_s", 10.0, 0.001, MAX_TIMEOUT_S)
    max_attempts = _number(payload, "max_attempts", 8, 1, MAX_ATTEMPTS, integer=True)
    backoff = _backoff(payload)
    run_at = None
    if payload.get("run_at") is not None:
        try:
            run_at = parse_iso(payload["run_at"], naive_as_utc=False)
        except NoTimeZone:
            # A local time of an unknown zone: taken as UTC it would run hours early or late.
            raise _invalid("run_at", "must carry a time zone offset or Z, such as 2026-11-28T10:00:00Z") from None
        except (TypeError, ValueError, OverflowError):
            raise _invalid("run_at", "must be an ISO-8601 date-time such as 2026-11-28T10:00:00Z") from None
        if not _RUN_AT_MIN <= run_at <= _RUN_AT_MAX:
            # Outside this range the time cannot be shown back in UTC (years 1..9999).
            raise _invalid("run_at", "must be between 1970-01-01 and 9999-12-31 UTC")
    sign_with = payload.get("sign_with")
    if sign_with is not None and not (isinstance(sign_with, str) and looks_like_id(sign_with)):
        raise _invalid("sign_with", "must be the id of one of your webhook endpoints")
    try:
        policy.check_host_at_submission(url.host, url.port)
    except BlockedDestination as exc:
        raise blocked_destination(exc) from None
    return {
        "url": url.url,
        "host": url.host,
        "method": method,
        "headers": headers,
        "body": body,
        "body_kind": body_kind,
        "timeout_s": timeout_s,
        "max_attempts": max_attempts,
        "backoff": backoff,
        "run_at": run_at,
        "sign_with": sign_with,
    }


def idempotency_key(value, where: str) -> str | None:
    if value is not None and not (isinstance(value, str) and IDEMPOTENCY_KEY_TEXT.fullmatch(value)):
        raise ApiError(
            400, "invalid_idempotency_key", f"{where} must be 1..255 characters, none of them control characters"
        )
    return value


# -- the schema ----------------------------------------------------------------------------------
_DEFAULTS = Backoff()


class BackoffRequest(ApiModel):
    """The delay before attempt n+1: min(cap_s, base_s * multiplier**(n-1)), with the jitter applied."""

    model_config = ConfigDict(extra="forbid")
    base_s: Annotated[float, Field(ge=0.0, le=86400.0)] | None = _DEFAULTS.base_s
    cap_s: Annotated[float, Field(ge=0.0, le=7 * 86400.0, description="not below base_s")] | None = _DEFAULTS.cap_s
    multiplier: Annotated[float, Field(ge=1.0, le=100.0)] | None = _DEFAULTS.multiplier
    jitter: Literal[JITTER_KINDS] = _DEFAULTS.jitter  # type: ignore[valid-type]


# An outbound destination as every request body names it (a job's, a webhook endpoint's); the destination
# policy judges it where the body is validated.
DestinationUrl = Annotated[
    str,
    Field(
        description="http(s) URL without credentials; private and link-local destinations are refused "
        "(blocked_destination)",
        json_schema_extra={"format": "uri"},
    ),
]


class JobRequest(RequestModel):
    """An outbound HTTP request to deliver, retried with backoff until it succeeds or its attempts run out."""

    model_config = ConfigDict(extra="forbid")
    url: DestinationUrl
    method: str = Field("POST", description=f"one of {', '.join(METHODS)} (any case)")
    headers: dict[str, str] | None = Field(
        None,
        max_length=100,
        description="header name (an RFC 9110 token) to value (visible ISO-8859-1 text); "
        "the transport's own headers (Host, Content-Length, ...) cannot be given",
    )
    body: str | None = Field(None, description="a text body; give either body or json")
    json_body: Any = Field(None, alias="json", description="a JSON body, sent with Content-Type: application/json")
    timeout_s: Annotated[float, Field(ge=0.001, le=MAX_TIMEOUT_S)] | None = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] | None = 8
    backoff: BackoffRequest | None = None
    run_at: str | None = Field(
        None,
        description="when the first attempt is due, with a zone offset or Z",
        json_schema_extra={"format": "date-time"},
    )
    sign_with: str | None = Field(
        None,
        description="the id of one of your webhook endpoints: each attempt is "
        "signed with its secret (Standard Webhooks headers)",
    )

    @classmethod
    def rules(cls, data, context: dict):
        return parse_job_request(data, context["policy"])


# The body's field names as the schema spells them (aliases included), read once.
_REQUEST_FIELDS = frozenset(field.alias or name for name, field in JobRequest.model_fields.items())
