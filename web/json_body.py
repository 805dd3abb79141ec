"""Reading request input (a JSON body, query parameters) with the error envelope's codes for each way it can be wrong."""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ConfigDict, Discriminator, PrivateAttr, RootModel, ValidationError, model_validator

from web.errors import ApiError
from web.extensions import this_request

MAX_DEPTH = 100
T = TypeVar("T")
_THE_MODEL = object()  # what `rules` returns when the validated model itself is what the view uses


def json_body():
    req = this_request()
    if req.mimetype != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send the body as application/json", {"content_type": req.content_type}
        )
    raw = req.get_data(cache=True)  # MAX_CONTENT_LENGTH turns an oversized body into 413
    limit = req.max_content_length
    if limit is not None and req.content_length is None and len(raw) >= limit:
        # A chunked body is cut silently at the limit by werkzeug: refuse it rather than parse a prefix.
        raise ApiError(413, "payload_too_large", "request body is larger than the limit", {"limit": limit})
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    too_deep = ApiError(400, "invalid_json", f"the body is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if not _plainly_fine(raw):
        _check_tree(value, too_deep)
    return value


# A \uD800-\uDFFF escape, the only way a lone surrogate gets into a document read from ASCII bytes (a
# false match, such as an escaped backslash before "ud800" or a valid pair, only means the tree is walked).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _plainly_fine(raw: bytes) -> bool:
    """Whether the raw body shows, without walking the parsed tree, that _check_tree would find nothing.

    ASCII bytes without NUL are read as UTF-8 (json's encoding detection needs a BOM or a NUL for anything
    else), so the text is those bytes: it holds a surrogate only through an escape, and no container nests
    deeper than the number of opening brackets. The common body passes this in C; any other is walked."""
    return (
        raw.isascii()
        and b"\x00" not in raw
        and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH
        and _SURROGATE_ESCAPE.search(raw) is None
    )


def _check_tree(value, too_deep: ApiError) -> None:
    """Refuse documents nested deeper than MAX_DEPTH (they would exhaust the stack when encoded again,
    stored, then a 500) and strings holding a lone UTF-16 surrogate: JSON's "\\ud800" escape decodes to
    one, which no UTF-8 encoder, database or header accepts, so every later use of it would fail."""
    stack = [(value, 1, None)]  # a path is (parent's path, key), spelled out only for an error
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise too_deep
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, (path, key))
                    stack.append((child, depth + 1, (path, key)))
            else:
                stack.extend((child, depth + 1, (path, index)) for index, child in enumerate(item))


def _check_text(text: str, path) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        field = _spell(path)
        where = f" in {field}" if field else ""
        raise ApiError(
            400,
            "invalid_json",
            f"the body holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff "
            f"escape){where}; send valid Unicode text",
            {"field": field},
        ) from None


def _spell(path, most: int = 200) -> str | None:
    """("headers", "X-A") as headers.X-A, list positions as [3]; surrogates escaped, cut at `most` characters."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else "." + key.encode("utf-8", "backslashreplace").decode())
    spelled = "".join(reversed(parts)).lstrip(".")
    return (spelled[:most] + "…" if len(spelled) > most else spelled) or None


def _finite_float(text: str) -> float:
    # 1e999 parses to infinity, which JSON cannot carry: it would be stored and relayed as "Infinity".
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of the range of a double")
    return value


def _reject_constant(name: str):
    # Python's json accepts NaN and Infinity, which are not JSON: refuse rather than relay them.
    raise ValueError(f"{name} is not a JSON value")


def limit_param(default: int, most: int) -> int:
    """The `limit` query parameter: a whole number from 1 to `most`, or 400 invalid_parameter."""
    try:
        limit = int(request.args.get("limit", default))
    except ValueError:
        limit = -1
    if not 1 <= limit <= most:
        raise ApiError(
            400, "invalid_parameter", f"limit must be a whole number from 1 to {most}", {"parameter": "limit"}
        )
    return limit


#: The API's models build their validators and serializers on first use, not at class creation: a process builds
#: those its requests use, not all ~80 at every start (~45 ms of CPU a web start); GET /openapi.json builds those it
#: describes. Every model of the API derives from ApiModel or ApiRootModel (or is made with create_model on one).
_DEFERRED = ConfigDict(defer_build=True)  # a subclass's own model_config is merged with it, not instead of it


class ApiModel(BaseModel):
    model_config = _DEFERRED


class ApiRootModel(RootModel[T]):
    model_config = _DEFERRED


class _Rules:
    _parsed: Any = PrivateAttr(None)

    @classmethod
    def rules(cls, data, context: dict):
        return _THE_MODEL

    @model_validator(mode="wrap")
    @classmethod
    def _rules_then_schema(cls, data, handler, info):
        parsed = cls.rules(data, info.context or {})
        model = handler(data)
        model._parsed = model if parsed is _THE_MODEL else parsed
        return model


class RequestModel(_Rules, ApiModel):
    """A request body's model: its fields and constraints are the published schema (GET /openapi.json), and
    `rules` carries what a schema cannot say (the destination policy, RFC 9110 header values), raising ApiError
    with the messages the API has always given. `rules` runs first; its result is what the view uses. A model
    without `rules` (its checks all in its fields and validators, which may raise ApiError) is itself the result."""

    model_config = ConfigDict(extra="ignore")


class RequestRootModel(_Rules, ApiRootModel[T]):
    """As RequestModel, for a body that is one of several shapes (a union)."""


def validated(model: type[RequestModel | RequestRootModel], payload, **context):
    """The payload checked by its model: what the model's rules return (the model itself if it has none), or
    ApiError (422 validation_failed, with the dotted field, for a breach the schema finds that the rules let
    through)."""
    try:
        return model.model_validate(payload, context=context)._parsed
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in _field_path(model, problem)) or None
        message = f"{field}: {problem['msg']}" if field else problem["msg"]
        raise ApiError(422, "validation_failed", message, {"field": field}) from None


def _field_path(model: type[BaseModel], problem) -> tuple:
    """Where in the body the problem is. A body that is a union chosen by a field (`kind`, `brand`) has
    pydantic put the chosen tag first: the body's caller knows no such level, so it is left out, and a tag
    missing or unknown is a problem of that field."""
    loc = tuple(problem["loc"])
    tag = model.model_fields["root"].discriminator if issubclass(model, RootModel) else None
    if isinstance(tag, Discriminator):
        tag = tag.discriminator if isinstance(tag.discriminator, str) else None
    if tag is None:
        return loc
    if problem["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (tag, *loc)
    return loc[1:]


def body_as(model: type[RequestModel | RequestRootModel], **context):
    """The request's JSON body (json_body) checked by its model (validated)."""
    return validated(model, json_body(), **context)
