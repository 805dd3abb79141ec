"""Outbound HTTP for jobs: one shared keep-alive session that refuses blocked destinations.

The destination policy is enforced on the address the socket actually connects to (inside
urllib3's connection setup), not only on a lookup made earlier, so a name that is re-pointed at a
private address after submission (DNS rebinding) is still refused, before any packet is sent.
"""
from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass, field

import requests
import urllib3
from gevent import Timeout, monkey
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from models.destinations import BlockedDestination, DestinationPolicy

USER_AGENT = "solar-relay/0.1 (+retry-engine)"


def _guarded_connection(base):
    class Guarded(base):
        policy: DestinationPolicy = DestinationPolicy()
        _corked: list | None = None

        # urllib3 writes the header block and then each body chunk with separate sends. On this
        # machine a loopback send costs ~190 µs of CPU, a third of an attempt, so the request is
        # gathered and written with one send (a job body is at most REQUEST_BODY_LIMIT bytes).
        def request(self, *args, **kwargs):
            self._corked = []
            try:
                super().request(*args, **kwargs)
                data = b"".join(self._corked)
            finally:
                self._corked = None
            super().send(data)

        def send(self, data):
            if self._corked is not None and isinstance(data, (bytes, bytearray, memoryview)):
                self._corked.append(bytes(data))
                return
            super().send(data)

        def _new_conn(self):
            host, port = self._dns_host, self.port
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise urllib3.exceptions.NameResolutionError(host, self, exc) from exc
            blocked = None
            last_error = None
            for family, socktype, proto, _, sockaddr in infos:
                try:
                    self.policy.check_address(host, sockaddr[0])
                except BlockedDestination as exc:
                    blocked = blocked or exc
                    continue
                sock = socket.socket(family, socktype, proto)
                try:
                    for option in self.socket_options or ():
                        sock.setsockopt(*option)
                    if self.timeout is not None:
                        sock.settimeout(self.timeout)
                    sock.connect(sockaddr)
                    return sock
                except socket.timeout as exc:
                    sock.close()
                    raise urllib3.exceptions.ConnectTimeoutError(
                        self, f"connection to {host} timed out (connect timeout={self.timeout})") from exc
                except OSError as exc:
                    sock.close()
                    last_error = exc
            if last_error is not None:
                raise urllib3.exceptions.NewConnectionError(self, f"failed to connect to {host}: {last_error}")
            raise blocked or urllib3.exceptions.NewConnectionError(self, f"no address for {host}")

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: DestinationPolicy, **kwargs):
        http_conn = _guarded_connection(HTTPConnection)
        https_conn = _guarded_connection(HTTPSConnection)
        http_conn.policy = https_conn.policy = policy
        self._pools = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


@dataclass
class Response:
    """What an attempt brought back, or how it failed (error_kind set)."""

    started_at: float
    finished_at: float
    status_code: int | None = None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    body_truncated: bool = False
    error_kind: str | None = None
    error_message: str | None = None


class Transport:
    def __init__(self, policy: DestinationPolicy, body_cap: int, pool_per_host: int = 16, hosts_cached: int = 256):
        self.body_cap = body_cap
        # One keep-alive adapter shared by every attempt. Requests go straight to it rather than
        # through a Session: no cookie jar (one account's cookies must never reach another's
        # job), no environment proxies (they would connect for us and bypass the destination
        # check), and a third less CPU per attempt.
        self.adapter = _GuardedAdapter(policy, pool_connections=hosts_cached, pool_maxsize=pool_per_host,
                                       pool_block=False, max_retries=0)
        self.default_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": "*/*"}

    def send(self, method: str, url: str, headers: dict, body: bytes | None, timeout_s: float) -> Response:
        started = time.time()
        # Under gevent (the worker) a watchdog bounds the whole attempt, whatever phase trickles:
        # per-read socket timeouts alone let a peer sending a header line every second hold it for ever.
        watchdog = _start_watchdog(timeout_s + _WATCHDOG_MARGIN_S)
        try:
            return self._send(method, url, headers, body, timeout_s, started)
        except _AttemptDeadline:
            return Response(started, time.time(), error_kind="timeout",
                            error_message=f"attempt not complete within {timeout_s:g} s")
        finally:
            if watchdog is not None:
                watchdog.close()

    def _send(self, method, url, headers, body, timeout_s, started) -> Response:
        deadline = time.monotonic() + timeout_s

        def failed(kind, message, status_code=None):
            return Response(started, time.time(), status_code=status_code, error_kind=kind, error_message=message)

        try:
            prepared = requests.Request(method, url, headers={**self.default_headers, **headers}, data=body).prepare()
            reply = self.adapter.send(prepared, stream=True, timeout=timeout_s, verify=True, cert=None, proxies={})
        except BlockedDestination as exc:
            return failed("blocked_destination", str(exc))
        except requests.exceptions.ConnectTimeout:
            return failed("timeout", f"connect timed out after {timeout_s:g} s")
        except requests.exceptions.ReadTimeout:
            return failed("timeout", f"no response within {timeout_s:g} s")
        except requests.exceptions.SSLError as exc:
            return failed("tls", _short(exc))
        except requests.exceptions.ConnectionError as exc:
            if _caused_by(exc, BlockedDestination):
                return failed("blocked_destination", str(_caused_by(exc, BlockedDestination)))
            if _caused_by(exc, urllib3.exceptions.NameResolutionError) or _caused_by(exc, socket.gaierror):
                return failed("dns", _short(exc))
            if _caused_by(exc, http.client.LineTooLong):
                return failed("too_large", "response headers too large")
            refused = _caused_by(exc, urllib3.exceptions.NewConnectionError)
            if refused is not None:
                return failed("connection", str(refused).split("): ", 1)[-1])
            if _caused_by(exc, urllib3.exceptions.ProtocolError):
                return failed("connection", f"connection broken: {_short(_caused_by(exc, urllib3.exceptions.ProtocolError))}")
            return failed("connection", _short(exc))
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, ValueError) as exc:
            return failed("connection", f"invalid request: {_short(exc)}")
        except requests.exceptions.RequestException as exc:
            return failed("connection", _short(exc))

        with reply:
            try:
                chunks, size, truncated = [], 0, False
                sock = getattr(getattr(reply.raw, "connection", None), "sock", None)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return failed("timeout", f"response body not complete within {timeout_s:g} s", reply.status_code)
                    if sock is not None:
                        # Bound each read by the attempt's deadline: a body trickled a byte at a time
                        # never trips a per-read timeout and would hold the attempt for ever.
                        sock.settimeout(remaining)
                    # read1: what has arrived (up to 64 KiB), not a blocking wait for a full 64 KiB.
                    chunk = reply.raw.read1(65536, decode_content=False)
                    if not chunk:
                        break
                    if size + len(chunk) > self.body_cap:
                        chunks.append(chunk[: self.body_cap - size])
                        truncated = True
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            except (urllib3.exceptions.ReadTimeoutError, socket.timeout):
                return failed("timeout", f"response body not complete within {timeout_s:g} s", reply.status_code)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                return failed("connection", f"connection broken while reading the body: {_short(exc)}",
                              reply.status_code)
            return Response(started, time.time(), status_code=reply.status_code, headers=dict(reply.headers),
                            body=b"".join(chunks), body_truncated=truncated)

    def close(self):
        self.adapter.close()


_WATCHDOG_MARGIN_S = 0.1


class _AttemptDeadline(Exception):
    """Raised inside an attempt by its watchdog (an Exception, never a BaseException: see stack notes)."""


def _start_watchdog(seconds: float):
    if not monkey.is_module_patched("socket"):
        return None
    return Timeout.start_new(seconds, _AttemptDeadline)


def _caused_by(exc: BaseException, kind):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kind):
            return exc
        for arg in getattr(exc, "args", ()):
            if isinstance(arg, kind):
                return arg
            reason = getattr(arg, "reason", None)
            if isinstance(reason, kind):
                return reason
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)
    return None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."
