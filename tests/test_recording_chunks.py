"""Raw chunk lines: a chunk that is exactly the blocks of the events it completed is written as a count of the
event lines after it ("blocks"), anything else in base64; either way the reader gives back every chunk's bytes
exactly, which byte-exact replay relies on."""

from __future__ import annotations

import base64
import gzip
import itertools

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sse_capture_addon.inspect.reader import RecordingStream
from sse_capture_addon.recorder import StreamRecorder
from sse_capture_addon.inspect.reader import RecordingStream
from sse_capture_addon.recording import FORMAT_VERSION, RecordingError, chunk_line, iter_lines, read_recording
from sse_capture_addon.replay.schedule import build_plan
from sse_capture_addon.writer import RecordingFile

HEADER = {"kind": "header", "format": "sse-capture", "version": FORMAT_VERSION, "stream_id": "s", "started": "2026-11-25T00:00:00Z",
          "request": {"method": "GET", "url": "http://127.0.0.1/", "headers": []},
          "response": {"status": 200, "headers": []}, "raw_chunks": True}

OPENAI = [b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n', b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n',
          b"data: [DONE]\n\n"]
ANTHROPIC = [b'event: message_start\ndata: {"type":"message_start"}\n\n',
             b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"h\\u00e9 \xc3\xa9"}}\n\n',
             b'event: message_stop\ndata: {"type":"message_stop"}\n\n']


def record(tmp_path, chunks: list[bytes], name: str = "r.jsonl", **kwargs):
    ticks = itertools.count()  # a chunk every millisecond
    rec = StreamRecorder(RecordingFile(str(tmp_path), name), HEADER, max_event_size=1 << 20,
                         clock=lambda: next(ticks) / 1000, **kwargs)
    for chunk in chunks:
        assert rec.feed(chunk) == chunk
    rec.finish("complete")
    return read_recording(rec.file.path)


def chunk_lines(recording) -> list[dict]:
    return [r for r in recording.records if r["kind"] == "chunk"]


def test_a_token_stream_s_chunks_take_the_one_call_path_and_write_what_the_general_path_writes(tmp_path, monkeypatch):
    from sse_capture_addon import recorder
    calls = []
    one_call = recorder._token_chunk
    monkeypatch.setattr(recorder, "_token_chunk", lambda *args: calls.append(args[1]) or one_call(*args))
    chunks = [b'data: {"i":%d}\n\n' % i * (1 + i % 3) for i in range(20)] + [b"data: [DONE]\n\n", b'data: {"a":1}\n\n']
    fast = record(tmp_path, chunks, "fast.jsonl")
    assert calls == [c.count(b"\n\n") for c in chunks]  # each chunk; [DONE] is not JSON: refused, written the other way
    monkeypatch.setattr(recorder, "_token_chunk", None)
    general = record(tmp_path, chunks, "general.jsonl")
    assert fast.records[1:-1] == general.records[1:-1]  # the lines between the header and the end line
    assert [raw for _, raw in fast.chunks] == chunks


def test_typed_events_chunks_take_the_one_call_path_and_write_what_the_general_path_writes(tmp_path, monkeypatch):
    # Anthropic's shape ("event:" and one "data:" line a block), one or several a chunk; what the one C call refuses
    # goes the general way: a "message" type (no event line in the default form), a type that is not its own JSON
    # string, data that is not exact JSON, CRLF, a comment, and everything after an id (every event line has it)
    from sse_capture_addon import recorder
    calls = []
    one_call = recorder._typed_chunk
    monkeypatch.setattr(recorder, "_typed_chunk", lambda *args: calls.append(one_call(*args) is not None) or
                        one_call(*args))
    taken = [ANTHROPIC[0], ANTHROPIC[2], ANTHROPIC[0] + ANTHROPIC[2], b'event: a.b-c_1\ndata: [1,{"x":null}]\n\n' * 3,
             b'event:  spaced \ndata: {"n":-1.5,"s":"\xc3\xa9"}\n\n']
    refused = [ANTHROPIC[1], b"".join(ANTHROPIC),  # (an escape orjson would not write: not exact JSON)
               b"event: message\ndata: {}\n\n", b'event: say "hi"\ndata: {}\n\n', b"event: t\\x\ndata: {}\n\n",
               b"event: \xc3\xa9\ndata: {}\n\n", b"event: t\ndata: not json\n\n", b'event: t\ndata: {"a": 1}\n\n',
               b"event: t\r\ndata: {}\r\n\r\n", b"event: t\ndata: {}\n\n: ping\n\n", b"event: t\ndata: {}\n\nevent: u\n",
               b"event: t\ndata:{}\n\n", b"event: t\ndata: {}\ndata: {}\n\n"]
    after_id = [b"id: 7\nevent: t\ndata: {}\n\n", b"event: t\ndata: {}\n\n"]
    chunks = taken + refused + after_id
    fast = record(tmp_path, chunks, "fast.jsonl")
    assert calls[:len(taken)] == [True] * len(taken) and not any(calls[len(taken):]), calls
    monkeypatch.setattr(recorder, "_typed_chunk", None)
    general = record(tmp_path, chunks, "general.jsonl")
    assert fast.records[1:-1] == general.records[1:-1]  # the lines between the header and the end line
    assert open(fast.path, "rb").read().split(b"\n")[1:-2] == open(general.path, "rb").read().split(b"\n")[1:-2]
    assert [raw for _, raw in fast.chunks] == chunks
    assert [e["event"] for e in fast.events][:5] == ["message_start", "message_stop", "message_start", "message_stop",
                                                     "a.b-c_1"]


def test_crlf_token_chunks_take_the_one_call_path_once_the_stream_shows_crlf(tmp_path, monkeypatch):
    # Gemini's and sse-starlette's data-only blocks with CRLF endings: the first chunk finds the form the general
    # way, the rest go in one call with "crlf":true in the chunk line, writing what the general path writes
    from sse_capture_addon import recorder
    calls = []
    one_call = recorder._token_chunk
    monkeypatch.setattr(recorder, "_token_chunk",
                        lambda *args: calls.append((args[4:], one_call(*args) is not None)) or one_call(*args))
    chunks = [b'data: {"i":%d}\r\n\r\n' % i * (1 + i % 3) for i in range(12)] + [b"data: [DONE]\r\n\r\n",
                                                                                 b'data: {"a":1}\n\n', b'data: {"b":2}\r\n\n']
    fast = record(tmp_path, chunks, "fast.jsonl")
    # all but the first CRLF one, [DONE] refused (not JSON), the LF one the LF way, the mixed one not at all
    assert calls == [((True,), True)] * 11 + [((True,), False), ((), True)], calls
    monkeypatch.setattr(recorder, "_token_chunk", None)
    general = record(tmp_path, chunks, "general.jsonl")
    assert fast.records[1:-1] == general.records[1:-1]
    assert open(fast.path, "rb").read().split(b"\n")[1:-2] == open(general.path, "rb").read().split(b"\n")[1:-2]
    assert [raw for _, raw in fast.chunks] == chunks and chunk_lines(fast)[1]["crlf"] is True


def test_a_clock_that_gives_whole_seconds_records_token_chunks_too(tmp_path):
    ticks = itertools.count()
    rec = StreamRecorder(RecordingFile(str(tmp_path), "r.jsonl"), HEADER, max_event_size=1 << 20, clock=lambda: next(ticks))
    for chunk in OPENAI[:2]:
        rec.feed(chunk)
    rec.finish("complete")
    recording = read_recording(rec.file.path)
    assert [e["t"] for e in recording.events] == [1, 2] and recording.end["errors"] == []


@pytest.mark.parametrize("chunks", [OPENAI, ANTHROPIC, [b"".join(OPENAI)], [b"".join(ANTHROPIC)],
                                    [OPENAI[0] + ANTHROPIC[1], ANTHROPIC[0] + OPENAI[1] + OPENAI[2]]],
                         ids=["openai", "anthropic", "openai-one-chunk", "anthropic-one-chunk", "mixed"])
def test_token_stream_chunks_are_kept_by_their_event_lines(implementation, tmp_path, chunks):
    rec = record(tmp_path, chunks)
    lines = chunk_lines(rec)
    assert all("b64" not in c for c in lines), lines
    assert [c["blocks"] for c in lines] == [c.count(b"\n\n") for c in chunks]
    assert [raw for _, raw in rec.chunks] == chunks
    assert len(rec.events) == sum(c.count(b"\n\n") for c in chunks)
    # a chunk line is a few dozen bytes however long the chunk
    assert all(len(orjson.dumps(c)) < 60 for c in lines)


@pytest.mark.parametrize("chunk, form, crlf", [
    (b"data: a\ndata: b\n\n", None, False),                 # two data lines
    (b"data:  two spaces\n\n" + b"data: \n\n", None, False),  # the second space is data
    (b"event: message\ndata: x\n\n", "Ed", False),           # an explicit "message" (MCP's SDKs)
    (b"data: a\r\n\r\n", None, True),                         # CRLF (sse-starlette)
    (b"id: 7\ndata: a\n\n", "eid", False),
    (b"retry: 10\ndata: a\n\n", "erd", False),
    (b"data: a\n\n: ping\n\n", "edc", False),
    (b": ping\n\n", "edc", False),                          # a comment alone: the stream's form with comments
    (b"id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\"}\r\ndata: x\r\nretry: 5\r\n\r\n"
     b": ping - 2026-11-26 03:50:00.123456+00:00\r\n\r\n", "iEdrc", True),  # all of sse-starlette's fields
    (b"data: x\n\nevent: e\ndata: y\nid: 2\n\n", "edi", False),  # the block with the most fields tells
], ids=repr)
def test_chunks_of_other_forms_are_kept_by_their_lines(implementation, tmp_path, chunk, form, crlf):
    rec = record(tmp_path, [chunk])
    [line] = chunk_lines(rec)
    assert rec.chunks == [(line["t"], chunk)]
    assert (line.get("form"), line.get("crlf", False), "b64" in line) == (form, crlf, False)
    assert line["blocks"] == len([r for r in rec.records if r["kind"] in ("event", "comment")])


def test_a_stream_keeps_its_form_and_its_keep_alive_comments(implementation, tmp_path):
    """sse-starlette's way: CRLF, id, event, data; a ping comment alone in its own chunk."""
    chunks = [b"id: %d\r\nevent: delta\r\ndata: {\"i\":%d}\r\n\r\n" % (i, i) for i in range(5)]
    chunks.insert(2, b": ping - 2026-11-26 03:50:00\r\n\r\n")
    chunks.append(b"id: 9\r\nevent: message\r\ndata: done\r\n\r\n")  # an explicit "message"
    rec = record(tmp_path, chunks)
    assert [raw for _, raw in rec.chunks] == chunks
    assert [(c.get("form"), c.get("crlf")) for c in chunk_lines(rec)] == \
        [("ied", True)] * 2 + [("iedc", True)] + [("ied", True)] * 3 + [("iEd", True)]
    assert all("b64" not in c for c in chunk_lines(rec))


def test_crlf_data_only_chunks_of_several_events(implementation, tmp_path):
    """Gemini's way (CRLF, data only, several events a chunk), after a block that set an id (which the data-only
    blocks do not repeat): every chunk kept by its lines."""
    chunks = [b"id: 7\r\ndata: a\r\n\r\n", b"data: b\r\n\r\ndata: {\"c\":1}\r\n\r\n",
              b"data: d\r\n\r\ndata: e\r\n\r\ndata: f\r\n\r\n"]
    rec = record(tmp_path, chunks)
    assert [raw for _, raw in rec.chunks] == chunks
    assert [(c["blocks"], c.get("form"), c.get("crlf")) for c in chunk_lines(rec)] == \
        [(1, "eid", True), (2, None, True), (3, None, True)]
    assert [r.get("id") for r in rec.events] == ["7"] * 6


def test_keep_alive_comments_leave_a_token_stream_in_the_default_form(implementation, tmp_path):
    chunks = [b": connected\n\n", *OPENAI, b": ping\n\n", *OPENAI]
    rec = record(tmp_path, chunks)
    assert [raw for _, raw in rec.chunks] == chunks
    assert [c.get("form") for c in chunk_lines(rec)] == ["edc", None, None, None, "edc", None, None, None]


@pytest.mark.parametrize("chunk", [
    b"data:no space\n\n",                         # written back as "data: no space"
    b"event:x\ndata: y\n\n",
    b"retry: 10\n\n",                             # no event
    b"data: a\r\r",                               # CR alone
    b"data: a\r\n\n",                             # mixed line endings
    b"\xef\xbb\xbfdata: a\n\n",                   # the BOM is stripped
    b"data: \xff\n\n",                            # not UTF-8: U+FFFD in the event
], ids=repr)
def test_other_chunks_are_kept_in_base64(implementation, tmp_path, chunk):
    rec = record(tmp_path, [chunk])
    [line] = chunk_lines(rec)
    assert "blocks" not in line and "b64" in line
    assert rec.chunks == [(line["t"], chunk)]


def test_chunks_cut_mid_block_keep_only_the_cut_bytes(implementation, tmp_path):
    """A chunk that ends with the start of a block keeps that start ("rest_b64"); the next chunk line skips it in
    the first block of its events."""
    stream = b"".join(OPENAI)
    cut = len(OPENAI[0]) + 10
    rec = record(tmp_path, [stream[:cut], stream[cut:]])
    first, second = chunk_lines(rec)
    assert (first["blocks"], "skip" in first, base64.b64decode(first["rest_b64"])) == (1, False, OPENAI[1][:10])
    assert (second["blocks"], second["skip"], "rest_b64" not in second) == (2, 10, True)
    assert [raw for _, raw in rec.chunks] == [stream[:cut], stream[cut:]]


def test_a_chunk_inside_one_event_leaves_the_next_chunk_a_blocks_line(implementation, tmp_path):
    """Reads cut inside an event (a proxy's or the kernel's: mitmproxy hands on pieces of a few bytes): the piece
    that completes nothing is kept in base64, and the chunk that ends the event skips all of its start."""
    stream = b"".join(OPENAI)
    chunks = [stream[:20], stream[20:24], stream[24:30], stream[30:]]
    rec = record(tmp_path, chunks)
    lines = chunk_lines(rec)
    assert ["b64" in c for c in lines] == [True, True, True, False]
    assert (lines[3]["blocks"], lines[3]["skip"]) == (3, 30)
    assert [raw for _, raw in rec.chunks] == chunks
    # an event longer than what is kept of a block's start (64 KiB) ends in a base64 line; the rest are kept as blocks
    big = b'data: {"x":"%b"}\n\n' % (b"y" * 100_000)
    chunks = [OPENAI[0], big[:40_000], big[40_000:80_000], big[80_000:] + OPENAI[1], OPENAI[2]]
    rec = record(tmp_path, chunks, name="big.jsonl")
    assert ["blocks" in c for c in chunk_lines(rec)] == [True, False, False, False, True]
    assert [raw for _, raw in rec.chunks] == chunks
    assert [e["data"] for e in rec.events][1] == {"x": "y" * 100_000}


@pytest.mark.parametrize("size", [7, 50, 64, 100, 1000])
def test_a_token_stream_in_fixed_size_chunks_is_kept_by_its_events(implementation, tmp_path, size):
    stream = b"".join(OPENAI * 20 + ANTHROPIC * 20)
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    rec = record(tmp_path, chunks)
    assert [raw for _, raw in rec.chunks] == chunks
    lines = chunk_lines(rec)
    # only a chunk that ends no block is kept in base64; what ends one skips every byte of it that came before
    ends_a_block = [stream[:i + size].count(b"\n\n") > stream[:i].count(b"\n\n") for i in range(0, len(stream), size)]
    assert ["blocks" in c for c in lines] == ends_a_block
    if size >= 100:  # every chunk ends a block: only the cut bytes are written again
        assert all("blocks" in c for c in lines)
        in_base64 = sum(len(chunk_line(b"0.001000", 1, raw)) for raw in chunks)
        assert sum(len(orjson.dumps(c)) + 1 for c in lines) < in_base64 * (0.7 if size == 100 else 0.4)


def test_a_bug_in_keeping_chunks_by_their_lines_falls_back_to_base64_once_reported(tmp_path, monkeypatch):
    import sse_capture_addon.recorder as recorder

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(recorder, "_blocks_of", broken)
    reported = []
    crlf = [b"id: 1\r\ndata: x\r\n\r\n", b"id: 2\r\ndata: y\r\n\r\n"]
    rec = record(tmp_path, OPENAI + crlf, on_error=reported.append)
    assert [raw for _, raw in rec.chunks] == OPENAI + crlf
    # the chunks that went through the broken code are kept in base64 (a token stream's batches do not), said once
    kinds = ["blocks" if "blocks" in c else "b64" for c in chunk_lines(rec)]
    assert kinds[-2:] == ["b64", "b64"] and "blocks" in kinds, kinds
    assert reported == ["keeping chunks by their lines failed (RuntimeError: boom); chunks are kept in base64 "
                        "instead"] == rec.end["errors"]
    assert len(rec.events) == 5 and rec.ending == "complete"


def test_compressed_chunks_are_kept_in_base64(tmp_path):
    body = gzip.compress(b"".join(OPENAI))
    rec = record(tmp_path, [body], content_encoding="gzip")
    assert "b64" in chunk_lines(rec)[0] and rec.chunks[0][1] == body and len(rec.events) == 3


BLOCKS = [b"data: x\n\n", b"data: {\"a\":[1,2.5]}\n\n", b"event: e\ndata: \xc3\xa9\n\n", b"data:\n\n", b"data: \n\n",
          b"event: message\ndata: m\n\n", b"data:y\n\n", b"id: 3\ndata: i\n\n", b"retry: 9\n\n", b": c\n\n",
          b"data: a\ndata: b\n\n", b"data: cr\r\n\r\n", b"data: r\r\r", b"event: \xff\ndata: 1\n\n", b"\n",
          b"data: \"q\\u0041\"\n\n", b"event: a b\ndata: z\n\n", b"data: " + b"w" * 300 + b"\n\n",
          b"id: 4\r\nevent: message\r\ndata: s\r\ndata: t\r\nretry: 7\r\n\r\n", b": ping\r\n\r\n",
          b"event: d\r\ndata: {\"x\":1}\r\n\r\n", b"data: u\nid: 5\n\n", b"id:\ndata: v\n\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=25), data=st.data())
@example(blocks=[b"data: x\n\n"] * 3, data=None)
def test_every_chunk_reads_back_exactly(implementation, tmp_path_factory, blocks, data):
    stream = b"".join(blocks)
    if data is None:
        chunks = [stream]
    else:
        cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=8))) if len(stream) > 1 else []
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    tmp = tmp_path_factory.mktemp("chunks")
    rec = record(tmp, chunks)
    assert [raw for _, raw in rec.chunks] == chunks
    plain = record(tmp, chunks, "events-only.jsonl", raw_chunks=False)
    assert [r for r in rec.records if r["kind"] != "chunk"] == plain.records  # the same event lines either way
    # what byte-exact replay sends
    assert [w.data for w in build_plan(rec, byte_exact=True).writes if w.data] == [c for c in chunks]
    # the streaming reader (inspect --follow) accepts what the writer wrote
    assert list(RecordingStream(rec.path)) == rec.records == list(RecordingStream(rec.path, follow=True, poll=0.01))


FIELDS = {"e": b"event: %(type)s", "i": b"id: %(id)d", "d": b"data: %(data)s", "r": b"retry: %(retry)d"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations("eidr"), crlf=st.booleans(), explicit=st.booleans(), data=st.data())
def test_a_stream_of_any_field_order_is_kept_by_its_lines(implementation, tmp_path_factory, order, crlf, explicit,
                                                          data):
    """A server's way of writing its blocks (field order, line endings, which fields, an explicit "message",
    multi-line data, keep-alive comments), one block or a few per chunk: every chunk is kept as blocks, not in
    base64, and reads back exactly."""
    eol = b"\r\n" if crlf else b"\n"
    fields = data.draw(st.sets(st.sampled_from("eir")))
    blocks = []
    for i in range(data.draw(st.integers(1, 12))):
        if data.draw(st.integers(0, 5)) == 0:
            blocks.append(b": ping %d" % i + eol + eol)
            continue
        type_ = data.draw(st.sampled_from([b"message", b"delta", b"tool_use"]))
        values = {b"type": type_, b"id": i, b"retry": 1000 + i,
                  b"data": eol.join([b"line %d" % n for n in range(data.draw(st.integers(1, 3)))]).replace(
                      eol, eol + b"data: ")}
        lines = [FIELDS[f] % values for f in order if f == "d" or f in fields and (
            f != "e" or explicit or type_ != b"message")]
        blocks.append(eol.join(lines) + eol + eol)
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=len(blocks), max_size=len(blocks)))
    chunks, at = [], 0
    for size in sizes:
        if at < len(blocks):
            chunks.append(b"".join(blocks[at:at + size]))
            at += size
    rec = record(tmp_path_factory.mktemp("forms"), chunks)
    assert [raw for _, raw in rec.chunks] == chunks
    assert all("blocks" in c for c in chunk_lines(rec)), (chunks, chunk_lines(rec))
    assert list(RecordingStream(rec.path)) == rec.records == list(RecordingStream(rec.path, follow=True, poll=0.01))


def test_streaming_reader_refuses_a_blocks_chunk_without_its_events(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(o) for o in [
        HEADER, {"t": 0.1, "kind": "chunk", "n": 1, "blocks": 2}, {"t": 0.1, "kind": "event", "event": "message",
                                                                  "data": "a"},
        {"t": 0.2, "kind": "end", "reason": "complete", "events": 1, "bytes": 9}]) + b"\n")
    with pytest.raises(RecordingError, match=r":4: the chunk on line 2 is the next 2 line\(s\)"):
        list(RecordingStream(str(path)))
    with pytest.raises(RecordingError, match=r":4: the chunk on line 2"):
        read_recording(path)


@pytest.mark.parametrize("torn", [b"", b'{"t":0.00'])
def test_a_write_cut_short_inside_a_chunk_s_lines_is_left_out_whole(tmp_path, torn):
    """A chunk line and its event lines are one write, made before the chunk is forwarded: a file that ends inside
    them (the kernel stops a killed proxy's write at a page boundary, which can fall between two lines or inside
    one) holds a chunk the client never got. Readers leave all of it out and report the cut."""
    record(tmp_path, [OPENAI[0], b"".join(OPENAI[1:])])
    lines = (tmp_path / "r.jsonl").read_bytes().splitlines(keepends=True)
    assert [orjson.loads(line)["kind"] for line in lines] == ["header", "chunk", "event", "chunk", "event", "event",
                                                            "end"]
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:5]) + torn)  # the second chunk's line and one of its two events (and a torn one)
    rec = read_recording(cut)
    assert rec.chunks == [(rec.records[0]["t"], OPENAI[0])] and len(rec.events) == 1
    assert rec.torn == (4, len(lines[3]) + len(lines[4]) + len(torn)) and rec.ending == "proxy_died"
    assert [r["kind"] for _, r in iter_lines(cut)] == ["header", "chunk", "event"]
    for follow in (False, True):  # show and show --follow read it alike
        stream = RecordingStream(str(cut), follow=follow, poll=0.01)
        assert [r["kind"] for r in stream] == ["chunk", "event"] and stream.torn == rec.torn, follow


def test_older_versions_are_still_read_and_the_next_version_is_refused(tmp_path):
    """Version 2 added "blocks" chunk lines, version 3 their "form" and "crlf"; version 1 files (every chunk in
    base64) and version 2 files (blocks in the default form) read as before."""
    v1 = tmp_path / "v1.jsonl"
    v1.write_bytes(b"\n".join(orjson.dumps(o) for o in [
        {**HEADER, "version": 1}, {"t": 0.1, "kind": "chunk", "n": 1, "b64": base64.b64encode(OPENAI[0]).decode()},
        {"t": 0.1, "kind": "event", "event": "message", "data": {"choices": [{"delta": {"content": "Hel"}}]}},
        {"t": 0.2, "kind": "end", "reason": "complete", "events": 1, "bytes": len(OPENAI[0])}]) + b"\n")
    rec = read_recording(v1)
    assert rec.header["version"] == 1 and rec.chunks == [(0.1, OPENAI[0])] and rec.ending == "complete"
    v2 = tmp_path / "v2.jsonl"
    v2.write_bytes(b"\n".join(orjson.dumps(o) for o in [
        {**HEADER, "version": 2}, {"t": 0.1, "kind": "chunk", "n": 1, "blocks": 2, "skip": 3},
        {"t": 0.1, "kind": "event", "event": "message", "data": "a"},
        {"t": 0.1, "kind": "event", "event": "e", "data": {"b": 1}}]) + b"\n")
    assert read_recording(v2).chunks == [(0.1, b"a: a\n\nevent: e\ndata: {\"b\":1}\n\n")]
    v4 = tmp_path / "v4.jsonl"
    v4.write_bytes(orjson.dumps({**HEADER, "version": 4}) + b"\n")
    with pytest.raises(RecordingError, match=r"v4.jsonl:1: unsupported format version 4 \(this sse-capture reads "
                                             r"versions 1, 2, 3\)"):
        read_recording(v4)


def test_chunks_around_an_oversized_event_read_back_exactly(implementation, tmp_path):
    """An event over max_event_size is recorded as "oversized" (its data not kept), so no chunk with a byte of it
    can be kept by event lines: those chunks are in base64, the others still as blocks."""
    big = b"data: " + b"x" * 300 + b"\n\n"
    stream = OPENAI[0] + big + OPENAI[1] + big[:100]
    chunks = [OPENAI[0] + big[:50], big[50:200], big[200:] + OPENAI[1], big[:100]]
    rec = StreamRecorder(RecordingFile(str(tmp_path), "o.jsonl"), HEADER, max_event_size=100)
    for chunk in chunks:
        rec.feed(chunk)
    rec.finish("complete")
    recording = read_recording(rec.file.path)
    assert [r["kind"] for r in recording.records if r["kind"] != "chunk"] == ["event", "oversized", "event"]
    assert ["blocks" in c for c in chunk_lines(recording)] == [True, False, False, False]
    assert b"".join(raw for _, raw in recording.chunks) == stream
    assert [raw for _, raw in recording.chunks] == chunks
