"""The base model and the column types every table shares."""

from __future__ import annotations

import functools
import json
import time
from datetime import datetime, timezone

import peewee

from models.db import database


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


# Made once: json.dumps with options builds an encoder per call, and the worker stores three texts an attempt.
_STORED_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def json_text(value) -> str | None:
    """A value as the compact, key-sorted JSON text the database stores (None stays NULL)."""
    return None if value is None else _STORED_JSON.encode(value)


class JSONField(peewee.TextField):
    """JSON stored as text, so it reads the same on SQLite and PostgreSQL."""

    def db_value(self, value):
        return json_text(value)

    def python_value(self, value):
        return None if value is None else json.loads(value)


def now() -> float:
    """UTC time as epoch seconds: the one clock the database stores."""
    return time.time()


# A job's view shows one timestamp up to five times (created, updated, next attempt) and its event again:
# each text is made once.
@functools.lru_cache(maxsize=512)
def iso(ts: float | None) -> str | None:
    """Epoch seconds to ISO-8601 UTC with a Z, as the edges speak it."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NoTimeZone(ValueError):
    """An ISO-8601 date-time without an offset where one is required."""


def parse_iso(text: str, naive_as_utc: bool = True) -> float:
    """ISO-8601 to epoch seconds; a time without an offset is taken as UTC, or refused with NoTimeZone
    unless naive_as_utc. Raises ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected an ISO-8601 date-time string")
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        if not naive_as_utc:
            raise NoTimeZone("the date-time has no offset")
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
