"""models/net/urls.py: one parser for every outbound URL (jobs, brand base URLs). Pure functions."""

from __future__ import annotations

import pytest

from models.brands.base import UNREACHABLE, BrandError
from models.net.urls import InvalidUrl, parse_origin, parse_outbound_url, redact_urls

# Hosts a client would decode or read as another host than written: each is refused, never guessed at.
UNUSUAL_HOSTS = {
    "%31%32%37.0.0.1": "percent",  # requests decodes it to 127.0.0.1
    "127%2e0%2e0%2e1": "percent",
    "%6c%6f%63%61%6c%68%6f%73%74": "percent",  # localhost
    "127。0。0。1": "ASCII",  # IDNA 2003 maps the ideographic full stop to "."
    "１２７.０.０.１": "ASCII",  # full-width digits
    "0x7f.0.0.1": "four decimal numbers",
    "0x7f000001": "four decimal numbers",
    "2130706433": "four decimal numbers",
    "0177.0.0.1": "four decimal numbers",
    "127.1": "four decimal numbers",
    "127.0.0.1.": "host name",
    "127.0.0.01": "four decimal numbers",
    "256.0.0.1": "four decimal numbers",
    "[fe80::1%25eth0]": "zone id",
    "[::1%25lo]": "zone id",
    "a_b.example": "host name",
    "-a.example": "host name",
    "a..example": "host name",
    "127.0.0.1\\evil.example": "host name",
}


@pytest.mark.parametrize("host,word", sorted(UNUSUAL_HOSTS.items()))
def test_unusual_host_forms_are_refused(host, word):
    with pytest.raises(InvalidUrl) as caught:
        parse_outbound_url(f"http://{host}:8080/x")
    assert word in caught.value.message
    assert caught.value.problem == "host"


@pytest.mark.parametrize(
    "url,expected",
    [
        (
            "http://Example.COM:8080/a/b?x=1#frag",
            ("http", "example.com", 8080, True, "http://example.com:8080/a/b?x=1"),
        ),
        ("https://api.example.com", ("https", "api.example.com", 443, False, "https://api.example.com")),
        ("HTTP://127.0.0.1:9/hook", ("http", "127.0.0.1", 9, True, "http://127.0.0.1:9/hook")),
        ("http://[0:0:0:0:0:0:0:1]:99/", ("http", "::1", 99, True, "http://[::1]:99/")),
        (
            "https://xn--bcher-kva.example/",
            ("https", "xn--bcher-kva.example", 443, False, "https://xn--bcher-kva.example/"),
        ),
        ("http://h:/p", ("http", "h", 80, False, "http://h/p")),
    ],
)
def test_accepted_urls_are_normalised(url, expected):
    parsed = parse_outbound_url(url)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.explicit_port, parsed.url) == expected


@pytest.mark.parametrize(
    "url,problem",
    [
        ("ftp://example.com/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("http://user:s3cret@example.com/", "userinfo"),
        ("http://user@example.com/", "userinfo"),
        ("http://example.com\\@127.0.0.1/", "userinfo"),
        ("http://example.com:0/", "port"),
        ("http://example.com:65536/", "port"),
        ("http://example.com:+80/", "port"),
        ("http://example.com:８０/", "port"),
        ("http:///x", "host"),
        ("http://::1/", "host"),
        ("http://[127.0.0.1]/", "invalid"),
        ("", "missing"),
    ],
)
def test_refusals_name_the_problem(url, problem):
    with pytest.raises(InvalidUrl) as caught:
        parse_outbound_url(url)
    assert caught.value.problem == problem


def test_no_message_repeats_the_url():
    for url in ("http://user:s3cret@example.com/", "http://%31%32%37.0.0.1/?key=s3cret", "ftp://s3cret/"):
        with pytest.raises(InvalidUrl) as caught:
            parse_outbound_url(url)
        assert "s3cret" not in str(caught.value)


def test_an_origin_has_no_path_query_or_fragment():
    assert parse_origin("http://127.0.0.1:5100/").origin == "http://127.0.0.1:5100"
    assert parse_origin("https://API.example.com").origin == "https://api.example.com"
    for url in ("http://127.0.0.1:5100/sandbox/v1", "http://h/?", "http://h/?a=1", "http://h#x"):
        with pytest.raises(InvalidUrl) as caught:
            parse_origin(url)
        assert caught.value.problem == "not_origin"


def test_query_strings_and_userinfo_are_redacted_from_messages():
    text = (
        "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /v1/list?page=1&key=K1 "
        "(Caused by X); see http://user:P2@h/x?api_key=K3#top"
    )
    redacted = redact_urls(text)
    assert not any(secret in redacted for secret in ("K1", "P2", "K3"))
    assert "/v1/list?<redacted>" in redacted and "http://<redacted>@h/x?<redacted>" in redacted
    assert BrandError(UNREACHABLE, "cannot reach http://h/x?token=K4").message == "cannot reach http://h/x?<redacted>"


def test_an_api_root_may_carry_only_a_declared_prefix():
    from models.net.urls import parse_base_url

    root = parse_base_url("http://127.0.0.1:5100/solaredge/", ("", "/solaredge"))
    assert (root.origin, root.path) == ("http://127.0.0.1:5100", "/solaredge")
    assert parse_base_url("https://monitoringapi.example.com", ("", "/solaredge")).path == ""
    for url in ("http://127.0.0.1:5100/solaredge/site", "http://127.0.0.1:5100/other", "http://h/solaredge?x=1"):
        with pytest.raises(InvalidUrl):
            parse_base_url(url, ("", "/solaredge"))


def test_whitespace_and_control_characters_anywhere_are_refused_and_nothing_else_for_them():
    """The refusal, character by character, as it was spelled before it became one regex: a space, a tab,
    CR, LF, any other C0 control character and DEL; no other character (C1 controls, NBSP, ...) gets it."""
    message = "must not contain whitespace or control characters"
    for code in [*range(0x100), 0x2028, 0x3000, 0xFEFF, 0x1F31E]:
        c = chr(code)
        refused = c in "\r\n\t " or ord(c) < 32 or ord(c) == 127
        for text in (f"http://example.com/a{c}b", f"http://exa{c}mple.com/", f"{c}http://example.com/"):
            try:
                parse_outbound_url(text)
                said = None
            except InvalidUrl as exc:
                said = exc.message
            assert (said == message) == refused, (hex(code), text, said)
