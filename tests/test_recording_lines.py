"""The event lines the recorder writes for a token stream's chunk in one go (MessageBatch) are the lines it
writes event by event, and the data in them reads back byte for byte."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_capture_addon.recorder import StreamRecorder
from sse_capture_addon.recording import (
    data_json,
    data_json_many,
    decode_data,
    event_line_json,
    message_lines,
    read_recording,
)
from sse_capture_addon.sse import MessageBatch
from sse_capture_addon.writer import RecordingFile

# data that is exact JSON, JSON that re-serialises differently, scalars, text, and pairs that only parse
# together (["[{}", "{}],[]"] is a valid two-element array, but neither part is JSON by itself)
DATA = ['{"a":1}', "[1,2]", "{}", "[]", '{"a": 1}', '{"a":1.0}', '{"a":1e2}', '{"a":"\\u00e9"}', '{"a":1,"a":2}',
        "[{}", "{}],[]", "{}]", "[", "1", '"s"', "null", "text", "", " {}", "é", '{"n":123456789012345678901234}',
        "[" * 600 + "]" * 600, '{"x":[1,{"y":null}]}', "{\"a\":\"\\ud800\"}"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(DATA), min_size=1, max_size=12))
def test_data_json_many_is_data_json_of_each(implementation, datas):
    encoded = [d.encode() for d in datas]
    assert data_json_many(encoded) == [data_json(d) for d in datas]
    for d, stored in zip(datas, data_json_many(encoded)):
        assert decode_data(orjson.loads(stored)) == d


def test_pairs_that_parse_only_together_are_stored_as_strings():
    assert data_json_many([b"[{}", b"{}],[]"]) == [b'"[{}"', b'"{}],[]"']
    assert data_json_many([b'{"a":1}', b"[2]"]) == [b'{"a":1}', b"[2]"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(DATA), min_size=1, max_size=8), st.sampled_from(["", "7", 'q"uote']))
def test_message_lines_are_event_lines(implementation, datas, last_event_id):
    t = b"1.250000"
    expected = b"".join(event_line_json(t, "message", data_json(d), last_event_id, None) for d in datas)
    blocks = b"".join(b"data: %b\n\n" % d.encode() for d in datas)
    assert message_lines(t, MessageBatch(blocks, len(datas), last_event_id)) == expected


HEADER = {"kind": "header", "format": "sse-capture", "version": 1, "stream_id": "s", "started": "2026-11-25T00:00:00Z",
          "request": {"method": "GET", "url": "http://127.0.0.1/", "headers": []}, "response": {"status": 200, "headers": []}}


def test_a_token_stream_records_the_same_events_in_any_chunking(implementation, tmp_path):
    datas = [d for d in DATA if d] * 3
    stream = b"id: 9\n\n" + b"".join(b"data: %b\n\n" % d.encode() for d in datas)
    recorded = []
    for size in (len(stream), 4096, 300, 37, 1):  # whole, cut at arbitrary points, byte by byte
        rec = StreamRecorder(RecordingFile(str(tmp_path), f"s{size}.jsonl"), HEADER, max_event_size=1 << 20)
        for i in range(0, len(stream), size):
            rec.feed(stream[i:i + size])
        assert rec.finish("complete")["events"] == len(datas)
        events = read_recording(rec.file.path).events
        recorded.append([(e["event"], e.get("id"), decode_data(e["data"])) for e in events])
    assert recorded[0] == [("message", "9", d) for d in datas]
    assert all(r == recorded[0] for r in recorded)
