"""Who is calling: `Authorization: Bearer <api key>`, or the browser session cookie."""

from __future__ import annotations

import functools
import time

from models.accounts import account_for_key, account_for_session
from web.errors import ApiError
from web.extensions import credential_cache, owner, this_g, this_request

SESSION_COOKIE = "session"

# Accounts by API key or session token, kept briefly: the lookup is a database round trip on every
# request, and a reconnect storm of browsers would make thousands at once. Keys are only ever added;
# a removed account, or a session closed through another web process, stops working within
# CREDENTIAL_CACHE_TTL_S (a logout through this process takes effect at once).
CREDENTIAL_CACHE_TTL_S = 10.0
CREDENTIAL_CACHE_MAX = 10_000


def _account_cached(lookup, credential: str):
    cache = credential_cache()
    hit = cache.get((lookup, credential))
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    account = owner().call_brief(lookup, credential)
    if account is not None:
        if len(cache) >= CREDENTIAL_CACHE_MAX:
            cache.clear()
        cache[(lookup, credential)] = (account, time.monotonic() + CREDENTIAL_CACHE_TTL_S)
    return account


def forget_session(token: str) -> None:
    credential_cache().pop((account_for_session, token), None)


def current_account():
    """The calling account, or None."""
    ctx = this_g()
    if "account" in ctx:
        return ctx.account
    account = None
    req = this_request()
    header = req.headers.get("Authorization", "")
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            account = _account_cached(account_for_key, key.strip())
    elif req.cookies.get(SESSION_COOKIE):
        account = _account_cached(account_for_session, req.cookies[SESSION_COOKIE])
    ctx.account = account
    return account


_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# A header a cross-site form cannot send: a change made with only the session cookie must carry it.
CSRF_HEADER = "X-Requested-With"


def require_account(view):
    """Decorator: answer 401 with the error envelope unless a valid key or session is presented."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_account() is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing or invalid API key (use Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        req = this_request()
        if req.method not in _SAFE_METHODS and "Authorization" not in req.headers and not req.headers.get(CSRF_HEADER):
            raise ApiError(
                403, "csrf_header_missing", f"a change made with the session cookie must send the {CSRF_HEADER} header"
            )
        return view(*args, **kwargs)

    return wrapper
