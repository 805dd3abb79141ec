"""Fan-out: each channel's watching clients, each with a bounded queue of frames, and the streams an account
may hold at once. It knows nothing of Redis or HTTP: the hub hands it messages, the stream endpoints
register and unregister clients.

A client's queue is bounded (SSE_CLIENT_QUEUE): one that overflows is disconnected (it resumes with
Last-Event-ID) instead of growing memory. A client is registered *before* its replay is read: events that
arrive meanwhile are held and merged by event key when it goes live, and an event no newer than the last
one queued is dropped, so the hand-over from replay to live has no gap and no duplicate. A client that goes
away is noticed by an io watcher on its socket and released at once, not at the next write.
"""

from __future__ import annotations

import collections
import socket

import gevent
import gevent.event

from models import telemetry


def frame(event: str, data: str, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


# Why the server closed a stream, as the sse_clients_dropped_total label says it (a client that went away
# on its own is not counted).
_DROP_REASONS = {"slow": "slow", "access revoked": "revoked", "shutdown": "shutdown", "error": "error"}


class Client:
    """One open stream: a bounded queue of frames, the key of the newest one queued, a wake-up."""

    __slots__ = (
        "channels",
        "account_id",
        "queue",
        "maxlen",
        "wake",
        "last_key",
        "pending",
        "closed",
        "reason",
        "sock",
        "watcher",
        "registered",
        "held",
        "__weakref__",
    )

    def __init__(self, channels: tuple, maxlen: int, account_id: str | None = None):
        self.channels = channels
        self.account_id = account_id
        self.queue: collections.deque = collections.deque()
        self.maxlen = maxlen
        self.wake = gevent.event.Event()
        self.last_key = (0, 0)
        self.pending: list | None = []  # a list while the initial replay is being read
        self.closed = False
        self.reason = ""
        self.sock = None
        self.watcher = None
        self.registered = False
        self.held: tuple = ()  # the channels the hub subscribed to for this client, released with it

    def offer(self, key, data: bytes) -> None:
        if self.closed:
            return
        if self.pending is not None:
            self.pending.append((key, data))
            if len(self.pending) > self.maxlen:
                self.close("slow")
            return
        if key is not None:
            if key <= self.last_key:
                return  # already queued (replay and live overlap)
            self.last_key = key
        if len(self.queue) >= self.maxlen:
            self.close("slow")
            return
        self.queue.append(data)
        self.wake.set()

    def go_live(self) -> None:
        """The replay is queued: queue what arrived meanwhile, newer than it, and take live events."""
        pending, self.pending = self.pending, None
        for key, data in pending or ():
            self.offer(key, data)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        if reason in _DROP_REASONS:
            telemetry.SSE_CLIENTS_DROPPED.labels(_DROP_REASONS[reason]).inc()
        self.queue.clear()
        self.wake.set()
        if reason == "slow" and self.sock is not None:
            # The writer may be stuck in sendall to a client that does not read: break the socket.
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- noticing a client that went away ------------------------------------------------------------
    def watch_socket(self, environ) -> None:
        sock = _raw_socket(environ)
        if sock is None:
            return  # not under gevent's pywsgi: the next write (keepalive at the latest) notices
        self.sock = sock
        try:
            self.watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
            self.watcher.start(self._readable)
        except Exception:  # noqa: BLE001 - no watcher only means later detection
            self.watcher = None

    def _readable(self):
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.stop_watching()
        if not data:  # EOF: the client closed its end
            self.close("gone")

    def stop_watching(self):
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher.close()
            self.watcher = None


def _raw_socket(environ):
    """The client's OS-level socket under gevent's pywsgi (wsgi.input -> rfile -> SocketIO -> socket)."""
    try:
        raw = environ["wsgi.input"].rfile.raw._sock
        return getattr(raw, "_sock", raw)  # gevent's socket wraps the real one
    except (KeyError, AttributeError):
        return None


class TooManyStreams(Exception):
    """The account already holds its limit of streams in this process."""

    def __init__(self, limit: int):
        super().__init__(f"at most {limit} streams per account")
        self.limit = limit


class Fanout:
    """Channel -> the clients watching it, and account -> how many streams it holds here."""

    def __init__(self, client_queue: int, streams_per_account: int):
        self.client_queue = client_queue
        self.clients: dict[str, set] = collections.defaultdict(set)
        self.streams_per_account = streams_per_account
        self.streams_of: dict[str, int] = {}

    def register(self, client: Client) -> None:
        """Start handing the client its channels' frames; TooManyStreams if its account has all its streams open."""
        account_id = client.account_id
        if account_id is not None:
            open_streams = self.streams_of.get(account_id, 0)
            if open_streams >= self.streams_per_account:
                raise TooManyStreams(self.streams_per_account)
            self.streams_of[account_id] = open_streams + 1
        client.registered = True
        telemetry.SSE_CLIENTS.inc()
        for channel in client.channels:
            self.clients[channel].add(client)

    def unregister(self, client: Client) -> None:
        client.stop_watching()
        if not client.registered:
            return
        client.registered = False
        telemetry.SSE_CLIENTS.dec()
        if client.account_id is not None:
            left = self.streams_of.pop(client.account_id, 1) - 1
            if left:
                self.streams_of[client.account_id] = left
        for channel in client.channels:
            watchers = self.clients.get(channel)
            if watchers is not None:
                watchers.discard(client)
                if not watchers:
                    del self.clients[channel]

    def watchers(self, channel: str):
        """The clients watching channel (empty if none); copy it before offering, offers may close clients."""
        return self.clients.get(channel, ())

    def offer(self, channel: str, key, data: bytes) -> None:
        for client in list(self.clients.get(channel, ())):
            client.offer(key, data)

    def close_watchers(self, channel: str, reason: str, account_id: str | None = None) -> None:
        """Close the streams of channel (of one account's clients only, if given)."""
        for client in list(self.clients.get(channel, ())):
            if account_id is None or client.account_id == account_id:
                client.close(reason)

    def client_count(self) -> int:
        return len({c for watchers in self.clients.values() for c in watchers})

    def close_all(self, reason: str) -> None:
        for watchers in list(self.clients.values()):
            for client in list(watchers):
                client.close(reason)
