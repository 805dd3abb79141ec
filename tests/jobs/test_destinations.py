"""The destination policy (SSRF): unit tests, the connect-time guard in the transport, and submission.

No packet is ever sent anywhere but 127.0.0.1: blocked addresses are only ever given as literals
or as fake DNS answers, and the transport test asserts no socket is even connected.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from actors.transport import Transport
from models.net import transport as transport_module
from models.net.policy import BlockedDestination, DestinationPolicy
from tests.app_on_own_database import app, new_app_key  # noqa: F401 - this module's tests use their own database

BLOCKED = {
    # address: the word the reason must contain
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "",  # reserved (Python also calls it private); blocked either way
    "255.255.255.255": "",
    "0.0.0.0": "unspecified",
    "100.64.0.1": "shared",
    "100.127.255.254": "shared",
    "198.18.0.1": "",  # benchmarking
    "::1": "loopback",
    "::": "unspecified",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "ff02::1": "multicast",
    "::ffff:10.0.0.1": "private",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1": "private",  # local-use NAT64 prefix
    "2002:a00:1::": "private",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1": "link-local",  # 6to4 of 169.254.169.254
    "::a00:1": "private",  # deprecated IPv4-compatible form
}

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


@pytest.mark.parametrize("address,word", sorted(BLOCKED.items()))
def test_blocked_by_default(address, word):
    reason = DestinationPolicy().reason_blocked(address)
    assert reason, f"{address} should be refused"
    assert word in reason
    with pytest.raises(BlockedDestination) as caught:
        DestinationPolicy().check_address("example.test", address)
    assert caught.value.address == address
    assert "refused" in str(caught.value)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert DestinationPolicy().reason_blocked(address) is None
    DestinationPolicy().check_address("example.test", address)


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_mapped_and_translated_forms_of_public_addresses_pass(address):
    """Only forms that embed a blocked address are refused (the embedded address decides)."""
    assert DestinationPolicy().reason_blocked(address) is None


def test_allowed_networks_let_ranges_back_in():
    policy = DestinationPolicy(
        [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00:1::/32")]
    )
    for address in (
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "::ffff:10.1.2.3",
        "64:ff9b::a01:203",
        "fd00:1::5",
        "::ffff:127.0.0.1",
    ):
        assert policy.reason_blocked(address) is None, address
    for address in ("10.2.0.1", "::ffff:10.2.0.1", "169.254.169.254", "::1", "fd00:2::5", "192.168.0.1"):
        assert policy.reason_blocked(address), address


def test_allowed_ipv4_network_does_not_let_an_ipv6_address_in():
    policy = DestinationPolicy([ipaddress.ip_network("0.0.0.0/0")])
    assert policy.reason_blocked("10.0.0.1") is None
    assert policy.reason_blocked("fe80::1") == "link-local"


def test_submission_check_refuses_literals_without_resolving(monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("a literal address must not be looked up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    policy = DestinationPolicy()
    for host in ("10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:10.0.0.1]", "[fe80::1%25eth0]".replace("%25", "%")):
        with pytest.raises(BlockedDestination):
            policy.check_host_at_submission(host, 80)
    policy.check_host_at_submission("8.8.8.8", 80)


def test_submission_check_refuses_a_name_resolving_to_a_blocked_address(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _fake_resolver({"rebind.test": "169.254.169.254"}))
    with pytest.raises(BlockedDestination) as caught:
        DestinationPolicy().check_host_at_submission("rebind.test", 80)
    assert "rebind.test resolves to 169.254.169.254" in str(caught.value)


def test_submission_check_lets_an_unresolvable_name_through(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    DestinationPolicy().check_host_at_submission("not-yet.test", 80)


# -- the transport: the address actually connected to is checked, before any packet -------------


def _fake_resolver(table: dict, real=socket.getaddrinfo):
    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            address = table[host]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
        return real(host, port, *args, **kwargs)

    return getaddrinfo


@pytest.fixture
def no_connect(monkeypatch):
    """Record every socket connect; refuse (and record) any to an address other than 127.0.0.1."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        attempts.append(address)
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a connect to {address} was attempted")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "fd00::1", "100.64.1.1"])
def test_transport_refuses_a_name_resolving_to_a_blocked_address_without_connecting(monkeypatch, no_connect, address):
    monkeypatch.setattr(transport_module.socket, "getaddrinfo", _fake_resolver({"rebound.test": address}))
    transport = Transport(DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")]), body_cap=1024)
    try:
        response = transport.send("POST", "http://rebound.test:8080/hook", {"X-Test": "1"}, b"{}", 2.0)
    finally:
        transport.close()
    assert response.error_kind == "blocked_destination", response
    assert address in response.error_message
    assert response.status_code is None
    assert no_connect == []


def test_transport_refuses_blocked_names_over_https_too(monkeypatch, no_connect):
    monkeypatch.setattr(transport_module.socket, "getaddrinfo", _fake_resolver({"meta.test": "169.254.169.254"}))
    transport = Transport(DestinationPolicy(), body_cap=1024)
    try:
        response = transport.send("GET", "https://meta.test/latest/meta-data/", {}, None, 2.0)
    finally:
        transport.close()
    assert response.error_kind == "blocked_destination"
    assert no_connect == []


def test_transport_refuses_a_literal_blocked_address_without_connecting(no_connect):
    transport = Transport(DestinationPolicy(), body_cap=1024)
    try:
        response = transport.send("GET", "http://169.254.169.254/latest/meta-data/", {}, None, 2.0)
    finally:
        transport.close()
    assert response.error_kind == "blocked_destination"
    assert no_connect == []


def test_transport_connects_to_an_allowed_address(monkeypatch, no_connect, partner):
    monkeypatch.setattr(transport_module.socket, "getaddrinfo", _fake_resolver({"partner.test": "127.0.0.1"}))
    transport = Transport(DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")]), body_cap=1024)
    try:
        response = transport.send("GET", f"http://partner.test:{partner.port}/ok", {}, None, 5.0)
    finally:
        transport.close()
    assert response.error_kind is None, response.error_message
    assert (response.status_code, response.body) == (200, b"ok")
    assert no_connect == [("127.0.0.1", partner.port)]
    assert partner.received("/ok")[0].headers["Host"] == f"partner.test:{partner.port}"


def test_transport_skips_blocked_answers_and_uses_an_allowed_one(monkeypatch, no_connect, partner):
    """A name answering with a blocked and an allowed address connects only to the allowed one."""

    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.0.0.1", port)),
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)),
        ]

    monkeypatch.setattr(transport_module.socket, "getaddrinfo", getaddrinfo)
    transport = Transport(DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")]), body_cap=1024)
    try:
        response = transport.send("GET", f"http://mixed.test:{partner.port}/ok", {}, None, 5.0)
    finally:
        transport.close()
    assert response.status_code == 200
    assert no_connect == [("127.0.0.1", partner.port)]


# -- end to end: submission refuses literal blocked addresses, nothing stored ---------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://192.168.0.10:8443/x",
        "http://100.64.0.1/",
        "http://0.0.0.0:80/",
        "http://[::ffff:10.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
    ],
)
def test_submission_of_a_literal_blocked_address_is_refused_and_nothing_stored(client, url):
    reply = client.post("/jobs", json={"url": url})
    assert reply.status_code == 422, reply.get_data(as_text=True)
    error = reply.get_json()["error"]
    assert error["code"] == "blocked_destination"
    assert error["details"]["field"] == "url"
    assert error["details"]["reason"]
    assert client.get("/jobs").get_json()["jobs"] == []


def test_loopback_is_refused_at_submission_unless_allowed(services, env, account_key, client_for, partner):
    strict = services.web({**env, "ALLOWED_TARGET_NETWORKS": ""})
    api = client_for(strict.url, account_key)
    reply = api.post("/jobs", json={"url": partner.url + "/ok"})
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "blocked_destination"
    assert reply.json()["error"]["details"]["reason"] == "loopback"
    assert api.get("/jobs").json()["jobs"] == []
    assert partner.received() == []


def test_a_policys_remembered_verdicts_are_its_own():
    """Each policy remembers its verdicts per address: another policy's allowed networks never leak in, and a
    verdict asked again is the same (literal hosts at submission go through the same verdicts)."""
    lenient = DestinationPolicy([ipaddress.ip_network("127.0.0.0/8")])
    strict = DestinationPolicy()
    for _ in range(2):
        assert lenient.reason_blocked("127.0.0.1") is None
        assert strict.reason_blocked("127.0.0.1") == "loopback"
        lenient.check_host_at_submission("127.0.0.1", 80)
        with pytest.raises(BlockedDestination, match="loopback"):
            strict.check_host_at_submission("127.0.0.1", 80)
        with pytest.raises(BlockedDestination, match="loopback") as caught:
            strict.check_host_at_submission("[::1]", 80)
        assert (caught.value.host, caught.value.address) == ("[::1]", "::1")
    with pytest.raises(ValueError):
        strict.reason_blocked("example.com")
