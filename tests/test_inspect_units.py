"""Library pieces and bad input, on hand-made recordings (the commands on real ones are in
test_inspect_commands.py)."""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import tracemalloc
from pathlib import Path

import orjson
import pytest

from inspect_helpers import run
from replay_helpers import ev, record_body, write_recording
from sse_capture_addon.contentview import render_events
from sse_capture_addon.inspect.diff import strip
from sse_capture_addon.inspect.events import Selector, parse_path
from sse_capture_addon.inspect.stats import EXACT_LIMIT, Distribution, stream_stats
from sse_capture_addon.recording import event_line, line
from sse_capture_addon.shown import printable

pytest_plugins = ["inspect_fixtures"]  # the session-wide `recs` recordings

COMMANDS = [["ls"], ["show"], ["stats"], ["lint"], ["diff", "{f}"], ["cat"], ["timeline", "-o", "{tmp}/x.html"]]


def header(**extra) -> bytes:
    return line({"kind": "header", "format": "sse-capture", "version": 1, "stream_id": "s1",
                 "started": "2024-05-01T12:00:00.000000Z", "started_unix": 1714564800.0,
                 "request": {"method": "GET", "url": "http://x/sse", "headers": []},
                 "response": {"status": 200, "headers": []}, **extra})


def end(t: float, events: int, **extra) -> bytes:
    return line({"t": t, "kind": "end", "reason": "complete", "events": events, "bytes": 0, **extra})


def write(path, *events, **end_fields):
    path.write_bytes(header() + b"".join(event_line(t, ty, data, "", None) for t, ty, data in events)
                     + end(events[-1][0] if events else 0, len(events), **end_fields))
    return path


# --- bad input ---------------------------------------------------------------------------------------------

def _command(args, path, tmp_path):
    out = [a.format(f=path, tmp=tmp_path) for a in args]
    return [out[0], path, *out[1:]]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_bad_input_is_one_line_naming_file_and_line(args, recs, tmp_path):
    not_rec = tmp_path / "notes.jsonl"
    not_rec.write_text('{"hello": "world"}\n')
    truncated = tmp_path / "cut.jsonl"
    data = recs["anthropic-ok"].read_bytes()
    truncated.write_bytes(data[:50])  # a real recording cut in its header line
    # cut mid-line, then more lines (a cut last line is a write a killed proxy did not finish: read, not refused)
    corrupt = tmp_path / "corrupt.jsonl"
    end = data.index(b"\n", 2000)
    corrupt.write_bytes(data[:end - 7] + data[end:])
    empty_file = tmp_path / "empty.jsonl"
    empty_file.write_bytes(b"")
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to("loop.jsonl")
    cases = {
        not_rec: f"{not_rec}:1: missing header line",
        truncated: f"{truncated}:1: truncated line (no newline at end of file)",

        empty_file: f"{empty_file}:1: empty file: missing header line",
        tmp_path / "missing.jsonl": f"{tmp_path / 'missing.jsonl'}: no such file or directory",
        loop: f"{loop}: too many levels of symbolic links",
    }
    if args[0] != "ls":  # ls reads the header and the end line only
        cases[corrupt] = f"{corrupt}:{data[:end].count(b'\n') + 1}: invalid JSON"
    if args[0] in ("show", "cat", "diff"):
        cases[empty_dir] = f"{empty_dir}: is a directory; expected a recording file"
    else:
        cases[empty_dir] = f"{empty_dir}: no recordings (*.jsonl) here"
    for path, expected in cases.items():
        r = run(*_command(args, path, tmp_path))
        assert r.code == 2, (path, r.out, r.err)
        assert r.err.count("\n") == 1 and r.err.startswith(f"sse-capture: {expected}"), (path, r.err)
        assert "Traceback" not in r.out + r.err


def test_a_bad_file_in_a_directory_does_not_hide_the_good_ones(recs, tmp_path):
    shutil.copy(recs["anthropic-ok"], tmp_path / "good.jsonl")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    r = run("ls", tmp_path, "--json")
    assert r.code == 2 and len(orjson.loads(r.out)) == 1
    assert r.err.startswith(f"sse-capture: {tmp_path / 'bad.jsonl'}:1: invalid JSON")
    r = run("stats", tmp_path, "--json")
    assert r.code == 2 and orjson.loads(r.out)["totals"]["events"] == 8


def test_every_command_explains_itself():
    for name in ("ls", "show", "stats", "lint", "diff", "cat", "timeline"):
        r = run(name, "--help")
        assert r.code == 0 and "Usage:" in r.out and len(r.out.splitlines()) > 8, name


# --- lint, diff, stats on small hand-made recordings ---------------------------------------------------------

def test_lint_strict_fails_on_warnings_only(tmp_path):
    rec = write(tmp_path / "bom.jsonl", (0.1, "message", "hi"), bom=True, line_endings={"lf": 3})
    assert run("lint", rec).code == 0
    r = run("lint", rec, "--strict")
    assert r.code == 1 and "warning bom:" in r.out


def test_lint_anthropic_block_rules(tmp_path):
    def ev(t, kind, **fields):
        return (t, kind, {"type": kind, **fields})

    rec = write(tmp_path / "a.jsonl", ev(0.1, "message_start", message={}), ev(0.2, "content_block_start", index=0,
                content_block={}), ev(0.3, "content_block_delta", index=1, delta={}), ev(0.4, "message_delta"),
                ev(0.5, "message_stop"), (0.6, "surprise", {"type": "ping"}))
    r = run("lint", rec, "--json")
    findings = [(f["index"], f["code"], f["severity"]) for f in orjson.loads(r.out)["recordings"][0]["findings"]]
    assert findings == [(2, "rule-block", "error"), (5, "after-terminal", "error"), (5, "unknown-type", "warning"),
                        (5, "rule-json", "error"), (None, "rule-block", "error")]


def _agent_on_anthropic(tmp_path):
    """An Anthropic-shaped stream (auto-detected as anthropic) with an agent's own tool_use and done events."""
    def ev(t, kind, **fields):
        return (t, kind, {"type": kind, **fields})

    return write(tmp_path / "agent.jsonl", ev(0.1, "message_start", message={}), ev(0.2, "tool_use", id="c1"),
                 ev(0.3, "message_delta"), ev(0.4, "message_stop"), ev(0.5, "done"))


def _lint(*args):
    r = run("lint", *args, "--json")
    [rec] = orjson.loads(r.out)["recordings"]
    return rec["protocol"], [(f["index"], f["code"]) for f in rec["findings"]]


def test_a_rules_files_preset_is_the_base_and_its_types_add_to_the_presets(tmp_path):
    rec = _agent_on_anthropic(tmp_path)
    assert _lint(rec) == ("anthropic", [(1, "unknown-type"), (4, "after-terminal"), (4, "unknown-type")])
    rules = tmp_path / "agent.toml"
    rules.write_text('preset = "anthropic"\nterminal = ["done"]\n[[rules]]\nkind = "types"\nknown = ["tool_use", "done"]\n')
    # once each, not once for the preset detected and again for the file's; tool_use and done are known now
    assert _lint(rec, "--rules", rules) == (f"anthropic+{rules}", [(4, "after-terminal")])
    # a types rule in the file adds to the detected preset's types too
    rules.write_text('[[rules]]\nkind = "types"\nknown = ["tool_use", "done"]\n')
    assert _lint(rec, "--rules", rules) == (f"anthropic+{rules}", [(4, "after-terminal")])
    assert _lint(rec, "--rules", rules, "--terminal", "done")[0] == f"anthropic+{rules}+custom"

    rules.write_text('preset = "ai-sdk"\n')  # instead of the anthropic one detected
    protocol, findings = _lint(rec, "--rules", rules)
    assert protocol == "ai-sdk" and findings[-1] == (None, "no-terminal")
    assert {code for _, code in findings} == {"unknown-type", "no-terminal"}
    rules.write_text('preset = "none"\n[[rules]]\nkind = "types"\nknown = ["message_start"]\n')
    assert _lint(rec, "--rules", rules) == (str(rules), [(1, "unknown-type"), (2, "unknown-type"),
                                                         (3, "unknown-type"), (4, "unknown-type")])
    assert run("lint", rec, "--rules", rules, "--preset", "none").code == 0  # the same preset twice is fine
    r = run("lint", rec, "--rules", rules, "--preset", "openai")
    assert r.code == 2 and f'two presets: --preset openai and preset = "none" in {rules}' in r.err
    rules.write_text('preset = "auto"\n')  # the same as leaving it out: --preset decides
    assert _lint(rec, "--rules", rules, "--preset", "none")[0] == "none"
    rules.write_text('preset = "anthropics"\n')
    r = run("lint", rec, "--rules", rules)
    assert r.code == 2 and "unknown preset 'anthropics' (auto, none, anthropic," in r.err


def test_a_problem_two_rules_find_in_one_event_is_reported_once(tmp_path):
    def ev(t, kind, **fields):
        return (t, kind, {"type": kind, **fields})

    rec = write(tmp_path / "a.jsonl", ev(0.1, "message_start", message={}, seq=1),
                ev(0.2, "content_block_start", index=0, content_block={}, seq=2),
                (0.3, "content_block_delta", "not json"), (0.4, "message_delta", {"type": "ping", "seq": 4}),
                ev(0.5, "content_block_stop", index=0), ev(0.6, "message_stop", seq=6))
    rules = tmp_path / "rules.json"
    rules.write_text('{"rules": [{"kind": "json", "event": "*", "has": ["data.type", "data.seq"], '
                     '"type_path": "data.type"}]}')

    def findings(*args):
        r = run("lint", rec, "--preset", "anthropic", *args, "--json")
        [recording] = orjson.loads(r.out)["recordings"]
        return [(f["index"], f["code"], f["message"]) for f in recording["findings"]]

    not_json = (2, "rule-json", "content_block_delta data is not JSON")  # the preset's json rules, and the file's
    outside = (2, "rule-block", "content_block_delta data.index = None outside an open content_block_start")
    wrong_type = (3, "rule-json", "data.type is 'ping', but the event type is 'message_delta'")
    assert findings() == [not_json, outside, wrong_type]
    # the file's rule says the same as the preset's about #3 and #4, once each; what only it says is kept
    assert findings("--rules", rules) == [not_json, outside, wrong_type,
                                          (4, "rule-json", "content_block_stop data has no data.seq")]
    r = run("lint", rec, "--preset", "anthropic", "--rules", rules)
    assert r.code == 1 and r.out.count("data is not JSON") == 1 and r.out.count("but the event type is") == 1
    assert "4 problem(s) in 1 of 1 recording(s)" in r.out


def test_what_a_stream_the_client_left_never_sent_is_a_warning(tmp_path):
    # a user pressing "stop generating" ends the stream: no terminal event, a block left open, an event cut short
    # are not the server's doing, so not errors (lint passes); --strict still fails on them
    def ev(t, kind, **fields):
        return (t, kind, {"type": kind, **fields})

    events = (ev(0.1, "message_start", message={}), ev(0.2, "content_block_start", index=0, content_block={}),
              ev(0.3, "content_block_delta", index=0, delta={}))
    left = write(tmp_path / "left.jsonl", *events, reason="client_disconnected",
                 tail="event: content_block_delta\ndata: {")
    r = run("lint", left, "--json")
    findings = orjson.loads(r.out)["recordings"][0]["findings"]
    assert r.code == 0 and {f["severity"] for f in findings} == {"warning"}, findings
    assert {f["code"] for f in findings} == {"rule-block", "no-terminal", "unterminated-event"}
    assert all(f["message"].endswith("(the client went away first)") for f in findings)
    assert run("lint", left, "--strict").code == 1
    cut = write(tmp_path / "cut.jsonl", *events, reason="server_error", tail="event: x\ndata: {")
    r = run("lint", cut, "--json")
    severities = {f["code"]: f["severity"] for f in orjson.loads(r.out)["recordings"][0]["findings"]}
    assert r.code == 1 and severities == {"rule-block": "error", "no-terminal": "error", "unterminated-event": "error"}


def test_diff_compares_json_not_its_spelling(tmp_path):
    a = write(tmp_path / "a.jsonl", (0.1, "m", '{"a": 1, "b": [1, 2]}'), (0.2, "m", "text"))
    b = write(tmp_path / "b.jsonl", (0.5, "m", {"b": [1, 2], "a": 1}), (0.6, "m", "text"))
    assert run("diff", a, b).code == 0
    c = write(tmp_path / "c.jsonl", (0.1, "m", {"b": [1, 3], "a": 1}), (0.2, "m", "text"))
    r = run("diff", a, c)
    assert r.code == 1 and "data.b[1]: 2 ≠ 3" in r.out
    assert run("diff", a, c, "-i", "data.b[*]").code == 0


def test_diff_lists_the_ids_and_the_kind_of_events_that_differ_in_them(tmp_path):
    def rec(name, ids, xs=(1, 2, 3)):
        return write_recording(tmp_path / name, [ev(0.1 * n, {"x": x}, "delta", id=i)
                                                 for n, (i, x) in enumerate(zip(ids, xs), start=1)])

    a, b = rec("a.jsonl", "123"), rec("b.jsonl", "178")
    r = run("diff", a, b)
    assert r.code == 1 and "first difference at event #2 (id): id '2' ≠ '7'" in r.out
    lines = r.out.splitlines()
    assert """    #1       0.100s  delta  {"x":1}""" in lines   # equal: no id
    assert """  - A #2       0.200s  delta  id='2'  {"x":2}""" in lines
    assert """  + B #2       0.200s  delta  id='7'  {"x":2}""" in lines
    assert """    A #3       0.300s  delta  id='3'  {"x":3}""" in lines   # the ids of what follows differ too
    assert """    B #3       0.300s  delta  id='8'  {"x":3}""" in lines
    d = orjson.loads(run("diff", a, b, "--json").out)["divergence"]  # --json: the same keys; the records hold ids
    assert set(d) == {"index", "what", "detail", "a", "b"}
    assert (d["what"], d["a"]["id"], d["b"]["id"]) == ("id", "2", "7")

    no_id = rec("c.jsonl", ["1", None, "3"])
    assert """  + B #2       0.200s  delta  id=''  {"x":2}""" in run("diff", a, no_id).out.splitlines()
    other = rec("d.jsonl", "178", xs=(1, 2, 30))
    r = run("diff", a, other, "-i", "id")  # ids left out of the comparison: not shown
    assert "first difference at event #3 (data): data.x: 3 ≠ 30" in r.out and "id=" not in r.out

    big = write_recording(tmp_path / "big.jsonl", [{"t": 0.1, "kind": "oversized", "event": "delta", "size": 9000,
                                                    "data_prefix": "y" * 200}])
    whole = write_recording(tmp_path / "whole.jsonl", [ev(0.1, "y" * 200, "delta")])
    r = run("diff", whole, big)
    assert r.code == 1 and "first difference at event #1 (data): event ≠ oversized" in r.out
    [row] = [line for line in r.out.splitlines() if line.startswith("  + B #1")]
    assert "delta  [oversized: 9000 chars, data not kept] yyy" in row


def test_strip_paths_with_wildcards():
    value = {"id": 1, "message": {"id": 2, "items": [{"id": 3, "x": 1}]}, "created": 5}
    assert strip(value, parse_path("data.**.id")[1:]) == {"message": {"items": [{"x": 1}]}, "created": 5}
    assert strip(value, parse_path("data.message.*")[1:]) == {"id": 1, "message": {}, "created": 5}
    assert strip(value, parse_path("data.message.items[0].x")[1:])["message"]["items"] == [{"id": 3}]


def test_selectors():
    done = {"kind": "event", "event": "message", "data": "[DONE]", "t": 0}
    tool = {"kind": "event", "event": "content_block_start", "t": 0,
            "data": {"type": "content_block_start", "content_block": {"type": "tool_use"}}}
    assert Selector.parse("data=[DONE]").matches(done)
    assert not Selector.parse("data=[DONE]").matches(tool)
    assert Selector.parse("content_block_start&data.content_block.type=tool_use").matches(tool)
    assert not Selector.parse("content_block_start&data.content_block.type=text").matches(tool)
    assert Selector.parse("*").matches(done)
    with pytest.raises(ValueError):
        parse_path("payload.id")


def test_distribution_is_exact_then_within_one_percent():
    rng = random.Random(4)
    samples = [rng.expovariate(20) for _ in range(EXACT_LIMIT * 5)]
    small = Distribution()
    for x in samples[:1000]:
        small.add(x)
    ordered = sorted(samples[:1000])
    assert small.quantile(0.5) == ordered[499] and small.quantile(0.99) == ordered[989]
    big = Distribution()
    for x in samples:
        big.add(x)
    ordered = sorted(samples)
    for p in (0.5, 0.9, 0.99):
        exact = ordered[int(p * len(samples)) - 1]
        assert abs(big.quantile(p) - exact) <= 0.011 * exact, p
    assert big.max == max(samples) and big.count == len(samples)


def test_stats_memory_does_not_grow_with_the_recording(tmp_path):
    def make(n: int):
        path = tmp_path / f"r{n}.jsonl"
        with open(path, "wb") as f:
            f.write(header())
            for i in range(n):
                f.write(event_line(i * 0.01, "delta" if i % 7 else "ping", {"i": i, "text": "x" * 60}, "", None))
            f.write(end(n * 0.01, n))
        return path

    def peak(path) -> int:
        tracemalloc.start()
        stats = stream_stats(str(path))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, stats

    small_peak, _ = peak(make(2_000))
    big_peak, stats = peak(make(120_000))   # ~12 MB
    assert stats.events == 120_000 and stats.gap_summary["gap_p50"] == pytest.approx(0.01, rel=0.02)
    assert big_peak < small_peak + 1_000_000, (small_peak, big_peak)



def test_the_unterminated_tail_of_a_dead_proxys_recording_is_found_in_bounded_memory(tmp_path):
    """show, lint, diff and timeline read a recording without an end line (its proxy died) again from its raw chunks
    to find the tail its client got. That second pass read the whole file into memory: 720 MB for a 105 MB
    recording of an hours-long stream, where the first pass (the events) stays flat."""
    from sse_capture_addon.inspect.reader import RecordingStream, unterminated_tail

    def make(n: int):
        chunks = [b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":" tok%d"}}\n\n' % i for i in range(n)]
        return record_body(tmp_path / f"died{n}.jsonl", *chunks, b"event: message_stop\ndata: {",
                           times=[i * 0.01 for i in range(1, n + 2)], died=True)

    def peak(path) -> tuple[int, object]:
        stream = RecordingStream(path)
        for _ in stream:
            pass
        assert stream.ending == "proxy_died"
        tracemalloc.start()
        tail = unterminated_tail(stream)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, tail

    small_peak, small_tail = peak(make(1_000))
    big_peak, big_tail = peak(make(20_000))   # ~3.5 MB
    assert small_tail.text == big_tail.text == "event: message_stop\ndata: {"
    assert big_peak < small_peak + 1_000_000, (small_peak, big_peak)

def test_the_rules_file_example_in_the_docs_loads(tmp_path):
    from harness import ROOT
    from sse_capture_addon.inspect.lint import LintOptions, choose_protocol
    from sse_capture_addon.inspect.protocols import Block, First, Follows, Increasing, Json, KnownTypes, load_rules

    docs = (ROOT / "docs" / "inspect.md").read_text()
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "agent.toml").write_text(example)
    rules = load_rules(str(tmp_path / "agent.toml"))
    assert rules.preset == "anthropic"
    assert [type(r) for r in rules.rules] == [Follows, First, Block, Json, KnownTypes, Increasing]
    protocol = choose_protocol(LintOptions(preset=rules.preset, extra=rules), None, "http://x/sse")
    assert [str(s) for s in protocol.terminal] == ["message_stop", "error", "done"]
    [known] = [r for r in protocol.rules if isinstance(r, KnownTypes)]
    assert {"content_block_delta", "tool_use", "session_start"} <= set(known.known)


def test_preset_detection_needs_the_protocols_shape_not_just_an_event_name():
    from sse_capture_addon.inspect.protocols import detect

    anthropic = {"event": "message_start", "data": {"type": "message_start", "message": {"id": "msg_1"}}}
    look_alike = {"event": "message_start", "data": {"type": "message_start", "id": "msg_1"}}  # the demo agent
    openai = {"event": "message", "data": {"object": "chat.completion.chunk", "choices": []}}
    assert detect(anthropic, "https://api.example/x") == "anthropic"
    assert detect(look_alike, "http://127.0.0.1/api/chat") is None
    assert detect(look_alike, "https://api.example/v1/messages") == "anthropic"
    assert detect(openai, "http://127.0.0.1/x") == "openai"
    ping = {"event": "ping", "data": {"type": "ping"}}  # an agent's keep-alive first (docs/inspect.md's rules example)
    assert detect(ping, "http://127.0.0.1/api/agent") is None
    assert detect(ping, "https://api.anthropic.com/v1/messages") == "anthropic"


# --- recordings the QA pass found mishandled ---------------------------------------------------------------

@pytest.mark.parametrize("left_out", ["tail_redacted", "tail_dropped"])
def test_a_tail_kept_only_as_its_size_is_still_an_unterminated_event(left_out, tmp_path):
    """With key redaction (or a full disk) the end line keeps only the size of an unterminated tail."""
    rec = write(tmp_path / "tail.jsonl", (0.1, "message", "one"), tail=None, **{left_out: True}, tail_size=35)
    why = "redacted when recorded" if left_out == "tail_redacted" else "left out of the end line when the disk was full"
    r = run("lint", rec, "--json")
    [finding] = orjson.loads(r.out)["recordings"][0]["findings"]
    assert r.code == 1 and finding["code"] == "unterminated-event" and finding["index"] == 1
    assert finding["message"].endswith(f"which clients drop: 35 chars, not kept ({why})")
    shown = run("show", rec).out.splitlines()
    assert shown[-1] == f"── unterminated last event, not delivered: 35 chars, not kept ({why})"
    d = orjson.loads(run("diff", rec, write(tmp_path / "b.jsonl", (0.1, "message", "one")), "--json").out)
    assert d["divergence"]["what"] == "ending"
    assert d["ending_a"] == f"complete with unterminated tail 35 chars, not kept ({why})"
    assert run("timeline", rec, "-o", tmp_path / "t.html").code == 0
    assert "complete · unterminated event" in (tmp_path / "t.html").read_text()
    # a size of 0 is no tail
    empty = write(tmp_path / "none.jsonl", (0.1, "message", "one"), tail=None, **{left_out: True}, tail_size=0)
    assert run("lint", empty).code == 0 and "unterminated" not in run("show", empty).out


def test_lint_and_stats_count_the_silence_before_any_event_and_after_the_last(tmp_path):
    """A stall is the same silence for both: from the start to the first event, between events, and from the last
    event to the end line (or, with no end line, the last line)."""
    keepalive_only = tmp_path / "keepalive.jsonl"
    keepalive_only.write_bytes(header() + line({"t": 100.0, "kind": "comment", "text": " keepalive"}) + end(100.5, 0))
    proxy_died = tmp_path / "died.jsonl"
    proxy_died.write_bytes(header() + event_line(0.1, "message", "a", "", None)
                           + line({"t": 100.0, "kind": "comment", "text": " keepalive"}))
    expected = {keepalive_only: (None, 0.0, 100.5, "from the start until the end (the stream sent no event at all)"),
                proxy_died: (0, 0.1, 99.9, "after the last event #1, until the end")}
    for rec, (index, start, seconds, where) in expected.items():
        r = run("lint", rec, "--json")
        [finding] = orjson.loads(r.out)["recordings"][0]["findings"]
        assert r.code == 1 and finding["code"] == "stall", rec
        assert (finding["index"], finding["t"]) == (index, start)
        assert finding["message"] == f"no event for {seconds:.3f}s {where} (threshold 30s)"
        [stats] = orjson.loads(run("stats", rec, "--json").out)["recordings"]
        assert stats["longest_stall"]["seconds"] == pytest.approx(seconds)
        assert stats["longest_stall"]["start"] == start
        assert run("lint", rec, "--max-stall", "101").code == 0


CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # all but the newline ending each line
OUR_STYLES = re.compile("\x1b\\[[0-9;]*m")


def test_control_characters_from_a_recording_are_shown_escaped(tmp_path):
    """ESC, BEL, backspace... in data, types, ids, comments, URLs, messages and file names would drive the
    terminal; piped, click strips escape sequences and the data shown would silently change."""
    h = orjson.loads(header())
    h["request"]["url"] = "http://x/\x1b]0;TITLE\x07"
    rec = tmp_path / "r\x1b[2J.jsonl"
    rec.write_bytes(line(h) + event_line(0.1, "ty\x1bpe", "red\x1b[31m TEXT\x1b[0m\x08\x08XX\x9b", "id\x07", None)
                    + line({"t": 0.2, "kind": "comment", "text": " ping\x1b[1A"})
                    + line({"t": 0.3, "kind": "error", "what": "parse", "message": "bad\x07byte"})
                    + end(0.4, 1, reason="server_error", message="reset\x1b[K", tail="data: cut\x1b[2J"))
    other = write(tmp_path / "other.jsonl", (0.1, "ty\x1bpe", "blue\x1b[34m"))
    for env in ({}, {"NO_COLOR": "1"}):
        for color in (False, True):
            outputs = [run("show", rec, color=color, env=env), run("show", rec, "-p", color=color, env=env),
                       run("diff", rec, other, color=color, env=env), run("ls", tmp_path, color=color, env=env),
                       run("stats", tmp_path, color=color, env=env), run("lint", tmp_path, color=color, env=env)]
            for r in outputs:
                assert r.code in (0, 1), r.err
                assert not CONTROLS.search(OUR_STYLES.sub("", r.out + r.err)), r.out
    shown = run("show", rec).out
    assert r"red\x1b[31m TEXT\x1b[0m\x08\x08XX\x9b" in shown and r"ty\x1bpe" in shown and r"id=id\x07" in shown
    assert r": ping\x1b[1A" in shown and r"bad\x07byte" in shown and r"reset\x1b[K" in shown
    assert r"data: cut\x1b[2J" in shown and r"http://x/\x1b]0;TITLE\x07" in shown
    diffed = run("diff", rec, other).out  # (their ids differ: the listing shows them)
    assert r"ty\x1bpe  id='id\x07'  red\x1b[31m" in diffed and r"ty\x1bpe  id=''  blue\x1b[34m" in diffed
    assert r"r\x1b[2J.jsonl" in run("ls", tmp_path).out
    assert r"has a gap (parse): bad\x07byte" in run("lint", rec, "--strict").out
    # the exact text stays in --json
    first = orjson.loads(run("show", rec, "--json").out.splitlines()[0])
    assert first["data"] == "red\x1b[31m TEXT\x1b[0m\x08\x08XX\x9b"


BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def test_bidirectional_controls_from_a_recording_are_shown_escaped(tmp_path):
    """A right-to-left override (or isolate, embedding, mark) in a recording would show the rest of the line
    reordered ("Trojan Source"): text for people shows them as escapes; --json keeps the exact text."""
    h = orjson.loads(header())
    h["request"]["url"] = "http://x/sse?user=\u202enimda\u202c"
    rec = tmp_path / "r\u2067.jsonl"
    rec.write_bytes(line(h) + event_line(0.1, "ty\u200fpe", 'tool \u2066"rm -rf /"\u2069 ok', "id\u061c", None)
                    + line({"t": 0.2, "kind": "comment", "text": " ping\u202d"})
                    + end(0.4, 1, reason="server_error", message="reset\u202a"))
    other = write(tmp_path / "other.jsonl", (0.1, "ty\u200fpe", "x\u200e"))
    for r in (run("show", rec), run("show", rec, "-p"), run("diff", rec, other), run("ls", tmp_path),
              run("stats", tmp_path), run("lint", tmp_path, "--strict")):
        assert r.code in (0, 1), r.err
        assert not BIDI.search(r.out + r.err), r.out
    shown = run("show", rec).out
    assert r"http://x/sse?user=\u202enimda\u202c" in shown and r"ty\u200fpe" in shown and r"id=id\u061c" in shown
    assert r'tool \u2066"rm -rf /"\u2069 ok' in shown and r": ping\u202d" in shown and r"reset\u202a" in shown
    assert r"ty\u200fpe  id=''  x\u200e" in run("diff", rec, other).out  # (their ids differ: shown)
    listed = run("ls", tmp_path).out
    assert r"r\u2067.jsonl" in listed and r"user=\u202enimda\u202c" in listed
    # machine-readable output is valid JSON holding the exact text
    first = orjson.loads(run("show", rec, "--json").out.splitlines()[0])
    assert (first["event"], first["data"], first["id"]) == ("ty\u200fpe", 'tool \u2066"rm -rf /"\u2069 ok', "id\u061c")
    rows = {row["path"]: row for row in orjson.loads(run("ls", tmp_path, "--json").out)}
    assert rows[str(rec)]["url"] == "http://x/sse?user=\u202enimda\u202c"


def test_a_file_name_that_is_not_utf8_is_written_escaped(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    name = os.fsdecode(os.path.join(os.fsencode(folder), b"r\xff.jsonl"))
    write(Path(name), (0.1, "message", "one"))
    expected = str(folder / "r\\xff.jsonl")
    assert [row["path"] for row in orjson.loads(run("ls", folder, "--json").out)] == [expected]
    stats = orjson.loads(run("stats", folder, "--json").out)
    assert stats["recordings"][0]["path"] == stats["totals"]["longest_stall"]["path"] == expected
    assert orjson.loads(run("lint", folder, "--json").out)["recordings"][0]["path"] == expected
    d = run("diff", name, name, "--json")
    assert d.code == 0 and orjson.loads(d.out)["a"] == expected
    assert run("ls", folder).out.splitlines()[1].endswith(r"r\xff.jsonl")
    r = run("timeline", folder, "-o", tmp_path / "t.html")
    assert r.code == 0 and r"r\xff.jsonl" in (tmp_path / "t.html").read_text()


def test_a_file_a_proxy_has_only_just_created_is_in_progress_not_bad(tmp_path):
    """The proxy creates a recording, locks it, then writes its header: in between, it is not a bad file."""
    good = write(tmp_path / "a.jsonl", (0.1, "message", "one"))
    empty, torn = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    empty.write_bytes(b"")
    torn.write_bytes(header()[:40])
    locks = [os.open(p, os.O_RDONLY) for p in (empty, torn)]
    try:
        for fd in locks:
            fcntl.flock(fd, fcntl.LOCK_EX)
        for command in ("ls", "stats", "lint"):
            r = run(command, tmp_path, "--json")
            assert r.code == 0, (command, r.err)
            assert r.err.splitlines() == [f"sse-capture: {p}: still being written, no header line yet; left out"
                                          for p in (empty, torn)]
        assert [row["path"] for row in orjson.loads(run("ls", tmp_path, "--json").out)] == [str(good)]
        shown = run("show", empty)
        assert shown.code == 0 and "has not written its header line yet" in shown.out
        assert orjson.loads(run("show", torn, "--json").out)["ending"] == "in_progress"
    finally:
        for fd in locks:
            os.close(fd)
    # no proxy holds it: a bad file after all
    r = run("ls", tmp_path)
    assert r.code == 2 and f"{empty}:1: empty file: missing header line" in r.err


def test_cat_raw_of_a_stream_that_sent_nothing_writes_nothing(tmp_path):
    rec = tmp_path / "empty.jsonl"
    rec.write_bytes(header(raw_chunks=True) + end(0.002, 0))
    r = run("cat", rec, "--raw", "--speed", "max")
    assert (r.code, r.out_bytes, r.err) == (0, b"", "")
    rec.write_bytes(header() + end(0.002, 0))  # recorded without raw chunks: the error is right
    r = run("cat", rec, "--raw", "--speed", "max")
    assert r.code == 2 and "this recording has none (record with sse_capture_raw_chunks=on)" in r.err
    rec.write_bytes(header(raw_chunks=False, redacted_keys=["password"]) + end(0.002, 0))
    r = run("cat", rec, "--raw", "--speed", "max")  # key redaction never stores raw bytes: say so, not "record with"
    assert r.code == 2 and "made with sse_capture_redact_keys, which stores no raw bytes" in r.err


def test_cat_streams_a_long_recording_in_bounded_memory(tmp_path):
    """cat read the whole recording and built every write before the first one: 836 MB of memory for a 105 MB
    recording of an hours-long stream (and 15 s before `cat | head` printed a line). It now reads the file as it
    writes, the end line first (line endings, tail), in both modes; the bytes are the same."""
    import subprocess
    import sys

    from harness import CHECKOUT_ENV, ROOT

    def make(n: int):
        chunks = [b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":" tok%d"}}\n\n' % i for i in range(n)]
        return record_body(tmp_path / f"r{n}.jsonl", *chunks, b"data: tail",
                           times=[i * 0.01 for i in range(1, n + 2)])

    def peak(path, *args) -> tuple[int, bytes]:
        """The peak RSS (KiB) of `sse-capture cat --speed max` on path, and what it wrote"""
        # (VmHWM, not ru_maxrss: that one keeps the RSS of the pytest process forked to start it)
        code = ("import re, sys\nfrom sse_capture_addon.cli import main\nsys.argv = sys.argv[1:]\n"
                "try:\n    main()\nfinally:\n"
                "    print(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1], file=sys.stderr)")
        r = subprocess.run([sys.executable, "-c", code, "sse-capture", "cat", "--speed", "max", *args, str(path)],
                           capture_output=True, env=CHECKOUT_ENV, cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        return int(r.stderr.split()[-1]), r.stdout

    small, big = make(1_000), make(40_000)   # ~8 MB
    for args in ((), ("--raw",)):
        small_peak, _ = peak(small, *args)
        big_peak, out = peak(big, *args)
        assert out.endswith(b' tok39999"}}\n\ndata: tail') and out.count(b"\n\n") == 40_000
        assert big_peak < small_peak + 10_000, (args, small_peak, big_peak)

@pytest.mark.parametrize("length, width", [(5000, 40), (5000, 160), (100, 30), (41, 40), (10**6, 20)])
def test_shorten_says_how_many_characters_it_left_out(length, width):
    from sse_capture_addon.inspect.fmt import shorten
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    shown = shorten(text, width)
    kept, _, note = shown.partition("… (+")
    assert text.startswith(kept) and note == f"{length - len(kept)} chars)"
    assert len(shown) <= max(width, len(kept) + len(f"… (+{length} chars)"))


def test_json_output_keeps_a_retry_beyond_64_bits(tmp_path):
    """A retry field is any run of digits: the recorder writes one beyond 64 bits (with json, as orjson cannot), and
    every --json output must too, not crash."""
    big = 2**64
    a = record_body(tmp_path / "a.jsonl", b"retry: %d\ndata: x\n\nretry: %d\n\n" % (big, big + 1))
    b = record_body(tmp_path / "b.jsonl", b"retry: %d\ndata: y\n\n" % big)
    r = run("show", "--json", a)
    assert r.code == 0 and [json.loads(line).get("retry") for line in r.out.splitlines()] == [big, big + 1, None]
    r = run("diff", "--json", a, b)
    assert r.code == 1 and json.loads(r.out)["divergence"]["a"]["retry"] == big
    r = run("lint", "--json", "--preset", "none", "--terminal", f"retry={big}", a)  # a selector compares its text
    assert r.code == 0 and json.loads(r.out)["problems"] == 0
    for args in (["ls", "--json", tmp_path], ["stats", "--json", a], ["timeline", a, "-o", tmp_path / "t.html"]):
        assert run(*args).code == 0


@pytest.mark.parametrize("tail, lost", [
    # lines a client acts on at once, or that start nothing: it loses nothing
    (b": c\n", None), (b": c", None), (b"retry: x\n", None), (b"retry: 5\n", None), (b"id: a\0b\n", None),
    (b"event: e\n", None), (b"id: 1\n", None), (b"\xef\xbb\xbfdata: b\n", None),  # (the same ID; no BOM mid-stream)
    # the start of an event, which is not dispatched
    (b"data: b", "event"), (b"data", "event"), (b": c\ndata: b\n", "event"), (b"event: e\ndata: b\nid: 2\n", "event"),
    # an ID, committed only at dispatch, and a retry line cut short
    (b"id: 2\n", "the last event ID to '2'"), (b"retry: 5", "the reconnection time to 5 ms"),
    (b"id\r: c\rretry: 5", "the last event ID to '' and the reconnection time to 5 ms"),
])
def test_an_unterminated_tail_is_reported_when_a_client_loses_something_by_it(tail, lost, tmp_path):
    """What a client would have got had a blank line ended the tail, and does not (WHATWG "Interpreting an event
    stream"): lint, show, diff, timeline and the content view say the same."""
    body = b"id: 1\ndata: a\n\n" + tail
    rec = record_body(tmp_path / "tail.jsonl", body)
    r = run("lint", "--preset", "none", "--json", rec)
    findings = [f for f in orjson.loads(r.out)["recordings"][0]["findings"] if f["code"] == "unterminated-event"]
    shown = run("show", rec).out.splitlines()[-1]
    same = orjson.loads(run("diff", "--json", rec, record_body(tmp_path / "ended.jsonl", body + b"\n\n")).out)["same"]
    run("timeline", rec, "-o", tmp_path / "t.html")
    label = re.search(r'class="end-label[^>]*>([^<]*)<', (tmp_path / "t.html").read_text())[1]
    view = render_events(body).splitlines()[-1]
    if lost is None:
        assert findings == [] and shown == "── complete after 2.00s, 1 events" and label == "complete"
        assert view.startswith("── 1 event(s)") and same
        return
    [finding] = findings
    assert (finding["severity"], finding["index"], r.code) == ("error", 1, 1) and not same
    if lost == "event":
        assert finding["message"] == "the stream ended in the middle of an event (no blank line after it), which " \
                                     f"clients drop: {tail.decode()!r}"
        assert shown == f"── unterminated last event, not delivered: {printable(tail.decode())}"
        assert label == "complete · unterminated event"
        assert view == f"── unterminated last event (clients drop it): {tail.decode()!r}"
    else:
        assert finding["message"] == "the stream ended in the middle of a block (no blank line after it), so " \
                                     f"clients never set {lost}: {tail.decode()!r}"
        assert shown == f"── unterminated last block, not delivered (clients never set {lost}): " \
                        f"{printable(tail.decode())}"
        assert label == "complete · unterminated block"
        assert view == f"── unterminated last block (clients never set {lost}): {tail.decode()!r}"


def test_lint_passes_a_stream_whose_tail_is_a_comment(tmp_path):
    rec = record_body(tmp_path / "tail.jsonl", b"data: a\n\n: c\n")
    assert run("lint", "--preset", "none", rec).code == 0


@pytest.mark.parametrize("what", ["parse", "decode", "bypassed"])
def test_no_stall_is_counted_after_the_recording_stopped_parsing_events(tmp_path, what):
    """After such an error line no event is recorded, however many the stream sent: the minute from there to the
    end is not a silence of the stream."""
    path = write_recording(tmp_path / "r.jsonl", [ev(0.1, "a"), ev(0.2, "b"),
                                                  {"t": 0.3, "kind": "error", "what": what, "message": "stopped"}],
                           end_t=60.0)
    [stats] = json.loads(run("stats", "--json", path).out)["recordings"]
    assert stats["longest_stall"]["seconds"] == pytest.approx(0.1)
    lint = run("lint", "--json", "--max-stall", "30", path)
    assert [f["code"] for f in json.loads(lint.out)["recordings"][0]["findings"]] == ["recording-error"]
    # and without the error line, the same minute is a stall
    plain = write_recording(tmp_path / "p.jsonl", [ev(0.1, "a"), ev(0.2, "b")], end_t=60.0)
    assert json.loads(run("stats", "--json", plain).out)["recordings"][0]["longest_stall"]["seconds"] > 59


@pytest.mark.parametrize("args", [["lint", "--max-stall"], ["timeline", "-o", "{tmp}/x.html", "--stall"],
                                  ["diff", "{f}", "--timing"], ["cat", "--max-pause"]])
@pytest.mark.parametrize("value", ["nan", "NaN", "-1"])
def test_a_threshold_that_is_not_a_number_of_seconds_is_refused(recs, tmp_path, args, value):
    """NaN passes every `>= 0` check and then fails every comparison: lint called each gap a stall."""
    f = recs["stall"]
    r = run(*[a.format(tmp=tmp_path, f=f) for a in args], value, f)
    assert r.code == 2 and f"Invalid value for '{args[-1]}'" in r.err, r.err
    assert not (tmp_path / "x.html").exists()


# --- hostile files (a security QA pass) ----------------------------------------------------------------------

def test_a_fifo_named_like_a_recording_is_reported_not_waited_on(recs, tmp_path):
    """A FIFO named *.jsonl (a tarball of recordings can hold one) blocked every reader of its directory forever."""
    import subprocess
    import sys

    from harness import ROOT

    folder = tmp_path / "recs"
    folder.mkdir()
    shutil.copy(recs["stall"], folder / "a.jsonl")
    os.mkfifo(folder / "b.jsonl")
    for args in (["ls"], ["stats"], ["lint"], ["timeline", "-o", str(tmp_path / "t.html")], ["replay", "-p", "0"]):
        r = subprocess.run([sys.executable, "-m", "sse_capture_addon.cli", args[0], str(folder), *args[1:]],
                           capture_output=True, text=True, timeout=30, cwd=ROOT, stdin=subprocess.DEVNULL)
        assert f"{folder / 'b.jsonl'}: not a regular file (a FIFO, a device or a socket)" in r.stderr, (args, r.stderr)
        assert r.returncode != 0, (args, r)  # (and it returned: subprocess.run's timeout did not fire)
    r = run("diff", folder / "a.jsonl", folder / "b.jsonl")
    assert r.code == 2 and "b.jsonl: not a regular file" in r.err


def test_the_last_line_of_a_file_is_found_block_by_block_and_bounded(tmp_path):
    from sse_capture_addon.inspect.listing import _last_line
    from sse_capture_addon.recording import RecordingError

    path = tmp_path / "r.jsonl"
    for content, last in [(b"a\nbb\nccc\n", b"ccc\n"), (b"a\n" + b"x" * 50 + b"\n", b"x" * 50 + b"\n"),
                          (b"x" * 30, b"x" * 30), (b"\n", b"\n"), (b"a\nb", b"b"), (b"", b"")]:
        path.write_bytes(content)
        for block in (1, 2, 7, 1 << 16):
            assert _last_line(str(path), block) == last, (content, block)
    path.write_bytes(b"{}\n" + b"x" * 5000)
    with pytest.raises(RecordingError, match="last line is longer than 1000 bytes"):
        _last_line(str(path), 64, max_line=1000)


def test_timeline_makes_an_existing_output_file_owner_only(recs, tmp_path):
    out = tmp_path / "page.html"
    out.write_text("an older page")
    out.chmod(0o644)
    assert run("timeline", recs["stall"], "-o", out).code == 0
    assert out.stat().st_mode & 0o777 == 0o600 and "an older page" not in out.read_text()


def test_a_retry_of_hundreds_of_digits_is_read_back(tmp_path):
    """All ASCII digits is a valid retry however long (the parser takes up to Python's 4,300); orjson refuses a
    number beyond a double, which made such a recording unreadable by every command and by replay."""
    from sse_capture_addon.recording import read_recording

    retry = "9" * 400
    path = record_body(tmp_path / "r.jsonl", f"retry: {retry}\ndata: hello\n\nretry: {retry}\n\n".encode())
    rec = read_recording(path)
    assert [(e["retry"], e["data"]) for e in rec.events] == [(int(retry), "hello")]
    assert [r["retry"] for r in rec.records if r["kind"] == "no_dispatch"] == [int(retry)]
    assert run("show", path).code == 0
    bad = tmp_path / "nan.jsonl"
    bad.write_bytes(path.read_bytes().replace(b'"data":"hello"', b'"data":NaN'))
    assert run("show", bad).code == 2  # what orjson refused before and Python's json takes is still refused
