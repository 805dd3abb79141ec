"""GET /openapi.json is a valid OpenAPI 3.1 document of every public endpoint, generated from the models that
validate the requests; every operation, exercised with generated requests, answers as the document says."""
from __future__ import annotations

import pytest
from openapi_spec_validator import validate

PUBLIC = {
    ("post", "/jobs"), ("get", "/jobs"), ("post", "/jobs/batch"), ("get", "/jobs/{job_id}"),
    ("get", "/jobs/{job_id}/attempts"), ("get", "/jobs/stats"), ("post", "/jobs/{job_id}/cancel"),
    ("post", "/jobs/{job_id}/retry"), ("post", "/inverters"), ("get", "/inverters"),
    ("get", "/inverters/{inverter_id}"), ("delete", "/inverters/{inverter_id}"),
    ("post", "/inverters/{inverter_id}/members"), ("delete", "/inverters/{inverter_id}/members/{ref}"),
    ("get", "/inverters/{inverter_id}/latest"), ("get", "/inverters/{inverter_id}/readings"),
    ("get", "/inverters/{inverter_id}/energy"), ("get", "/connections/{connection_id}"),
    ("patch", "/connections/{connection_id}"), ("post", "/session"), ("delete", "/session"),
    ("get", "/inverters/{inverter_id}/stream"), ("get", "/stream"), ("get", "/jobs/{job_id}/events"),
    ("get", "/streams/stats"), ("get", "/healthz"), ("get", "/readyz"),
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
    from web.job_request import JobRequest

    operation = document["paths"]["/jobs"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobRequest"}
    schema = document["components"]["schemas"]["JobRequest"]
    assert schema["properties"].keys() == JobRequest.model_json_schema(by_alias=True)["properties"].keys()
    assert schema["additionalProperties"] is False
    timeout = next(s for s in schema["properties"]["timeout_s"]["anyOf"] if s.get("type") == "number")
    assert (timeout["minimum"], timeout["maximum"]) == (0.001, 120.0)


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
