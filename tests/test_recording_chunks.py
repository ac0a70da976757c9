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
from sse_capture_addon.recording import FORMAT_VERSION, RecordingError, chunk_line, read_recording
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


@pytest.mark.parametrize("chunk", [
    b"data:no space\n\n",                         # written back as "data: no space"
    b"event: message\ndata: x\n\n",               # the event line would be left out
    b"event:x\ndata: y\n\n",
    b"data: a\r\n\r\n",                           # CRLF
    b"data: a\ndata: b\n\n",                      # two data lines
    b"id: 7\ndata: a\n\n",
    b"retry: 10\ndata: a\n\n",
    b": ping\n\n",
    b"data: a\n\n: ping\n\n",
    b"\xef\xbb\xbfdata: a\n\n",                   # the BOM is stripped
    b"data: \xff\n\n",                            # not UTF-8: U+FFFD in the event
    b"data:  two spaces\n\n" + b"data: \n\n",
], ids=repr)
def test_other_chunks_are_kept_in_base64(implementation, tmp_path, chunk):
    rec = record(tmp_path, [chunk])
    [line] = chunk_lines(rec)
    if b"  two" in chunk:  # the second space is data: this chunk is written back exactly
        assert line["blocks"] == 2
    else:
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


@pytest.mark.parametrize("size", [7, 50, 64, 100, 1000])
def test_a_token_stream_in_fixed_size_chunks_is_kept_by_its_events(implementation, tmp_path, size):
    stream = b"".join(OPENAI * 20 + ANTHROPIC * 20)
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    rec = record(tmp_path, chunks)
    assert [raw for _, raw in rec.chunks] == chunks
    lines = chunk_lines(rec)
    assert all("b64" in c for c, raw in zip(lines, chunks) if b"\n\n" not in raw)  # it ends no block
    if size >= 100:  # every chunk ends a block: only the cut bytes are written again
        assert all("blocks" in c for c in lines)
        in_base64 = sum(len(chunk_line(b"0.001000", 1, raw)) for raw in chunks)
        assert sum(len(orjson.dumps(c)) + 1 for c in lines) < in_base64 * (0.7 if size == 100 else 0.4)


def test_compressed_chunks_are_kept_in_base64(tmp_path):
    body = gzip.compress(b"".join(OPENAI))
    rec = record(tmp_path, [body], content_encoding="gzip")
    assert "b64" in chunk_lines(rec)[0] and rec.chunks[0][1] == body and len(rec.events) == 3


BLOCKS = [b"data: x\n\n", b"data: {\"a\":[1,2.5]}\n\n", b"event: e\ndata: \xc3\xa9\n\n", b"data:\n\n", b"data: \n\n",
          b"event: message\ndata: m\n\n", b"data:y\n\n", b"id: 3\ndata: i\n\n", b"retry: 9\n\n", b": c\n\n",
          b"data: a\ndata: b\n\n", b"data: cr\r\n\r\n", b"data: r\r\r", b"event: \xff\ndata: 1\n\n", b"\n",
          b"data: \"q\\u0041\"\n\n", b"event: a b\ndata: z\n\n", b"data: " + b"w" * 300 + b"\n\n"]


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
    assert list(RecordingStream(rec.path)) == rec.records


def test_streaming_reader_refuses_a_blocks_chunk_without_its_events(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(o) for o in [
        HEADER, {"t": 0.1, "kind": "chunk", "n": 1, "blocks": 2}, {"t": 0.1, "kind": "event", "event": "message",
                                                                  "data": "a"},
        {"t": 0.2, "kind": "end", "reason": "complete", "events": 1, "bytes": 9}]) + b"\n")
    with pytest.raises(RecordingError, match=r":4: the chunk on line 2 is the next 2 event line\(s\)"):
        list(RecordingStream(str(path)))
    with pytest.raises(RecordingError, match=r":4: the chunk on line 2"):
        read_recording(path)


def test_a_file_cut_short_gives_the_events_it_holds(tmp_path):
    """A proxy killed between lines (not mid-line: every write is whole lines) leaves no end line; the chunk's bytes
    are then those of the event lines that made it."""
    rec = record(tmp_path, [b"".join(OPENAI)])
    path = tmp_path / "r.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:4]))  # header, chunk, two of its three events
    assert read_recording(cut).chunks == [(rec.chunks[0][0], OPENAI[0] + OPENAI[1])]


def test_version_1_recordings_are_still_read_and_the_next_version_is_refused(tmp_path):
    """Version 2 added "blocks" chunk lines; version 1 files (every chunk in base64) read as before."""
    v1 = tmp_path / "v1.jsonl"
    v1.write_bytes(b"\n".join(orjson.dumps(o) for o in [
        {**HEADER, "version": 1}, {"t": 0.1, "kind": "chunk", "n": 1, "b64": base64.b64encode(OPENAI[0]).decode()},
        {"t": 0.1, "kind": "event", "event": "message", "data": {"choices": [{"delta": {"content": "Hel"}}]}},
        {"t": 0.2, "kind": "end", "reason": "complete", "events": 1, "bytes": len(OPENAI[0])}]) + b"\n")
    rec = read_recording(v1)
    assert rec.header["version"] == 1 and rec.chunks == [(0.1, OPENAI[0])] and rec.ending == "complete"
    v3 = tmp_path / "v3.jsonl"
    v3.write_bytes(orjson.dumps({**HEADER, "version": 3}) + b"\n")
    with pytest.raises(RecordingError, match=r"v3.jsonl:1: unsupported format version 3 \(this sse-capture reads "
                                             r"versions 1, 2\)"):
        read_recording(v3)


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
