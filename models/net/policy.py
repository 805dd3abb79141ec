"""Destination policy for outbound calls (SSRF): which addresses the service may connect to.

Refused by default: every block the IANA special-purpose registries mark as not globally reachable
(loopback, private-use, link-local with cloud metadata, shared/CGNAT, documentation, benchmarking,
reserved, ...), multicast, the deprecated IPv6 site-local range, the 6to4 and Teredo transition
ranges, and IPv4-mapped / NAT64 / IPv4-compatible forms that embed a refused IPv4 address.
`ALLOWED_TARGET_NETWORKS` lets chosen ranges back in. The same check runs at submission (on the
literal or resolved address) and at every connect (on the address actually connected to).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any, TypeAlias

IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SHARED = ipaddress.ip_network("100.64.0.0/10")

# Blocks refused whatever this Python's ipaddress flags say (they differ between patch releases):
# the IANA special-purpose entries not globally reachable, plus ranges deprecated for good.
# tests/jobs/test_special_purpose_registries.py checks the policy against the registries themselves.
_NOT_GLOBAL = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "'this network'"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("192.88.99.0/24", "deprecated (6to4 relay anycast)"),
        ("198.18.0.0/15", "benchmarking"),
        ("240.0.0.0/4", "reserved"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "a dummy prefix"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "an IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("2002::/16", "6to4"),
        ("5f00::/16", "segment routing (SRv6 SIDs)"),
        ("fc00::/7", "private"),
        ("fec0::/10", "site-local (deprecated)"),
    )
)


class BlockedDestination(Exception):
    """The destination address is not allowed by the policy."""

    def __init__(self, host: str, address: str, reason: str):
        where = host if host.strip("[]") == address else f"{host} resolves to {address}, which"
        super().__init__(f"{where} is {reason}; refused")
        self.host = host
        self.address = address
        self.reason = reason


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64 or addr in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    # IPv4-compatible (deprecated ::a.b.c.d)
    if int(addr) >> 32 == 0 and int(addr) > 1:
        return ipaddress.IPv4Address(int(addr))
    return None


def _why_blocked(addr: IPAddress) -> str | None:
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED:
        return "shared address space"
    for network, reason in _NOT_GLOBAL:
        if addr.version == network.version and addr in network:
            return reason
    if addr.is_private:
        return "private"
    if addr.is_reserved:
        return "reserved"
    if not addr.is_global:
        return "not globally routable"
    return None


class DestinationPolicy:
    def __init__(self, allowed_networks: Iterable[IPNetwork] = ()):
        self.allowed = tuple(allowed_networks)
        # A policy never changes, so an address's verdict (ipaddress's parsing and a few dozen range checks,
        # at every submission and every connect) is worked out once. Bounded: a caller may name any address.
        self._verdicts = functools.lru_cache(maxsize=4096)(self._reason_blocked)

    @classmethod
    def from_settings(cls, settings: Any) -> DestinationPolicy:
        """The policy every outbound request of this process follows (ALLOWED_TARGET_NETWORKS)."""
        return cls(settings.allowed_target_networks)

    def _allowed(self, addr: IPAddress) -> bool:
        return any(addr.version == net.version and addr in net for net in self.allowed)

    def reason_blocked(self, address: str) -> str | None:
        """Why this IP address is refused, or None if the service may connect to it (ValueError: not an IP
        address)."""
        return self._verdicts(address)

    def _reason_blocked(self, address: str) -> str | None:
        addr = ipaddress.ip_address(address.split("%", 1)[0])
        if self._allowed(addr):
            return None
        if isinstance(addr, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(addr)
            if embedded is not None:
                if self._allowed(embedded):
                    return None
                inner = _why_blocked(embedded)
                if inner:
                    return f"{inner} (embedded in {addr.compressed})"
                if addr.ipv4_mapped is not None or addr in _NAT64:
                    # These forms reach exactly the embedded IPv4 address, which is allowed (a mapped
                    # address never leaves the host as IPv6: the socket connects over IPv4).
                    return None
        return _why_blocked(addr)

    def check_address(self, host: str, address: str) -> None:
        reason = self.reason_blocked(address)
        if reason:
            raise BlockedDestination(host, address, reason)

    def check_host_at_submission(self, host: str, port: int) -> None:
        """Refuse a literal blocked address, or a name that resolves to one now.

        A name that does not resolve yet is let through: the connect-time check still guards it.
        """
        literal = host.strip("[]")
        try:
            self.check_address(host, literal)
        except ValueError:
            pass  # not an IP address: a name
        else:
            return
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError, OSError):
            return
        for info in infos:
            self.check_address(host, str(info[4][0]))
