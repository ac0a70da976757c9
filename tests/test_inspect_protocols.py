"""``lint`` presets for the OpenAI Responses API and the Vercel AI SDK's UI message stream, on streams recorded
through a real mitmdump: picked automatically, quiet on a good stream, and naming the broken rule on a bad one."""

from __future__ import annotations

import json
import re

import pytest

from harness import Mitmdump, Scenario
from inspect_helpers import recording_for, run, sse, stream_through
from sse_capture_addon.inspect.events import Selector, parse_path
from sse_capture_addon.inspect.protocols import Increasing, detect, rule_from_dict

AI_SDK_HEADERS = [("content-type", "text/event-stream"), ("x-vercel-ai-ui-message-stream", "v1")]


def part(**fields) -> bytes:
    return sse(None, fields)


AI_SDK_OK = [
    part(type="start", messageId="msg_1"), part(type="start-step"),
    part(type="text-start", id="t1"), part(type="text-delta", id="t1", delta="Let me "),
    part(type="text-delta", id="t1", delta="look."), part(type="text-end", id="t1"),
    part(type="tool-input-start", toolCallId="call_1", toolName="weather"),
    part(type="tool-input-delta", toolCallId="call_1", inputTextDelta='{"city":"Paris"}'),
    part(type="tool-input-available", toolCallId="call_1", toolName="weather", input={"city": "Paris"}),
    part(type="tool-output-available", toolCallId="call_1", output={"temp": 21}),
    part(type="finish-step"), part(type="finish"), b"data: [DONE]\n\n",
]
AI_SDK_BAD = [
    part(type="start", messageId="msg_2"),
    part(type="text-delta", id="t1", delta="orphan"),                            # #2: no text-start
    part(type="tool-output-available", toolCallId="call_2", output={"temp": 3}),  # #3: a result before its call
    part(type="tool-input-available", toolCallId="call_2", toolName="weather", input={}),
    part(type="text-start", id="t2"),                                            # never ended
    part(type="finish"),                                                         # and no [DONE]
]


def response_event(kind: str, seq: int, **fields) -> bytes:
    return sse(kind, {"type": kind, "sequence_number": seq, **fields})


def responses_stream(sequence: list[int], *, complete: bool = True) -> list[bytes]:
    kinds = [("response.created", {"response": {"id": "resp_1", "status": "in_progress"}}),
             ("response.output_item.added", {"output_index": 0, "item": {"type": "message", "id": "msg_1"}}),
             ("response.content_part.added", {"output_index": 0, "content_index": 0, "item_id": "msg_1"}),
             ("response.output_text.delta", {"output_index": 0, "content_index": 0, "item_id": "msg_1",
                                             "delta": "Hi"}),
             ("response.output_text.done", {"output_index": 0, "content_index": 0, "item_id": "msg_1", "text": "Hi"}),
             ("response.content_part.done", {"output_index": 0, "content_index": 0, "item_id": "msg_1"}),
             ("response.output_item.done", {"output_index": 0, "item": {"type": "message", "id": "msg_1"}}),
             ("response.output_item.added", {"output_index": 1, "item": {"type": "function_call"}}),
             ("response.function_call_arguments.delta", {"output_index": 1, "item_id": "fc_1", "delta": "{}"}),
             ("response.output_item.done", {"output_index": 1, "item": {"type": "function_call"}}),
             ("response.completed", {"response": {"id": "resp_1", "status": "completed"}})]
    if not complete:
        kinds = kinds[:4] + [("response.output_text.delta", kinds[3][1])]  # item 0 never done, no terminal
    return [response_event(kind, seq, **fields) for (kind, fields), seq in zip(kinds, sequence)]


def anthropic_overloaded() -> list[bytes]:
    """Anthropic's documented mid-stream error: an ``error`` event (overloaded_error) ends the stream while
    a content block is open, as the API sends it after a 200."""
    def ev(kind, **fields):
        return sse(kind, {"type": kind, **fields})
    return [ev("message_start", message={"id": "msg_1", "type": "message", "role": "assistant", "content": []}),
            ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"}),
            ev("error", error={"type": "overloaded_error", "message": "Overloaded"})]


STREAMS = {
    "aisdk-ok": (AI_SDK_OK, AI_SDK_HEADERS),
    "anthropic-overloaded": (anthropic_overloaded(), None),
    # the Responses API's error event in the middle of an output item
    "responses-error": (responses_stream(list(range(4))) + [response_event("error", 4, code="server_error",
                                                                          message="The server had an error")], None),
    "aisdk-bad": (AI_SDK_BAD, AI_SDK_HEADERS),
    "responses-ok": (responses_stream(list(range(11))), None),
    # 0, 1, 2, 4 (one lost), 3 (out of order); the text item never done, no terminal event
    "responses-bad": (responses_stream([0, 1, 2, 4, 3], complete=False), None),
}


@pytest.fixture(scope="module")
def protocol_recs(certs, servers, upstream_app, tmp_path_factory):
    work = tmp_path_factory.mktemp("protocols")
    out = {}
    for name, (steps, headers) in STREAMS.items():
        paced = [x for step in steps for x in (step, 0.005)]
        upstream_app.add(f"p-{name}", Scenario(paced, **({"headers": headers} if headers else {})))
    with Mitmdump(certs, work, record_dir=work / "recordings") as mitm:
        for name in STREAMS:
            stream_through(mitm, certs, f"{servers['h1'].base}/sse/p-{name}")
            out[name] = recording_for(mitm, f"p-{name}")
    return out


def _lint(path) -> tuple[int, str, list[dict]]:
    r = run("lint", path, "--json")
    [rec] = json.loads(r.out)["recordings"]
    return r.code, rec["protocol"], rec["findings"]


@pytest.mark.parametrize("name, protocol", [("aisdk-ok", "ai-sdk"), ("responses-ok", "openai-responses")])
def test_a_good_stream_is_recognised_and_passes(protocol_recs, name, protocol):
    assert _lint(protocol_recs[name]) == (0, protocol, [])


@pytest.mark.parametrize("name, protocol", [("anthropic-overloaded", "anthropic"),
                                            ("responses-error", "openai-responses")])
def test_a_stream_ended_by_its_protocols_error_event_has_no_unclosed_block_findings(protocol_recs, name, protocol):
    """The API's own error event (Anthropic's overloaded_error after a 200) ends the stream where it is: the
    blocks it leaves open are the error's doing, not a protocol violation (lint said 'content_block_start #2
    (data.index = '0') never closed by content_block_stop')."""
    assert _lint(protocol_recs[name]) == (0, protocol, [])


BAD_STREAM_FINDINGS = {  # a bad stream of each new preset: the findings lint must give, in order
    "aisdk-bad": ("ai-sdk", [  # a tool's result before its call, and text deltas outside their block
        ("rule-block", 1, "message text-delta data.id = 't1' outside an open message&data.type=text-start"),
        ("rule-follows", 2, "message tool-output-available without an earlier message&data.type=tool-input-available"
                            " with data.toolCallId = 'call_2'"),
        ("rule-block", None, "message&data.type=text-start #5 (data.id = 't2') never closed by "
                             "message&data.type=text-end"),
        ("no-terminal", None, "the stream never sent a terminal event (data=[DONE]); it ended: complete"),
    ]),
    "responses-bad": ("openai-responses", [  # a lost and a reordered event
        ("rule-increasing", 3, "data.sequence_number 4 after 2 (#3): 1 missing"),
        ("rule-increasing", 4, "data.sequence_number 3 after 4 (#4): out of order"),
        ("rule-block", None, "response.output_item.added #2 (data.output_index = '0') never closed by "
                             "response.output_item.done"),
        ("no-terminal", None, "the stream never sent a terminal event (response.completed or response.failed or "
                              "response.incomplete or error); it ended: complete"),
    ]),
}


@pytest.mark.parametrize("name", sorted(BAD_STREAM_FINDINGS))
def test_a_bad_stream_gives_exactly_its_findings(protocol_recs, name):
    protocol, expected = BAD_STREAM_FINDINGS[name]
    code, found_protocol, findings = _lint(protocol_recs[name])
    assert (code, found_protocol) == (1, protocol)
    found = [(f["code"], f["index"], f["message"]) for f in findings]
    assert found == expected, found


def test_the_text_report_shows_the_preset(protocol_recs):
    r = run("lint", protocol_recs["aisdk-bad"])
    assert r.code == 1 and re.search(r"#3 .* error rule-follows: message tool-output-available without", r.out), r.out


def test_detection():
    event = {"kind": "event", "event": "message", "data": {"type": "text-delta", "id": "t", "delta": "x"}}
    assert detect(event, "http://127.0.0.1/api/chat", [["X-Vercel-AI-UI-Message-Stream", "v1"]]) == "ai-sdk"
    assert detect(event, "http://127.0.0.1/api/chat", [["content-type", "text/event-stream"]]) is None
    assert detect({**event, "data": {"type": "start"}}, "http://127.0.0.1/api/chat") == "ai-sdk"
    assert detect({"kind": "event", "event": "response.in_progress", "data": {}},
                  "https://api.openai.com/v1/responses?x=1") == "openai-responses"
    created = {"kind": "event", "event": "response.created", "data": {"type": "response.created", "response": {}}}
    assert detect(created, "http://127.0.0.1/proxy") == "openai-responses"
    assert detect(None, "http://127.0.0.1/api/chat", [["x-vercel-ai-ui-message-stream", "v1"]]) == "ai-sdk"


def test_increasing_rule():
    def ev(seq):
        return {"kind": "event", "event": "e", "data": {"seq": seq}}

    def findings(values, contiguous):
        rule, out = Increasing(Selector.parse("*"), parse_path("data.seq"), contiguous), []
        for i, v in enumerate(values):
            rule.check(ev(v), i, lambda code, severity, message: out.append((i, message)))
        return out

    assert findings([5, 6, 7], True) == []                                 # any start (a resumed stream)
    assert findings([1, 3, 9], False) == []
    assert findings([1, 3], True) == [(1, "data.seq 3 after 1 (#1): 1 missing")]
    assert findings([1, 2, 2, 3], True) == [(2, "data.seq 2 after 2 (#2): repeated")]
    assert findings([1, 3, 2, 4], False) == [(2, "data.seq 2 after 3 (#2): out of order")]  # 4 follows 3
    assert findings([1, "2", True], False) == [(1, "e has no whole number at data.seq"),
                                               (2, "e has no whole number at data.seq")]
    rule = rule_from_dict({"kind": "increasing", "event": "*", "key": "data.seq", "contiguous": True})
    assert isinstance(rule, Increasing) and rule.contiguous
    for bad, message in [({"kind": "increasing", "event": "*"}, "needs key"),
                         ({"kind": "increasing", "event": "*", "key": "data.seq", "contiguous": "yes"}, "true or false")]:
        with pytest.raises(ValueError, match=message):
            rule_from_dict(bad)
