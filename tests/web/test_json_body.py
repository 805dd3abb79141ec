"""json_body's refusals of lone surrogates and deep nesting, for raw bodies spelled byte by byte: the common body
is cleared from its raw bytes without walking the parsed tree (json_body._plainly_fine), so every way a surrogate
or a deep container can hide in the bytes must still be found, with the same answer as the walk gives."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from web import json_body
from web.errors import ApiError
from web.json_body import MAX_DEPTH

URL = "http://127.0.0.1:9/hook"  # never called: no worker runs here
HEAD = b'{"url": "%s", ' % URL.encode()


def _nested(depth: int) -> bytes:
    """A job body whose `json` nests arrays so that the deepest container is at `depth` (the body is 1)."""
    arrays = depth - 1
    return HEAD + b'"json": ' + b"[" * arrays + b"]" * arrays + b"}"


SURROGATE = (400, "invalid_json", "body")
ACCEPTED = (202, None, None)
TOO_DEEP = (400, "invalid_json", f"the body is nested deeper than {MAX_DEPTH} levels")

# (raw body, (status, error code, details.field or, for nesting, the message)); each answer is the one the tree walk gave before the raw
# check existed (this table passes on the commit before it, too).
CASES = [
    (HEAD + b'"body": "a\\ud800b"}', SURROGATE),
    (HEAD + b'"body": "a\\uD800"}', SURROGATE),  # upper-case hex
    (HEAD + b'"body": "\\uDBFF"}', SURROGATE),
    (HEAD + b'"body": "\\udc00"}', SURROGATE),
    (HEAD + b'"body": "\\uDfFf"}', SURROGATE),
    (HEAD + b'"body": "\\ud83d\\ude00"}', ACCEPTED),  # a valid pair: one character
    (HEAD + b'"body": "\\ude00\\ud83d"}', SURROGATE),  # the pair's halves in the wrong order
    (HEAD + b'"body": "\\\\ud800"}', ACCEPTED),  # an escaped backslash, then the letters ud800
    (HEAD + b'"body": "\\\\\\ud800"}', SURROGATE),  # an escaped backslash, then an escape
    (HEAD + b'"body": "a\xed\xa0\x80"}', SURROGATE),  # a surrogate encoded in UTF-8 bytes, no escape
    (HEAD + b'"body": "caf\xc3\xa9 \xf0\x9f\x8c\x9e"}', ACCEPTED),  # UTF-8 text
    (HEAD + b'"headers": {"X-\\ud800": "a"}}', (400, "invalid_json", "headers.X-\\ud800")),
    (HEAD + b'"json": {"a": [1, "\\udc00"]}}', (400, "invalid_json", "json.a[1]")),
    # UTF-16 and UTF-32 (json reads them by their NUL bytes): ASCII bytes, but not the text they spell.
    (json.dumps({"url": URL, "body": "\ud800"}).encode("utf-16-le"), SURROGATE),
    (json.dumps({"url": URL, "body": "\ud800"}).encode("utf-16-be"), SURROGATE),
    (json.dumps({"url": URL, "body": "\ud800"}).encode("utf-16"), SURROGATE),
    (json.dumps({"url": URL, "body": "\ud800"}).encode("utf-32-le"), SURROGATE),
    (json.dumps({"url": URL, "body": "ok"}).encode("utf-16-le"), ACCEPTED),
    (_nested(MAX_DEPTH), ACCEPTED),
    (_nested(MAX_DEPTH + 1), TOO_DEEP),
    # brackets in a string: counted by the raw check (so the tree is walked), not containers
    (_nested(MAX_DEPTH).replace(b'"json": ', b'"headers": {"X-B": "' + b"[" * 200 + b'"}, "json": '), ACCEPTED),
    (HEAD + b'"json": ' + b'{"a": ' * (MAX_DEPTH - 1) + b"1" + b"}" * (MAX_DEPTH - 1) + b"}", ACCEPTED),
    (HEAD + b'"json": ' + b'{"a": ' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH + b"}", TOO_DEEP),
]


@pytest.mark.parametrize("raw,expected", CASES)
def test_a_raw_body_gets_the_walks_answer(client, raw, expected):
    status, code, where = expected
    reply = client.post("/jobs", data=raw, content_type="application/json")
    assert reply.status_code == status, reply.get_data(as_text=True)
    if code is not None:
        error = reply.get_json()["error"]
        assert error["code"] == code
        if expected == TOO_DEEP:
            assert (error["message"], error["details"]) == (where, {})
        else:
            assert error["details"]["field"] == where
            assert "lone UTF-16 surrogate" in error["message"]


def test_the_raw_check_lets_through_only_what_the_walk_lets_through():
    """_plainly_fine never clears a body whose tree the walk refuses (a body it does not clear is walked)."""
    too_deep = ApiError(400, "invalid_json", "too deep")
    for raw, (status, _, _) in CASES:
        if json_body._plainly_fine(raw):
            json_body._check_tree(json.loads(raw), too_deep)  # raises nothing
            assert status != 400


_TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff", "\\", "[", "{", "u"]))
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=200,
)


@settings(max_examples=400, deadline=None)
@given(value=_VALUES, ensure_ascii=st.booleans())
def test_a_document_the_raw_check_clears_has_nothing_for_the_walk(value, ensure_ascii):
    raw = json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    if json_body._plainly_fine(raw):
        json_body._check_tree(json.loads(raw), ApiError(400, "invalid_json", "too deep"))
