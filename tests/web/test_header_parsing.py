"""The web server reads a request's header block itself when every line is plain (web/server.py `parsed_headers`),
and must read every block exactly as gevent's own parser (the email package's) does: the same headers in the same
order, the same status, the same refusal. Blocks are generated from plain lines and from the lines a hostile or
broken client sends: folded continuations, bare LF, no colon, spaces or other bytes in the name, non-ASCII, too many."""

from __future__ import annotations

import io
import time

import pytest
from gevent.pywsgi import headers_factory
from hypothesis import given, settings
from hypothesis import strategies as st

from web.server import parsed_headers

TOKEN = st.text(
    "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12
)
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=20)
PLAIN_LINE = st.builds(
    lambda name, gap, value: f"{name}:{gap}{value}".encode(), TOKEN, st.sampled_from(["", " ", "  ", "\t"]), PRINTABLE
)
ODD_LINE = st.one_of(
    st.builds(lambda value: b" " + value.encode(), PRINTABLE),  # a folded continuation
    st.builds(lambda value: b"\t" + value.encode(), PRINTABLE),
    PRINTABLE.map(str.encode),  # no colon, perhaps
    st.builds(lambda a, b: f"{a} {b}: x".encode(), TOKEN, TOKEN),  # a space in the name
    st.builds(lambda value: b": " + value.encode(), PRINTABLE),  # no name
    st.builds(lambda name: name.encode() + b": caf\xc3\xa9 \xff", TOKEN),  # bytes beyond ASCII
    st.builds(lambda name: name.encode() + b": a\nb", TOKEN),  # a bare LF inside
    st.just(b"From nobody: x"),
    st.binary(max_size=12).filter(lambda raw: b"\r\n" not in raw),
)


def _read(reader, block: bytes):
    """What a reader makes of a block: its headers and status, or the type of its refusal."""
    try:
        message = reader(block)
    except Exception as exc:  # noqa: BLE001 - the refusal itself is what is compared
        return type(exc)
    return message.items(), message.status


def gevent_reads(block: bytes):
    return _read(lambda raw: headers_factory(io.BytesIO(raw)), block)


def server_reads(block: bytes):
    return _read(parsed_headers, block)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(PLAIN_LINE, PLAIN_LINE, ODD_LINE), max_size=12), st.sampled_from([b"\r\n", b"\n"]))
def test_every_block_is_read_as_gevent_reads_it(lines, end):
    block = b"".join(line + b"\r\n" for line in lines) + end
    assert server_reads(block) == gevent_reads(block)


@pytest.mark.parametrize("count", [99, 100, 101, 150])
def test_up_to_a_hundred_lines_with_the_blank_one_and_no_more(count):
    block = b"".join(b"X-N%d: %d\r\n" % (n, n) for n in range(count)) + b"\r\n"
    assert server_reads(block) == gevent_reads(block)
    if count >= 100:  # with the blank line, more than http.client's 100
        assert not isinstance(gevent_reads(block), tuple)  # refused: the server answers 431


def test_a_plain_block_keeps_repeated_headers_in_order():
    block = b"Host: a\r\nX-Tag: one\r\nx-tag:two  \r\nAccept:\r\n\r\n"
    items, status = server_reads(block)
    assert items == [("Host", "a"), ("X-Tag", "one"), ("x-tag", "two  "), ("Accept", "")]
    assert (items, status) == gevent_reads(block)


@pytest.mark.parametrize(
    "tail",
    [b" " * 30_000 + b"\x01", b" \t" * 15_000 + b"\x01", b"v " * 15_000 + b"\xff"],
    ids=["spaces", "spaces and tabs", "words"],
)
def test_a_long_line_that_is_not_plain_costs_about_what_a_plain_one_does(tail):
    # The first reader matched the spaces before a value by two overlapping parts: 30 KB of them ending in a
    # control byte took the regular expression ~3 s, a request's worth of CPU times thousands.
    plain = b"X: " + b"v" * len(tail) + b"\r\n\r\n"
    hostile = b"X:" + tail + b"\r\n\r\n"
    started = time.process_time()
    for _ in range(20):
        parsed_headers(plain)
    plain_s = (time.process_time() - started) / 20
    started = time.process_time()
    assert server_reads(hostile) == gevent_reads(hostile)
    assert time.process_time() - started < 100 * plain_s + 0.05
