"""Outbound HTTP for jobs: one shared keep-alive guarded adapter (models/net/transport.py), a
deadline for the whole attempt, and a bounded body. Blocked destinations are refused at connect."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

import requests
import urllib3
from gevent import Timeout, monkey

from models.net.policy import BlockedDestination, DestinationPolicy
from models.net.transport import GuardedAdapter, describe_failure

USER_AGENT = "solar-relay/0.1 (+retry-engine)"


@dataclass
class Response:
    """What an attempt brought back, or how it failed (error_kind set)."""

    started_at: float
    finished_at: float
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
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
        self.adapter = _AttemptAdapter(
            policy, pool_connections=hosts_cached, pool_maxsize=pool_per_host, pool_block=False, max_retries=0
        )
        self.default_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": "*/*"}

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float) -> Response:
        started = time.time()
        # Under gevent (the worker) a watchdog bounds the whole attempt, whatever phase trickles:
        # per-read socket timeouts alone let a peer sending a header line every second hold it for ever.
        watchdog = _start_watchdog(timeout_s + _WATCHDOG_MARGIN_S)
        try:
            return self._send(method, url, headers, body, timeout_s, started)
        except _AttemptDeadline:
            return Response(
                started, time.time(), error_kind="timeout", error_message=f"attempt not complete within {timeout_s:g} s"
            )
        finally:
            if watchdog is not None:
                watchdog.close()

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float, started: float
    ) -> Response:
        deadline = time.monotonic() + timeout_s

        def failed(kind: str, message: str, status_code: int | None = None) -> Response:
            return Response(started, time.time(), status_code=status_code, error_kind=kind, error_message=message)

        try:
            prepared = prepare_attempt(method, url, {**self.default_headers, **headers}, body)
            reply = self.adapter.open(prepared, timeout_s)
        except (requests.exceptions.RequestException, BlockedDestination, ValueError) as exc:
            return failed(*describe_failure(exc, timeout_s))

        try:
            try:
                chunks, size, truncated = [], 0, False
                sock = getattr(reply.connection, "sock", None)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return failed("timeout", f"response body not complete within {timeout_s:g} s", reply.status)
                    if sock is not None:
                        # Bound each read by the attempt's deadline: a body trickled a byte at a time
                        # never trips a per-read timeout and would hold the attempt for ever.
                        sock.settimeout(remaining)
                    # read1: what has arrived (up to 64 KiB), not a blocking wait for a full 64 KiB.
                    chunk = reply.read1(65536, decode_content=False)
                    if not chunk:
                        break
                    if size + len(chunk) > self.body_cap:
                        chunks.append(chunk[: self.body_cap - size])
                        truncated = True
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
                return failed("timeout", f"response body not complete within {timeout_s:g} s", reply.status)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                return failed("connection", f"connection broken while reading the body: {str(exc)[:300]}", reply.status)
            return Response(
                started,
                time.time(),
                status_code=reply.status,
                headers=dict(reply.headers),
                body=b"".join(chunks),
                body_truncated=truncated,
            )
        finally:
            # As requests' Response.close(): a body left unread (cut at the cap, or timed out) closes its connection,
            # which must not carry another request; a body read to its end has already handed it back to the pool.
            reply.close()
            reply.release_conn()

    def close(self) -> None:
        self.adapter.close()


class _AttemptAdapter(GuardedAdapter):
    """The guarded adapter answering with urllib3's response itself. An attempt reads the raw body and keeps the
    status and headers; requests' Response around it (a case-insensitive copy of the headers, a cookie jar filled
    from them, an encoding guessed) cost ~20 µs an attempt for nothing (docs/benchmarks.md). Failures are still
    raised as requests' exceptions, by `HTTPAdapter.send`, for `describe_failure`."""

    def build_response(self, req: requests.PreparedRequest, resp: urllib3.BaseHTTPResponse) -> Any:
        return resp

    def open(self, request: requests.PreparedRequest, timeout_s: float) -> urllib3.BaseHTTPResponse:
        """Send the request; its response with the body unread (to be closed and released by the caller)."""
        reply = self.send(request, stream=True, timeout=timeout_s, verify=True, cert=None, proxies={})
        return cast(urllib3.BaseHTTPResponse, reply)  # what build_response above returned


def prepare_attempt(method: str, url: str, headers: dict[str, str], body: bytes | None) -> requests.PreparedRequest:
    """The request an attempt sends: what `requests.Request(...).prepare()` gives for a job, by the steps a job needs.

    The full prepare() also builds a cookie jar per request (an attempt carries no cookies: one account's must
    never reach another's job), reads credentials from the URL's userinfo (refused at submission:
    models/net/urls.py), attaches hooks (only a Session runs them) and checks an empty params dict against
    requests' runtime Protocols: together about half of prepare()'s cost, 4% of the worker's CPU per attempt
    (docs/benchmarks.md).
    """
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, "")  # "" not {}: the same URL, without the Protocol checks of a mapping
    prepared.prepare_headers(headers)
    prepared.prepare_body(body, None)
    return prepared


_WATCHDOG_MARGIN_S = 0.1


class _AttemptDeadline(Exception):
    """Raised inside an attempt by its watchdog (an Exception, never a BaseException: see stack notes)."""


def _start_watchdog(seconds: float) -> Timeout | None:
    if not monkey.is_module_patched("socket"):
        return None
    return Timeout.start_new(seconds, _AttemptDeadline)
