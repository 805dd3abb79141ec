"""An attempt's request is what requests' own full prepare() makes of the job, byte for byte, for every job the
rules accept and for the malformed ones they do not (the same error)."""

from __future__ import annotations

import pytest
import requests

from actors.transport import USER_AGENT, prepare_attempt

DEFAULTS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": "*/*"}

URLS = [
    "http://127.0.0.1:8080/hook",
    "https://example.com",
    "https://example.com/a/b/?x=1&y=two%20words&y=3",
    "https://example.com/p?q=a b&r=ü&s=%zz",
    "https://example.com/caf%C3%A9/ü/%2F?",
    "https://example.com/path#fragment",
    "https://EXAMPLE.com:8443/Case/Kept",
    "http://bücher.example/ünïcode",
    "http://[::1]:9000/v6",
    "https://example.com/?",
    "https://example.com/;params?a=1",
]
HEADERS = [
    {},
    {"X-Signature": "t=1,v1=abc", "Content-Type": "application/json"},
    {"user-agent": "their-agent/2", "ACCEPT": "application/json"},
    {"X-Empty": "", "X-Spaces": "a  b"},
]
BODIES = [None, b"", b'{"event":"paid"}', "text body", b"\x00\xff binary"]


def _full_prepare(method, url, headers, body):
    return requests.Request(method, url, headers=headers, data=body).prepare()


def _shape(prepared: requests.PreparedRequest):
    return (prepared.method, prepared.url, prepared.path_url, list(prepared.headers.items()), prepared.body)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "post"])
def test_every_url_and_method_prepare_as_requests_prepares_them(method, url):
    headers = {**DEFAULTS, "X-Job": "1"}
    assert _shape(prepare_attempt(method, url, headers, b"{}")) == _shape(_full_prepare(method, url, headers, b"{}"))


@pytest.mark.parametrize("job_headers", HEADERS)
@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_every_header_set_and_body_prepare_as_requests_prepares_them(method, job_headers, body):
    headers = {**DEFAULTS, **job_headers}
    url = "https://example.com/hook?a=1"
    assert _shape(prepare_attempt(method, url, headers, body)) == _shape(_full_prepare(method, url, headers, body))


@pytest.mark.parametrize(
    "url, headers",
    [
        ("example.com/no-scheme", {}),
        ("http://", {}),
        ("http://exa mple.com/", {}),
        ("https://example.com/", {"X-Bad": "a\r\nInjected: 1"}),
        ("https://example.com/", {"X-Bad\n": "1"}),
        ("https://example.com/", {"X-Lead": " leading space"}),
    ],
)
def test_what_requests_refuses_is_refused_with_the_same_error(url, headers):
    with pytest.raises(Exception) as full:
        _full_prepare("POST", url, {**DEFAULTS, **headers}, b"{}")
    with pytest.raises(type(full.value)) as ours:
        prepare_attempt("POST", url, {**DEFAULTS, **headers}, b"{}")
    assert str(ours.value) == str(full.value)


def test_no_cookie_or_authorization_header_is_ever_added():
    prepared = prepare_attempt("POST", "https://example.com/hook", dict(DEFAULTS), b"{}")
    assert {name.lower() for name in prepared.headers} == {"user-agent", "accept-encoding", "accept", "content-length"}
