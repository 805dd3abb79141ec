"""Outbound URLs, parsed and normalised once with the same rules for jobs, brand base URLs and anything
added later.

Accepted: http or https; no userinfo; a host that is either a DNS name of ASCII letter-digit-hyphen
labels, an IPv4 address as four decimal numbers (192.0.2.1), or a bracketed IPv6 address; a port in
1..65535. Everything else a client might decode into another host is refused rather than guessed at:
percent-encoding in the host (`%31%32%37.0.0.1`, which requests decodes to 127.0.0.1), numeric forms
inet_aton accepts (`0x7f.1`, `2130706433`, `0177.0.0.1`), IPv6 zone ids, and non-ASCII names.

IDNA: names must be given in their ASCII form (`xn--…` labels pass as ordinary labels). Unicode names
are refused because Python's codec (IDNA 2003) and requests' (IDNA 2008) disagree on some of them, and
IDNA 2003 maps full-width digits and dots ("１２７。０。０。１") onto an IP address.

Error messages say what is wrong and never repeat the URL, so a credential in it is never echoed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# WHATWG's "ends in a number": such a host is read as an IPv4 address by browsers and inet_aton.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_CANONICAL_OCTET = re.compile(r"^(?:0|[1-9][0-9]{0,2})$")
# A space, or a C0 control character (tab, CR, LF among them), or DEL.
_WHITESPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class InvalidUrl(ValueError):
    """The URL cannot be used for an outbound request. `problem` is a stable word for callers' hints."""

    def __init__(self, message: str, problem: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.problem = problem


@dataclass(frozen=True)
class OutboundUrl:
    scheme: str  # "http" or "https"
    host: str  # a lower-case DNS name, or an IP address in canonical form (IPv6 without brackets)
    port: int  # the port connected to, explicit or the scheme's default
    explicit_port: bool  # whether the URL named the port (it is then kept in the Host header)
    path: str  # as given ("" for none); requests percent-encodes what HTTP cannot carry
    query: str  # without the "?"; the fragment is never sent and is dropped

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def url(self) -> str:
        return self.origin + self.path + (f"?{self.query}" if self.query else "")

    def __str__(self) -> str:
        return self.url


def parse_outbound_url(text: object, max_length: int = MAX_URL_LENGTH) -> OutboundUrl:
    """Parse and normalise a URL the service will request; InvalidUrl says what is wrong."""
    if not isinstance(text, str):
        raise InvalidUrl("must be a string")
    if not text.strip():
        raise InvalidUrl("is required", "missing")
    if len(text) > max_length:
        raise InvalidUrl(f"is longer than {max_length} characters")
    if _WHITESPACE_OR_CONTROL.search(text):
        raise InvalidUrl("must not contain whitespace or control characters")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidUrl("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl("scheme must be http or https", "scheme")
    if "@" in parts.netloc:
        raise InvalidUrl("must not carry credentials (user:password@host)", "userinfo")
    host, port_text = _split_host_port(parts.netloc)
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 1 <= int(port_text) <= 65535:
            raise InvalidUrl("port must be a number between 1 and 65535", "port")
        port, explicit = int(port_text), True
    else:
        port, explicit = DEFAULT_PORTS[scheme], False
    return OutboundUrl(scheme, _normalise_host(host), port, explicit, parts.path, parts.query)


def parse_origin(text: object, max_length: int = MAX_URL_LENGTH) -> OutboundUrl:
    """A URL that must be only scheme://host[:port] (a trailing "/" is allowed)."""
    return parse_base_url(text, ("",), max_length)


def parse_base_url(text: object, prefixes: tuple[str, ...], max_length: int = MAX_URL_LENGTH) -> OutboundUrl:
    """An API root: scheme://host[:port] followed by one of `prefixes` ("" for none; a trailing "/" is
    allowed), without query or fragment. The result's `path` is the prefix, without a trailing "/"."""
    url = parse_outbound_url(text, max_length)
    assert isinstance(text, str)  # parse_outbound_url refused anything else
    path = url.path.rstrip("/")
    if path not in prefixes or url.query or "?" in text or "#" in text:
        raise InvalidUrl("must be only scheme://host[:port], without a path, query or fragment", "not_origin")
    return OutboundUrl(url.scheme, url.host, url.port, url.explicit_port, path, "")


def _split_host_port(netloc: str) -> tuple[str, str]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise InvalidUrl("has an unclosed [ in the host", "host")
        rest = netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidUrl("has characters after the bracketed address", "host")
        return netloc[: end + 1], rest[1:]
    host, colon, port = netloc.rpartition(":")
    if not colon:
        return netloc, ""
    if ":" in host:
        raise InvalidUrl("IPv6 addresses must be written in brackets, e.g. http://[2001:db8::1]/", "host")
    return host, port


def _normalise_host(host: str) -> str:
    if not host:
        raise InvalidUrl("has no host", "host")
    if "%" in host:
        raise InvalidUrl("host must not be percent-encoded (nor carry an IPv6 zone id)", "host")
    if not host.isascii():
        raise InvalidUrl("host must be ASCII: write an internationalised name in its xn-- form", "host")
    if host.startswith("["):
        try:
            return ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            raise InvalidUrl("has an invalid IPv6 address in brackets", "host") from None
    host = host.lower()
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        if len(labels) == 4 and all(_CANONICAL_OCTET.match(label) and int(label) <= 255 for label in labels):
            return host
        raise InvalidUrl("IPv4 addresses must be written as four decimal numbers, e.g. 192.0.2.1", "host")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise InvalidUrl(
            "has an invalid host name (labels of 1 to 63 letters, digits or hyphens, separated by single dots)", "host"
        )
    return host


_QUERY_IN_URL = re.compile(r"((?:https?://|(?<=url: ))[^\s?#]*)\?[^\s#]*", re.IGNORECASE)
_USERINFO_IN_URL = re.compile(r"(https?://)[^\s/?#@]*@", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """`text` with the userinfo and query string of every URL in it replaced (credentials may be there)."""
    return _QUERY_IN_URL.sub(r"\1?<redacted>", _USERINFO_IN_URL.sub(r"\1<redacted>@", text))
