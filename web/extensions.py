"""What a web app owns: its settings, database owner, Redis client, destination policy and credential cache.

`create_app(settings)` builds one `Collaborators` and registers it in `app.extensions` (Flask's init_app
pattern); views reach it through the accessors below, which read `current_app`. So two apps built with
different settings live in one process, each with its own settings, Redis client and policy.

The database is the exception the models impose: peewee binds every model to one process-wide
`DatabaseProxy`, so a process has one database. Apps on the same URL share its owner (the last app to
close lets it go); an app on another URL is refused with `DatabaseInUse` (models/db.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask, current_app, g, request

from models.db import DatabaseOwner, hold_database, release_database
from models.net.policy import DestinationPolicy
from models.settings import Settings

if TYPE_CHECKING:  # `python -m web` imports web/ before it monkey-patches, and the Redis client imports ssl
    import redis
    from flask import Request
    from flask.ctx import _AppCtxGlobals

EXTENSION = "collaborators"
SHUTDOWN_HOOKS = "shutdown_hooks"


class Collaborators:
    """One app's settings, database owner, Redis client, destination policy and credential cache."""

    def __init__(self, settings: Settings, owner: DatabaseOwner, redis: redis.Redis, policy: DestinationPolicy):
        self.settings = settings
        self.owner = owner
        self.redis = redis
        self.policy = policy
        # (lookup, API key or session token) -> (account, until when): web/auth.py's.
        self.credential_cache: dict = {}
        self.closed = False

    @classmethod
    def open(cls, settings: Settings) -> Collaborators:
        """Open the database (shared with other apps on the same URL) and a Redis client of its own."""
        from models.redis_client import connect_redis

        return cls(
            settings,
            hold_database(settings.database_url),
            connect_redis(settings.redis_url),
            DestinationPolicy.from_settings(settings),
        )

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self

    def close(self) -> None:
        """Let go of the database owner and close the Redis client's connections (once)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.redis.close()
        finally:
            release_database(self.owner)


def collaborators_of(app: Flask) -> Collaborators:
    return app.extensions[EXTENSION]


def on_shutdown(app: Flask, hook: Callable[[], None]) -> None:
    """Have `hook` run when the app stops serving (its streams ended, its publishers closed): on SIGTERM, after
    the server has stopped taking requests (web/server.py `begin_stop`), or by close_app."""
    app.extensions.setdefault(SHUTDOWN_HOOKS, []).append(hook)


def shutdown_hooks(app: Flask) -> list[Callable[[], None]]:
    return app.extensions.get(SHUTDOWN_HOOKS, [])


def run_shutdown_hooks(hooks: list[Callable[[], None]]) -> list[Exception]:
    """Run every hook, each even when one before it failed (a stop must go on); the failures, in order."""
    failures = []
    for hook in hooks:
        try:
            hook()
        except Exception as exc:
            failures.append(exc)
    return failures


def _current() -> Collaborators:
    return current_app.extensions[EXTENSION]


def app_settings() -> Settings:
    return _current().settings


def owner() -> DatabaseOwner:
    return _current().owner


def redis_client() -> redis.Redis:
    return _current().redis


def destination_policy() -> DestinationPolicy:
    return _current().policy


def credential_cache() -> dict:
    return _current().credential_cache


# Each attribute read through `flask.request` or `flask.g` finds the context again (a LocalProxy): code that
# reads several binds the object once.
def this_request() -> Request:
    return request._get_current_object()  # type: ignore[attr-defined]


def this_g() -> _AppCtxGlobals:
    return g._get_current_object()  # type: ignore[attr-defined]
