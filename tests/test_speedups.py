"""The optional C scanner (``sse_capture_addon/_speedups.c``) lets the recorder store event data as it came
without a parse and re-serialise: it must never call data exact that orjson would not give back byte for byte
(the recording would then not replay the original data), and it should say so for the JSON token streams
really send, or the speed-up is lost without anyone noticing."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_capture_addon import recording
from sse_capture_addon._speedups import exact_json, exact_lines, token_chunk, typed_chunk  # built when gcc is there, which scripts/test sees to
from sse_capture_addon.recording import blocks_chunk_line, data_json, event_line_json, message_lines, time_json
from sse_capture_addon.sse import MessageBatch


def orjson_exact(raw: bytes) -> bool:
    """The definition: an object or array that orjson re-serialises to exactly the same bytes."""
    if raw[:1] not in (b"{", b"[") or raw[-1:] not in (b"}", b"]"):
        return False
    try:
        return orjson.dumps(orjson.loads(raw)) == raw
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        return False


scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1) | st.integers()
           | st.sampled_from([2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, -(2 ** 63), -(2 ** 63) - 1, 10 ** 18, 10 ** 19, -(10 ** 18)])
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner, max_size=5),
                      max_leaves=30)
containers = st.lists(values, max_size=5) | st.dictionaries(st.text(max_size=4), values, max_size=6)
# pieces from which broken, nearly-right and non-canonical JSON is made
TOKENS = [b"{", b"}", b"[", b"]", b'"', b'"a"', b"\\", b"\\u00", b"\\u001f", b"1f", b"1F", b"e9", b",", b":", b"0", b"-",
          b".", b"e", b"E", b"+", b"1", b"5", b"true", b"fals", b"null", b" ", b"\n", b"\t", b"\xc3", b"\xa9",
          b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf", b"a", b"\x1f", b"\x7f", b"\\n", b"\\/", b'\\"', b"\\\\",
          b"7f", b"20", b"0a", b"08", b'"a":1', b'"a":']
junk = st.lists(st.sampled_from(TOKENS), max_size=30).map(b"".join)
# objects written member by member, so that keys may repeat (orjson keeps one of them)
members = st.lists(st.tuples(st.sampled_from(["a", "b", "é", "\x1f", "a\n"]), scalars), max_size=5)
objects = members.map(lambda kvs: b"{" + b",".join(orjson.dumps(k) + b":" + (canonical(v) or b"0") for k, v in kvs) + b"}")


def canonical(value) -> bytes | None:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):  # integers beyond 64 bits
        return None


def scanner_decides(value, depth: int = 0) -> bool:
    """What the scanner is meant to prove itself, leaving the rest to orjson: floats whose repr has no exponent
    (orjson writes those the same), integers within 64 bits, at most 128 levels and 32 keys."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -(2 ** 63) <= value < 2 ** 64
    if isinstance(value, float):
        return "e" not in repr(value)
    if depth >= 128:
        return False
    if isinstance(value, dict):
        return len(value) <= 32 and all(scanner_decides(v, depth + 1) for v in value.values())
    return all(scanner_decides(v, depth + 1) for v in value)


@settings(max_examples=500)
@given(containers)
def test_what_orjson_writes_is_exact(value):
    raw = canonical(value)
    if raw is None:
        return
    assert orjson_exact(raw)
    assert exact_json(raw) == scanner_decides(value)
    assert data_json(raw.decode()) == raw


@settings(max_examples=1500)
@given(st.one_of(junk, objects, objects.map(lambda o: b"[" + o + b"]"), containers.map(canonical).filter(bool).flatmap(
    lambda raw: st.tuples(st.integers(0, len(raw)), st.integers(0, len(raw)), junk).map(
        lambda m: raw[:m[0]] + m[2] + raw[max(m[0], m[1]):]))))
def test_the_scanner_never_calls_exact_what_orjson_does_not_give_back(raw):
    if exact_json(raw):
        assert orjson_exact(raw), raw
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return
    assert (data_json(text) == raw) == orjson_exact(raw)


HEAD = b'{"t":0.5,"kind":"event","event":"message","data":'


@settings(max_examples=400)
@given(st.lists(st.one_of(junk, containers.map(canonical).filter(bool)), min_size=1, max_size=6))
def test_a_run_has_exact_lines_when_each_data_is_exact(datas):
    datas = [d for d in datas if b"\n" not in d]
    if not datas:
        return
    blocks = b"".join(b"data: %b\n\n" % d for d in datas)
    lines = exact_lines(blocks, len(datas), HEAD)
    assert (lines is not None) == all(exact_json(d) for d in datas)
    if lines is not None:
        assert lines == b"".join(HEAD + d + b"}\n" for d in datas)
        assert [orjson.loads(line)["data"] for line in lines.splitlines()] == [orjson.loads(d) for d in datas]


def test_the_cases_orjson_writes_differently_are_refused():
    for raw in [b'{"a": 1}', b'{"a":1,"a":2}', b"[-0]", b"[01]", b"[1.50]", b"[1.]", b"[1e5]", b"[1E5]", b'["\\u001F"]',
                b'["\\u000a"]', b'["\\/"]', b'["\\u00e9"]', b'["\\u0041"]', b'["\\u007f"]', b'["\\ud83d\\ude00"]', b'["\xed\xa0\x80"]', b'["a\tb"]',
                b"[1234567890123456789012]", b"[18446744073709551616]", b"[-9223372036854775809]", b"[-0]", b"[1,]", b'{"a":1,}', b"{}x", b"[]]", b"[" * 300 + b"]" * 300, b"1", b'"s"',
                b"", b"{}\n\ndata: {}"]:
        assert not exact_json(raw), raw
        assert exact_lines(b"data: %b\n\n" % raw, 1, HEAD) is None or raw == b"{}\n\ndata: {}", raw
    assert exact_lines(b"data: {}\n\ndata: []\n\n", 2, HEAD) == HEAD + b"{}}\n" + HEAD + b"[]}\n"
    assert exact_lines(b"data: [{}\n\ndata: {}],[]\n\n", 2, HEAD) is None  # two values together, neither alone
    for blocks, count in [(b"data: {}\n\n", 2), (b"data: {}\n\ndata: {}\n\n", 1), (b"data: {}\n\n", 0),
                          (b"data: {}\n\n", 2 ** 62), (b"data: {}\n", 1), (b"data:{}\n\n", 1), (b"data: {} \n\n", 1),
                          (b"data: {}\r\n\r\n", 1), (b"data: {}\n\ndata: \n\n", 2), (b"", 1)]:
        assert exact_lines(blocks, count, HEAD) is None, (blocks, count)  # not count such blocks
    for raw in [b"[18446744073709551615]", b"[-9223372036854775808]", b"[1764028800123456789]", b"[99999999999999999999]"]:
        assert exact_json(raw) == orjson_exact(raw), raw
    with pytest.raises(TypeError):
        exact_json("{}")
    with pytest.raises(TypeError):
        exact_lines("data: {}\n\n", 1, HEAD)


def test_token_streams_take_the_fast_path():
    openai = (b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764028800,"model":"gpt-4o",'
              b'"choices":[{"index":0,"delta":{"content":"Hello \\"world\\"\\n\xc3\xa9"},"logprobs":null,'
              b'"finish_reason":null}],"usage":{"prompt_tokens":12,"total_tokens":14},"score":0.875}')
    anthropic = (b'{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta",'
                 b'"partial_json":"{\\"city\\": \\"Par"}}')
    for raw in (openai, anthropic):
        assert orjson_exact(raw) and exact_json(raw)
        assert exact_lines(b"data: %b\n\n" % raw * 5, 5, HEAD) == (HEAD + raw + b"}\n") * 5
    assert recording._exact_c is exact_json  # the recorder uses it (its self-check passed)
    blocks = b"".join(b"data: %b\n\n" % d for d in (openai, anthropic))
    lines = message_lines(b"0.500000", MessageBatch(blocks, 2, ""))
    assert [orjson.loads(line)["data"] for line in lines.splitlines()] == [orjson.loads(openai), orjson.loads(anthropic)]


def test_blocks_with_ids_take_the_fast_path(monkeypatch):
    """sse-starlette's blocks (id, event, data; CRLF) and resumable token streams (an id on every event) are read
    in C, which keeps the last event ID as the parser would."""
    from sse_capture_addon.sse import SSEParser

    p = SSEParser()
    p.feed(b"data: start\n\n")

    def general_path(*args):
        raise AssertionError("took the general path")

    monkeypatch.setattr(SSEParser, "_text", general_path)
    items = p.feed(b'id: 1\nevent: delta\ndata: {"i":0}\n\nevent: delta\nid: 2\ndata: x\n\ndata: y\n\n')
    assert [tuple(e) for e in items] == [("delta", '{"i":0}', "1", None), ("delta", "x", "2", None),
                                         ("message", "y", "2", None)]
    items = p.feed(b"id: 3\r\nevent: delta\r\ndata: z\r\n\r\nid:\r\ndata: w\r\n\r\n")
    assert [tuple(e) for e in items] == [("delta", "z", "3", None), ("message", "w", "", None)]
    assert (p.last_event_id, p.line_endings) == ("", {"lf": 2 + 10, "crlf": 7, "cr": 0})


@settings(max_examples=400)
@given(st.lists(st.one_of(junk, containers.map(canonical).filter(bool)), min_size=1, max_size=4),
       st.floats(0, 1e9) | st.sampled_from([0.0, 5e-7, 1.0000005, 2.0000005, 0.1 + 0.2, 86399.9999995]),
       st.integers(1, 2 ** 40))
def test_a_token_chunk_is_its_chunk_line_and_its_event_lines(datas, t, n):
    """What the recorder writes for a token stream's chunk in one C call: the lines blocks_chunk_line and
    message_lines give, time formatting included, or None exactly when exact_lines is."""
    datas = [d for d in datas if b"\n" not in d]
    if not datas:
        return
    blocks = b"".join(b"data: %b\n\n" % d for d in datas)
    got = token_chunk(blocks, len(datas), t, n)
    t_json = time_json(t)
    if exact_lines(blocks, len(datas), HEAD) is None:
        assert got is None
    else:
        assert got == blocks_chunk_line(t_json, n, len(datas)) + message_lines(t_json, MessageBatch(blocks, len(datas), ""))


@settings(max_examples=400)
@given(st.lists(st.tuples(st.text(st.characters(max_codepoint=0x9f), min_size=1, max_size=6),
                          st.one_of(junk, containers.map(canonical).filter(bool))), min_size=1, max_size=4),
       st.floats(0, 1e9) | st.sampled_from([0.0, 5e-7, 86399.9999995]), st.integers(1, 2 ** 40))
def test_a_typed_chunk_is_its_chunk_line_and_its_event_lines(events, t, n):
    """The same for Anthropic's shape, "event: TYPE" and "data: DATA" a block: the lines blocks_chunk_line and
    event_line_json give, or None when a type is not plain printable ASCII (or is "message") or a data not exact."""
    events = [(k, d) for k, d in events if "\n" not in k and "\r" not in k and b"\n" not in d and b"\r" not in d]
    if not events:
        return
    blocks = b"".join(b"event: %b\ndata: %b\n\n" % (k.encode(), d) for k, d in events)
    got = typed_chunk(blocks, len(events), t, n)
    t_json = time_json(t)
    plain = all(k.isascii() and k.isprintable() and '"' not in k and "\\" not in k and k != "message" for k, _ in events)
    if not plain or exact_lines(b"".join(b"data: %b\n\n" % d for _, d in events), len(events), HEAD) is None:
        assert got is None
    else:
        assert got == blocks_chunk_line(t_json, n, len(events)) + b"".join(
            event_line_json(t_json, k, d, "", None) for k, d in events)


def test_typed_chunk_refuses_what_it_does_not_write():
    blocks = b"event: t\ndata: {}\n\n"
    assert typed_chunk(blocks, 1, 1.5, 7) == b'{"t":1.500000,"kind":"chunk","n":7,"blocks":1}\n' \
        b'{"t":1.500000,"kind":"event","event":"t","data":{}}\n'
    for count in (0, 2, -1):
        assert typed_chunk(blocks, count, 1.0, 1) is None
    for other in (b"event: t\ndata: {}\n\n\n", b"event: t\ndata: {}\n", b"event: t\ndata: {}\n\nx", b"event: t\n\n",
                  b"event: \ndata: {}\n\n", b"data: {}\n\n", b"event: t\nid: 1\ndata: {}\n\n"):
        assert typed_chunk(other, 1, 1.0, 1) is None, other
    for t in (float("nan"), float("inf"), 1e300):
        assert typed_chunk(blocks, 1, t, 1) is None
    for args in [("event: t\ndata: {}\n\n", 1, 1.0, 1), (blocks, 1, "1", 1), (blocks, 1.0, 1.0, 1), (blocks, 1, 1.0),
                 (blocks, 1, 1.0, 1, True)]:  # (no crlf: it reads LF blocks only, and would say crlf of them)
        with pytest.raises(TypeError):
            typed_chunk(*args)


def test_token_chunk_refuses_what_it_does_not_write():
    blocks = b"data: {}\n\n"
    assert token_chunk(blocks, 2, 1.0, 1) is None  # not that many blocks
    assert token_chunk(b"data: x\n\n", 1, 1.0, 1) is None  # not exact JSON
    for t in (float("nan"), float("inf"), 1e300):  # the Python path writes those
        assert token_chunk(blocks, 1, t, 1) is None
    assert token_chunk(blocks, 1, 1e14, 1) == b'{"t":100000000000000.000000,"kind":"chunk","n":1,"blocks":1}\n' \
        b'{"t":100000000000000.000000,"kind":"event","event":"message","data":{}}\n'
    assert token_chunk(blocks, 1, 3, 1) == token_chunk(blocks, 1, 3.0, 1)  # an int time, as b"%.6f" % 3 formats it
    assert token_chunk(blocks, 1, 2.5, 4, True) == blocks_chunk_line(b"2.500000", 4, 1, crlf=True) \
        + b'{"t":2.500000,"kind":"event","event":"message","data":{}}\n'  # (blocks of a CRLF chunk, made LF)
    assert token_chunk(blocks, 1, 2.5, 4, False) == token_chunk(blocks, 1, 2.5, 4)
    for args in [("data: {}\n\n", 1, 1.0, 1), (blocks, 1, "1", 1), (blocks, 1.0, 1.0, 1), (blocks, 1, 1.0)]:
        with pytest.raises(TypeError):
            token_chunk(*args)
