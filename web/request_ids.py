"""Every request has an id: the caller's `X-Request-Id` when it is a sane token, else a new one.

It is returned in the response's `X-Request-Id` and carried by every log line written for the request.
"""

from __future__ import annotations

import re
import uuid

from flask import g

from models import logs
from web.extensions import this_request

HEADER = "X-Request-Id"
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def _assign():
    given = this_request().headers.get(HEADER, "")
    request_id = given if _ACCEPTED.match(given) else uuid.uuid4().hex
    g.request_id = request_id
    logs.request_id.set(request_id)


def _answer(response):
    request_id = g.get("request_id")
    if request_id:
        response.headers[HEADER] = request_id
    return response


def install(app) -> None:
    app.before_request(_assign)
    app.after_request(_answer)
