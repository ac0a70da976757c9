"""SSEParser against vectors written from the WHATWG "Interpreting an event stream" algorithm, plus chunking
invariance and a differential test against a slow, literal reference implementation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sse_capture_addon import sse
from sse_capture_addon._speedups import ParserCore, simple_blocks
from sse_capture_addon.sse import (
    DEFAULT_MAX_EVENT_SIZE,
    Comment,
    Event,
    Ignored,
    MessageBatch,
    NoDispatch,
    Oversized,
    SSEParser,
)

pytestmark = pytest.mark.usefixtures("implementation")  # every test with the C fast path and without it

NULL_REASON = "id contains U+0000 NULL"
DIGITS_REASON = "retry value is not all ASCII digits"


def parse(data: bytes, chunks: list[int] | None = None, max_event_size: int = DEFAULT_MAX_EVENT_SIZE):
    """Feed `data` split at the given chunk sizes (whole if None); return (items, tail, parser)."""
    p = SSEParser(max_event_size)
    items = []
    if chunks is None:
        items += p.feed(data)
    else:
        pos = 0
        for size in chunks:
            items += p.feed(data[pos : pos + size])
            pos += size
        items += p.feed(data[pos:])
    return items, p.close(), p


def split_every(data: bytes, n: int) -> list[int]:
    return [n] * (len(data) // n + 1)


def events(data: bytes, **kw) -> list:
    return parse(data, **kw)[0]


def ev(data: str, type: str = "message", last_event_id: str = "", retry: int | None = None) -> Event:
    return Event(type, data, last_event_id, retry)


# --- BOM ---------------------------------------------------------------------------------------------------

def test_bom_stripped():
    items, tail, p = parse(b"\xef\xbb\xbfdata: x\n\n")
    assert items == [ev("x")] and p.bom and tail is None


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_bom_split_across_chunks(cut):
    data = b"\xef\xbb\xbfdata: x\n\n"
    items, _, p = parse(data, [cut])
    assert items == [ev("x")] and p.bom
    items, _, p = parse(data, [1] * 6)
    assert items == [ev("x")] and p.bom


def test_second_bom_is_data():
    items, _, p = parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n")
    # the second U+FEFF starts the first line's field name: "\ufeffdata" is an unknown field
    assert items == [] and p.bom
    assert events(b"\xef\xbb\xbfdata: \xef\xbb\xbfx\n\n") == [ev("\ufeffx")]


def test_bom_only_at_stream_start():
    items, _, p = parse(b"data: a\n\n\xef\xbb\xbfdata: b\n\n")
    assert items == [ev("a")] and not p.bom
    items, _, p = parse(b"data: a\n\n\xef\xbb\xbfdata: b\n\n", [9])
    assert items == [ev("a")] and not p.bom


@pytest.mark.parametrize("eol", [b"\r", b"\n", b"\r\n"])
def test_bom_followed_directly_by_line_terminator_is_empty_line(eol):
    items, tail, p = parse(b"\xef\xbb\xbf" + eol + b"data: x" + eol + eol)
    assert items == [ev("x")] and p.bom and tail is None
    # the BOM's line is an empty line: it dispatches (nothing) and ends the block
    items, tail, p = parse(b"\xef\xbb\xbf" + eol + b"id: 1" + eol)
    assert items == [] and tail == "id: 1" + eol.decode()


def test_no_bom():
    _, _, p = parse(b"data: x\n\n")
    assert not p.bom


def test_slow_lines_counts_the_lines_read_one_by_one():
    # what a compressed stream's inflation limit counts beyond its bytes (decoding.too_inflated): every line that
    # the block fast paths (in C, or their Python fallback) do not take, blank ones too; the lines of plain events
    # they take cost only their bytes
    p = SSEParser(message_batches=True)
    p.feed(b":a\n: b\n\nx\r\n\r")
    assert p.slow_lines == 5
    p.feed(b"\ndata: x\n\n")  # (the LF completes a CRLF: the fast path starts after it)
    assert p.slow_lines == 7
    p.feed(b"data: x\n\n" * 100)
    assert p.slow_lines == 7
    p.feed(b"data: y\nid: 2\n\n")  # a block of another shape
    assert p.slow_lines == 10


@pytest.mark.parametrize("block", [b"data: a\ndata: b\n\n", b"data:a\ndata:\ndata:  c\n\n", b"event: e\ndata: a\ndata: b\n\n",
                                   b"data: \xc3\xa9\ndata: \n\n", b"event: e\r\ndata: a\r\ndata: b\r\n\r\n"])
@pytest.mark.parametrize("batches", [False, True])
def test_a_text_sent_as_several_data_lines_is_not_read_line_by_line(block, batches):
    # a text with LFs goes as one "data:" line each (sse-starlette splits data so; markdown tokens hold LFs): such
    # blocks take the block fast paths, in chunks of one event and of many, as one-line ones do (they were read
    # line by line, at a tenth of the speed)
    for per_chunk in (1, 40):
        p = SSEParser(message_batches=batches)
        items = p.feed(b"data: start\n\n")
        for _ in range(3):
            items += p.feed(block * per_chunk)
        assert p.slow_lines == 0, per_chunk
        stream = b"data: start\n\n" + block * 3 * per_chunk
        ref = reference(stream)
        assert (expand_batches(items), p.close(), p.line_endings) == (ref[0], ref[1], ref[2])


# --- line terminators -------------------------------------------------------------------------------------

@pytest.mark.parametrize("eol,key", [(b"\n", "lf"), (b"\r\n", "crlf"), (b"\r", "cr")])
def test_line_terminators_lf_crlf_cr(eol, key):
    items, tail, p = parse(b"data: a" + eol + b"data: b" + eol + eol)
    assert items == [ev("a\nb")] and tail is None
    assert p.line_endings == {"lf": 0, "crlf": 0, "cr": 0} | {key: 3}


def test_mixed_line_terminators():
    items, _, p = parse(b"data: a\rdata: b\ndata: c\r\n\n:x\r\r")
    assert items == [ev("a\nb\nc"), Comment("x")]
    assert p.line_endings == {"lf": 2, "crlf": 1, "cr": 3}


def test_cr_lf_split_across_chunks_is_one_terminator():
    data = b"data: a\r\ndata: b\r\n\r\n"
    for cut in range(1, len(data)):
        items, tail, p = parse(data, [cut])
        assert items == [ev("a\nb")], cut
        assert tail is None and p.line_endings == {"lf": 0, "crlf": 3, "cr": 0}
    items, _, p = parse(data, [1] * len(data))
    assert items == [ev("a\nb")] and p.line_endings["crlf"] == 3


def test_cr_then_empty_chunk_then_lf():
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"") == []
    assert p.feed(b"\n") == []
    assert p.feed(b"\r\n") == [ev("a")]
    assert p.line_endings == {"lf": 0, "crlf": 2, "cr": 0}


def test_cr_at_chunk_end_followed_by_cr_is_two_terminators():
    items, _, p = parse(b"data: a\r\rdata: b\n\n", [8])
    assert items == [ev("a"), ev("b")] and p.line_endings == {"lf": 2, "crlf": 0, "cr": 2}


def test_lf_cr_is_two_terminators():
    assert events(b"data: a\n\rdata: b\n\n") == [ev("a"), ev("b")]


def test_cr_ends_line_immediately():
    # a CR at the end of a chunk completes its line without waiting for a possible LF
    p = SSEParser()
    assert p.feed(b"data: a\r\r") == [ev("a")]
    assert p.feed(b"\n") == []  # completes the second CR's CRLF: not another line
    assert p.line_endings == {"lf": 0, "crlf": 1, "cr": 1}


# --- blank lines, comments, fields -------------------------------------------------------------------------

def test_blank_line_dispatches():
    p = SSEParser()
    assert p.feed(b"data: x\n") == []
    assert p.feed(b"\n") == [ev("x")]


def test_comment():
    assert events(b": ping\n") == [Comment(" ping")]
    assert events(b":\n") == [Comment("")]
    assert events(b"::x: y\n") == [Comment(":x: y")]
    assert events(b":  two\n") == [Comment("  two")]


def test_comment_does_not_dispatch_or_break_event():
    assert events(b"data: a\n: c\ndata: b\n\n") == [Comment(" c"), ev("a\nb")]


def test_field_without_colon_is_name_with_empty_value():
    assert events(b"data\n\n") == [ev("")]
    assert events(b"data\ndata\n\n") == [ev("\n")]
    assert events(b"data: a\ndata\n\n") == [ev("a\n")]
    assert events(b"event\ndata: x\n\n") == [ev("x")]


@pytest.mark.parametrize(
    "line,data",
    [(b"data:", ""), (b"data: ", ""), (b"data:x", "x"), (b"data: x", "x"), (b"data:  x", " x"), (b"data:x ", "x "),
     (b"data: a:b", "a:b"), (b"data:\tx", "\tx")],
)
def test_exactly_one_leading_space_removed(line, data):
    assert events(line + b"\n\n") == [ev(data)]


def test_data_appends_lf_and_final_lf_removed():
    assert events(b"data: a\ndata: b\n\n") == [ev("a\nb")]
    assert events(b"data:\ndata:\n\n") == [ev("\n")]
    assert events(b"data: a\ndata:\n\n") == [ev("a\n")]


def test_event_sets_type():
    assert events(b"event: add\ndata: x\n\n") == [ev("x", type="add")]
    assert events(b"event:add\ndata: x\n\n") == [ev("x", type="add")]
    assert events(b"event:  add\ndata: x\n\n") == [ev("x", type=" add")]


def test_empty_event_type_is_message():
    assert events(b"event:\ndata: x\n\n") == [ev("x")]
    assert events(b"event: a\nevent:\ndata: x\n\n") == [ev("x")]


def test_event_type_resets_per_block():
    assert events(b"event: a\ndata: 1\n\ndata: 2\n\n") == [ev("1", type="a"), ev("2")]


def test_event_type_without_data_is_not_dispatched_and_resets():
    assert events(b"event: a\n\ndata: x\n\n") == [ev("x")]


def test_no_dispatch_on_empty_data():
    assert events(b"\n\n\n") == []
    assert events(b": c\n\n") == [Comment(" c")]
    assert events(b"foo: bar\n\n") == []


def test_unknown_fields_ignored():
    assert events(b"foo: bar\ndata: x\nDATA: y\nData: z\n data: w\n\n") == [ev("x")]


def test_field_names_are_case_sensitive():
    assert events(b"Event: a\nID: 3\nRetry: 5\ndata: x\n\n") == [ev("x")]


# --- id ----------------------------------------------------------------------------------------------------

def test_id_sets_last_event_id_and_persists():
    items, _, p = parse(b"id: 1\ndata: a\n\ndata: b\n\n")
    assert items == [ev("a", last_event_id="1"), ev("b", last_event_id="1")]
    assert p.last_event_id == "1"


def test_id_with_null_is_ignored():
    items, _, p = parse(b"id: 1\n\nid: a\x00b\ndata: x\n\n")
    assert items == [NoDispatch("1", None, True), Ignored("id", "a\x00b", NULL_REASON), ev("x", last_event_id="1")]
    assert p.last_event_id == "1"


def test_ignored_value_truncated_to_200():
    items = events(b"id: " + b"\x00" * 500 + b"\n")
    assert items == [Ignored("id", "\x00" * 200, NULL_REASON)]


def test_empty_id_resets_last_event_id():
    items, _, p = parse(b"id: 7\ndata: a\n\nid\ndata: b\n\nid: 8\n\nid:\ndata: c\n\n")
    assert items == [ev("a", last_event_id="7"), ev("b"), NoDispatch("8", None, True), ev("c")]
    assert p.last_event_id == ""


def test_id_keeps_spaces_after_the_first():
    assert events(b"id:  x \ndata\n\n") == [ev("", last_event_id=" x ")]


def test_last_event_id_is_updated_at_the_blank_line():
    p = SSEParser()
    p.feed(b"id: 1\ndata: x\n")
    assert p.last_event_id == ""  # still only in the last event ID buffer
    assert p.feed(b"\n") == [ev("x", last_event_id="1")]
    assert p.last_event_id == "1"


def test_id_in_block_without_data_gives_no_dispatch():
    assert events(b"id: 3\n\n") == [NoDispatch("3", None, True)]
    assert events(b"id: 3\nevent: t\n\n") == [NoDispatch("3", None, True)]


def test_no_dispatch_only_for_valid_id_or_retry():
    assert events(b"id: \x00\n\n") == [Ignored("id", "\x00", NULL_REASON)]
    assert events(b"retry: x\n\n") == [Ignored("retry", "x", DIGITS_REASON)]
    assert events(b"retry: 5\n\n") == [NoDispatch("", 5, False)]
    assert events(b"id: 1\nretry: 5\n\n") == [NoDispatch("1", 5, True)]


# --- retry -------------------------------------------------------------------------------------------------

def test_retry_digits_sets_reconnection_time():
    items, _, p = parse(b"retry: 3000\ndata: x\n\n")
    assert items == [ev("x", retry=3000)] and p.reconnection_time == 3000
    assert events(b"retry: 007\ndata: x\n\n") == [ev("x", retry=7)]


@pytest.mark.parametrize("value", ["", "1.5", "-1", "+1", " 10", "10 ", "1e3", "x", "\u0661\u0662", "\uff11"])
def test_retry_non_digits_ignored(value):
    items, _, p = parse(f"retry: 100\n\nretry: {value}\ndata: x\n\n".encode())
    assert items == [NoDispatch("", 100, False), Ignored("retry", value, DIGITS_REASON), ev("x")]
    assert p.reconnection_time == 100


def test_retry_without_colon_is_empty_and_ignored():
    assert events(b"retry\ndata: x\n\n") == [Ignored("retry", "", DIGITS_REASON), ev("x")]


def test_retry_is_per_block_but_reconnection_time_persists():
    items, _, p = parse(b"retry: 5\ndata: a\n\ndata: b\n\n")
    assert items == [ev("a", retry=5), ev("b")] and p.reconnection_time == 5


def test_retry_with_more_digits_than_int_allows():
    items, _, p = parse(b"retry: " + b"9" * 5000 + b"\ndata: x\n\n")
    assert [type(i) for i in items] == [Ignored, Event] and items[0].reason == "retry value is too large"
    assert p.reconnection_time is None


# --- UTF-8 -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_multibyte_char_split_at_every_byte_position(char):
    data = f"event: {char}\ndata: a{char}b\n\ndata: {char}\n\n".encode()
    want = [ev(f"a{char}b", type=char), ev(char)]
    for cut in range(1, len(data)):
        assert events(data, chunks=[cut]) == want, cut
    for n in (1, 2, 3, 5):
        assert events(data, chunks=split_every(data, n)) == want


def test_invalid_utf8_replaced():
    assert events(b"data: a\xffb\xc3(\n\n") == [ev("a\ufffdb\ufffd(")]
    assert events(b"data: \xed\xa0\x80\n\n") == [ev("\ufffd\ufffd\ufffd")]  # a surrogate is not UTF-8


def test_invalid_utf8_split_across_chunks():
    assert events(b"data: \xe2\x82x\n\n", chunks=[7]) == [ev("\ufffdx")]


def test_truncated_multibyte_at_end_becomes_replacement_in_tail():
    items, tail, _ = parse(b"data: ok\n\ndata: \xe2\x82", [1] * 16)
    assert items == [ev("ok")] and tail == "data: \ufffd"


def test_utf8_overlong_and_null():
    assert events(b"data: \xc0\xaf\x00\n\n") == [ev("\ufffd\ufffd\x00")]


# --- close() and the unterminated tail ---------------------------------------------------------------------

def test_close_returns_none_at_block_boundary():
    assert parse(b"data: x\n\n")[1] is None
    assert parse(b"")[1] is None
    assert parse(b"\xef\xbb\xbf")[1] is None
    assert parse(b"data: x\r\n\r\n")[1] is None


def test_close_returns_unterminated_tail_and_does_not_dispatch():
    items, tail, _ = parse(b"data: a\n\ndata: b\n")
    assert items == [ev("a")] and tail == "data: b\n"
    items, tail, _ = parse(b"data: a\n\nevent: t\ndata: b")
    assert items == [ev("a")] and tail == "event: t\ndata: b"
    assert parse(b": only a comment\n")[1] == ": only a comment\n"


def test_tail_keeps_raw_line_terminators():
    assert parse(b"data: a\r\n\r\nid: 1\r\ndata: b\rdata")[1] == "id: 1\r\ndata: b\rdata"
    assert parse(b"data: a\r\n\r\nid: 1\r\ndata: b\rdata", [1] * 40)[1] == "id: 1\r\ndata: b\rdata"
    assert parse(b"data: a\r\n\r\nid: 1\r", [14])[1] == "id: 1\r"
    assert parse(b"data: a\r\n\r\nid: 1\r\n", [17])[1] == "id: 1\r\n"


def test_tail_truncated_to_max_event_size():
    items, tail, p = parse(b"data: " + b"x" * 100, [7] * 20, max_event_size=50)
    assert items == [] and tail == "data: " + "x" * 44 and p.tail_truncated


def test_bytes_in():
    _, _, p = parse(b"data: x\n\n" * 3, [4] * 10)
    assert p.bytes_in == 27


# --- oversized events --------------------------------------------------------------------------------------

def test_oversized_event_then_normal_events():
    data = b"event: big\nid: 9\ndata: " + b"a" * 30 + b"\ndata: " + b"b" * 30 + b"\n\ndata: small\n\n"
    for chunks in (None, [1] * len(data), [5] * 40):
        items, tail, p = parse(data, chunks, max_event_size=40)
        assert items == [
            Oversized("big", 10 + 5 + 36 * 2, "a" * 30 + "\n" + "b" * 30, "9", None),
            ev("small", last_event_id="9"),
        ]
        assert tail is None


def test_oversized_single_line_in_one_chunk_and_in_many():
    data = b"data: " + b"x" * 3000 + b"\n\ndata: ok\n\n"
    for chunks in (None, [64] * 60, [7] * 500):
        items, _, _ = parse(data, chunks, max_event_size=100)
        assert items == [Oversized("message", 3006, "x" * 1024, "", None), ev("ok")], chunks


def test_an_oversized_comment_is_ignored_and_leaves_its_block_s_event_whole():
    for chunks in (None, [1] * 400, [64] * 10):
        items, _, _ = parse(b"event: t\n: " + b"c" * 200 + b"\ndata: x\n\ndata: y\n\n", chunks, max_event_size=100)
        reason = "comment longer than max_event_size (201 characters)"
        assert items == [Ignored("comment", " " + "c" * 199, reason), ev("x", "t"), ev("y")], chunks


def test_an_oversized_unknown_field_is_ignored():
    assert events(b"foo: " + b"f" * 200 + b"\ndata: x\n\n", max_event_size=100) == [ev("x")]
    assert events(b"f" * 5000 + b"\ndata: x\n\n", max_event_size=100) == [ev("x")]


def test_an_oversized_event_type_or_id_makes_the_event_oversized_and_the_id_lasts():
    data = b"event: " + b"T" * 3000 + b"\ndata: s\n\nid: " + b"I" * 3000 + b"\ndata: s\n\ndata: later\n\n"
    for chunks in (None, [1] * len(data), [100] * 70):
        items, _, p = parse(data, chunks, max_event_size=100)
        assert items == [Oversized("T" * 1024, 3007 + 7, "s", "", None),
                         Oversized("message", 3004 + 7, "s", "I" * 1024, None),
                         ev("later", last_event_id="I" * 1024)], chunks
        assert p.last_event_id == "I" * 1024


def test_an_oversized_block_without_data_dispatches_no_event():
    assert events(b"event: " + b"T" * 300 + b"\n\ndata: x\n\n", max_event_size=100) == [ev("x")]
    assert events(b"id: " + b"I" * 300 + b"\n\n", max_event_size=100) == [NoDispatch("I" * 300, None, True)]
    assert events(b"id: 1\x00" + b"I" * 300 + b"\n\n", max_event_size=100) == [
        Ignored("id", "1\x00" + "I" * 198, NULL_REASON)]


def test_an_oversized_retry_is_read_when_kept_whole_and_ignored_when_not():
    items, _, p = parse(b"retry: " + b"1" * 50 + b"\ndata: x\n\n", max_event_size=20)
    assert items == [ev("x", retry=int("1" * 50))] and p.reconnection_time == int("1" * 50)
    items, _, p = parse(b"retry: " + b"1" * 3000 + b"\ndata: x\n\n", max_event_size=20)
    assert items == [Ignored("retry", "1" * 200, "retry value is too large"), ev("x")] and p.reconnection_time is None
    assert events(b"retry: 1x" + b"1" * 3000 + b"\ndata: x\n\n", max_event_size=20) == [
        Ignored("retry", "1x" + "1" * 198, DIGITS_REASON), ev("x")]


def test_huge_line_in_small_chunks_keeps_buffers_bounded():
    p = SSEParser(max_event_size=64 * 1024)
    chunk = b"x" * 64
    assert p.feed(b"data: ") == []
    for _ in range(2 * 1024 * 1024 // 64):
        assert p.feed(chunk) == []
    for buf in (p._line, p._tail):
        assert buf.kept <= 64 * 1024
        assert len(buf.batch) < 64 and len(buf.done) <= 64 * 1024 // 64
    assert p.feed(b"\n\ndata: next\n\n") == [Oversized("message", 6 + 2 * 1024 * 1024, "x" * 1024, "", None), ev("next")]
    assert p._line.total == 0 and p.close() is None


def test_many_data_lines_exceeding_limit_keep_data_bounded():
    p = SSEParser(max_event_size=1000)
    for _ in range(500):
        p.feed(b"data: 0123456789\n")
    assert p._data == [] and p._oversized
    assert p.feed(b"\n") == [Oversized("message", 500 * 16, "\n".join(["0123456789"] * 100)[:1024], "", None)]


# --- fast path equivalence ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "block",
    [b"data: x\n\n", b"data:x\n\n", b"data:  x\n\n", b"event: e\ndata: x\n\n", b"event:e\ndata:x\n\n",
     b"event:\ndata: x\n\n", b"data\n\n", b"event: e\ndata\n\n", b"data: a\ndata: b\n\n", b"event: e\n\n",
     b"data: x\n\n\n", b"\n\ndata: x\n\n", b"id: 1\ndata: x\n\n", b"data: \x00\n\n", b"id: 1\nevent: e\ndata: x\n\n",
     b"event: e\nid: 2\ndata: x\n\n", b"id:\ndata: x\n\n", b"id: 3\x00\ndata: x\n\n", b"id: \xff\ndata: x\n\n"],
)
def test_whole_block_chunks_match_byte_by_byte(block):
    crlf_block = block.replace(b"\n", b"\r\n")
    p = SSEParser()
    got = p.feed(b"data: start\n\n") + p.feed(block * 3) + p.feed(crlf_block * 2) + p.feed(block)
    data = b"data: start\n\n" + block * 3 + crlf_block * 2 + block
    items, tail, ref = parse(data, chunks=[1] * len(data))
    assert got == items and p.close() == tail and p.line_endings == ref.line_endings


# --- properties --------------------------------------------------------------------------------------------

FRAGMENTS = [b"data", b"data:", b"data: ", b"event:", b"event: ", b"id:", b"id: ", b"retry:", b"retry: ", b":",
             b" ", b"x", b"5", b"\n", b"\n", b"\r", b"\r\n", b"\n\n", b"\xef\xbb\xbf", "é".encode(), "€".encode(),
             "😀".encode(), b"\xff", b"\xe2\x82", b"\x00", b"foo"]
streams = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join) | st.binary(max_size=60)


def snapshot(data: bytes, cuts: list[int], max_event_size: int = DEFAULT_MAX_EVENT_SIZE):
    p = SSEParser(max_event_size)
    items, prev = [], 0
    for cut in sorted(cuts) + [len(data)]:
        items += p.feed(data[prev:cut])
        prev = cut
    tail = p.close()
    return items, tail, dict(p.line_endings), p.bom, p.last_event_id, p.reconnection_time, p.bytes_in


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, cuts=st.lists(st.integers(0, 100), max_size=12), small=st.booleans())
def test_any_chunking_gives_the_same_result(data, cuts, small):
    cuts = [c for c in cuts if c <= len(data)]
    limit = 12 if small else DEFAULT_MAX_EVENT_SIZE  # a small limit exercises the oversized paths too
    assert snapshot(data, cuts, limit) == snapshot(data, [], limit) == snapshot(data, list(range(len(data))), limit)


def reference(data: bytes, max_event_size: int | None = None):
    """The spec, literally: decode everything, walk the characters, interpret each line. With max_event_size,
    what the parser does beyond it (for inputs whose lines are shorter than sse._HEAD_CHARS, so kept whole): an
    event whose block has a longer data, event or id line, or more data, is Oversized; a longer comment is
    Ignored; nothing else changes."""
    text = data.decode("utf-8", "replace")
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    items, endings = [], {"lf": 0, "crlf": 0, "cr": 0}
    st_ = {"data": "", "type": "", "id_buffer": "", "last_id": "", "retry": None, "block_retry": None, "block_id": False,
           "chars": 0, "over": False}
    limit = max_event_size or len(text) + 1

    def dispatch():
        st_["last_id"] = st_["id_buffer"]
        if st_["data"] == "":
            if st_["block_id"] or st_["block_retry"] is not None:
                items.append(NoDispatch(st_["last_id"], st_["block_retry"], st_["block_id"]))
        else:
            d = st_["data"][:-1] if st_["data"].endswith("\n") else st_["data"]
            if st_["over"] or len(st_["data"]) > limit:
                items.append(Oversized(st_["type"] or "message", st_["chars"], d[:1024], st_["last_id"],
                                       st_["block_retry"]))
            else:
                items.append(Event(st_["type"] or "message", d, st_["last_id"], st_["block_retry"]))
        st_.update(data="", type="", block_retry=None, block_id=False, chars=0, over=False)

    def process(line):
        if line == "":
            return dispatch()
        st_["chars"] += len(line)
        if line.startswith(":"):
            if len(line) > limit:
                return items.append(Ignored("comment", line[1:201],
                                            f"comment longer than max_event_size ({len(line) - 1} characters)"))
            return items.append(Comment(line[1:]))
        if ":" in line:
            name, value = line[: line.index(":")], line[line.index(":") + 1 :]
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            st_["type"] = value
            st_["over"] |= len(line) > limit
        elif name == "data":
            st_["data"] += value + "\n"
            st_["over"] |= len(line) > limit
        elif name == "id":
            if "\x00" in value:
                items.append(Ignored("id", value[:200], NULL_REASON))
            else:
                st_["id_buffer"], st_["block_id"] = value, True
                st_["over"] |= len(line) > limit
        elif name == "retry":
            if value and all(c in "0123456789" for c in value):
                st_["retry"] = st_["block_retry"] = int(value)
            else:
                items.append(Ignored("retry", value[:200], DIGITS_REASON))

    line, i, tail_start = "", 0, 0
    while i < len(text):
        c = text[i]
        if c == "\r" and text[i + 1 : i + 2] == "\n":
            endings["crlf"] += 1
            i += 2
        elif c == "\r":
            endings["cr"] += 1
            i += 1
        elif c == "\n":
            endings["lf"] += 1
            i += 1
        else:
            line += c
            i += 1
            continue
        process(line)
        if line == "":
            tail_start = i
        line = ""
    tail = text[tail_start:][:limit] or None
    return items, tail, endings, bom, st_["last_id"], st_["retry"], len(data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, cuts=st.lists(st.integers(0, 100), max_size=12))
def test_matches_reference_implementation(data, cuts):
    cuts = [c for c in cuts if c <= len(data)]
    assert snapshot(data, cuts) == reference(data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams, cuts=st.lists(st.integers(0, 100), max_size=12), limit=st.integers(1, 16))
def test_matches_reference_implementation_beyond_max_event_size(data, cuts, limit):
    cuts = [c for c in cuts if c <= len(data)]
    assert snapshot(data, cuts, limit) == reference(data, limit)


@settings(max_examples=200)
@given(
    blocks=st.lists(
        st.sampled_from([b"data: a\n\n", b"data:b\n\n", b"event: e\ndata: c\n\n", b"data: x\ndata: y\n\n", b"id: 4\n\n",
                         b"id: 5\nevent: e\ndata: i\n\n", b"event: e\nid: 6\ndata: j\n\n", b"id:\ndata: k\n\n",
                         b"id: 7\nid: 8\ndata: l\n\n", b"id: 9\x00\ndata: m\n\n",
                         b"data: \xc3\xa9\n\n", b"event:\ndata:\n\n", b": c\n\n", b"retry: 1\ndata: r\n\n", b"\n"]),
        max_size=12,
    ),
    crlf=st.booleans(),
    group=st.integers(1, 4),
)
def test_block_aligned_chunks_match_reference(blocks, crlf, group):
    # chunks that are whole blocks take the fast path; compare it with the reference
    if crlf:
        blocks = [b.replace(b"\n", b"\r\n") for b in blocks]
    p = SSEParser()
    items = []
    for i in range(0, len(blocks), group):
        items += p.feed(b"".join(blocks[i : i + group]))
    tail = p.close()
    ref = reference(b"".join(blocks))
    assert (items, tail, p.line_endings, p.last_event_id) == (ref[0], ref[1], ref[2], ref[4])


SHAPE_LINES = [b"data: a", b"data:b", b"data:  c", b"data:", b"data", b"event: e", b"event:", b"event:x", b"Xdata: z",
               b"id: 1", b"id:", b"id:2", b"id:  3", b"id: 4\x00", b"id: \xff", b"id: \xc3\xa9",
               b": c", b"retry: 3", b"data: a\rb", b"data: \xc3\xa9", b"data: \xff", b"data: \xed\xa0\x80",
               b"event: \xe2\x82\xac", b"event: \xff", b"data: {\"k\":1}", b"\n", b"\n", b"\n", b"\r\n", b"\r"]


@settings(max_examples=500)
@given(lines=st.lists(st.sampled_from(SHAPE_LINES), min_size=1, max_size=10), batches=st.booleans())
@example(lines=[b"data: a", b"Xdata: z"], batches=False)  # a second line that only just is not "data:"
@example(lines=[b"data: a\rb"], batches=True)  # CR ends a line too
@example(lines=[b"data:b", b"", b"data: a"], batches=True)  # no space: not a batch
def test_whole_chunks_near_the_fast_path_shapes_match_reference(lines, batches):
    # a chunk at a block boundary that ends with a blank line is offered to the fast path whole; it must take
    # exactly the simple shapes and give what the spec gives
    chunk = b"\n".join(lines) + b"\n\n"
    p = SSEParser(message_batches=batches)
    items = p.feed(b"data: start\n\n") + p.feed(chunk)
    ref = reference(b"data: start\n\n" + chunk)
    assert (expand_batches(items), p.close(), p.line_endings, p.last_event_id) == (ref[0], ref[1], ref[2], ref[4])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams | st.lists(st.sampled_from(SHAPE_LINES), max_size=12).map(b"\n".join),
       cuts=st.lists(st.integers(0, 100), max_size=12), at_blank_lines=st.integers(0, 3), batches=st.booleans())
@example(data=b"data: x\n\ndata: a\n\n: c\ndata: b", cuts=[9], at_blank_lines=0, batches=False)
@example(data=b"data: x\n\ndata: a\n\ndata: b", cuts=[9], at_blank_lines=0, batches=True)  # ends with a held piece
@example(data=b"data: a\n\ndata: bb\n\ndata: c\n\ndata: d\n\n", cuts=[12, 27, 33], at_blank_lines=0, batches=False)
# (a piece held after each of the first three chunks: the next one completes it and ends inside another line)
def test_each_chunk_gives_the_same_items_with_the_c_fast_path_as_without(data, cuts, at_blank_lines, batches):
    # the C path holds back the start of a line for the next chunk; nothing may come out later (or sooner)
    # because of that: a recording stamps each item with the time of the chunk it came out of. The C functions
    # are put in and taken out of sse here (the implementation fixture may have taken them out for the test):
    # ParserCore.feed and simple_blocks against SSEParser._feed_py and the Python parser.
    # The C path starts at a block boundary: cut after some blank lines too.
    cuts = cuts + [m.end() for m in re.finditer(b"\n\n", data)][:at_blank_lines]
    with_c, without = (SSEParser(max_event_size=64, message_batches=batches) for _ in range(2))
    prev = 0
    try:
        for cut in sorted(c for c in cuts if c <= len(data)) + [len(data)]:
            chunk, prev = data[prev:cut], cut
            sse._c_simple_blocks = simple_blocks
            got = expand_batches(ParserCore.feed(with_c, chunk))
            sse._c_simple_blocks = None
            assert got == expand_batches(SSEParser._feed_py(without, chunk))
        sse._c_simple_blocks = simple_blocks
        tail = with_c.close()
        sse._c_simple_blocks = None
        assert (tail, with_c.line_endings, with_c.tail_truncated) == (without.close(), without.line_endings,
                                                                      without.tail_truncated)
    finally:
        sse._c_simple_blocks = simple_blocks


def assert_each_item_comes_with_its_chunk(data: bytes, cuts: list[int], batches: bool) -> None:
    """``data`` fed cut at ``cuts``: after each chunk, the items so far are the spec's parser's for the stream so far
    (a fast path's hold changes only which path a line takes, never when an item comes out), and so is the end."""
    p = SSEParser(message_batches=batches)
    got: list = []
    prev = 0
    for cut in sorted({c for c in cuts if c <= len(data)}) + [len(data)]:
        got += expand_batches(p.feed(data[prev:cut]))
        prev = cut
        assert got == reference(data[:cut])[0], cut
    items, tail, endings = reference(data)[:3]
    assert (got, p.close(), p.line_endings) == (items, tail, endings)


CRLF_PIECES = [b"data: tok\r\n\r\n", b'data: {"x":2}\r\n\r\n', b"event: e\r\ndata: q\r\n\r\n", b"data: \xc3\xa9\r\n\r\n",
               b": ping\r\n\r\n", b"id: 9\r\ndata: z\r\n\r\n", b"retry: x\r\n\r\n", b"data: x\r", b"data: y\r\n", b"\n", b"\r"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(CRLF_PIECES), max_size=30), cuts=st.lists(st.integers(0, 400), max_size=12),
       batches=st.booleans())
@example(pieces=[b"data: tok\r\n\r\n"] * 3, cuts=[17, 20, 34], batches=True)  # cut inside CRLFs and a blank line
@example(pieces=[b"data: tok\r\n\r\n", b": ping\r\n\r\n", b"data: tok\r\n\r\n"], cuts=[19, 33], batches=False)
def test_a_crlf_stream_cut_anywhere_gives_each_item_with_the_chunk_that_completes_it(pieces, cuts, batches):
    # CRLF streams cut anywhere take the fast paths, which hold the start of a line (and a data line cut between
    # its CR and LF) back for the next chunk: each item still comes out of the chunk that completes it, as the
    # spec's parser gives it for the stream so far
    assert_each_item_comes_with_its_chunk(b"".join(pieces), cuts, batches)


def test_a_crlf_token_stream_cut_anywhere_stays_on_the_fast_paths():
    # sse-starlette's CRLF endings: a stream cut at any point (a proxy's reads) was read line by line from its first
    # cut on, at a 25th of the speed of LF; now a few lines per hundred chunks are
    events = b"".join(b'data: {"i":%d,"text":" token"}\r\n\r\n' % i for i in range(3000))
    for size in (16384, 1000):
        p = SSEParser(message_batches=True)
        items = [item for k in range(0, len(events), size) for item in p.feed(events[k:k + size])]
        assert len(expand_batches(items)) == 3000 and p.line_endings["crlf"] == 6000
        assert p.slow_lines < 6000 // 10, (size, p.slow_lines)


CR_PIECES = [b"data: tok\r\r", b'data: {"x":2}\r\r', b"event: e\rdata: q\r\r", b"data: \xc3\xa9\r\r", b": ping\r\r",
             b"id: 9\rdata: z\r\r", b"retry: 7\r\r", b"data: a\rdata: b\r\r", b"data: x\r", b"\n", b"\r", b"\xef\xbb\xbf"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(CR_PIECES), max_size=30), cuts=st.lists(st.integers(0, 400), max_size=12),
       batches=st.booleans())
@example(pieces=[b"data: tok\r\r", b"\n", b"data: tok\r\r"], cuts=[11], batches=False)  # CR, then LF: one CRLF
@example(pieces=[b"data: x\r", b"data: tok\r\r", b"data: tok\r\r"], cuts=[8, 20], batches=True)
def test_a_cr_stream_cut_anywhere_gives_each_item_with_the_chunk_that_completes_it(pieces, cuts, batches):
    # CR endings alone (no LF in a chunk) take the LF fast paths on the text with its CRs read as LFs; a chunk
    # that ends with a CR leaves it to the next chunk to say whether an LF completes it
    assert_each_item_comes_with_its_chunk(b"".join(pieces), cuts, batches)


def test_a_cr_token_stream_stays_on_the_fast_paths():
    # one event a chunk, or cut anywhere: a few lines per hundred chunks are read one by one (all of them before)
    events = [b'data: {"i":%d,"text":" token"}\r\r' % i for i in range(3000)]
    whole = b"".join(events)
    for chunks in (events, [whole[k:k + 16384] for k in range(0, len(whole), 16384)],
                   [whole[k:k + 1000] for k in range(0, len(whole), 1000)]):
        p = SSEParser(message_batches=True)
        items = [item for chunk in chunks for item in p.feed(chunk)]
        assert len(expand_batches(items)) == 3000 and p.line_endings == {"lf": 0, "crlf": 0, "cr": 6000}
        assert p.slow_lines < 6000 // 10, (len(chunks), p.slow_lines)


def expand_batches(items: list) -> list:
    out = []
    for item in items:
        if type(item) is MessageBatch:
            assert len(item.datas) == item.count and item.blocks.endswith(b"\n\n")
            out += [Event("message", data.decode(), item.last_event_id, None) for data in item.datas]
        else:
            out.append(item)
    return out


TOKEN_BLOCKS = [b"data: {\"a\":1}\n\n", b"data: tok\n\n", b"data:nospace\n\n", b"data: \n\n", b"data:  two spaces\n\n",
                b"data: \xc3\xa9\n\n",
                b"id: 7\n\n", b"event: e\ndata: c\n\n", b"data: x\ndata: y\n\n", b": c\n\n", b"\n", b"data: \xff\n\n"]


@settings(max_examples=300)
@given(blocks=st.lists(st.sampled_from(TOKEN_BLOCKS), max_size=16), cuts=st.lists(st.integers(0, 200), max_size=6),
       crlf=st.booleans())
def test_message_batches_are_the_same_events(blocks, cuts, crlf):
    # runs of one-"data: "-line blocks come out as MessageBatch when asked for; expanded, they are exactly the
    # events (and state) of the plain parser, for any chunking, aligned with the blocks or not
    data = b"".join(blocks)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    cuts = sorted(c for c in cuts if c <= len(data))

    def run(batches: bool):
        p = SSEParser(message_batches=batches)
        items, prev = [], 0
        for cut in cuts + [len(data)]:
            items += p.feed(data[prev:cut])
            prev = cut
        return expand_batches(items), p.close(), p.line_endings, p.last_event_id, p.bytes_in

    assert run(True) == run(False) == run(False)


def test_a_chunk_of_token_events_is_one_batch():
    p = SSEParser(message_batches=True)
    assert p.feed(b"id: 5\n\n") == [NoDispatch("5", None, True)]
    chunk = b"".join(b'data: {"i":%d}\n\n' % i for i in range(50))
    [batch] = p.feed(chunk)
    assert batch == MessageBatch(chunk, 50, "5")
    assert batch.datas == [b'{"i":%d}' % i for i in range(50)]
    assert SSEParser().feed(chunk)[0] == Event("message", '{"i":0}', "", None)  # not asked for: events


def test_without_the_extension_the_parser_gives_the_same_items():
    # Where no C compiler built _speedups, sse.py's Python classes stand alone (SSEParser then has no ParserCore
    # base and keeps feed's state in its own slots); a fresh interpreter with the extension unimportable must
    # give what this one gives.
    import json
    import subprocess
    import sys
    stream = (b"data: a\n\ndata: bb\n\nevent: e\nid: 1\ndata: c\n\n: note\r\ndata: d\r\n\r\ndata: \xc3"
              b"\xa9\n\nretry: 5\n\ndata: x\ndata: y\n\ndata: tail")
    cuts = [3, 12, 20, 41, 47, 60, 62, 79, 90]
    code = (
        "import json, sys\n"
        "sys.modules['sse_capture_addon._speedups'] = None  # import raises ImportError\n"
        "from sse_capture_addon import recorder, recording, sse\n"
        "assert sse._c_simple_blocks is None and sse.SSEParser.__bases__ == (object,)\n"
        "stream, cuts = sys.stdin.buffer.read(), json.loads(sys.argv[1])\n"
        "for batches in (False, True):\n"
        "    p = sse.SSEParser(message_batches=batches)\n"
        "    items = [repr(p.feed(stream[a:b])) for a, b in zip([0] + cuts, cuts + [len(stream)])]\n"
        "    print(json.dumps([items, p.close(), p.line_endings, p.bytes_in, p.last_event_id]))\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cuts)], input=stream, capture_output=True,
                         check=True, cwd=str(Path(sse.__file__).parent.parent)).stdout.decode().splitlines()
    expected = []
    for batches in (False, True):
        p = SSEParser(message_batches=batches)
        items = [repr(p.feed(stream[a:b])) for a, b in zip([0] + cuts, cuts + [len(stream)])]
        expected.append(json.dumps([items, p.close(), p.line_endings, p.bytes_in, p.last_event_id]))
    assert out == expected
    assert sse.SSEParser.__bases__ == (ParserCore,)
