"""GET /openapi.json is a valid OpenAPI 3.1 document of every public endpoint, generated from the models that
validate the requests; every operation, exercised with generated requests, answers as the document says."""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal, Union

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from pydantic import BaseModel, Field
from schemathesis import GenerationMode, checks

from models.db import owner
from tests.helpers import free_port
from tests.web.test_hostile_input import job_bodies, onboarding_bodies
from web.errors import ApiError
from web.extensions import collaborators_of
from web.job_request import JobRequest, parse_job_request
from web.jobs import BatchJobRequest
from web.json_body import RequestModel, RequestRootModel, validated

PUBLIC = {
    ("post", "/jobs"),
    ("get", "/jobs"),
    ("post", "/jobs/batch"),
    ("get", "/jobs/{job_id}"),
    ("get", "/jobs/{job_id}/attempts"),
    ("get", "/jobs/stats"),
    ("post", "/jobs/{job_id}/cancel"),
    ("post", "/jobs/{job_id}/retry"),
    ("post", "/inverters"),
    ("get", "/inverters"),
    ("get", "/inverters/{inverter_id}"),
    ("delete", "/inverters/{inverter_id}"),
    ("post", "/inverters/{inverter_id}/members"),
    ("delete", "/inverters/{inverter_id}/members/{ref}"),
    ("get", "/inverters/{inverter_id}/latest"),
    ("get", "/inverters/{inverter_id}/readings"),
    ("get", "/inverters/{inverter_id}/energy"),
    ("post", "/connections/discover"),
    ("get", "/connections/{connection_id}"),
    ("patch", "/connections/{connection_id}"),
    ("post", "/session"),
    ("delete", "/session"),
    ("get", "/inverters/{inverter_id}/stream"),
    ("get", "/stream"),
    ("get", "/jobs/{job_id}/events"),
    ("get", "/streams/stats"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/webhook-endpoints"),
    ("get", "/webhook-endpoints"),
    ("get", "/webhook-endpoints/{endpoint_id}"),
    ("delete", "/webhook-endpoints/{endpoint_id}"),
    ("post", "/webhook-endpoints/{endpoint_id}/rotate-secret"),
    ("post", "/alert-rules"),
    ("get", "/alert-rules"),
    ("get", "/alert-rules/{rule_id}"),
    ("patch", "/alert-rules/{rule_id}"),
    ("delete", "/alert-rules/{rule_id}"),
    ("get", "/inverters/{inverter_id}/alerts"),
    ("post", "/inverters/{inverter_id}/alerts/{alert_id}/acknowledge"),
}


@pytest.fixture(scope="module")
def document(app):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_public_endpoint_is_described(document):
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert described == PUBLIC


def test_request_bodies_are_the_validating_models_schemas(document):
    operation = document["paths"]["/jobs"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobRequest"
    }
    schema = document["components"]["schemas"]["JobRequest"]
    assert schema["properties"].keys() == JobRequest.model_json_schema(by_alias=True)["properties"].keys()
    assert schema["additionalProperties"] is False
    timeout = next(s for s in schema["properties"]["timeout_s"]["anyOf"] if s.get("type") == "number")
    assert (timeout["minimum"], timeout["maximum"]) == (0.001, 120.0)


def test_an_alert_rule_body_is_one_kind_with_that_kinds_parameters(document):
    from models import alerts

    operation = document["paths"]["/alert-rules"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AlertRuleRequest"
    }
    schemas = document["components"]["schemas"]
    assert schemas["AlertRuleRequest"]["discriminator"]["propertyName"] == "kind"
    assert set(schemas["AlertRuleRequest"]["discriminator"]["mapping"]) == set(alerts.KINDS)
    assert schemas["OfflineParams"]["properties"]["minutes"]["minimum"] == 0.25
    assert schemas["ProductionLowParams"]["required"] == ["latitude", "longitude", "peak_power_w"]
    assert schemas["OfflineRuleView"]["properties"]["params"] == {"$ref": "#/components/schemas/OfflineParams"}
    # The signing secret is answered by the creation and rotate-secret only.
    assert "secret" in schemas["WebhookEndpointCreated"]["required"]
    assert "secret" not in schemas["WebhookEndpointView"]["properties"]
    answers = document["paths"]["/webhook-endpoints/{endpoint_id}/rotate-secret"]["post"]["responses"]
    assert answers["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/WebhookEndpointRotated")


def test_errors_share_the_envelope(document):
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    responses = document["paths"]["/jobs"]["post"]["responses"]
    for status in ("400", "401", "403", "409", "413", "415", "422"):
        assert responses[status]["content"]["application/json"]["schema"] == envelope, status
    assert document["components"]["schemas"]["ErrorEnvelope"]["required"] == ["error"]
    assert document["paths"]["/jobs/{job_id}"]["get"]["security"] == [{"bearer": []}, {"session": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_docs_page_is_served_from_the_project(app):
    client = app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    assert "https://" not in html and "http://" not in html  # no CDN
    script = client.get("/ui/static/js/api_docs.js")
    assert script.status_code == 200


# -- every operation against the in-process app (schemathesis) ------------------------------------------
LOOPBACK_URL = "http://127.0.0.1:9/hook"  # never called: no worker runs here
CLOSED = f"http://127.0.0.1:{free_port()}"  # onboarding's brand calls are refused at once, on loopback
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


STREAMS = {("get", "/inverters/{inverter_id}/stream"), ("get", "/stream"), ("get", "/jobs/{job_id}/events")}
NO_INPUT = {("delete", "/session"), ("get", "/healthz"), ("get", "/readyz")}  # nothing to make invalid


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.fixture(scope="module")
def api_key(new_app_key):
    return new_app_key()


def make_own_objects(app, api_key, new_app_key) -> dict:
    """Path parameters naming the caller's own objects, made anew for each operation that names them (a DELETE
    removes them): a job, an inverter on a connection, a member of it, a webhook endpoint, an alert rule on the
    inverter and an alert of that rule."""
    from models import alerts, inverters
    from models.accounts import account_by_id_or_name, account_for_key

    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    job = client.post("/jobs", json={"url": LOOPBACK_URL})
    assert job.status_code == 202, job.get_data(as_text=True)
    endpoint = client.post("/webhook-endpoints", json={"url": LOOPBACK_URL, "event_types": ["inverter.offline"]})
    assert endpoint.status_code == 201, endpoint.get_data(as_text=True)
    account = owner().call(account_for_key, api_key)
    member_name = f"member-{time.monotonic_ns()}"
    new_app_key(member_name)
    member = owner().call(account_by_id_or_name, member_name)

    def onboard():
        connection = inverters.connection_for("sandbox", CLOSED, {"api_key": f"k-{time.monotonic_ns()}"})
        inverter, _ = inverters.onboard(
            account.id, connection, f"S-{time.monotonic_ns()}", "inverter", None, None, None
        )
        inverters.add_member(inverter.id, member.id)
        return inverter

    inverter = owner().write(onboard)
    rule = client.post("/alert-rules", json={"inverter_id": inverter.id, "kind": "offline"})
    assert rule.status_code == 201, rule.get_data(as_text=True)

    def open_alert():
        stored = alerts.AlertRule.get_by_id(rule.get_json()["id"])
        return alerts.open_alert(stored, inverter.id, inverter.serial, time.time(), {"last_seen_s": 600})[0]

    return {
        "job_id": job.get_json()["id"],
        "inverter_id": inverter.id,
        "connection_id": inverter.connection_id,
        "ref": member.id,
        "endpoint_id": endpoint.get_json()["id"],
        "rule_id": rule.get_json()["id"],
        "alert_id": owner().write(open_alert).id,
    }


@pytest.fixture(scope="module")
def standing_objects(app, api_key, new_app_key) -> dict:
    """One set of the caller's own objects for the whole module, so that every list the caller asks for has
    items in it, whichever operations this process ran before."""
    return make_own_objects(app, api_key, new_app_key)


def _keep_on_loopback(body) -> None:
    """Generated URLs would be host names, resolved at submission (a DNS query): every destination stays on
    127.0.0.1, everything else in the body stays as generated."""
    if not isinstance(body, dict):
        return
    if isinstance(body.get("url"), str):
        body["url"] = LOOPBACK_URL
    if isinstance(body.get("connection"), dict) and isinstance(body["connection"].get("base_url"), str):
        body["connection"]["base_url"] = CLOSED
    for item in body["jobs"] if isinstance(body.get("jobs"), list) else ():
        _keep_on_loopback(item)


# The streams hold their connection open (and their hub does not run in process): tests/metrics exercise them
# against a real web process.
@pytest.mark.parametrize(
    "mode, method, path",
    [
        (mode, method, path)
        for mode in GenerationMode
        for method, path in sorted(PUBLIC - STREAMS)
        if mode is GenerationMode.POSITIVE or (method, path) not in NO_INPUT
    ],
)
def test_every_operation_answers_as_documented(
    app, document, api_schema, api_key, new_app_key, standing_objects, method, path, mode
):
    """Positive cases name the caller's own objects in the path (to reach the 2xx answers), negative ones
    whatever is generated."""
    operation = api_schema[path][method]
    names = [p.name for p in operation.path_parameters]
    own = None
    if mode is GenerationMode.POSITIVE and names:
        objects = make_own_objects(app, api_key, new_app_key)
        own = {name: objects[name] for name in names}

    # A 5xx the operation documents is the state of what it depends on (a brand unreachable: 502), not a
    # failure of ours; any other 5xx (500) still fails status_code_conformance.
    documented_5xx = any(status.startswith("5") for status in document["paths"][path][method]["responses"])
    chosen = [check for check in CHECKS if not (documented_5xx and check is checks.not_a_server_error)]

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=own))
    @settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def answers_as_documented(case):
        _keep_on_loopback(case.body)
        case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=chosen)

    answers_as_documented()


# -- the rules and the schema agree ---------------------------------------------------------------------
def test_a_breach_only_the_schema_finds_answers_validation_failed_with_the_dotted_field():
    class Inner(BaseModel):
        level: int = Field(ge=1)

    class Outer(RequestModel):
        inner: Inner

    with pytest.raises(ApiError) as refused:
        validated(Outer, {"inner": {"level": 0}})
    assert (refused.value.status, refused.value.code) == (422, "validation_failed")
    assert refused.value.details == {"field": "inner.level"}
    assert refused.value.message.startswith("inner.level: ")


def test_a_breach_in_a_body_chosen_by_a_field_names_the_field_not_the_choice():
    """pydantic puts the chosen member's tag first in an error's location: the caller's body has no such level."""

    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int = Field(le=9)

    class Dog(BaseModel):
        kind: Literal["dog"]

    class Pet(RequestRootModel[Annotated[Union[Cat, Dog], Field(discriminator="kind")]]):  # noqa: UP007
        pass

    for body, field in [({"kind": "cat", "lives": 10}, "lives"), ({"kind": "fish"}, "kind"), ({}, "kind"), ([], None)]:
        with pytest.raises(ApiError) as refused:
            validated(Pet, body)
        assert (refused.value.code, refused.value.details) == ("validation_failed", {"field": field}), body
    assert validated(Pet, {"kind": "dog"}).root == Dog(kind="dog")  # a model without rules is itself the result


def arrives(body) -> bool:
    """Whether json_body lets this body through to its model (a lone surrogate is refused before)."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(body=job_bodies)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_job_schema_accepts_every_job_the_rules_accept(app, body):
    """The schema is published as the contract, and checked after the rules: it must never refuse a job they
    accept (a valid request would then be refused with another message)."""
    if not arrives(body):
        return
    policy = collaborators_of(app).policy
    try:
        parse_job_request(body, policy)
    except ApiError:
        return
    validated(JobRequest, body, policy=policy)
    validated(BatchJobRequest, {**body, "idempotency_key": "k"}, policy=policy)


@given(body=onboarding_bodies)
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_onboarding_schema_accepts_every_body_the_rules_accept(app, body):
    from web.inverters import OnboardingRequest, _parse_onboarding

    if not arrives(body):
        return
    with app.app_context():
        try:
            _parse_onboarding(body)
        except ApiError:
            return
        validated(OnboardingRequest, body)
