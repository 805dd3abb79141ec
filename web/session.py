"""Browser sessions: trade an API key for an HttpOnly cookie, because EventSource cannot send headers
and a key must never travel in a URL."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.sessions import NullSession, SessionInterface
from pydantic import Field

from models.accounts import account_for_key, close_session, open_session
from models.base import iso, now
from web.auth import SESSION_COOKIE, forget_session
from web.errors import ApiError
from web.extensions import app_settings, owner
from web.json_body import ApiModel, RequestModel, body_as
from web.openapi import operation

bp = Blueprint("session", __name__)

# Set and cleared with the same attributes, or a logout would leave the cookie in place.
# SameSite=Lax: sent on top-level navigation and same-site requests, not on cross-site POSTs (CSRF).
_COOKIE = {"path": "/", "httponly": True, "samesite": "Lax"}


class NoCookieSession(SessionInterface):
    """Flask's signed-cookie session is never used here (sessions are server-side rows, above).
    Without this, Flask builds an empty one for every request, a stream connect included."""

    _none = NullSession()  # read-only: any write raises, so one instance serves every request

    def open_session(self, app, request):
        return self._none

    def save_session(self, app, session, response):
        pass


class SessionRequest(RequestModel):
    api_key: str = Field(min_length=1, description="an account's API key")

    @classmethod
    def rules(cls, data, context: dict):
        key = data.get("api_key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise ApiError(400, "invalid_field", 'give your API key as {"api_key": "..."}', {"field": "api_key"})
        return key.strip()


class AccountRef(ApiModel):
    id: str
    name: str


class SessionView(ApiModel):
    account: AccountRef
    expires_at: str = Field(json_schema_extra={"format": "date-time"})


@bp.post("/session")
@operation(
    "Sign in: trade an API key for the session cookie",
    {201: SessionView},
    body=SessionRequest,
    auth=False,
    errors=(401,),
    tag="session",
)
def login():
    key = body_as(SessionRequest)
    account = owner().call(account_for_key, key)
    if account is None:
        raise ApiError(401, "unauthorized", "invalid API key")
    settings = app_settings()
    token = owner().write(open_session, account, settings.session_ttl_s)
    response = jsonify(
        {"account": {"id": account.id, "name": account.name}, "expires_at": iso(now() + settings.session_ttl_s)}
    )
    response.status_code = 201
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.session_ttl_s, secure=settings.secure_cookies, **_COOKIE
    )
    return response


@bp.delete("/session")
@operation("Sign out: close the session and clear its cookie", {204: None}, auth=False, tag="session")
def logout():
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        owner().write(close_session, token)
        forget_session(token)
    response = current_app.response_class(status=204)
    response.delete_cookie(SESSION_COOKIE, secure=app_settings().secure_cookies, **_COOKIE)
    return response
