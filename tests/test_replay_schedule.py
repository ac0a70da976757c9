"""Plans from recordings: re-serialised events, byte-exact chunks, endings, timing, headers."""

import base64
import gzip
import math
import zlib

import brotli
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from replay_helpers import chunk, ev, parse_comments, parse_events, record_body, write_recording
from test_parser import reference

from sse_capture_addon.recording import RecordingError, died_tail, read_recording
from sse_capture_addon.replay.schedule import (
    CLOSE, COMPLETE, HOLD, RESET, Piece, Timing, build_plan, parse_speed, replay_headers, retime,
)
from sse_capture_addon.sse import Event, NoDispatch, SSEParser


def sent(plan) -> bytes:
    return b"".join(w.data for w in plan.writes)


def plan_of(tmp_path, records, timing=Timing(), **kwargs):
    return build_plan(read_recording(write_recording(tmp_path / "r.jsonl", records, **kwargs)), timing)


# --- events ---------------------------------------------------------------------------------------------

line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"))
records = st.lists(st.one_of(
    st.tuples(st.just("event"), st.sampled_from(["message", "delta", "done", " spaced", "a:b"]),
              st.lists(line_text, min_size=1, max_size=3).map("\n".join),
              st.one_of(st.none(), line_text), st.one_of(st.none(), st.integers(0, 10**6))),
    st.tuples(st.just("comment"), line_text),
    st.tuples(st.just("no_dispatch"), st.one_of(st.none(), line_text), st.one_of(st.none(), st.integers(0, 99))),
), max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=records)
def test_a_client_receives_exactly_the_recorded_events_and_comments(tmp_path, items):
    recorded, expected, comments = [], [], []
    last_id = ""
    for t, item in enumerate(items):
        if item[0] == "event":
            _, type_, data, new_id, retry = item
            last_id = last_id if new_id is None else new_id
            recorded.append(ev(t, data, type_, id=last_id or None, retry=retry))
            expected.append(Event(type_, data, last_id, retry))
        elif item[0] == "comment":
            recorded.append({"t": t, "kind": "comment", "text": item[1]})
            comments.append(item[1])
        else:
            _, new_id, retry = item
            if new_id is None and retry is None:
                continue
            record = {"t": t, "kind": "no_dispatch"}
            if new_id is not None:
                record["id"] = last_id = new_id
            if retry is not None:
                record["retry"] = retry
            recorded.append(record)
            expected.append(NoDispatch(last_id, retry, new_id is not None))
    data = sent(plan_of(tmp_path, recorded))
    parser = SSEParser()
    got = [i for i in parser.feed(data) if isinstance(i, (Event, NoDispatch))]
    assert got == expected
    assert parse_comments(data) == comments
    assert parser.close() is None


def test_events_completed_by_one_chunk_go_out_in_one_write(tmp_path):
    plan = plan_of(tmp_path, [ev(0.1, "a"), ev(0.1, "b"), ev(0.2, "c")])
    assert [(w.at, w.events) for w in plan.writes] == [(0.1, 2), (0.2, 1)]
    assert plan.events == 3


def test_an_unterminated_tail_is_sent_last_and_dispatches_nothing(tmp_path):
    plan = plan_of(tmp_path, [ev(0.1, "a")], end_t=0.3, tail="data: half")
    assert parse_events(sent(plan)) == [("message", "a", "")]
    assert plan.writes[-1].data == b"data: half" and plan.writes[-1].at == 0.3
    parser = SSEParser()
    parser.feed(sent(plan))
    assert parser.close() == "data: half"


def test_the_tails_comments_and_ignored_fields_are_sent_once_at_their_times(tmp_path):
    """A client reads a comment or an ignored field of the unterminated tail when its line comes, so the recording
    has a line for each, and the tail's text has them too: each goes out once, as its part of the tail."""
    chunks = [b"data: a\n\n", b": p\n", b"data: half\n", b": q\nid: a\0b\n", b"data: x"]
    plan = build_plan(read_recording(record_body(tmp_path / "r.jsonl", *chunks)))
    assert [(w.at, w.data) for w in plan.writes] == [(1, b"data: a\n\n"), (2, b": p\n"),
                                                      (4, b"data: half\n: q\nid: a\0b\n"), (6, b"data: x")]
    plan = build_plan(read_recording(record_body(tmp_path / "s.jsonl", b"data: a\n\n: c\n")))
    assert sent(plan) == b"data: a\n\n: c\n"


tail_lines = st.lists(st.sampled_from([": c", ":", ": ping", "retry: x", "retry: 7", "id: 7", "id: a\0b", "id",
                                       "event: e", "data: d", "data", "other: o", "\ufeff: c", "\ufeffdata: d"]),
                      min_size=1, max_size=5)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(st.sampled_from([b"data: a\n\n", b": c\n\n", b"id: 1\ndata: b\n\n", b"retry: x\ndata: r\n\n",
                                        b"retry: 5\n\n", b": c\nid: a\0b\ndata: i\n\n", b"other: o\n\n"]), max_size=3),
       lines=tail_lines, endings=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=5, max_size=5),
       terminated=st.booleans(), cuts=st.lists(st.integers(0, 80), max_size=4), bom=st.booleans(),
       died=st.booleans())
# a U+FEFF starting the tail after a block that is not recorded: replayed first, it was read as a byte order mark
@example(blocks=[b"other: o\n\n"], lines=["\ufeffdata: d"], endings=["\n"] * 5, terminated=False, cuts=[],
         bom=False, died=False)
def test_a_replayed_tail_reads_as_the_recorded_one(tmp_path, blocks, lines, endings, terminated, cuts, bom, died):
    """What a spec-compliant client makes of the replay (the spec's reference parser) is what it made of the
    recorded stream: the same events, comments, ignored fields and unterminated tail, whatever the tail holds;
    also when the proxy died (no end line says what the tail was: the raw chunks do)."""
    tail = "".join(line + ending for line, ending in zip(lines, endings))
    if not terminated:
        tail = tail[:-len(endings[len(lines) - 1])]
    body = b"\xef\xbb\xbf" * bom + b"".join(blocks) + tail.encode()
    cuts = sorted({c for c in cuts if 0 < c < len(body)})
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    (tmp_path / "r.jsonl").unlink(missing_ok=True)  # (of the example before)
    plan = build_plan(read_recording(record_body(tmp_path / "r.jsonl", *chunks, died=died)), Timing(speed=math.inf))
    original, replayed = reference(body), reference(sent(plan))
    assert replayed[:2] == original[:2] and replayed[3:6] == original[3:6]  # items, tail; BOM, last ID, retry


def test_a_tail_the_recording_kept_only_in_part_leaves_its_lines_to_the_records(tmp_path):
    """Truncated (or left out) when recorded, the tail's text no longer has every line the records have: they
    are all sent, as blocks, then what text there is."""
    records = [ev(0.1, "a"), {"t": 0.2, "kind": "comment", "text": " c"}, {"t": 0.3, "kind": "comment", "text": " d"}]
    plan = plan_of(tmp_path, records, tail=": c\nxxxx", tail_truncated=True)
    assert sent(plan) == b"data: a\n\n: c\n\n: d\n\n: c\nxxxx"
    plan = plan_of(tmp_path, records, tail=None, tail_dropped=True, tail_size=12)
    assert sent(plan) == b"data: a\n\n: c\n\n: d\n\n"


def test_line_endings_and_bom_follow_the_recording(tmp_path):
    plan = plan_of(tmp_path, [ev(0.1, "a\nb")], bom=True, line_endings={"lf": 0, "crlf": 4, "cr": 0})
    assert sent(plan) == b"\xef\xbb\xbfdata: a\r\ndata: b\r\n\r\n"


def test_mixed_line_endings_come_back_as_the_most_common_one(tmp_path):
    # a first event with CRLF, the rest LF, a last one CR only: one ending for the stream (see docs/replay.md)
    plan = plan_of(tmp_path, [ev(0.1, "a"), ev(0.2, "b"), ev(0.3, "c")], line_endings={"lf": 4, "crlf": 2, "cr": 2})
    assert sent(plan) == b"data: a\n\ndata: b\n\ndata: c\n\n"
    plan = plan_of(tmp_path, [ev(0.1, "a"), ev(0.2, "b")], line_endings={"lf": 1, "crlf": 2, "cr": 1})
    assert sent(plan) == b"data: a\r\n\r\ndata: b\r\n\r\n"


def test_an_oversized_event_is_replayed_with_its_prefix_and_a_warning(tmp_path):
    records = [{"t": 0.1, "kind": "oversized", "event": "big", "size": 10_000_000, "data_prefix": "xyz"}]
    plan = plan_of(tmp_path, records)
    assert parse_events(sent(plan)) == [("big", "xyz", "")]
    assert "oversized" in plan.warnings[0]


# --- endings --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reason, ending", [
    ("complete", COMPLETE), ("client_disconnected", HOLD), ("server_error", RESET), ("proxy_shutdown", CLOSE),
])
def test_the_recorded_ending_is_replayed(tmp_path, reason, ending):
    plan = plan_of(tmp_path, [ev(0.1, "a")], end=reason, end_t=0.5)
    assert (plan.ending, plan.end_at) == (ending, 0.5)


def test_a_recording_without_end_line_ends_as_the_dead_proxy_left_it(tmp_path):
    plan = plan_of(tmp_path, [ev(0.1, "a"), ev(0.4, "b")], end=None)
    assert (plan.ending, plan.end_at) == (CLOSE, 0.4)


def test_a_failed_recording_ends_as_the_stream_did_with_a_warning(tmp_path):
    plan = plan_of(tmp_path, [ev(0.1, "a")], end="recording_failed", stream_ended="server_error")
    assert plan.ending == RESET
    assert "incomplete" in plan.warnings[0]


# --- timing ---------------------------------------------------------------------------------------------

def test_times_are_offsets_from_the_start_scaled_by_speed(tmp_path):
    times = [0.013 * i for i in range(1, 500)]
    plan = plan_of(tmp_path, [ev(t, str(i)) for i, t in enumerate(times)], Timing(speed=0.5), end_t=7.0, ttfb=0.2)
    # each write's time is computed from its own recorded time, not from a sum of gaps
    assert [w.at for w in plan.writes] == [t / 0.5 for t in times]
    assert (plan.end_at, plan.head_delay) == (14.0, 0.4)


def test_max_speed_sends_everything_at_once(tmp_path):
    plan = plan_of(tmp_path, [ev(0.1, "a"), ev(5.0, "b")], Timing(speed=math.inf), ttfb=1.0)
    assert [w.at for w in plan.writes] == [0.0] and plan.end_at == 0.0 and plan.head_delay == 0.0


class CountedBytes(bytes):
    """Bytes that count how often they are concatenated with ``+``."""
    additions = 0

    def __add__(self, other):
        CountedBytes.additions += 1
        return CountedBytes(bytes(self) + other)


def test_pieces_due_together_are_joined_once_not_appended_one_by_one():
    """At speed max every piece is due at 0; appending each to the write copied the write so far every time,
    quadratic in the number of events (200,000 events: 6 minutes). The write is the same, joined once."""
    pieces = [Piece(0.001 * i, CountedBytes(b"data: %d\n\n" % i), 1) for i in range(1000)]
    CountedBytes.additions = 0
    writes, _, _ = retime(pieces, 1.0, 0.0, Timing(speed=math.inf))
    assert [(w.at, w.data, w.events) for w in writes] == [(0.0, b"".join(p.data for p in pieces), 1000)]
    assert CountedBytes.additions == 0
    # the boundaries stay those of the recorded times when they differ
    writes, _, _ = retime(pieces[:3] + [Piece(0.002, b"x", 0)], 1.0, 0.0, Timing())
    assert [(w.at, w.data, w.events) for w in writes] == [(0.0, b"data: 0\n\n", 1), (0.001, b"data: 1\n\n", 1),
                                                          (0.002, b"data: 2\n\nx", 1)]


def test_long_pauses_are_capped_before_scaling(tmp_path):
    plan = plan_of(tmp_path, [ev(0.1, "a"), ev(10.1, "b"), ev(10.2, "c")], Timing(speed=2, max_pause=1.0),
                   end_t=30.0, ttfb=3.0)
    assert [w.at for w in plan.writes] == pytest.approx([0.05, 0.55, 0.6])
    assert plan.end_at == pytest.approx(1.1) and plan.head_delay == 0.5


@pytest.mark.parametrize("text, speed", [("1", 1.0), ("0.1", 0.1), ("2x", 2.0), (" MAX ", math.inf)])
def test_parse_speed(text, speed):
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "inf", ""])
def test_parse_speed_refuses(text):
    with pytest.raises(ValueError, match="speed must be a number > 0 or 'max'"):
        parse_speed(text)


# --- byte-exact and headers ------------------------------------------------------------------------------

def test_byte_exact_replays_the_recorded_chunks_and_their_times(tmp_path):
    raw = [b"data: a\n\nda", b"ta: b\n", b"\n"]
    records = [chunk(0.1, 1, raw[0]), ev(0.1, "a"), chunk(0.25, 2, raw[1]), chunk(0.3, 3, raw[2]), ev(0.3, "b")]
    rec = read_recording(write_recording(tmp_path / "r.jsonl", records, raw_chunks=True))
    plan = build_plan(rec, Timing(speed=2), byte_exact=True)
    assert [(w.at, w.data, w.events) for w in plan.writes] == [(0.05, raw[0], 1), (0.125, raw[1], 0), (0.15, raw[2], 1)]


def test_byte_exact_refuses_a_recording_without_chunks(tmp_path):
    path = write_recording(tmp_path / "r.jsonl", [ev(0.1, "a")])
    with pytest.raises(RecordingError, match=rf"^{path}:1: byte-exact replay needs raw chunks"):
        build_plan(read_recording(path), byte_exact=True)


def test_replayed_headers_describe_the_bytes_sent():
    recorded = [["Content-Type", "text/event-stream"], ["Content-Encoding", "gzip"], ["Content-Length", "99"],
                ["Transfer-Encoding", "chunked"], ["Connection", "keep-alive"], ["Keep-Alive", "timeout=5"],
                ["Set-Cookie", "[REDACTED]"], ["X-Request-Id", "abc"]]
    assert replay_headers(recorded, keep_encoding=False) == [("Content-Type", "text/event-stream"),
                                                              ("X-Request-Id", "abc")]
    assert replay_headers(recorded, keep_encoding=True) == [("Content-Type", "text/event-stream"),
                                                             ("Content-Encoding", "gzip"), ("X-Request-Id", "abc")]


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_compressed_stream_whose_proxy_died_replays_its_tail(tmp_path, encoding):
    # the tail is read again from the raw chunks, which hold the bytes as they came: compressed
    pieces = [b"data: a\n\n", b"event: e\ndata: b\n\n", b"event: half\ndata: the client saw"]
    if encoding == "gzip":
        z = zlib.compressobj(wbits=31)
        chunks = [z.compress(p) + z.flush(zlib.Z_SYNC_FLUSH) for p in pieces]
    else:
        b = brotli.Compressor()
        chunks = [b.process(p) + b.flush() for p in pieces]
    plan = build_plan(read_recording(record_body(tmp_path / "r.jsonl", *chunks, died=True,
                                                 content_encoding=encoding)))
    assert plan.ending == CLOSE
    assert sent(plan) == b"".join(pieces)
    assert plan.writes[-1].at == 3


def test_a_hand_made_bomb_in_a_died_recordings_chunks_is_not_decoded_for_its_tail(tmp_path):
    # the proxy stops decoding such a stream (with an error line); a recording made by hand may still hold one
    inner = zlib.compressobj(wbits=31)
    layer = inner.compress(b"data: ") + b"".join(inner.compress(bytes(1 << 20)) for _ in range(64)) + inner.flush()
    bomb = zlib.compress(layer, wbits=31)  # "gzip, gzip": 64 MiB from a few hundred bytes
    chunk_line = {"t": 0.5, "kind": "chunk", "n": 1, "b64": base64.b64encode(bomb).decode()}
    path = write_recording(tmp_path / "r.jsonl", [chunk_line], end=None, raw_chunks=True,
                           headers=[["content-type", "text/event-stream"], ["content-encoding", "gzip, gzip"]])
    rec = read_recording(path)
    assert rec.ending == "proxy_died" and len(bomb) < 2000
    assert sent(build_plan(rec)) == b""


def test_a_hand_made_flood_of_comments_in_a_died_recordings_chunks_is_not_parsed_for_its_tail(tmp_path):
    # 18 KB of gzip that decode to 6 million comments and then the start of an event: the proxy would have stopped
    # parsing them long before (each counts as ITEM_COST bytes), and reading the tail again stops there too
    flood = gzip.compress(b":\n\n" * (6 << 20) + b"data: cut sh")
    chunk_line = {"t": 0.5, "kind": "chunk", "n": 1, "b64": base64.b64encode(flood).decode()}
    path = write_recording(tmp_path / "r.jsonl", [chunk_line], end=None, raw_chunks=True,
                           headers=[["content-type", "text/event-stream"], ["content-encoding", "gzip"]])
    rec = read_recording(path)
    assert rec.ending == "proxy_died" and len(flood) < 20_000
    assert died_tail(rec) is None
    # the same with 5,000 comments: the tail is found
    small = gzip.compress(b":\n\n" * 5000 + b"data: cut sh")
    path = write_recording(tmp_path / "s.jsonl", [{**chunk_line, "b64": base64.b64encode(small).decode()}], end=None,
                           raw_chunks=True,
                           headers=[["content-type", "text/event-stream"], ["content-encoding", "gzip"]])
    assert died_tail(read_recording(path)).tail == "data: cut sh"
