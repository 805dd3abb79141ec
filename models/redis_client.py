"""Redis plumbing: a client for a URL (the worker's one, built from its settings), and the one pub/sub listener."""

from __future__ import annotations

import gevent
import redis

from models.backoff import Backoff
from models.settings import get_settings

_client: redis.Redis | None = None


def connect_redis(url: str) -> redis.Redis:
    """A Redis client for url (a connection pool shared by every greenlet that uses it)."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        retry_on_timeout=True,
    )


def redis_client() -> redis.Redis:
    """The worker process's Redis client, from its settings (a web app owns its own: web/extensions.py)."""
    global _client
    if _client is None:
        _client = connect_redis(get_settings().redis_url)
    return _client


# Pauses between resubscriptions after a lost connection: 0.1 s doubling to 5 s.
RESUBSCRIBE_BACKOFF = Backoff(base_s=0.1, cap_s=5.0, jitter="none")


def listen_forever(
    redis: redis.Redis,
    channel: str | tuple,
    on_message,
    on_subscribed=None,
    on_lost=None,
    patterns: tuple = (),
    on_pattern_message=None,
) -> None:
    """Subscribe to `channel` (one or a tuple) and call on_message(data) for each message, for ever (run it
    in a greenlet); with `patterns`, also on_pattern_message(data) for each message on a matching channel.

    A lost connection is resubscribed with exponential backoff (0.1 s to 5 s); on_subscribed() runs
    after each (re)subscription, on_lost(exc) after each loss, so callers can catch up or fall back.
    """
    channels = (channel,) if isinstance(channel, str) else tuple(channel)
    failures = 0
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            if patterns:
                pubsub.psubscribe(*patterns)
            pubsub.subscribe(*channels)
            failures = 0
            if on_subscribed is not None:
                on_subscribed()
            for message in pubsub.listen():
                kind = message.get("type")
                if kind == "message":
                    on_message(message["data"])
                elif kind == "pmessage" and on_pattern_message is not None:
                    on_pattern_message(message["data"])
        except Exception as exc:  # any failure: resubscribe after a pause
            if on_lost is not None:
                on_lost(exc)
        finally:
            try:
                pubsub.close()
            except Exception:
                pass
        failures += 1
        gevent.sleep(RESUBSCRIBE_BACKOFF.delay(failures))
