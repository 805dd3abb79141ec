"""The one guarded way out: a requests adapter that applies the destination policy at every connect.

The policy is enforced on the address the socket actually connects to (inside urllib3's connection
setup), after requests and urllib3 have decoded the URL, not only on a lookup made earlier: a name
re-pointed at a private address after submission (DNS rebinding), or a host the client decodes into
one, is refused before any packet is sent. Job attempts (actors/transport.py), onboarding, brand
polling and the demo setup all connect through `GuardedAdapter`.
"""

from __future__ import annotations

import http.client
import socket

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from models.net.policy import BlockedDestination, DestinationPolicy
from models.net.urls import redact_urls


def _guarded_connection(base):
    class Guarded(base):
        policy: DestinationPolicy = DestinationPolicy()
        _corked: list | None = None

        # urllib3 writes the header block and then each body chunk with separate sends. On this
        # machine a loopback send costs ~190 µs of CPU, a third of a job attempt, so the request is
        # gathered and written with one send (bodies are bounded: REQUEST_BODY_LIMIT, brand forms).
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
                except TimeoutError as exc:
                    sock.close()
                    raise urllib3.exceptions.ConnectTimeoutError(
                        self, f"connection to {host} timed out (connect timeout={self.timeout})"
                    ) from exc
                except OSError as exc:
                    sock.close()
                    last_error = exc
            if last_error is not None:
                raise urllib3.exceptions.NewConnectionError(self, f"failed to connect to {host}: {last_error}")
            raise blocked or urllib3.exceptions.NewConnectionError(self, f"no address for {host}")

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


class GuardedAdapter(HTTPAdapter):
    """A requests adapter whose every connection checks the destination policy on the connected address."""

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

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        # A proxy would make the connection for us, to an address the policy never sees.
        raise requests.exceptions.InvalidURL("outbound requests do not go through proxies")


class GuardedSession(requests.Session):
    """A Session for brand clients: guarded adapter only, no environment proxies, never a redirect."""

    def __init__(self, policy: DestinationPolicy, pool_maxsize: int = 64):
        super().__init__()
        self.trust_env = False
        self.max_redirects = 0
        adapter = GuardedAdapter(policy, pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
        self.adapters.clear()
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request, **kwargs):
        # A redirect is the brand's answer, not an instruction to fetch another (maybe internal) URL.
        kwargs["allow_redirects"] = False
        return super().send(request, **kwargs)


def describe_failure(exc: BaseException, timeout_s: float) -> tuple[str, str]:
    """(kind, message) of a failed request: blocked_destination, timeout, tls, dns, too_large or connection.

    The message names what went wrong in a few words; URLs in it have their query strings and
    userinfo removed, so no credential carried there reaches an error body or a log line.
    """
    kind, message = _classify(exc, timeout_s)
    return kind, redact_urls(message)


def _classify(exc: BaseException, timeout_s: float) -> tuple[str, str]:
    if isinstance(exc, BlockedDestination):
        return "blocked_destination", str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "timeout", f"connect timed out after {timeout_s:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timeout", f"no response within {timeout_s:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls", _short(exc)
    if isinstance(exc, requests.exceptions.ConnectionError):
        blocked = _caused_by(exc, BlockedDestination)
        if blocked is not None:
            return "blocked_destination", str(blocked)
        if _caused_by(exc, urllib3.exceptions.NameResolutionError) or _caused_by(exc, socket.gaierror):
            return "dns", _short(exc)
        if _caused_by(exc, http.client.LineTooLong):
            return "too_large", "response headers too large"
        refused = _caused_by(exc, urllib3.exceptions.NewConnectionError)
        if refused is not None:
            return "connection", str(refused).split("): ", 1)[-1]
        broken = _caused_by(exc, urllib3.exceptions.ProtocolError)
        if broken is not None:
            return "connection", f"connection broken: {_short(broken)}"
        return "connection", _short(exc)
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, ValueError)):
        return "connection", f"invalid request: {_short(exc)}"
    return "connection", _short(exc)


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
