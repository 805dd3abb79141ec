"""The one error envelope: {"error": {"code", "message", "details"}} for every HTTP error."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from models.net.policy import BlockedDestination

log = logging.getLogger(__name__)

# Stable codes for werkzeug's own HTTP errors (routing, method, size limits).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    431: "headers_too_large",
    502: "bad_gateway",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raise from a view to answer with the error envelope."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def envelope(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status: int, code: str, message: str, details: dict | None = None, headers=None):
    response = jsonify(envelope(code, message, details))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def raw_error_response(status: int, code: str, message: str, headers: dict | None = None) -> bytes:
    """A whole HTTP/1.1 response with the envelope, for the web server's own refusals made before any request
    reaches Flask (a request line or headers too large, a malformed request, too many connections). The
    connection is closed after it: what the client sent next cannot be trusted to start a request."""
    body = json.dumps(envelope(code, message)).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def blocked_destination(exc: BlockedDestination, field: str = "url") -> ApiError:
    """The destination policy's refusal of a URL in a request body, with what the policy saw."""
    return ApiError(
        422,
        "blocked_destination",
        str(exc),
        {"field": field, "host": exc.host, "address": exc.address, "reason": exc.reason},
    )


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "request body is larger than the limit"
        headers = {}
        if status == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(status, _HTTP_CODES.get(status, "http_error"), message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error: %s", exc)
        return error_response(500, "internal_error", "internal error; it has been logged")
