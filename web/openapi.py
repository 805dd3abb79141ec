"""The API contract: GET /openapi.json (OpenAPI 3.1) and GET /docs, built from the views' own declarations.

Each public view is decorated with `operation(...)` beside its route: a summary, the pydantic model that
validates its body (web/json_body.py `validated`), the models of its answers by status, and the error statuses
it can answer. The document is generated from those models and the app's URL map, so it cannot drift from
what the views validate and answer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template
from pydantic import BaseModel, ConfigDict

from web.errors import _HTTP_CODES
from web.json_body import ApiModel

bp = Blueprint("openapi", __name__)

REF_TEMPLATE = "#/components/schemas/{model}"
EVENT_STREAM = "text/event-stream"
# Statuses every operation of a kind can answer, besides its own.
_BODY_ERRORS = (400, 413, 415, 422)
_AUTH_ERRORS = (401,)
_CHANGE_ERRORS = (403,)  # a change made with the session cookie alone, without the CSRF header


class ErrorBody(ApiModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorEnvelope(ApiModel):
    """Every error answer: a stable `code`, a message for people, and details (e.g. the `field` at fault)."""

    model_config = ConfigDict(title="Error")
    error: ErrorBody


@dataclass(frozen=True)
class Param:
    """A query or header parameter, with its JSON schema."""

    name: str
    where: str
    schema: dict
    description: str = ""


def query(name: str, schema: dict, description: str = "") -> Param:
    return Param(name, "query", schema, description)


def header(name: str, schema: dict, description: str = "") -> Param:
    return Param(name, "header", schema, description)


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: dict[int, type[BaseModel] | str | None]
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    auth: bool = True
    tag: str = ""


def operation(
    summary: str,
    responses: dict,
    *,
    body: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    params: tuple[Param, ...] = (),
    auth: bool = True,
    tag: str = "",
):
    """Declare a view's contract. `responses` maps a status to a response model, EVENT_STREAM, or None (no body)."""

    def mark(view):
        view.openapi = Operation(summary, dict(responses), body, tuple(errors), tuple(params), auth, tag)
        return view

    return mark


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _content(model, schemas: dict) -> dict:
    if model == EVENT_STREAM:
        return {EVENT_STREAM: {"schema": {"type": "string", "description": "Server-Sent Events"}}}
    return {"application/json": {"schema": _schema_ref(model, schemas)}}


def _schema_ref(model: type[BaseModel], schemas: dict) -> dict:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _operation_document(method: str, rule, op: Operation, schemas: dict) -> dict:
    responses: dict[str, Any] = {}
    for status, model in sorted(op.responses.items()):
        answer: dict[str, Any] = {"description": _describe(status)}
        if model is not None:
            answer["content"] = _content(model, schemas)
        responses[str(status)] = answer
    errors = set(op.errors)
    if op.body is not None:
        errors.update(_BODY_ERRORS)
    if op.auth:
        errors.update(_AUTH_ERRORS)
        if method not in ("get", "head"):
            errors.update(_CHANGE_ERRORS)
    for status in sorted(errors):
        responses.setdefault(
            str(status),
            {
                "description": _describe(status),
                "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="ErrorEnvelope")}}},
            },
        )
    document: dict[str, Any] = {
        "summary": op.summary,
        "operationId": rule.endpoint.replace(".", "_"),
        "responses": responses,
    }
    if op.tag:
        document["tags"] = [op.tag]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in rule.arguments
    ]
    parameters += [
        {
            "name": p.name,
            "in": p.where,
            "required": False,
            "schema": p.schema,
            **({"description": p.description} if p.description else {}),
        }
        for p in op.params
    ]
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema_ref(op.body, schemas)}},
        }
    document["security"] = [{"bearer": []}, {"session": []}] if op.auth else []
    return document


def _describe(status: int) -> str:
    phrase = HTTPStatus(status).phrase
    code = _HTTP_CODES.get(status)
    return f"{phrase} (error code e.g. `{code}`)" if code and status >= 400 else phrase


def build_document(app) -> dict:
    schemas: dict[str, Any] = {}
    _schema_ref(ErrorEnvelope, schemas)
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        op = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if op is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(_path(rule.rule), {})[method.lower()] = _operation_document(
                method.lower(), rule, op, schemas
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "solar-relay",
            "version": app.config.get("API_VERSION", "0.1.0"),
            "description": "Durable outbound HTTP jobs and live inverter metrics. Every error answers "
            'with the envelope {"error": {"code", "message", "details"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "session",
                    "description": "the cookie POST /session sets; a change made with it alone must also "
                    "send X-Requested-With",
                },
            },
        },
    }


@bp.get("/openapi.json")
def document():
    cached = current_app.extensions.get("openapi_document")
    if cached is None:
        cached = current_app.extensions["openapi_document"] = build_document(current_app)
    return jsonify(cached)


@bp.get("/docs")
def docs():
    return render_template("api_docs.html")
