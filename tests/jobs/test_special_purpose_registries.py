"""The destination policy against the IANA IPv4 and IPv6 Special-Purpose Address Registries.

The registries (iana.org/assignments/iana-ipv4-special-registry and iana-ipv6-special-registry, as of
2025) are reproduced below as test data: every block whose "Globally Reachable" is False or N/A must
be refused, at its first, middle and last address, and ALLOWED_TARGET_NETWORKS must let a range back
in. Pure function calls: no packet is sent.
"""

from __future__ import annotations

import ipaddress

import pytest

from models.net.policy import DestinationPolicy

# (address block, name, globally reachable): True, False or None for N/A.
IPV4_REGISTRY = [
    ("0.0.0.0/8", "this network", False),
    ("0.0.0.0/32", "this host on this network", False),
    ("10.0.0.0/8", "private-use", False),
    ("100.64.0.0/10", "shared address space", False),
    ("127.0.0.0/8", "loopback", False),
    ("169.254.0.0/16", "link local", False),
    ("172.16.0.0/12", "private-use", False),
    ("192.0.0.0/24", "IETF protocol assignments", False),
    ("192.0.0.0/29", "IPv4 service continuity prefix", False),
    ("192.0.0.8/32", "IPv4 dummy address", False),
    ("192.0.0.9/32", "port control protocol anycast", True),
    ("192.0.0.10/32", "TURN anycast", True),
    ("192.0.0.170/32", "NAT64/DNS64 discovery", False),
    ("192.0.0.171/32", "NAT64/DNS64 discovery", False),
    ("192.0.2.0/24", "documentation (TEST-NET-1)", False),
    ("192.31.196.0/24", "AS112-v4", True),
    ("192.52.193.0/24", "AMT", True),
    ("192.88.99.0/24", "deprecated (6to4 relay anycast)", None),
    ("192.88.99.2/32", "6a44-relay anycast", True),
    ("192.168.0.0/16", "private-use", False),
    ("192.175.48.0/24", "direct delegation AS112 service", True),
    ("198.18.0.0/15", "benchmarking", False),
    ("198.51.100.0/24", "documentation (TEST-NET-2)", False),
    ("203.0.113.0/24", "documentation (TEST-NET-3)", False),
    ("240.0.0.0/4", "reserved", False),
    ("255.255.255.255/32", "limited broadcast", False),
]

IPV6_REGISTRY = [
    ("::1/128", "loopback", False),
    ("::/128", "unspecified", False),
    ("::ffff:0:0/96", "IPv4-mapped", False),
    ("64:ff9b::/96", "IPv4-IPv6 translation", True),
    ("64:ff9b:1::/48", "IPv4-IPv6 translation (local use)", False),
    ("100::/64", "discard-only", False),
    ("100:0:0:1::/64", "dummy IPv6 prefix", False),
    ("2001::/23", "IETF protocol assignments", False),
    ("2001::/32", "TEREDO", None),
    ("2001:1::1/128", "port control protocol anycast", True),
    ("2001:1::2/128", "TURN anycast", True),
    ("2001:1::3/128", "DNS-SD service registration protocol anycast", True),
    ("2001:2::/48", "benchmarking", False),
    ("2001:3::/32", "AMT", True),
    ("2001:4:112::/48", "AS112-v6", True),
    ("2001:10::/28", "deprecated (ORCHID)", False),
    ("2001:20::/28", "ORCHIDv2", True),
    ("2001:30::/28", "drone remote ID protocol entity tags", True),
    ("2001:db8::/32", "documentation", False),
    ("2002::/16", "6to4", None),
    ("2620:4f:8000::/48", "direct delegation AS112 service", True),
    ("3fff::/20", "documentation", False),
    ("5f00::/16", "segment routing (SRv6) SIDs", False),
    ("fc00::/7", "unique-local", False),
    ("fe80::/10", "link-local unicast", False),
]

# Not in the registries but never a destination either: deprecated site-local (RFC 3879), multicast.
ALSO_REFUSED = ["fec0::/10", "224.0.0.0/4", "ff00::/8"]

NOT_GLOBAL = [(block, name) for block, name, reachable in IPV4_REGISTRY + IPV6_REGISTRY if reachable is not True]


def samples(block: str) -> list[str]:
    network = ipaddress.ip_network(block)
    middle = network.network_address + network.num_addresses // 2
    return sorted({str(network.network_address), str(middle), str(network.broadcast_address)})


def refused_by(policy: DestinationPolicy, address: str) -> bool:
    return policy.reason_blocked(address) is not None


@pytest.mark.parametrize("block,name", NOT_GLOBAL, ids=[block for block, _ in NOT_GLOBAL])
def test_every_block_not_globally_reachable_is_refused(block, name):
    policy = DestinationPolicy()
    for address in samples(block):
        if ipaddress.ip_network(block) == ipaddress.ip_network("::ffff:0:0/96"):
            # A mapped address is connected to as its IPv4 address, so that address decides.
            embedded = str(ipaddress.IPv6Address(address).ipv4_mapped)
            assert refused_by(policy, address) == refused_by(policy, embedded), address
            continue
        assert refused_by(policy, address), f"{address} ({name}, {block}) must be refused"


@pytest.mark.parametrize("block", ALSO_REFUSED)
def test_deprecated_and_multicast_ranges_are_refused(block):
    for address in samples(block):
        assert refused_by(DestinationPolicy(), address), address


def test_site_local_is_refused_with_its_name():
    assert "site-local" in DestinationPolicy().reason_blocked("fec0::1")


@pytest.mark.parametrize("block,name", NOT_GLOBAL, ids=[block for block, _ in NOT_GLOBAL])
def test_allowed_target_networks_let_a_block_back_in(block, name):
    policy = DestinationPolicy([ipaddress.ip_network(block)])
    for address in samples(block):
        assert not refused_by(policy, address), f"{address} is in the allowed {block}"


def test_the_mapped_form_of_every_refused_ipv4_block_is_refused():
    policy = DestinationPolicy()
    for block, name, reachable in IPV4_REGISTRY:
        if reachable is True:
            continue
        for address in samples(block):
            assert refused_by(policy, f"::ffff:{address}"), f"::ffff:{address} ({name})"


def test_ordinary_global_addresses_pass():
    for address in ("8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"):
        assert not refused_by(DestinationPolicy(), address), address
