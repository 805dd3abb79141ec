"""The web process's HTTP server: gevent's WSGI server with limits against hostile or broken clients.

- A request's line and headers must arrive within HEADER_READ_TIMEOUT_S of the connection (or of the first
  byte of a later request on a kept-alive connection); a kept-alive connection may wait IDLE_TIMEOUT_S for
  its next request. Past either, the server closes it. Neither applies once the application runs, so an
  SSE stream lasts as long as its client reads.
- At most `max_connections` connections at once, below the file-descriptor limit. When they are all taken,
  a new connection takes the place of the one that has waited longest for a request (a half-open or idle
  one); if every connection is busy with a request or a stream, it gets one of HEALTH_RESERVE further
  places, where only /healthz and /readyz are answered and anything else gets 503; beyond those it is
  refused with 503 at once. Either 503 is the JSON error envelope with `Connection: close`.
- The server's own refusals (414 request line too long, 431 headers too large, 400 malformed request)
  answer with the JSON error envelope.
- Accept errors from running out of descriptors pause accepting briefly and are logged at most once per
  ACCEPT_ERROR_LOG_S, instead of a traceback per attempt.
- A graceful stop (`begin_stop`) first stops taking requests, then ends the app's streams: a browser whose
  stream ends asks at once whether its session still holds, and that question must not be answered by a
  server on its way out (the browser would follow the answer to an address nobody answers any more).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import re
import resource
import socket
import time
from http import HTTPStatus
from http import client as http_client

from gevent.pool import Pool
from gevent.pywsgi import OldMessage, WSGIHandler, WSGIServer, headers_factory

from web.errors import envelope, raw_error_response
from web.extensions import run_shutdown_hooks

log = logging.getLogger("web.server")

# gevent's default listen backlog of 128 overflows when thousands of browsers reconnect at once (a web
# restart): the excess SYNs are retried after 1, 3, 7 s.
LISTEN_BACKLOG = 4096
# Places beyond MAX_CONNECTIONS where only the health endpoints are answered, so that probes still get
# through while every connection is busy; each may take RESERVE_HEADER_TIMEOUT_S to send its request.
HEALTH_RESERVE = 64
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
RESERVE_HEADER_TIMEOUT_S = 2.0
# Descriptors the process needs besides its connections and the reserve: the Redis pool and subscription,
# the database, log files, brand API calls made during onboarding, gevent's own.
FD_HEADROOM = 500
# Request headers larger than this in total answer 431 (nginx's default allows 4 x 8 KB).
MAX_HEADER_BYTES = 32 * 1024
ACCEPT_PAUSE_S = 0.5
# A response's header block and a first body chunk up to this size go out in one send (Handler).
GATHER_MAX = 64 * 1024
ACCEPT_ERROR_LOG_S = 10.0
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# A header line as clients commonly send it: a token, a colon, printable ASCII. A block of only such lines is read
# here (~5 µs); any other goes to gevent's parser (the email package's, ~27 µs a request), which decides as before.
# The value starts at its first visible character: were the spaces before it matched by both parts, a line of
# spaces ending in a control byte would take the engine time quadratic in its length (3 s for 32 KB).
_PLAIN_HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x21-\x7e][\x20-\x7e\t]*)?")
_HEADER_LINES_ALLOWED = 100  # http.client's limit, the blank line that ends them counted: gevent's parser refuses more

REFUSALS = {
    400: raw_error_response(400, "bad_request", "malformed HTTP request"),
    414: raw_error_response(414, "uri_too_long", "the request line is longer than 8192 bytes"),
    431: raw_error_response(
        431, "headers_too_large", f"the request headers are larger than {MAX_HEADER_BYTES} bytes or more than 100 lines"
    ),
    503: raw_error_response(
        503, "too_many_connections", "the server is at its connection limit; try again shortly", {"Retry-After": "1"}
    ),
}


class HeadersTooLarge(ValueError):
    pass


class _Incomplete(ValueError):
    """The connection ended (or was closed by us) before the end of the request's headers."""


class _OverCapacity(ValueError):
    """A request other than a health check on a place of the health reserve."""


def connection_limit(max_connections: int) -> int:
    """The connection cap to use: MAX_CONNECTIONS, or (0) as many as the file-descriptor limit leaves room for.
    Raises ValueError with a one-line explanation when the limit cannot hold the requested cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections or 1_000_000
    room = soft - HEALTH_RESERVE - FD_HEADROOM
    if room < 1 or max_connections > room:
        raise ValueError(
            f"MAX_CONNECTIONS={max_connections} leaves too few file descriptors: the limit is {soft} per "
            f"process and the web process needs {HEALTH_RESERVE + FD_HEADROOM} besides its connections; "
            f"use at most {max(room, 0)} (or 0 for that many)"
        )
    return max_connections or room


def server_limits(settings) -> dict:
    """The keyword arguments of `Server` for these settings (raises ValueError as `connection_limit` does)."""
    return {
        "max_connections": connection_limit(settings.max_connections),
        "header_timeout_s": settings.header_read_timeout_s,
        "idle_timeout_s": settings.idle_timeout_s,
    }


class Slots:
    """A fixed number of places for connections. When all are taken, the connection that has waited longest
    for a request gives up its place: a half-open or idle connection cannot keep a real client out."""

    def __init__(self, size: int):
        self.size = size
        self.used = 0
        self.waiting: dict = {}  # handlers waiting for (the rest of) a request, oldest first

    def take(self, handler) -> bool:
        if self.used >= self.size:
            if not self.waiting:
                return False
            oldest = next(iter(self.waiting))
            oldest.drop()
            oldest.slots = None
            self.used -= 1
        self.used += 1
        handler.slots = self
        return True

    def release(self, handler) -> None:
        self.waiting.pop(handler, None)
        if handler.slots is self:
            handler.slots = None
            self.used -= 1


def parsed_headers(block: bytes):
    """A request's header block (its lines, then the blank line that ends it), read as gevent's parser reads it."""
    lines = block.split(b"\r\n")
    if lines[-2:] == [b"", b""] and len(lines) - 1 <= _HEADER_LINES_ALLOWED:
        message = OldMessage()  # what gevent's parser makes, and its handler reads
        for line in lines[:-2]:
            plain = _PLAIN_HEADER_LINE.fullmatch(line)
            if plain is None:
                break
            message[plain[1].decode("ascii")] = (plain[2] or b"").decode("ascii")
        else:
            return message
    return headers_factory(io.BytesIO(block))


class Handler(WSGIHandler):
    # A 2 KB read buffer instead of the default 8 KB: an SSE client keeps its handler (and this
    # buffer) for hours while reading nothing after its request headers.
    RFILE_BUFFER = 2048
    # Class defaults keep the instances of streaming connections small.
    slots: Slots | None = None
    deadline = None
    dropped = False

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server)
        self.rfile = sock.makefile("rb", self.RFILE_BUFFER)

    @property
    def health_only(self) -> bool:
        return self.slots is not self.server.connections

    # -- waiting for a request, with a deadline --------------------------------------------------------
    def wait_for_request(self, timeout: float) -> None:
        self.stop_waiting()
        self.deadline = self.server.loop.timer(timeout)
        self.deadline.start(self.drop)
        if self.slots is not None:
            self.slots.waiting[self] = None

    def stop_waiting(self) -> None:
        if self.deadline is not None:
            self.deadline.stop()
            self.deadline.close()
            self.deadline = None
        if self.slots is not None:
            self.slots.waiting.pop(self, None)

    def drop(self) -> None:
        """Close the connection under its reader (the deadline passed, or a new connection needs the place):
        the pending read sees end of file and the handler ends by its normal path, without an exception."""
        self.dropped = True
        if self.slots is not None:
            self.slots.waiting.pop(self, None)
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass

    # -- gevent's hooks --------------------------------------------------------------------------------
    def handle(self):
        self.wait_for_request(RESERVE_HEADER_TIMEOUT_S if self.health_only else self.server.header_timeout_s)
        try:
            super().handle()
        except OSError:
            pass  # the client went away while a refusal was being sent
        finally:
            self.stop_waiting()

    def handle_one_request(self):
        result = super().handle_one_request()
        if isinstance(result, tuple):  # gevent's own 414 and 400 carry no body: ours carry the envelope
            status = int(result[0])
            return result[0], REFUSALS.get(status, result[1])
        return result

    def read_requestline(self):
        if self.deadline is None:  # a kept-alive connection waiting for its next request
            if self.server.stopping:
                return ""  # none after the server began to stop: the connection closes
            self.wait_for_request(self.server.idle_timeout_s)
            if not self.rfile.peek(1) or self.dropped:
                return ""
            self.wait_for_request(self.server.header_timeout_s)  # it has begun: now it must arrive in time
        return super().read_requestline()

    def MessageClass(self, rfile, *args):  # noqa: N802 - gevent's name
        """The request's header block, at most MAX_HEADER_BYTES, read as gevent's parser reads it (parsed_headers)."""
        block = bytearray()
        while True:
            line = rfile.readline(MAX_HEADER_BYTES + 1 - len(block))
            if not line:
                raise _Incomplete()
            block += line
            if len(block) > MAX_HEADER_BYTES:
                raise HeadersTooLarge()
            if line in (b"\r\n", b"\n"):
                return parsed_headers(bytes(block))

    def read_request(self, raw_requestline):
        try:
            parsed = super().read_request(raw_requestline)
        finally:
            self.stop_waiting()
        if self.dropped:
            raise _Incomplete()
        if self.health_only:
            self.close_connection = True
            if self.path.split("?", 1)[0] not in HEALTH_PATHS:
                raise _OverCapacity()
        return parsed

    def _handle_client_error(self, ex):
        if self.dropped or isinstance(ex, (_Incomplete, OSError)):
            return None  # nothing to answer: close
        if isinstance(ex, _OverCapacity):
            return "503", REFUSALS[503]
        if isinstance(ex, (HeadersTooLarge, http_client.HTTPException)):
            return "431", REFUSALS[431]
        # Debug only: anyone can send these, and the log must not be theirs to fill.
        log.debug("malformed request from %s: %s", self.client_address[0], ex)
        return "400", REFUSALS[400]

    def _send_error_response_if_possible(self, error_code):
        self.close_connection = True
        if self.response_length:
            return
        if error_code == 400:
            code, message = "bad_request", "malformed request body"
        else:
            code, message = "internal_error", "internal error; it has been logged"
        body = json.dumps(envelope(code, message)).encode()
        try:
            self.start_response(
                f"{error_code} {HTTPStatus(error_code).phrase}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")],
            )
            self.write(body)
        except OSError:
            pass

    def _write_with_headers(self, data):
        """gevent's own header block and first body chunk, sent together: gevent sends them apart, and on
        loopback a send costs more than copying a body of up to GATHER_MAX bytes."""
        if len(data) > GATHER_MAX:
            return super()._write_with_headers(data)
        parts: list = []
        self._sendall = parts.append  # type: ignore[method-assign]  # what gevent sends, held for one send
        try:
            super()._write_with_headers(data)
        finally:
            del self._sendall
        self._sendall(b"".join(parts))

    def log_request(self):
        if self.server.access_log:  # with none (log=None), gevent would still format the line for nothing
            super().log_request()

    def finalize_headers(self):
        super().finalize_headers()
        # Say so when the server will close after this response (a health check on a reserve place).
        if (
            self.close_connection
            and self.request_version == "HTTP/1.1"
            and not any(name.lower() == b"connection" for name, _ in self.response_headers)
        ):
            self.response_headers.append((b"Connection", b"close"))


class Server(WSGIServer):
    """gevent's WSGI server with Nagle off (on a keep-alive connection a response written in two segments
    otherwise waits for the client's delayed ACK, adding 40 ms to every request) and the limits above."""

    handler_class = Handler

    def __init__(
        self, listener, application, *, max_connections: int, header_timeout_s: float, idle_timeout_s: float, **kwargs
    ):
        kwargs.setdefault("backlog", LISTEN_BACKLOG)
        # Handlers in a pool, so that stop() waits for the requests being answered (without one, gevent's stop
        # only stops accepting, and the process would end under them). gunicorn's worker brings its own.
        kwargs.setdefault("spawn", Pool())
        super().__init__(listener, application, **kwargs)
        self.stopping = False
        self.access_log = kwargs.get("log", "default") is not None
        self.connections = Slots(max_connections)
        self.reserve = Slots(HEALTH_RESERVE)
        self.header_timeout_s = header_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.accept_errors = 0
        self.accept_error_logged = 0.0

    def close(self):
        """Stop accepting, and end every connection that is waiting for a request (kept alive, or still sending
        its headers): what is being answered finishes, and no connection takes another request (stop() then
        waits for those, `python -m web` and gunicorn alike)."""
        self.stopping = True
        super().close()
        for slots in (self.connections, self.reserve):
            for handler in list(slots.waiting):
                handler.drop()

    def handle(self, sock, address):
        handler = self.handler_class(sock, address, self)
        if not (self.connections.take(handler) or self.reserve.take(handler)):
            try:
                sock.sendall(REFUSALS[503])
            except OSError:
                pass
            return  # gevent closes the socket
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        slots = handler.slots
        try:
            handler.handle()
        finally:
            slots.release(handler)

    def do_read(self):
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno == errno.ECONNABORTED:
                return None  # the client gave up before we accepted
            if exc.errno not in _OUT_OF_DESCRIPTORS:
                raise
        # Out of descriptors: a retry at once would spin (the listening socket stays readable) and log a
        # traceback each time. Pause accepting; the kernel's backlog holds new connections meanwhile.
        self.accept_errors += 1
        now = time.monotonic()
        if now - self.accept_error_logged >= ACCEPT_ERROR_LOG_S:
            log.error(
                "cannot accept connections: out of file descriptors (%d times since the last report); "
                "pausing %.1f s each time",
                self.accept_errors,
                ACCEPT_PAUSE_S,
            )
            self.accept_error_logged = now
            self.accept_errors = 0
        self.stop_accepting()
        self._timer = self.loop.timer(ACCEPT_PAUSE_S)
        self._timer.start(self._start_accepting_if_started)
        return None


def begin_stop(servers, on_shutdown) -> None:
    """Begin a graceful stop: no server takes another request (each listener closed, each kept-alive
    connection that waits for a request closed), then the shutdown hooks end the app's streams. What is being
    answered finishes; the caller waits for it (`Server.stop`, or gunicorn's graceful timeout)."""
    for server in servers:
        server.close()
    for exc in run_shutdown_hooks(on_shutdown):
        log.warning("shutdown hook failed: %s", exc)
