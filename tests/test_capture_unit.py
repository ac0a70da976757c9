"""The capture addon's hooks driven by mitmproxy's own test helpers (beside the real-process tests)."""

import asyncio
import gzip
import json
import logging
import time
import zlib

import brotli
import pytest
import zstandard
from mitmproxy import exceptions, flow
from mitmproxy.test import taddons, tflow, tutils

from reliability_helpers import decompression_bomb, line_flood
from sse_capture_addon.capture import RoutineLines, SSECapture, is_sse
from sse_capture_addon.recording import decode_data, read_recording
from sse_capture_addon.writer import SpaceReserve


def _responseheaders(addon, f):
    """The hook as mitmproxy runs it: what it returns (for a stream to record) is awaited."""
    pending = addon.responseheaders(f)
    if pending is not None:
        asyncio.run(pending)


def _sse_flow(content_type="text/event-stream"):
    f = tflow.tflow(resp=tutils.tresp(headers=[(b"content-type", content_type.encode())], content=None))
    f.response.stream = False
    return f


@pytest.mark.parametrize("value,expected", [
    ("text/event-stream", True), ("TEXT/EVENT-STREAM; charset=utf-8", True), (" text/event-stream ;x=1", True),
    ("text/event-streams", False), ("text/plain", False), ("", False),
])
def test_is_sse(value, expected):
    f = _sse_flow(value)
    assert is_sse(f.response) is expected


def test_is_sse_with_no_content_type():
    assert is_sse(tflow.tflow(resp=tutils.tresp(headers=[(b"x-a", b"1")])).response) is False
    assert is_sse(None) is False


@pytest.mark.parametrize("values, expected", [
    # Fetch's "extract a MIME type", as browsers decide: of several values, the last valid one counts
    ([b"text/event-stream", b"text/plain"], False),
    ([b"text/plain", b"text/event-stream"], True),
    ([b"text/event-stream", b"TEXT/Event-Stream; charset=utf-8"], True),
    ([b"text/event-stream, text/plain"], False),                  # one field, two values
    ([b"text/plain, text/event-stream"], True),
    ([b"text/event-stream", b"*/*"], True),                       # */* is passed over
    ([b"text/event-stream", b"nonsense"], True),                  # so is what does not parse
    ([b"text/event-stream", b"text /plain"], True),
    ([b"text/event-stream", b""], True),
    ([b'text/plain; x="a,text/event-stream"'], False),           # a comma inside a quoted string
    ([b'text/plain; x="a\\",text/event-stream"'], False),        # ... after an escaped quote
    ([b'text/plain; x="a,b"', b"text/event-stream"], True),
    ([b"text/event-streamx", b"text/event-stream;"], True),
    ([b"text/event-stream", b"text/event-streamx"], False),
])
def test_is_sse_with_several_content_types_takes_the_last_valid_one(values, expected):
    headers = [(b"Content-Type", v) for v in values]
    assert is_sse(tflow.tflow(resp=tutils.tresp(headers=headers)).response) is expected


def test_streaming_is_enabled_even_for_flows_the_filter_excludes(tmp_path):
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path), sse_capture_filter="~u /only-this")
        f = _sse_flow()
        _responseheaders(addon, f)
        assert f.response.stream is True
        assert not list(tmp_path.rglob("*.jsonl"))
        assert not (tmp_path / SpaceReserve.NAME).exists()  # made with the first recording, not before


def test_hooks_record_a_stream_and_finish_it_on_done(tmp_path):
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        f = _sse_flow()
        _responseheaders(addon, f)
        assert callable(f.response.stream)
        assert f.response.stream(b"data: a\n\nda") == b"data: a\n\nda"  # forwarded unchanged
        assert f.response.stream(b"ta: b\n\n") == b"ta: b\n\n"
        addon.done()
    [path] = tmp_path.rglob("*.jsonl")
    rec = read_recording(path)
    assert [decode_data(e["data"]) for e in rec.events] == ["a", "b"]
    assert rec.ending == "proxy_shutdown"
    assert (tmp_path / SpaceReserve.NAME).stat().st_size == SpaceReserve.SIZE  # room kept for end lines


def _capture_gzip(tmp_path, chunks, encoding="gzip"):
    """``chunks`` through the addon as an SSE response with this Content-Encoding (None: none), checking each is
    forwarded unchanged; returns the recording."""
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        f = _sse_flow()
        if encoding is not None:
            f.response.headers["content-encoding"] = encoding
        _responseheaders(addon, f)
        for chunk in chunks:
            assert f.response.stream(chunk) == chunk  # traffic unchanged
        addon.response(f)
    [path] = tmp_path.rglob("*.jsonl")
    return read_recording(path)


def test_bytes_after_the_gzip_data_pass_through_and_are_reported_once(tmp_path, caplog):
    junk = [b"not gzip", b" and more", b" of it"]
    body = gzip.compress(b"data: a\n\nid: 2\ndata: b\n\n")
    chunks = [body[:7], body[7:], *junk]
    rec = _capture_gzip(tmp_path, chunks)
    assert [decode_data(e["data"]) for e in rec.events] == ["a", "b"]
    assert b"".join(raw for _, raw in rec.chunks) == b"".join(chunks)
    [error] = [r for r in rec.records if r["kind"] == "error"]
    n = len(b"".join(junk))
    assert error["what"] == "decode" and error["message"].startswith(f"{n} byte(s) after the end of the gzip data")
    assert rec.records[-1] is error   # once, at the end, with the total
    assert rec.ending == "complete" and rec.end["errors"] == [error["message"]]
    assert rec.end["bytes"] == len(body) + n
    assert f"{n} byte(s) after the end of the gzip data" in caplog.text


def test_gzip_without_trailing_bytes_records_no_error(tmp_path):
    rec = _capture_gzip(tmp_path, [gzip.compress(b"data: a\n\n") + gzip.compress(b"data: b\n\n")])
    assert len(rec.events) == 2 and not [r for r in rec.records if r["kind"] == "error"] and not rec.end["errors"]


# --- decompression bombs ----------------------------------------------------------------------------------

OPENAI_CHUNK = (b'data: {"id":"chatcmpl-9xYz","object":"chat.completion.chunk","created":1718000000,'
                b'"model":"gpt-4o-2024-05-13","system_fingerprint":"fp_abc","choices":[{"index":0,"delta":'
                b'{"content":" the"},"logprobs":null,"finish_reason":null}]}\n\n')


def _compressor(encoding, br_quality=11):
    """(compress, flush) of a streaming compressor; flush(True) ends the stream."""
    if encoding == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress, lambda last=False: c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    if encoding == "br":
        c = brotli.Compressor(quality=br_quality)
        return c.process, lambda last=False: c.finish() if last else c.flush()
    c = zstandard.ZstdCompressor().compressobj()
    return c.compress, lambda last=False: c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH if last
                                                  else zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@pytest.mark.parametrize("encoding", ["gzip, gzip", "br", "zstd"])
def test_a_decompression_bomb_is_decoded_no_further_than_any_stream_would_be(tmp_path, caplog, encoding):
    body = decompression_bomb(encoding, 64 * 1024 * 1024)
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)] + [b"more bytes, no longer decoded"]
    rec = _capture_gzip(tmp_path, chunks, encoding)
    assert [decode_data(e["data"]) for e in rec.events] == ["first"]
    [error] = [r for r in rec.records if r["kind"] == "error"]
    assert error["what"] == "decode" and "decompression bomb" in error["message"], error
    assert rec.ending == "complete" and rec.end["errors"] == [error["message"]]
    assert b"".join(raw for _, raw in rec.chunks) == b"".join(chunks)   # raw chunks still recorded, to the end
    assert 32 * 1024 * 1024 <= rec.end["decoded_bytes"] <= 32 * 1024 * 1024 + 1100 * len(body)
    assert caplog.text.count("decompression bomb") == 1


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("flushed", [True, False], ids=["each event flushed", "compressed whole"])
def test_honest_streams_are_decoded_whole_however_repetitive(tmp_path, encoding, flushed):
    """The same OpenAI chunk 100,000 times (23 MB) compressed whole (br: 122,000:1, zstd: 10,000:1, far beyond
    what gzip can do); or flushed after each event, as a server that streams does (brotli at the quality servers use
    for that), which keeps it near 25:1 however long it goes on."""
    n = 20_000 if flushed else 100_000
    compress, flush = _compressor(encoding, br_quality=5 if flushed else 11)
    if flushed:
        chunks = [compress(OPENAI_CHUNK) + flush() for _ in range(n)]
        chunks[-1] += flush(True)
    else:
        whole = compress(OPENAI_CHUNK * n) + flush(True)
        chunks = [whole[i:i + 16384] for i in range(0, len(whole), 16384)]
    if not flushed and encoding != "gzip":
        assert n * len(OPENAI_CHUNK) > 1100 * len(b"".join(chunks))  # decoded whole for the first 32 MiB being free
    rec = _capture_gzip(tmp_path, chunks, encoding)
    assert rec.end["events"] == len(rec.events) == n and not rec.end["errors"], rec.end["errors"]
    assert rec.end["decoded_bytes"] == n * len(OPENAI_CHUNK) and rec.ending == "complete"


ANTHROPIC_EVENT = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
                   b'{"type":"text_delta","text":" the%d"}}\n\n')


# Each of these is an item the parser gives on its own (not a run of plain data events), which costs the recorder
# ~3 us, against ~5 ns a byte of a large event: 1 byte of gzip can hold ~500 of them.
FLOODS = {
    "comments": b":\n",
    "pings": b": ping\n\n",
    "empty events": b"data:\n\n",
    "retries": b"retry: 1\n\n",
}


@pytest.mark.parametrize("flood", FLOODS)
@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_a_flood_of_tiny_items_is_decoded_no_further_than_a_bomb_would_be(tmp_path, caplog, encoding, flood):
    """A few KB that decode to millions of comments or empty events: counted by the byte alone they were all
    within the free 32 MiB, and took the proxy's thread for seconds (3 s for 4 KB of gzip) and wrote a recording of
    ~90 MB. Each item now counts as ITEM_COST bytes (and its lines as LINE_COST each): decoding stops after
    ~100,000 items with an error line."""
    from sse_capture_addon.decoding import FREE_DECODED, ITEM_COST, MAX_RATIO, PIECE_SIZE
    item = FLOODS[flood]
    compress, flush = _compressor(encoding)
    body = compress(b"data: first\n\n" + item * (16 * 1024 * 1024 // len(item))) + flush(True)
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)] + [b"more bytes, no longer decoded"]
    rec = _capture_gzip(tmp_path, chunks, encoding)
    [error] = [r for r in rec.records if r["kind"] == "error"]
    assert error["what"] == "decode" and "decompression bomb" in error["message"], error
    assert rec.ending == "complete" and rec.end["errors"] == [error["message"]]
    assert b"".join(raw for _, raw in rec.chunks) == b"".join(chunks)   # raw chunks still recorded, to the end
    items = sum(r["kind"] in ("event", "comment", "no_dispatch") for r in rec.records)
    # how far it gets: the free part and the ratio, and the last piece parsed before the check
    limit = (FREE_DECODED + MAX_RATIO * len(body)) // ITEM_COST + 2 * PIECE_SIZE // len(item)
    assert 30_000 < items <= limit < 200_000, (items, limit)
    assert rec.records[1]["kind"] == "event" and decode_data(rec.records[1]["data"]) == "first"
    assert caplog.text.count("decompression bomb") == 1


LINE_FLOODS = {
    "blank lines": b"\n",
    "CR-only blank lines": b"\r",
    "CRLF blank lines": b"\r\n",
    "unknown fields": b"x\n",
    "ids": b"id: 1\n",
    "data lines never dispatched": b"data: x\n",
}


@pytest.mark.parametrize("flood", LINE_FLOODS)
def test_a_flood_of_lines_is_decoded_no_further_than_a_bomb_would_be(tmp_path, caplog, flood):
    """Lines that make no item cost ~0.2 us each, blank or not: 32 KB of gzip that decode to 32 MiB of blank lines
    held the proxy's thread for ~7 s. Each line now counts as LINE_COST bytes more."""
    from sse_capture_addon.decoding import FREE_DECODED, LINE_COST, MAX_RATIO, PIECE_SIZE
    line = LINE_FLOODS[flood]
    body = line_flood(line, 16 * 1024 * 1024)
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    rec = _capture_gzip(tmp_path, chunks)
    [error] = [r for r in rec.records if r["kind"] == "error"]
    assert error["what"] == "decode" and "decompression bomb" in error["message"], error
    assert rec.ending == "complete" and rec.end["errors"] == [error["message"]]
    assert b"".join(raw for _, raw in rec.chunks) == b"".join(chunks)
    assert [decode_data(e["data"]) for e in rec.events] == ["first"]
    # stopped within the free part and the ratio, each line counted, and the piece parsed before the check
    per_line = len(line) + LINE_COST
    assert rec.end["decoded_bytes"] <= (FREE_DECODED + MAX_RATIO * len(body)) * len(line) // per_line + PIECE_SIZE
    assert caplog.text.count("decompression bomb") == 1


HONEST_SHAPES = {
    "OpenAI": lambda i: b'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
                        b'{"content":" t%d"},"finish_reason":null}]}\n\n' % i,
    "Anthropic": lambda i: ANTHROPIC_EVENT % i,
    "Vercel AI SDK": lambda i: b'data: {"type":"text-delta","id":"0","delta":" t%d"}\n\n' % i,
    "pretty-printed JSON": lambda i: b"".join(b"data: %s\n" % line for line in json.dumps(
        {"type": "delta", "index": i, "text": "tok", "meta": {"a": 1, "b": [1, 2]}}, indent=2).encode().split(b"\n"))
        + b"\n",
    "ids and types": lambda i: b'id: %d\nevent: delta\ndata: {"t":"x%d"}\n\n' % (i, i),
    "a keep-alive after each event": lambda i: ANTHROPIC_EVENT % i + b": keepalive\n\n",
    "a retry with each event": lambda i: b"retry: 1000\ndata: x%d\n\n" % i,
    "one-character tokens": lambda i: b"data: x\n\n",
}


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
@pytest.mark.parametrize("shape", HONEST_SHAPES)
def test_honest_streams_read_in_large_chunks_are_parsed_whole(tmp_path, shape, eol):
    """A stream read 64 KiB at a time (a fast upstream, a replay at full speed) costs the parser far less than the
    density limit: 4 MB of each shape, past the free part, all parsed."""
    make = HONEST_SHAPES[shape]
    events, size = [], 0
    while size < 4_000_000:
        events.append(make(len(events)).replace(b"\n", eol))
        size += len(events[-1])
    body, n = b"".join(events), len(events)
    rec = _capture_gzip(tmp_path, [body[i:i + 65536] for i in range(0, len(body), 65536)], None)
    assert not rec.end["errors"] and rec.end["events"] == n and rec.ending == "complete", rec.end["errors"]


@pytest.mark.parametrize("shape", ["empty events", "pings", "comments"])
def test_a_stream_paced_one_tiny_item_a_chunk_is_parsed_whole(tmp_path, shape):
    # as servers send heartbeats and events: each in its own chunk, however small, is far within CHUNK_ALLOWANCE
    rec = _capture_gzip(tmp_path, [FLOODS[shape]] * 60_000, None)
    assert not rec.end["errors"] and rec.end["events"] + rec.end["comments"] == 60_000


@pytest.mark.parametrize("flood", FLOODS)
def test_an_uncompressed_flood_of_tiny_items_is_parsed_no_further_than_the_density_limit(tmp_path, caplog, flood):
    """32 MiB of comments, pings or empty events as fast as the network goes: parsed item by item they took the
    proxy's thread 3 us per few bytes, holding up every other stream. Parsing stops past the free part, with an error
    line; every byte is still forwarded and kept in the raw chunks."""
    from sse_capture_addon.decoding import CHUNK_ALLOWANCE, FREE_DECODED, ITEM_COST, MAX_DENSITY
    item = FLOODS[flood]
    body = b"data: first\n\n" + item * (32 * 1024 * 1024 // len(item))
    chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    rec = _capture_gzip(tmp_path, chunks, None)
    [error] = [r for r in rec.records if r["kind"] == "error"]
    assert error["what"] == "parse" and "flood" in error["message"], error
    assert rec.ending == "complete" and rec.end["errors"] == [error["message"]]
    assert b"".join(raw for _, raw in rec.chunks) == body
    assert rec.records[1]["kind"] == "event" and decode_data(rec.records[1]["data"]) == "first"
    items = sum(r["kind"] in ("event", "comment", "no_dispatch") for r in rec.records)
    # the free part, the allowance of the bytes and chunks parsed, and the last chunk's items
    parsed = rec.end["decoded_bytes"]
    limit = (FREE_DECODED + MAX_DENSITY * parsed + CHUNK_ALLOWANCE * len(chunks)) // ITEM_COST + 65536 // len(item)
    assert items <= limit < 300_000 and parsed < len(body) // 4, (items, limit, parsed)
    assert caplog.text.count("as from a flood") == 1


@pytest.mark.parametrize("eol", [b"\n", b"\r"], ids=["LF", "CR"])
@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("flushed", [True, False], ids=["each event flushed", "compressed whole"])
def test_honest_streams_of_events_one_item_each_are_decoded_whole(tmp_path, encoding, flushed, eol):
    """Events that the parser gives one by one (an event: field, as Anthropic's) now count as ITEM_COST bytes
    each toward the inflation limit, and with CR line endings, which the parser reads line by line, each line
    LINE_COST more: a streamed compressed stream stays far below the limit, and so does one compressed whole, each
    event differing a little as real ones do; past the free part too (60,000 events: ~60 MB counted)."""
    n = 60_000
    compress, flush = _compressor(encoding, br_quality=5 if flushed else 9)  # (9 packs these tighter than 11)
    events = [(ANTHROPIC_EVENT % i).replace(b"\n", eol) for i in range(n)]
    if flushed:
        chunks = [compress(e) + flush() for e in events]
        chunks[-1] += flush(True)
    else:
        whole = compress(b"".join(events)) + flush(True)
        chunks = [whole[i:i + 16384] for i in range(0, len(whole), 16384)]
    rec = _capture_gzip(tmp_path, chunks, encoding)
    assert rec.end["events"] == len(rec.events) == n and not rec.end["errors"], rec.end["errors"]
    assert rec.end["decoded_bytes"] == sum(map(len, events)) and rec.ending == "complete"


def test_a_recorder_that_cannot_start_never_breaks_the_flow(tmp_path, caplog):
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        (tmp_path / "gone").mkdir()
        tctx.options.sse_capture_dir = str(tmp_path / "gone")
        (tmp_path / "gone").rmdir()
        (tmp_path / "gone").write_text("now a file")  # the directory was replaced after start-up
        f = _sse_flow()
        _responseheaders(addon, f)
        assert f.response.stream is True  # still streamed, just not recorded
    assert "NOT recording" in caplog.text


@pytest.mark.parametrize("option,value,message", [
    ("sse_capture_filter", "~q ((", "invalid filter expression"),
    # the filter is applied at the response headers: a response body filter would never match, silently
    ("sse_capture_filter", "~bs delta", r"~bs cannot choose streams by their response body"),
    ("sse_capture_filter", "~u /chat & !(~m GET | ~b secret)", r"~b cannot choose streams by their response body"),
    ("sse_capture_filter", "~b a | ~bs b", r"~b and ~bs cannot choose"),
    ("sse_capture_max_event_size", 0, "must be a positive"),
    ("sse_capture_max_body", -1, "must be a positive"),
    ("sse_capture_raw_chunks", "sometimes", "must be one of"),
    ("sse_capture_redact_keys", ["a,,b"], "empty name"),
    ("sse_capture_redact_params", [""], "sse_capture_redact_params: empty name"),
])
def test_bad_options_are_refused(tmp_path, option, value, message):
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(addon, **{option: value})


@pytest.mark.parametrize("spec", ["~bq hello", "~hs x-stream & ~c 200", "!~bq secret | ~t event-stream"])
def test_filters_on_the_request_and_the_response_head_are_accepted(tmp_path, spec):
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path), sse_capture_filter=spec)
        assert addon.filter is not None


def test_which_query_parameters_are_redacted(tmp_path):
    from sse_capture_addon.redact import DEFAULT_PARAMS
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        assert addon.redactor.params == DEFAULT_PARAMS and "token" in DEFAULT_PARAMS
        tctx.configure(addon, sse_capture_redact_params=["Room_Key,sid"])
        assert addon.redactor.params == DEFAULT_PARAMS | {"room_key", "sid"}
        tctx.configure(addon, sse_capture_redact=False)
        assert addon.redactor.params == {"room_key", "sid"} and not addon.redactor.headers


def test_unwritable_directory_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="sse_capture_dir: cannot write recordings"):
            tctx.configure(addon, sse_capture_dir=str(tmp_path / "file" / "sub"))


def test_a_late_summary_timer_does_not_open_the_next_window_early(caplog):
    caplog.set_level(logging.INFO, logger="sse_capture")
    now, timers = [0.0], []
    lines = RoutineLines(clock=lambda: now[0], call_later=lambda delay, f: timers.append((now[0] + delay, f)))
    assert [lines.admit() for _ in range(12)] == [True] * 10 + [False] * 2
    assert [at for at, _ in timers] == [1.0]
    now[0] = 1.05                      # a stream ends after the second is over, before the (late) timer
    assert lines.admit()               # a new window: the 2 held back are summed up first
    now[0] = 1.06
    timers.pop(0)[1]()                 # the late timer: not the new window's business
    assert sum(lines.admit() for _ in range(20)) == 9   # the new window still allows 10 lines in all
    messages = [r.getMessage() for r in caplog.records if "more stream(s)" in r.getMessage()]
    assert len(messages) == 1 and messages[0].startswith("sse-capture: 2 more stream(s)")
    at, flush = timers.pop(0)
    now[0] = at
    flush()                            # the new window's own timer, at its end
    assert caplog.records[-1].getMessage().startswith("sse-capture: 11 more stream(s)")


def test_completed_streams_log_at_most_ten_lines_a_second_then_one_summary(tmp_path, caplog):
    """Each log record costs mitmproxy a hook round through all its addons; a burst of short streams gets
    ten lines a second and a count of the rest, while every stream is still recorded and every abnormal
    ending still gets its own warning."""
    caplog.set_level(logging.INFO, logger="sse_capture")
    now = [0.0]
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        addon.routine = RoutineLines(clock=lambda: now[0])

        def stream():
            f = _sse_flow()
            _responseheaders(addon, f)
            f.response.stream(b"data: a\n\n")
            return f

        for _ in range(25):
            addon.response(stream())
        now[0] = 1.5  # the next second: the 15 held back are summed up before the next line
        addon.response(stream())
        unfinished = [stream() for _ in range(12)]
        addon.done()
    messages = [r.getMessage() for r in caplog.records if r.name == "sse_capture"]
    complete = [m for m in messages if m.startswith("sse-capture: complete GET")]
    assert len(complete) == 11
    assert [m for m in messages if "more stream(s) recorded completely" in m] == [
        "sse-capture: 15 more stream(s) recorded completely, without a line each (over 10 a second); "
        "`sse-capture ls` lists them"]
    assert messages.index(complete[-1]) > messages.index(next(m for m in messages if "15 more" in m))
    assert len([m for m in messages if m.startswith("sse-capture: proxy_shutdown")]) == len(unfinished)
    assert len(list(tmp_path.rglob("*.jsonl"))) == 25 + 1 + 12


def test_headers_and_a_path_that_are_not_utf8_are_recorded_with_their_bytes_escaped(tmp_path):
    # mitmproxy gives such bytes as lone surrogates, which no JSON writer takes; the stream is still recorded
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        f = _sse_flow()
        f.request.path = b"/caf\xe9?q=\xff"
        f.request.headers["x-name"] = "ok"
        f.request.headers.fields += ((b"x-latin1", b"caf\xe9"),)
        f.response.headers.fields += ((b"content-disposition", b"inline; filename=r\xe9sum\xe9.txt"),)
        _responseheaders(addon, f)
        f.response.stream(b"data: a\n\n")
        addon.response(f)
    [path] = tmp_path.rglob("*.jsonl")
    rec = read_recording(path)
    assert [decode_data(e["data"]) for e in rec.events] == ["a"] and rec.ending == "complete"
    header = rec.header
    assert header["request"]["url"].endswith("/caf\\xe9?q=\\xff")
    assert ["x-latin1", "caf\\xe9"] in header["request"]["headers"]
    assert ["x-name", "ok"] in header["request"]["headers"]
    assert ["content-disposition", "inline; filename=r\\xe9sum\\xe9.txt"] in header["response"]["headers"]
    assert header["escaped_bytes"] is True


def test_an_error_message_with_bytes_that_are_not_utf8_still_ends_the_recording(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        f = _sse_flow()
        _responseheaders(addon, f)
        f.response.stream(b"data: a\n\n")
        f.error = flow.Error("upstream said caf\udce9")  # as mitmproxy decodes stray bytes
        addon.error(f)
    [path] = tmp_path.rglob("*.jsonl")
    rec = read_recording(path)
    assert rec.ending == "server_error" and rec.end["message"] == "upstream said caf\\xe9"
    assert [decode_data(e["data"]) for e in rec.events] == ["a"]
    assert "(upstream said caf\\xe9)" in caplog.text  # the log line too, printable


def _slow_files(monkeypatch, seconds: float) -> list:
    """Recording files that take ``seconds`` to create, as on a busy disk or network storage, while the list
    returned holds a True; quick again once it holds False."""
    import sse_capture_addon.capture as capture

    slow = [True]

    class SlowFile(capture.RecordingFile):
        def __init__(self, *args, **kw):
            if slow[-1]:
                time.sleep(seconds)
            super().__init__(*args, **kw)

    monkeypatch.setattr(capture, "RecordingFile", SlowFile)
    return slow


def test_after_a_slow_file_creation_files_are_made_off_the_event_loop_until_quick_again(tmp_path, monkeypatch):
    slow = _slow_files(monkeypatch, 0.3)
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        first, second, third = _sse_flow(), _sse_flow(), _sse_flow()
        assert addon.responseheaders(first) is None  # inline, as long as files are quick to make: this one is not

        async def run():
            loop = asyncio.get_running_loop()
            pending = addon.responseheaders(second)
            assert pending is not None  # mitmproxy awaits it
            start = loop.create_task(pending)
            ticks, t0 = [], loop.time()
            while not start.done():  # the event loop keeps serving other streams meanwhile
                await asyncio.sleep(0.01)
                ticks.append(loop.time())
            return ticks, t0, loop.time()

        ticks, t0, t1 = asyncio.run(run())
        assert t1 - t0 >= 0.3
        gaps = [b - a for a, b in zip([t0] + ticks, ticks)]
        assert len(ticks) >= 10 and max(gaps) < 0.15, gaps  # never blocked for the file's 0.3 s
        slow.append(False)
        asyncio.run(addon.responseheaders(third))  # still in a worker, and quick: back to inline after it
        assert addon.responseheaders(_sse_flow()) is None
        for f in (first, second, third):
            f.response.stream(b"data: a\n\n")
            addon.response(f)
        addon.done()
    recordings = [read_recording(p) for p in tmp_path.rglob("*.jsonl")]
    assert len(recordings) == 4
    assert sorted(len(r.events) for r in recordings) == [0, 1, 1, 1]


def test_slow_writes_are_warned_of_at_once_then_counted_between_warnings(tmp_path, monkeypatch, caplog):
    import sse_capture_addon.capture as capture
    import sse_capture_addon.writer as writer

    monkeypatch.setattr(writer, "SLOW_WRITE", 0.0)  # every write is "slow"
    monkeypatch.setattr(capture, "SLOW_WRITE_WARNING_EVERY", 0.3)
    addon = SSECapture()
    with taddons.context(addon) as tctx, caplog.at_level(logging.WARNING, logger="sse_capture"):
        tctx.configure(addon, sse_capture_dir=str(tmp_path), sse_capture_fsync=True)
        f = _sse_flow()
        addon.responseheaders(f)  # the header line: warned
        f.response.stream(b"data: a\n\n")
        f.response.stream(b"data: b\n\n")
        time.sleep(0.35)
        f.response.stream(b"data: c\n\n")  # warned, with the two before it
        addon.response(f)
    warnings = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert "more such" not in warnings[0] and "; 2 more such write(s) since the last warning" in warnings[1]
    assert all(w.endswith("put sse_capture_dir on a faster local disk or turn sse_capture_fsync off") for w in warnings)
    assert [e["data"] for e in read_recording(next(tmp_path.rglob("*.jsonl"))).events] == ["a", "b", "c"]


def test_a_stream_gone_while_its_file_is_created_leaves_no_file(tmp_path, monkeypatch):
    _slow_files(monkeypatch, 0.2)
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path))
        first, f = _sse_flow(), _sse_flow()
        addon.responseheaders(first)  # slow: the next file is made in a worker
        addon.response(first)

        async def run():
            start = asyncio.get_running_loop().create_task(addon.responseheaders(f))
            await asyncio.sleep(0.05)
            start.cancel()  # what mitmproxy does to a flow's task when it shuts down
            with pytest.raises(asyncio.CancelledError):
                await start
            await asyncio.sleep(0.4)  # the worker finishes creating the file, which is then removed

        asyncio.run(run())
        assert f.response.stream is True and not addon.active
        addon.done()
    assert len(list(tmp_path.rglob("*.jsonl"))) == 1  # the first stream's only
