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
# How long a read waits for a message before asking again: each ask lets the client's health check (a PING
# every health_check_interval) find a connection that died without closing.
IDLE_READ_S = 5.0


def listen_forever(
    redis: redis.Redis,
    channel: str | tuple,
    on_message,
    on_subscribed=None,
    on_lost=None,
    patterns: tuple = (),
    on_pattern_message=None,
    *,
    with_channel: bool = False,
    backoff: Backoff = RESUBSCRIBE_BACKOFF,
) -> None:
    """Subscribe to `channel` (one or a tuple) and call on_message(data) for each message, for ever (run it
    in a greenlet; kill the greenlet to stop); with `patterns`, also on_pattern_message(data) for each
    message on a matching channel. With `with_channel`, both get (channel, data).

    on_subscribed() runs once Redis has confirmed the (re)subscription, before any message that follows
    it is handed on, so a caller can catch up on what it missed (or replay it) without a gap; on_lost(exc)
    runs after each loss, so it can fall back. A lost connection, or an exception from a callback, is
    resubscribed after a pause (`backoff`: 0.1 s to 5 s by default).
    """
    channels = (channel,) if isinstance(channel, str) else tuple(channel)
    confirmations = len(set(patterns)) + len(set(channels))  # Redis confirms each channel and pattern
    failures = 0
    while True:
        pubsub = redis.pubsub()
        try:
            if patterns:
                pubsub.psubscribe(*patterns)
            pubsub.subscribe(*channels)
            confirmed, unconfirmed = False, confirmations
            while True:
                message = pubsub.get_message(timeout=IDLE_READ_S)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "message":
                    if with_channel:
                        on_message(message["channel"], message["data"])
                    else:
                        on_message(message["data"])
                elif kind == "pmessage":
                    if on_pattern_message is None:
                        continue
                    if with_channel:
                        on_pattern_message(message["channel"], message["data"])
                    else:
                        on_pattern_message(message["data"])
                elif kind in ("subscribe", "psubscribe"):
                    if unconfirmed == 0:
                        # redis-py reconnected and subscribed again by itself: whatever was published in
                        # between is lost to us, as after any other loss.
                        confirmed, unconfirmed = False, confirmations
                        if on_lost is not None:
                            on_lost(ConnectionError("connection lost; resubscribed"))
                    unconfirmed -= 1
                    if not confirmed:
                        # Redis runs our first command before any message it sends us afterwards.
                        confirmed = True
                        failures = 0
                        if on_subscribed is not None:
                            on_subscribed()
        except Exception as exc:  # any failure: resubscribe after a pause
            if on_lost is not None:
                on_lost(exc)
        finally:
            try:
                pubsub.close()
            except Exception:
                pass
        failures += 1
        gevent.sleep(backoff.delay(failures))
