"""Reading a JSON request body with the error envelope's codes for each way it can be wrong."""
from __future__ import annotations

import json

from flask import request

from web.errors import ApiError


def json_body():
    if not request.mimetype or request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json",
                       {"content_type": request.content_type})
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH turns an oversized body into 413
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
