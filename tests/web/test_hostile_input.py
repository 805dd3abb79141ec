"""Hostile input to every write endpoint, in process (Flask's test client on the `app` fixture): each is
refused with the error envelope and a 4xx, never a 5xx, and a refusal stores nothing."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
import redis as redis_lib
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models import inverters
from models.accounts import account_by_name
from models.channels import INVERTER_ACCESS_REVOKED
from models.db import database, owner
from tests.helpers import free_port, wait_until

OK_URL = "http://127.0.0.1:9/hook"  # never called: no worker runs here
CLOSED = f"http://127.0.0.1:{free_port()}"  # onboarding's brand calls are refused at once, on loopback
NO_JOB = "01M8GQJ7665S5TEW3CAWMFNN5C"


def assert_envelope(reply, status: int | None = None, code: str | None = None) -> dict:
    if status is not None:
        assert reply.status_code == status, reply.get_data(as_text=True)
    body = reply.get_json()
    assert reply.mimetype == "application/json" and set(body) == {"error"}, reply.get_data(as_text=True)
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def row_counts() -> dict:
    """Rows per table: every object any endpoint could store. Counted in one query (the property test below
    counts before and after each of its 500 requests: a query per table was a third of its time)."""

    def count():
        db = database.obj
        counts = " UNION ALL ".join(f"SELECT '{table}', COUNT(*) FROM \"{table}\"" for table in db.get_tables())
        return dict(db.execute_sql(counts).fetchall())

    return owner().call(count)


def post(client, path, body):
    return client.post(path, data=json.dumps(body), content_type="application/json")


@pytest.fixture(scope="module")
def owner_client(app, new_app_key):
    """A client whose account owns one inverter (stored directly: no brand call) and has one job."""
    client = app.test_client()
    client.account_key = new_app_key("owner")
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {client.account_key}"
    account = owner().call(account_by_name, "owner")

    def create():
        connection = inverters.connection_for("sandbox", CLOSED, {"api_key": "k"})
        return inverters.onboard(account.id, connection, "SBX-1", "hybrid", None, None, "Africa/Lagos")[0]

    client.inverter_id = owner().write(create).id
    reply = post(client, "/jobs", {"url": OK_URL})
    assert reply.status_code == 202, reply.get_data(as_text=True)
    client.job_id = reply.get_json()["id"]
    reply = post(client, "/alert-rules", {"inverter_id": client.inverter_id, "kind": "battery_low"})
    assert reply.status_code == 201, reply.get_data(as_text=True)
    client.rule_id = reply.get_json()["id"]
    return client


# -- lone surrogates, wherever they are ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/jobs", {"url": "http://127.0.0.1:9/\ud800"}, "url"),
        ("/jobs", {"url": OK_URL, "body": "a\udfffb"}, "body"),
        ("/jobs", {"url": OK_URL, "headers": {"X-A": "\ud800"}}, "headers.X-A"),
        ("/jobs", {"url": OK_URL, "headers": {"X-\ud800": "a"}}, "headers.X-\\ud800"),
        ("/jobs", {"url": OK_URL, "json": {"a": [1, "\udc00"]}}, "json.a[1]"),
        ("/jobs", {"url": OK_URL, "run_at": "2099-01-01T00:00:00\ud800"}, "run_at"),
        (
            "/inverters",
            {"brand": "sandbox", "serial": "\ud800", "connection": {"base_url": CLOSED, "api_key": "k"}},
            "serial",
        ),
        (
            "/inverters",
            {"brand": "sandbox", "serial": "S", "connection": {"base_url": CLOSED, "api_key": "\ud800"}},
            "connection.api_key",
        ),
        ("/session", {"api_key": "sk_\ud800"}, "api_key"),
    ],
)
def test_a_lone_surrogate_is_400_naming_where_it_is(client, path, body, field):
    before = row_counts()
    error = assert_envelope(post(client, path, body), 400, "invalid_json")
    assert error["details"]["field"] == field
    assert row_counts() == before


def test_a_lone_surrogate_in_a_members_account_is_400(owner_client):
    before = row_counts()
    reply = post(owner_client, f"/inverters/{owner_client.inverter_id}/members", {"account": "a\ud800"})
    assert assert_envelope(reply, 400, "invalid_json")["details"]["field"] == "account"
    assert row_counts() == before


def test_a_control_character_in_a_serial_or_an_account_is_refused(owner_client):
    before = row_counts()
    reply = post(
        owner_client,
        "/inverters",
        {"brand": "sandbox", "serial": "SBX\x00-1", "connection": {"base_url": CLOSED, "api_key": "k"}},
    )
    assert assert_envelope(reply, 400, "invalid_field")["details"]["field"] == "serial"
    members = f"/inverters/{owner_client.inverter_id}/members"
    reply = post(owner_client, members, {"account": "owner\x00"})
    assert assert_envelope(reply, 400, "invalid_field")["details"]["field"] == "account"
    assert_envelope(owner_client.delete(f"{members}/owner%00"), 404, "not_a_member")
    assert row_counts() == before


def test_a_control_character_in_a_webhook_endpoints_description_is_refused(owner_client):
    before = row_counts()
    for description in ("pager\x00", "a\nb", "\x7f"):
        reply = post(
            owner_client,
            "/webhook-endpoints",
            {"url": OK_URL, "event_types": ["inverter.fault"], "description": description},
        )
        assert assert_envelope(reply, 422, "validation_failed")["details"]["field"] == "description"
    assert row_counts() == before


def test_a_surrogate_pair_is_one_character_and_accepted(client):
    reply = post(client, "/jobs", {"url": OK_URL, "body": "sun \U0001f31e"})
    assert reply.status_code == 202, reply.get_data(as_text=True)
    assert client.get(reply.headers["Location"]).get_json()["request"]["body"] == "sun \U0001f31e"


def test_a_number_beyond_a_double_is_400_not_stored_as_infinity(client):
    before = row_counts()
    reply = client.post(
        "/jobs", data=b'{"url": "%s", "json": {"kwh": 1e999}}' % OK_URL.encode(), content_type="application/json"
    )
    assert_envelope(reply, 400, "invalid_json")
    assert row_counts() == before


# -- credentials and header values -------------------------------------------------------------------


@pytest.mark.parametrize("brand,field", [("sandbox", "api_key"), ("growatt_v4", "token")])
@pytest.mark.parametrize(
    "secret",
    ["\u20ac-secret", "caf\xe9", "two words", "a\tb", "k\x00", "k\x7f", "k\x0b", " k", "k\n"],
    ids=["euro", "latin1", "space", "tab", "nul", "del", "vt", "lead", "newline"],
)
def test_a_credential_that_cannot_travel_in_a_header_is_422_without_echo(client, brand, field, secret):
    before = row_counts()
    reply = post(
        client, "/inverters", {"brand": brand, "serial": "S1", "connection": {"base_url": CLOSED, field: secret}}
    )
    error = assert_envelope(reply, 422, "invalid_field")
    assert error["details"] == {"field": f"connection.{field}"}
    assert secret not in reply.get_data(as_text=True)
    assert row_counts() == before


@pytest.mark.parametrize("timezone", ["x" * 300, "Europe/" + "y" * 300])
def test_a_time_zone_name_too_long_for_a_file_is_400(client, timezone):
    # The zone database is read from files: a name longer than a file name made the lookup an OSError, a 500.
    reply = post(
        client,
        "/inverters",
        {
            "brand": "sandbox",
            "serial": "SBX-TZ",
            "connection": {"base_url": CLOSED, "api_key": "k"},
            "timezone": timezone,
        },
    )
    assert assert_envelope(reply, 400, "invalid_field")["details"] == {"field": "timezone"}


@pytest.mark.parametrize("key", ["a\x00b", "a\x1bb", "\x7f", "", "k" * 256])
def test_an_idempotency_key_with_a_control_character_is_400(client, key):
    before = row_counts()
    reply = client.post(
        "/jobs", data=json.dumps({"url": OK_URL}), content_type="application/json", headers={"Idempotency-Key": key}
    )
    assert_envelope(reply, 400, "invalid_idempotency_key")
    assert row_counts() == before


def test_header_values_rfc_9110_allows_are_kept_as_given(client):
    headers = {"X-Tab": "a\tb", "X-Latin1": "caf\xe9", "X-Empty": "", "X-Spaced": "a  b"}
    reply = post(client, "/jobs", {"url": OK_URL, "headers": headers})
    assert reply.status_code == 202, reply.get_data(as_text=True)
    assert reply.get_json()["request"]["headers"] == headers


def test_run_at_with_an_offset_is_kept(client):
    reply = post(client, "/jobs", {"url": OK_URL, "run_at": "2099-01-01T01:00:00+01:00"})
    assert reply.status_code == 202, reply.get_data(as_text=True)
    assert reply.get_json()["request"]["run_at"] == "2099-01-01T00:00:00.000Z"


# -- members, the site root ------------------------------------------------------------------------


def test_a_member_is_removed_by_name_as_by_id(owner_client, new_app_key, redis_server):
    new_app_key("helper")
    helper = owner().call(account_by_name, "helper")
    members = f"/inverters/{owner_client.inverter_id}/members"
    revocations = redis_lib.Redis.from_url(redis_server.url, decode_responses=True).pubsub()
    revocations.subscribe(INVERTER_ACCESS_REVOKED)
    try:
        assert post(owner_client, members, {"account": "helper"}).status_code == 201
        assert owner_client.delete(f"{members}/helper").status_code == 204
        assert owner().call(inverters.member_ids, owner_client.inverter_id) == []
        # The removed member's open streams are closed by account id, whichever way it was named.
        message = wait_until(lambda: revocations.get_message(ignore_subscribe_messages=True, timeout=0.1), 5)
        assert json.loads(message["data"]) == {"inverter_id": owner_client.inverter_id, "account_id": helper.id}
        assert post(owner_client, members, {"account": helper.id}).status_code == 201
        assert owner_client.delete(f"{members}/{helper.id}").status_code == 204
        error = assert_envelope(owner_client.delete(f"{members}/helper"), 404, "not_a_member")
        assert error["details"] == {"account": "helper"}
        assert_envelope(owner_client.delete(f"{members}/nobody-by-that-name"), 404, "not_a_member")
    finally:
        revocations.close()


def test_the_site_root_leads_to_the_dashboard(app):
    reply = app.test_client().get("/")
    assert reply.status_code == 302
    assert reply.headers["Location"] == "/ui/"


# -- property: any input to any write endpoint ----------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    " lead",
    "trail\t",
    "\ud800",
    "a\udfffb",
    "\x00",
    "\x0b",
    "\x0c",
    "\x7f",
    "\x1b[31m",
    "\r\nX-Injected: 1",
    "\u20ac",
    "caf\xe9",
    "\U0001f31e",
    "x" * 600,
    "1e999",
    "NaN",
    "../..",
    "%00",
    "2026-11-28T10:00:00",
    "2026-11-28T10:00:00Z",
    "\u202e",
    "\ufeff",
]
texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT), st.text(st.characters(blacklist_categories=()), max_size=12)
)  # surrogates included
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**63, 1e308, 0.5]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
any_json = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8
)
# Values that keep every request on 127.0.0.1: a host name would be resolved at submission.
urls = st.one_of(
    st.sampled_from([OK_URL, "https://127.0.0.1:9/", CLOSED]),
    st.builds(lambda path: "http://127.0.0.1:9/" + path, texts),
    texts.filter(lambda t: ":" not in t),
    numbers,
    st.none(),
)
header_names = st.one_of(st.sampled_from(["X-A", "Authorization", "Host", "Content-Type", "X-A\n", ""]), texts)


def maybe(strategy):
    return st.one_of(strategy, scalars)


def spoiled(good: st.SearchStrategy, hostile: dict) -> st.SearchStrategy:
    """A valid body (so a request gets past the first check), or one with one field made hostile."""
    return st.one_of(
        good,
        *[
            st.tuples(good, strategy).map(lambda pair, name=name: {**pair[0], name: pair[1]})
            for name, strategy in hostile.items()
        ],
    )


good_jobs = st.fixed_dictionaries(
    {"url": st.sampled_from([OK_URL, "https://127.0.0.1:9/x"])},
    optional={
        "method": st.sampled_from(["GET", "post", "DELETE"]),
        "headers": st.dictionaries(
            st.sampled_from(["X-A", "Authorization", "X-Signature"]),
            st.sampled_from(["a", "a\tb", "caf\xe9", ""]),
            max_size=2,
        ),
        "timeout_s": st.floats(0.001, 120),
        "max_attempts": st.integers(1, 50),
        "run_at": st.sampled_from(["2099-01-01T00:00:00Z", "2020-01-01T00:00:00+05:30"]),
    },
)
job_bodies = spoiled(
    good_jobs,
    {
        "url": urls,
        "method": maybe(st.sampled_from(["TRACE", ""])),
        "headers": maybe(st.dictionaries(header_names, maybe(texts), max_size=3)),
        "body": maybe(texts),
        "json": any_json,
        "timeout_s": maybe(numbers),
        "max_attempts": maybe(numbers),
        "backoff": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "base_s": maybe(numbers),
                    "cap_s": maybe(numbers),
                    "multiplier": maybe(numbers),
                    "jitter": maybe(st.sampled_from(["full", "none"])),
                },
            )
        ),
        "run_at": maybe(texts),
    },
)
good_connections = st.sampled_from([{"base_url": CLOSED, "api_key": "k"}, {"base_url": CLOSED, "token": "t"}])
good_onboarding = st.fixed_dictionaries(
    {
        "brand": st.sampled_from(["sandbox", "growatt_v4"]),
        "serial": st.sampled_from(["SBX-1", "GRT-1"]),
        "connection": st.just({"base_url": CLOSED, "api_key": "k", "token": "t"}),
    }
)
onboarding_bodies = spoiled(
    good_onboarding,
    {
        "brand": maybe(texts),
        "serial": maybe(texts),
        "timezone": maybe(st.sampled_from(["Africa/Lagos", "Mars/Olympus", "../etc/passwd"])),
        "connection": maybe(
            st.one_of(
                spoiled(
                    good_connections,
                    {
                        "api_key": maybe(texts),
                        "token": maybe(texts),
                        "base_url": maybe(st.sampled_from([CLOSED, "ftp://127.0.0.1/", CLOSED + "/\ud800"])),
                    },
                ),
                st.dictionaries(texts, scalars, max_size=3),
            )
        ),
    },
)
segments = st.one_of(st.sampled_from([NO_JOB, "owner", "x" * 300]), texts)
good_endpoints = st.fixed_dictionaries(
    {"url": st.just(OK_URL), "event_types": st.sampled_from([["inverter.offline"], ["battery.low", "battery.low"]])},
    optional={"description": st.sampled_from(["pager", "", None])},
)
endpoint_bodies = spoiled(
    good_endpoints,
    {
        "url": urls,
        "description": maybe(texts),
        "event_types": maybe(st.lists(maybe(st.sampled_from(["inverter.fault", "inverter.exploded", ""])), max_size=3)),
        "secret": texts,
    },
)
rule_params = st.dictionaries(
    st.one_of(
        st.sampled_from(["minutes", "below_pct", "clear_above_pct", "latitude", "longitude", "peak_power_w"]), texts
    ),
    maybe(numbers),
    max_size=4,
)
good_rules = st.one_of(
    st.fixed_dictionaries({"kind": st.sampled_from(["offline", "fault", "battery_low"])}),
    st.just({"kind": "daily_summary", "params": {"latitude": 6.5, "longitude": 3.4}}),
    st.just({"kind": "production_low", "params": {"latitude": 6.5, "longitude": 3.4, "peak_power_w": 5000}}),
)
rule_bodies = spoiled(
    good_rules,
    {
        "kind": maybe(st.sampled_from(["offline", "sunburn", "production_low"])),
        "params": maybe(rule_params),
        "inverter_id": maybe(segments),
    },
)


ROUTE_SHAPES = re.compile(
    r"(?<=/)(?!(?:jobs|inverters|members|cancel|retry|session|webhook-endpoints|rotate-secret|alert-rules|alerts"
    r"|acknowledge)(?:/|$))[^/]+"
)


def path_of(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# What the test client can put in a request header: ISO-8859-1 without CR or LF.
idempotency_keys = st.fixed_dictionaries(
    {},
    optional={
        "Idempotency-Key": st.one_of(
            st.text(st.characters(max_codepoint=0xFF, blacklist_characters="\r\n"), max_size=300),
            st.sampled_from(["", "\x00", "k" * 256, "same"]),
        )
    },
)
requests_ = st.one_of(
    # The two richest bodies have the most ways to be wrong: drawn three times as often as the rest.
    *[st.tuples(st.just("POST"), st.just("/jobs"), job_bodies, idempotency_keys)] * 2,
    *[st.tuples(st.just("POST"), st.just("/inverters"), onboarding_bodies)] * 2,
    st.tuples(st.just("POST"), st.just("/jobs"), st.one_of(job_bodies, any_json)),
    st.tuples(st.just("POST"), st.sampled_from(["/jobs/{job}/cancel", "/jobs/{job}/retry"]), st.none()),
    st.tuples(st.just("POST"), st.builds(lambda s: f"/jobs/{path_of(s)}/cancel", segments), st.none()),
    st.tuples(
        st.just("POST"), st.just("/session"), st.one_of(st.fixed_dictionaries({"api_key": maybe(texts)}), any_json)
    ),
    st.tuples(st.just("DELETE"), st.just("/session"), st.none()),
    st.tuples(st.just("POST"), st.just("/inverters"), st.one_of(onboarding_bodies, any_json)),
    st.tuples(st.just("DELETE"), st.builds(lambda s: f"/inverters/{path_of(s)}", segments), st.none()),
    st.tuples(
        st.just("POST"),
        st.just("/inverters/{inverter}/members"),
        st.one_of(st.fixed_dictionaries({"account": maybe(texts)}), any_json),
    ),
    st.tuples(
        st.just("DELETE"), st.builds(lambda s: "/inverters/{inverter}/members/" + path_of(s), segments), st.none()
    ),
    st.tuples(st.just("POST"), st.just("/webhook-endpoints"), st.one_of(endpoint_bodies, endpoint_bodies, any_json)),
    st.tuples(st.just("POST"), st.just("/alert-rules"), st.one_of(rule_bodies, rule_bodies, any_json)),
    st.tuples(
        st.just("PATCH"),
        st.just("/alert-rules/{rule}"),
        st.one_of(st.fixed_dictionaries({"params": maybe(rule_params)}), any_json),
    ),
    st.tuples(
        st.sampled_from(["DELETE", "PATCH"]),
        st.builds(lambda s: f"/alert-rules/{path_of(s)}", segments),
        st.just({"params": {}}),
    ),
    st.tuples(
        st.sampled_from(["DELETE", "POST"]),
        st.builds(
            lambda s, end: f"/webhook-endpoints/{path_of(s)}{end}", segments, st.sampled_from(["", "/rotate-secret"])
        ),
        st.none(),
    ),
    st.tuples(
        st.just("POST"),
        st.builds(lambda s: "/inverters/{inverter}/alerts/" + path_of(s) + "/acknowledge", segments),
        st.none(),
    ),
)


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests_)
def test_no_input_to_a_write_endpoint_is_a_5xx_and_no_refusal_stores_anything(owner_client, request):
    method, path, body, *headers = request  # only POST /jobs draws request headers
    headers = headers[0] if headers else {}
    path = path.format(job=owner_client.job_id, inverter=owner_client.inverter_id, rule=owner_client.rule_id)
    before = row_counts()
    data = json.dumps(body) if body is not None else None  # "\ud800" in a str becomes the JSON escape
    reply = owner_client.open(
        path, method=method, data=data, content_type="application/json" if data else None, headers=headers
    )
    event(f"{method} {ROUTE_SHAPES.sub('<id>', path)} -> {reply.status_code}")  # see --hypothesis-show-statistics
    if reply.status_code >= 400:
        # The one 5xx allowed: onboarding's brand (a closed port here) could not be asked.
        brand_down = reply.status_code == 502 and reply.get_json()["error"]["code"] == "brand_unreachable"
        assert reply.status_code < 500 or brand_down, (method, path, body, reply.get_data(as_text=True))
        assert_envelope(reply, reply.status_code)
        assert row_counts() == before, (method, path, body, reply.status_code)
