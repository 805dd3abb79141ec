"""Redis plumbing: a client for a URL (the worker's one, built from its settings), and the one pub/sub listener."""

from __future__ import annotations

import threading

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
    on_demand: OnDemandChannels | None = None,
) -> None:
    """Subscribe to `channel` (one or a tuple) and call on_message(data) for each message, for ever (run it
    in a greenlet; kill the greenlet to stop); with `patterns`, also on_pattern_message(data) for each
    message on a matching channel. With `with_channel`, both get (channel, data).

    on_subscribed() runs once Redis has confirmed the (re)subscription, before any message that follows
    it is handed on, so a caller can catch up on what it missed (or replay it) without a gap; on_lost(exc)
    runs after each loss, so it can fall back. A lost connection, or an exception from a callback, is
    resubscribed after a pause (`backoff`: 0.1 s to 5 s by default).

    With `on_demand`, it also subscribes to the channels held there, while they are held (their messages go
    to on_message too); they must not be among the fixed `channel`s.
    """
    channels = (channel,) if isinstance(channel, str) else tuple(channel)
    confirmations = len(set(patterns)) + len(set(channels))  # Redis confirms each channel and pattern
    failures = 0
    while True:
        pubsub = redis.pubsub()
        try:
            if patterns:
                pubsub.psubscribe(*patterns)
            if on_demand is None:
                pubsub.subscribe(*channels)
            else:
                on_demand.subscribe_with(pubsub, channels)
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
                    if kind == "subscribe" and on_demand is not None and message["channel"] not in channels:
                        on_demand.confirmed(message["channel"])
                        continue
                    if unconfirmed == 0:
                        if on_demand is not None:
                            # Which of the held channels redis-py subscribed again is not ours to know:
                            # start afresh, as after any other loss.
                            raise ConnectionError("connection lost; resubscribed")
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
            if on_demand is not None:
                on_demand.lost()
            if on_lost is not None:
                on_lost(exc)
        finally:
            try:
                pubsub.close()
            except Exception:
                pass
        failures += 1
        gevent.sleep(backoff.delay(failures))


class SubscriptionUnavailable(Exception):
    """A held channel's subscription could not be confirmed (Redis unreachable, or the connection was lost)."""


class OnDemandChannels:
    """Channels a `listen_forever` subscribes to only while someone holds them, on its one connection.

    `hold(channel)` returns once Redis has confirmed a subscription to it: every message published after
    that is delivered, until the last holder calls `release(channel)`. A process with nobody watching a
    channel receives nothing of it. Each SUBSCRIBE sent for a channel is counted, and a hold waits until
    Redis has confirmed as many: a confirmation of an earlier subscription, since unsubscribed, does not
    count for a later one. A lost connection fails the holds still waiting (SubscriptionUnavailable); the
    listener subscribes again to every held channel when it comes back.

    The SUBSCRIBE and UNSUBSCRIBE commands are written from the holder's greenlet while the listener's
    waits to read the same connection (redis-py serialises writers); a write that fails is a lost connection
    the listener finds on its next read.
    """

    def __init__(self, confirm_timeout_s: float = 5.0):
        self.confirm_timeout_s = confirm_timeout_s
        self._changed = threading.Condition(threading.Lock())
        self._holders: dict[str, int] = {}
        self._pubsub = None  # the listener's, once it has sent its subscription
        self._sent: dict[str, int] = {}  # SUBSCRIBEs sent on that pubsub, per channel
        self._confirmed: dict[str, int] = {}
        self._losses = 0

    def held(self) -> set[str]:
        with self._changed:
            return set(self._holders)

    def hold(self, channel: str, timeout_s: float | None = None) -> None:
        """Subscribe to channel unless held already, and wait until Redis has confirmed it (its holders'
        subscription); SubscriptionUnavailable if it cannot be within timeout_s. Call release(channel) after,
        whatever the outcome."""
        with self._changed:
            holders = self._holders.get(channel, 0)
            self._holders[channel] = holders + 1
            if holders == 0 and self._pubsub is not None:
                self._sent[channel] = self._sent.get(channel, 0) + 1
                try:
                    self._pubsub.subscribe(channel)
                except Exception as exc:  # the listener notices the loss on its side
                    raise SubscriptionUnavailable(f"cannot subscribe to {channel}: {exc}") from exc
            losses = self._losses
            if not self._changed.wait_for(
                lambda: self._losses != losses or self._live(channel),
                self.confirm_timeout_s if timeout_s is None else timeout_s,
            ):
                raise SubscriptionUnavailable(f"no confirmed subscription to {channel}")
            if self._losses != losses and not self._live(channel):
                raise SubscriptionUnavailable(f"the subscription to {channel} was lost")

    def release(self, channel: str) -> None:
        with self._changed:
            holders = self._holders.get(channel, 0) - 1
            if holders > 0:
                self._holders[channel] = holders
                return
            self._holders.pop(channel, None)
            if self._pubsub is not None:
                try:
                    self._pubsub.unsubscribe(channel)
                except Exception:  # noqa: BLE001 - the listener notices the loss on its side
                    pass
                self._forget_if_settled(channel)

    def _live(self, channel: str) -> bool:
        sent = self._sent.get(channel, 0)
        return self._pubsub is not None and sent > 0 and self._confirmed.get(channel, 0) >= sent

    def _forget_if_settled(self, channel: str) -> None:
        if channel not in self._holders and self._confirmed.get(channel, 0) >= self._sent.get(channel, 0):
            self._sent.pop(channel, None)
            self._confirmed.pop(channel, None)

    # -- called by listen_forever ----------------------------------------------------------------------
    def subscribe_with(self, pubsub, channels: tuple) -> None:
        """Subscribe pubsub to the fixed channels and every held one, in one command."""
        with self._changed:
            held = list(self._holders)
            pubsub.subscribe(*channels, *held)
            self._pubsub = pubsub
            self._sent = dict.fromkeys(held, 1)
            self._confirmed = {}

    def confirmed(self, channel: str) -> None:
        with self._changed:
            self._confirmed[channel] = self._confirmed.get(channel, 0) + 1
            self._forget_if_settled(channel)
            self._changed.notify_all()

    def lost(self) -> None:
        with self._changed:
            self._pubsub = None
            self._sent, self._confirmed = {}, {}
            self._losses += 1
            self._changed.notify_all()
