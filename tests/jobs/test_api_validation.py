"""The jobs API's refusals and its read side: every bad input of the issue, auth, idempotency, listing.

Most tests share one web process and database (module scope); each test that stores jobs uses an
account of its own, and every refused request is followed by a check that nothing was stored.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import make_client
from tests.helpers import free_port

OK_URL = "http://127.0.0.1:9/hook"  # never called: no worker runs in this module


def assert_error(reply, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def assert_nothing_stored(api):
    listing = api.get("/jobs")
    assert listing.status_code == 200
    assert listing.json() == {"jobs": [], "next_cursor": None}
    assert set(api.get("/jobs/stats").json()["counts"].values()) == {0}


# -- the body's envelope: content type, JSON -----------------------------------------------------


@pytest.mark.parametrize(
    "content_type,data",
    [
        (None, b'{"url": "http://127.0.0.1:9/"}'),
        ("text/plain", b'{"url": "http://127.0.0.1:9/"}'),
        ("application/x-www-form-urlencoded", b"url=http://127.0.0.1:9/"),
        ("multipart/form-data; boundary=x", b"--x--"),
        ("application/jsonp", b'{"url": "http://127.0.0.1:9/"}'),
    ],
)
def test_wrong_content_type_is_415(empty_api, content_type, data):
    headers = {"Content-Type": content_type} if content_type else {}
    reply = empty_api.post("/jobs", data=data, headers=headers)
    assert_error(reply, 415, "unsupported_media_type")
    assert_nothing_stored(empty_api)


@pytest.mark.parametrize(
    "data",
    [
        b'{"url": ',
        b"{'url': 'http://127.0.0.1:9/'}",
        b"",
        b"   ",
        b"\xff\xfe{}",
        b'{"url": "http://127.0.0.1:9/", "json": {"a": NaN}}',
        b'{"url": "http://127.0.0.1:9/", "json": Infinity}',
        b'{"url": "http://127.0.0.1:9/", "json": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"url": "http://127.0.0.1:9/", "json": ' + b"[" * 990 + b"]" * 990 + b"}",
    ],
    ids=["truncated", "single-quotes", "empty", "blank", "not-utf8", "nan", "infinity", "deep-5000", "deep-990"],
)
def test_malformed_json_is_400_invalid_json(empty_api, data):
    reply = empty_api.post("/jobs", data=data, headers={"Content-Type": "application/json"})
    assert_error(reply, 400, "invalid_json")
    assert_nothing_stored(empty_api)


@pytest.mark.parametrize("payload", [[], "http://127.0.0.1:9/", 42, None])
def test_a_body_that_is_not_an_object_is_refused(empty_api, payload):
    reply = empty_api.post("/jobs", data=json.dumps(payload), headers={"Content-Type": "application/json"})
    assert_error(reply, 422, "validation_failed")
    assert_nothing_stored(empty_api)


# -- each field ------------------------------------------------------------------------------------

BAD_FIELDS = [
    # (id, payload, field named in details)
    ("url-missing", {}, "url"),
    ("url-null", {"url": None}, "url"),
    ("url-empty", {"url": ""}, "url"),
    ("url-blank", {"url": "   "}, "url"),
    ("url-number", {"url": 80}, "url"),
    ("url-ftp", {"url": "ftp://127.0.0.1/file"}, "url"),
    ("url-file", {"url": "file:///etc/passwd"}, "url"),
    ("url-javascript", {"url": "javascript:alert(1)"}, "url"),
    ("url-gopher", {"url": "gopher://127.0.0.1:70/_x"}, "url"),
    ("url-no-scheme", {"url": "127.0.0.1:9/hook"}, "url"),
    ("url-no-host", {"url": "http://"}, "url"),
    ("url-no-host-path", {"url": "http:///hook"}, "url"),
    ("url-port-only", {"url": "https://:443/"}, "url"),
    ("url-bad-port", {"url": "http://127.0.0.1:99999/"}, "url"),
    ("url-bad-ipv6", {"url": "http://[::1/"}, "url"),
    ("url-whitespace", {"url": "http://127.0.0.1:9/a b"}, "url"),
    ("url-crlf", {"url": "http://127.0.0.1:9/\r\nX: y"}, "url"),
    ("url-credentials", {"url": "http://user:pw@127.0.0.1:9/"}, "url"),
    ("url-label-too-long", {"url": "http://" + "a" * 64 + ".example/"}, "url"),
    # Hosts requests would decode or read as 127.0.0.1: refused as written, never guessed at.
    ("url-percent-encoded-host", {"url": "http://%31%32%37.0.0.1:9/"}, "url"),
    ("url-percent-encoded-dots", {"url": "http://127%2e0%2e0%2e1:9/"}, "url"),
    ("url-fullwidth-host", {"url": "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:9/"}, "url"),
    ("url-hex-ipv4", {"url": "http://0x7f.0.0.1:9/"}, "url"),
    ("url-short-ipv4", {"url": "http://127.1:9/"}, "url"),
    ("url-port-zero", {"url": "http://127.0.0.1:0/"}, "url"),
    ("method-unknown", {"url": OK_URL, "method": "TRACE"}, "method"),
    ("method-connect", {"url": OK_URL, "method": "CONNECT"}, "method"),
    ("method-empty", {"url": OK_URL, "method": ""}, "method"),
    ("method-number", {"url": OK_URL, "method": 1}, "method"),
    ("body-and-json", {"url": OK_URL, "body": "x", "json": {"a": 1}}, "body"),
    ("body-not-string", {"url": OK_URL, "body": {"a": 1}}, "body"),
    ("headers-list", {"url": OK_URL, "headers": [["X-A", "b"]]}, "headers"),
    ("headers-string", {"url": OK_URL, "headers": "X-A: b"}, "headers"),
    ("headers-int-value", {"url": OK_URL, "headers": {"X-A": 1}}, "headers.X-A"),
    ("headers-null-value", {"url": OK_URL, "headers": {"X-A": None}}, "headers.X-A"),
    ("headers-list-value", {"url": OK_URL, "headers": {"X-A": ["b"]}}, "headers.X-A"),
    ("headers-bad-name", {"url": OK_URL, "headers": {"X A": "b"}}, "headers"),
    ("headers-empty-name", {"url": OK_URL, "headers": {"": "b"}}, "headers"),
    ("headers-crlf-value", {"url": OK_URL, "headers": {"X-A": "b\r\nX-Injected: 1"}}, "headers.X-A"),
    ("headers-non-latin1", {"url": OK_URL, "headers": {"X-A": "\u20ac"}}, "headers.X-A"),
    # RFC 9110 field-value: no space or tab at either end, no control character but tab, no DEL.
    ("headers-leading-space", {"url": OK_URL, "headers": {"X-A": " b"}}, "headers.X-A"),
    ("headers-trailing-tab", {"url": OK_URL, "headers": {"X-A": "b\t"}}, "headers.X-A"),
    ("headers-only-space", {"url": OK_URL, "headers": {"X-A": " "}}, "headers.X-A"),
    ("headers-vt", {"url": OK_URL, "headers": {"X-A": "a\x0bb"}}, "headers.X-A"),
    ("headers-ff", {"url": OK_URL, "headers": {"X-A": "a\x0cb"}}, "headers.X-A"),
    ("headers-del", {"url": OK_URL, "headers": {"X-A": "a\x7fb"}}, "headers.X-A"),
    ("headers-nul", {"url": OK_URL, "headers": {"X-A": "a\x00b"}}, "headers.X-A"),
    ("headers-esc", {"url": OK_URL, "headers": {"X-A": "\x1b[31m"}}, "headers.X-A"),
    ("headers-name-newline", {"url": OK_URL, "headers": {"X-A\n": "b"}}, "headers"),
    ("headers-host", {"url": OK_URL, "headers": {"Host": "internal"}}, "headers.Host"),
    ("headers-content-length", {"url": OK_URL, "headers": {"Content-Length": "5"}}, "headers.Content-Length"),
    ("timeout-too-big", {"url": OK_URL, "timeout_s": 121}, "timeout_s"),
    ("timeout-zero", {"url": OK_URL, "timeout_s": 0}, "timeout_s"),
    ("timeout-negative", {"url": OK_URL, "timeout_s": -1}, "timeout_s"),
    ("timeout-string", {"url": OK_URL, "timeout_s": "10"}, "timeout_s"),
    ("timeout-bool", {"url": OK_URL, "timeout_s": True}, "timeout_s"),
    ("attempts-zero", {"url": OK_URL, "max_attempts": 0}, "max_attempts"),
    ("attempts-51", {"url": OK_URL, "max_attempts": 51}, "max_attempts"),
    ("attempts-fraction", {"url": OK_URL, "max_attempts": 2.5}, "max_attempts"),
    ("attempts-huge", {"url": OK_URL, "max_attempts": 10**30}, "max_attempts"),
    ("backoff-not-object", {"url": OK_URL, "backoff": 2}, "backoff"),
    ("backoff-unknown-field", {"url": OK_URL, "backoff": {"factor": 2}}, "backoff"),
    ("backoff-negative-base", {"url": OK_URL, "backoff": {"base_s": -1}}, "base_s"),
    ("backoff-multiplier-low", {"url": OK_URL, "backoff": {"multiplier": 0.5}}, "multiplier"),
    ("backoff-multiplier-high", {"url": OK_URL, "backoff": {"multiplier": 101}}, "multiplier"),
    ("backoff-cap-below-base", {"url": OK_URL, "backoff": {"base_s": 10, "cap_s": 1}}, "backoff.cap_s"),
    ("jitter-unknown", {"url": OK_URL, "backoff": {"jitter": "gaussian"}}, "backoff.jitter"),
    ("jitter-case", {"url": OK_URL, "backoff": {"jitter": "FULL"}}, "backoff.jitter"),
    ("jitter-list", {"url": OK_URL, "backoff": {"jitter": ["full"]}}, "backoff.jitter"),
    ("run-at-words", {"url": OK_URL, "run_at": "tomorrow"}, "run_at"),
    ("run-at-number", {"url": OK_URL, "run_at": 1795860000}, "run_at"),
    ("run-at-bad-month", {"url": OK_URL, "run_at": "2026-13-01T00:00:00Z"}, "run_at"),
    ("run-at-empty", {"url": OK_URL, "run_at": ""}, "run_at"),
    ("run-at-year-10000-utc", {"url": OK_URL, "run_at": "9999-12-31T23:59:59-14:00"}, "run_at"),
    ("run-at-no-zone", {"url": OK_URL, "run_at": "2026-11-28T10:00:00"}, "run_at"),
    ("run-at-date-only", {"url": OK_URL, "run_at": "2026-11-28"}, "run_at"),
    ("unknown-field", {"url": OK_URL, "retries": 3}, "retries"),
]


@pytest.mark.parametrize("payload,field", [case[1:] for case in BAD_FIELDS], ids=[case[0] for case in BAD_FIELDS])
def test_bad_field_is_422_naming_the_field(empty_api, payload, field):
    reply = empty_api.post("/jobs", json=payload)
    error = assert_error(reply, 422, "validation_failed")
    assert error["details"]["field"] == field, error
    assert_nothing_stored(empty_api)


def test_body_over_the_limit_is_413(services, env, account_key):
    web = services.web(env, REQUEST_BODY_LIMIT="2048")
    api = make_client(web.url, account_key)
    reply = api.post("/jobs", json={"url": OK_URL, "body": "x" * 4096})
    assert_error(reply, 413, "payload_too_large")
    # Chunked, with no Content-Length to judge by up front.
    chunks = (part for part in [b'{"url": "http://127.0.0.1:9/", "body": "', b"x" * 4096, b'"}'])
    reply = api.post("/jobs", data=chunks, headers={"Content-Type": "application/json"})
    assert_error(reply, 413, "payload_too_large")
    assert_nothing_stored(api)
    # Just under the limit is fine.
    assert api.post("/jobs", json={"url": OK_URL, "body": "x" * 1500}).status_code == 202


def test_bad_idempotency_key_is_refused(empty_api):
    reply = empty_api.post("/jobs", json={"url": OK_URL}, headers={"Idempotency-Key": "k" * 256})
    assert_error(reply, 400, "invalid_idempotency_key")
    assert_nothing_stored(empty_api)


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Bearer sk_wrong", "Basic dXNlcjpwdw==", "sk_nobearer"]
)
@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/01M8GQJ7665S5TEW3CAWMFNN5C"),
        ("POST", "/jobs/01M8GQJ7665S5TEW3CAWMFNN5C/cancel"),
    ],
)
def test_missing_or_wrong_key_is_401_with_the_envelope(shared_web, empty_api, authorization, method, path):
    client = make_client(shared_web.url, None)
    headers = {"Authorization": authorization} if authorization is not None else {}
    reply = client.request(method, path, json={"url": OK_URL}, headers=headers)
    assert_error(reply, 401, "unauthorized")
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert_nothing_stored(empty_api)


# -- unknown ids, states, other accounts -------------------------------------------------------


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("GET", "/attempts"), ("POST", "/cancel"), ("POST", "/retry")])
@pytest.mark.parametrize("job_id", ["01M8GQJ7665S5TEW3CAWMFNN5C", "not-an-id", "0" * 26, "x" * 300])
def test_unknown_job_is_404(empty_api, method, suffix, job_id):
    reply = empty_api.request(method, f"/jobs/{job_id}{suffix}")
    assert_error(reply, 404, "not_found")


def test_unknown_route_and_wrong_method_use_the_envelope(empty_api):
    assert_error(empty_api.get("/nope"), 404, "not_found")
    reply = empty_api.delete("/jobs")
    assert_error(reply, 405, "method_not_allowed")
    assert "POST" in reply.headers["Allow"]


def test_cancel_then_cancel_again_is_409_and_retry_of_pending_is_409(shared_web, new_key):
    api = make_client(shared_web.url, new_key())
    job = api.post("/jobs", json={"url": OK_URL, "run_at": "2099-01-01T00:00:00Z"}).json()
    assert_error(api.post(f"/jobs/{job['id']}/retry"), 409, "invalid_state")
    reply = api.post(f"/jobs/{job['id']}/cancel")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "cancelled"
    assert reply.json()["next_attempt_at"] is None
    error = assert_error(api.post(f"/jobs/{job['id']}/cancel"), 409, "invalid_state")
    assert error["details"]["status"] == "cancelled"
    assert api.get(f"/jobs/{job['id']}").json()["status"] == "cancelled"


def test_another_accounts_job_answers_404(shared_web, new_key):
    alice = make_client(shared_web.url, new_key())
    bob = make_client(shared_web.url, new_key())
    job = alice.post("/jobs", json={"url": OK_URL, "run_at": "2099-01-01T00:00:00Z"}).json()
    for method, suffix in [("GET", ""), ("GET", "/attempts"), ("POST", "/cancel"), ("POST", "/retry")]:
        assert_error(bob.request(method, f"/jobs/{job['id']}{suffix}"), 404, "not_found")
    assert bob.get("/jobs").json()["jobs"] == []
    # Bob's refused cancel changed nothing.
    assert alice.get(f"/jobs/{job['id']}").json()["status"] == "pending"
    # The same Idempotency-Key in two accounts makes two jobs.
    a = alice.post("/jobs", json={"url": OK_URL}, headers={"Idempotency-Key": "shared"})
    b = bob.post("/jobs", json={"url": OK_URL}, headers={"Idempotency-Key": "shared"})
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["id"] != b.json()["id"]


# -- submission answers ------------------------------------------------------------------------


def test_accepted_job_view(shared_web, new_key):
    api = make_client(shared_web.url, new_key())
    reply = api.post(
        "/jobs",
        json={
            "url": OK_URL,
            "method": "put",
            "headers": {"Authorization": "Bearer partner-secret", "X-Trace": "t1", "X-Api-Key": "k", "Cookie": "c=1"},
            "json": {"a": [1, 2]},
            "timeout_s": 2.5,
            "max_attempts": 3,
            "backoff": {"base_s": 0.5, "cap_s": 10, "multiplier": 3, "jitter": "equal"},
            "run_at": "2099-01-01T00:00:00Z",
        },
    )
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert reply.headers["Location"] == f"/jobs/{job['id']}"
    assert job["status"] == "pending"
    assert (job["attempts"], job["max_attempts"]) == (0, 3)
    assert job["next_attempt_at"] == "2099-01-01T00:00:00.000Z"
    assert job["created_at"].endswith("Z") and job["updated_at"].endswith("Z")
    assert job["result"] is None and job["last_error"] is None
    request = job["request"]
    assert request["method"] == "PUT"
    assert request["json"] == {"a": [1, 2]}
    assert request["timeout_s"] == 2.5
    assert request["backoff"] == {"base_s": 0.5, "cap_s": 10.0, "multiplier": 3.0, "jitter": "equal"}
    shown = api.get(f"/jobs/{job['id']}").json()
    headers = shown["request"]["headers"]
    assert headers["Authorization"] == "***"
    assert headers["X-Api-Key"] == "***"
    assert headers["Cookie"] == "***"
    assert headers["X-Trace"] == "t1"
    assert headers["Content-Type"] == "application/json"
    assert "partner-secret" not in json.dumps(shown)
    assert "partner-secret" not in json.dumps(api.get("/jobs").json())
    assert api.get(f"/jobs/{job['id']}/attempts").json() == {"job_id": job["id"], "attempts": []}


def test_idempotency_key_same_body_returns_the_same_job_different_body_is_409(shared_web, new_key):
    api = make_client(shared_web.url, new_key())
    payload = {"url": OK_URL, "json": {"order": 1}, "run_at": "2099-01-01T00:00:00Z"}
    first = api.post("/jobs", json=payload, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 202
    again = api.post("/jobs", json=payload, headers={"Idempotency-Key": "order-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    # Key order and whitespace in the body do not make it a different request.
    same = api.post(
        "/jobs",
        data=f'{{"run_at":"2099-01-01T00:00:00Z",  "json":{{"order":1}},"url":"{OK_URL}"}}',
        headers={"Idempotency-Key": "order-1", "Content-Type": "application/json"},
    )
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    different = api.post("/jobs", json={**payload, "json": {"order": 2}}, headers={"Idempotency-Key": "order-1"})
    error = assert_error(different, 409, "idempotency_conflict")
    assert error["details"]["job_id"] == first.json()["id"]
    other_key = api.post("/jobs", json=payload, headers={"Idempotency-Key": "order-2"})
    assert other_key.status_code == 202 and other_key.json()["id"] != first.json()["id"]
    no_key = api.post("/jobs", json=payload)
    assert no_key.status_code == 202
    assert len(api.get("/jobs").json()["jobs"]) == 3


# -- listing -----------------------------------------------------------------------------------


def test_listing_is_newest_first_with_a_cursor_and_a_status_filter(shared_web, new_key):
    api = make_client(shared_web.url, new_key())
    ids = []
    for n in range(7):
        reply = api.post("/jobs", json={"url": f"{OK_URL}?n={n}", "run_at": "2099-01-01T00:00:00Z"})
        assert reply.status_code == 202
        ids.append(reply.json()["id"])
    for job_id in ids[1::3]:  # cancel jobs 1 and 4
        assert api.post(f"/jobs/{job_id}/cancel").status_code == 200
    newest_first = list(reversed(ids))

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/jobs", params=params).json()
        pages += 1
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first
    assert pages == 3

    cancelled = api.get("/jobs", params={"status": "cancelled"}).json()
    assert [job["id"] for job in cancelled["jobs"]] == [ids[4], ids[1]]
    assert cancelled["next_cursor"] is None
    first = api.get("/jobs", params={"status": "pending", "limit": 2}).json()
    second = api.get("/jobs", params={"status": "pending", "limit": 2, "cursor": first["next_cursor"]}).json()
    third = api.get("/jobs", params={"status": "pending", "limit": 2, "cursor": second["next_cursor"]}).json()
    pending = [job["id"] for page in (first, second, third) for job in page["jobs"]]
    assert pending == [ids[6], ids[5], ids[3], ids[2], ids[0]]
    assert third["next_cursor"] is None
    assert api.get("/jobs/stats").json()["counts"] == {
        "pending": 5,
        "in_flight": 0,
        "retrying": 0,
        "succeeded": 0,
        "dead": 0,
        "cancelled": 2,
    }


@pytest.mark.parametrize(
    "params,code",
    [
        ({"status": "done"}, "invalid_parameter"),
        ({"limit": "0"}, "invalid_parameter"),
        ({"limit": "501"}, "invalid_parameter"),
        ({"limit": "ten"}, "invalid_parameter"),
        ({"cursor": "%%%"}, "invalid_cursor"),
        ({"cursor": "AAAA"}, "invalid_cursor"),
    ],
)
def test_bad_listing_parameters_are_400(empty_api, params, code):
    assert_error(empty_api.get("/jobs", params=params), 400, code)


# -- probes ------------------------------------------------------------------------------------


def test_healthz_and_readyz(shared_web):
    assert requests.get(shared_web.url + "/healthz", timeout=5).json() == {"status": "ok"}
    reply = requests.get(shared_web.url + "/readyz", timeout=5)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready"}


def test_readyz_is_503_with_the_reason_when_redis_is_unreachable(services, env):
    closed_port = free_port()  # bound then released: nothing listens there
    web = services.web({**env, "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"})
    assert requests.get(web.url + "/healthz", timeout=5).status_code == 200
    reply = requests.get(web.url + "/readyz", timeout=10)
    error = assert_error(reply, 503, "not_ready")
    assert "redis" in error["details"]
    assert "database" not in error["details"]
    assert "redis" in error["message"]
