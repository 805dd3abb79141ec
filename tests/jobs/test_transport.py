"""The transport in-process against real servers on 127.0.0.1: how each failure is classified."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from actors.transport import Transport
from models.net import transport as transport_module
from models.net.policy import DestinationPolicy
from tests.helpers import free_port


@pytest.fixture
def transport():
    t = Transport(DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")]), body_cap=1000)
    yield t
    t.close()


def test_success_keeps_status_headers_and_body(transport, partner):
    response = transport.send("POST", partner.url + "/ok", {"X-A": "1"}, b"hi", 5)
    assert response.error_kind is None
    assert (response.status_code, response.body, response.body_truncated) == (200, b"ok", False)
    assert response.headers["Content-Type"] == "text/plain"
    assert response.started_at <= response.finished_at
    [received] = partner.received("/ok")
    assert received.body == b"hi"
    assert received.headers["X-A"] == "1"
    assert received.headers["User-Agent"].startswith("solar-relay/")


def test_non_2xx_is_a_response_not_an_error(transport, partner):
    response = transport.send("GET", partner.url + "/status/503?retry_after=7", {}, None, 5)
    assert response.error_kind is None
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"


def test_redirect_is_not_followed(transport, partner):
    response = transport.send("GET", partner.url + "/redirect", {}, None, 5)
    assert response.status_code == 301
    assert partner.received("/ok") == []


def test_body_cap_truncates(transport, partner):
    response = transport.send("GET", partner.url + "/big?n=5000", {}, None, 5)
    assert (len(response.body), response.body_truncated) == (1000, True)
    response = transport.send("GET", partner.url + "/big?n=1000", {}, None, 5)
    assert (len(response.body), response.body_truncated) == (1000, False)


def test_repeated_response_header_fields_are_kept_joined_under_the_first_name(transport, odd_partner):
    response = transport.send("GET", odd_partner.url + "/repeated-headers", {}, None, 5)
    assert response.error_kind is None, response.error_message
    assert response.headers["X-Repeat"] == "a, b" and "x-repeat" not in response.headers
    assert response.headers["Set-Cookie"] == "one=1, two=2"


def test_a_connection_whose_body_was_cut_short_is_not_used_again(transport, partner):
    # More than one read brings (64 KiB): most of the body is never read, and it would be read as the next reply's
    # start on the same connection. (A body that arrived whole in one read leaves the connection clean for reuse.)
    assert transport.send("GET", partner.url + "/big?n=300000", {}, None, 5).body_truncated
    assert transport.send("GET", partner.url + "/ok", {}, None, 5).body == b"ok"
    assert transport.send("GET", partner.url + "/ok", {}, None, 5).body == b"ok"
    (big,) = partner.received("/big")
    first, second = partner.received("/ok")
    assert first.client_port != big.client_port and second.client_port == first.client_port


def test_chunked_body_is_read_whole(transport, odd_partner):
    response = transport.send("GET", odd_partner.url + "/chunked", {}, None, 5)
    assert response.error_kind is None, response.error_message
    assert response.body == b"hello chunked world"


def test_head_has_no_body(transport, partner):
    response = transport.send("HEAD", partner.url + "/ok", {}, None, 5)
    assert (response.status_code, response.body) == (200, b"")


def test_read_timeout(transport, partner):
    started = time.monotonic()
    response = transport.send("GET", partner.url + "/sleep?s=2", {}, None, 0.3)
    assert response.error_kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_a_trickled_body_is_bounded_by_the_attempt_timeout(transport, odd_partner):
    started = time.monotonic()
    response = transport.send("GET", odd_partner.url + "/slow-body?s=3", {}, None, 0.5)
    assert response.error_kind == "timeout"
    assert response.status_code == 200
    assert time.monotonic() - started < 1.5


def test_connection_reset(transport, partner):
    response = transport.send("GET", partner.url + "/reset", {}, None, 5)
    assert response.error_kind == "connection"
    assert response.status_code is None


def test_connection_refused(transport):
    response = transport.send("GET", f"http://127.0.0.1:{free_port()}/", {}, None, 5)
    assert response.error_kind == "connection"
    assert "refused" in response.error_message.lower()


def test_dns_failure(transport, monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(transport_module.socket, "getaddrinfo", fail)
    response = transport.send("GET", "http://nowhere.test/", {}, None, 5)
    assert response.error_kind == "dns"


def test_oversized_response_headers_are_too_large(transport, odd_partner):
    response = transport.send("GET", odd_partner.url + "/huge-headers", {}, None, 5)
    assert response.error_kind == "too_large", (response.error_kind, response.error_message)


def test_keep_alive_connection_is_reused_and_survives_a_server_side_close(transport, partner):
    for _ in range(3):
        assert transport.send("GET", partner.url + "/ok", {}, None, 5).status_code == 200
    assert len({r.client_port for r in partner.received("/ok")}) == 1, "one keep-alive connection"
    assert transport.send("GET", partner.url + "/reset", {}, None, 5).error_kind == "connection"
    assert transport.send("GET", partner.url + "/ok", {}, None, 5).status_code == 200
