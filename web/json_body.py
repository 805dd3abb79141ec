"""Reading request input (a JSON body, query parameters) with the error envelope's codes for each way it can be wrong."""
from __future__ import annotations

import json

from flask import request

from web.errors import ApiError

MAX_DEPTH = 100


def json_body():
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json",
                       {"content_type": request.content_type})
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH turns an oversized body into 413
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit:
        # A chunked body is cut silently at the limit by werkzeug: refuse it rather than parse a prefix.
        raise ApiError(413, "payload_too_large", "request body is larger than the limit", {"limit": limit})
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    too_deep = ApiError(400, "invalid_json", f"the body is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if _too_deep(value):
        # Deeper documents would exhaust the stack when encoded again (stored, then a 500).
        raise too_deep
    return value


def _too_deep(value) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _reject_constant(name: str):
    # Python's json accepts NaN and Infinity, which are not JSON: refuse rather than relay them.
    raise ValueError(f"{name} is not a JSON value")


def limit_param(default: int, most: int) -> int:
    """The `limit` query parameter: a whole number from 1 to `most`, or 400 invalid_parameter."""
    try:
        limit = int(request.args.get("limit", default))
    except ValueError:
        limit = -1
    if not 1 <= limit <= most:
        raise ApiError(400, "invalid_parameter", f"limit must be a whole number from 1 to {most}",
                       {"parameter": "limit"})
    return limit
