"""Every inspect command on recordings the real proxy made of good and badly ending streams."""

from __future__ import annotations

import json
import re
import time

from inspect_helpers import SPEC_PROBLEMS, cli_process, run

pytest_plugins = ["inspect_fixtures"]  # the session-wide `recs` recordings

# --- ls ------------------------------------------------------------------------------------------------------

def test_ls_lists_every_recording_with_how_it_ended(recs):
    r = run("ls", recs["dir"], "--json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    by_name = {re.search(r"_sse_i-([a-z-]+)_", row["path"]).group(1): row for row in rows}
    assert len(rows) == 10
    assert [row["started_unix"] for row in rows] == sorted(row["started_unix"] for row in rows)
    assert by_name["anthropic-ok"]["ending"] == "complete"
    assert by_name["anthropic-ok"]["events"] == 8 and by_name["anthropic-ok"]["method"] == "POST"
    assert by_name["openai-reset"]["ending"] == "server_error"
    assert by_name["client-gone"]["ending"] == "client_disconnected"
    assert by_name["killed"]["ending"] == "proxy_died" and by_name["killed"]["events"] == 2
    assert by_name["stall"]["duration"] >= 1.2

    table = run("ls", recs["dir"])
    lines = table.out.splitlines()
    assert lines[0].split()[:3] == ["STARTED", "(UTC)", "METHOD"]
    assert "\x1b[" not in table.out  # plain when not a terminal
    killed = next(line for line in lines if "i-killed" in line)
    assert "proxy died" in killed and " 200 " in killed


def test_ls_filters(recs):
    bad = json.loads(run("ls", recs["dir"], "--bad", "--json").out)
    assert sorted(row["ending"] for row in bad) == ["client_disconnected", "proxy_died", "server_error"]
    openai = json.loads(run("ls", recs["dir"], "-e", "/sse/i-openai", "--json").out)
    assert len(openai) == 2
    assert len(json.loads(run("ls", recs["dir"], "-e", "*/i-anthropic-*", "--json").out)) == 3
    assert json.loads(run("ls", recs["dir"], "--since", "1h", "--json").out)
    assert json.loads(run("ls", recs["dir"], "--since", "2999-01-01", "--json").out) == []
    r = run("ls", recs["dir"], "--since", "yesterday")
    assert r.code == 2 and "--since 'yesterday'" in r.err


def test_ls_colours_only_on_a_terminal_and_respects_no_color(recs):
    assert "\x1b[" in run("ls", recs["dir"], color=True).out
    assert "\x1b[" not in run("ls", recs["dir"], color=True, env={"NO_COLOR": "1"}).out


# --- show ----------------------------------------------------------------------------------------------------

def test_show_prints_events_gaps_comments_and_ending(recs):
    r = run("show", recs["anthropic-ok"])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("POST http://127.0.0.1:") and lines[0].endswith("→ 200")
    events = [line for line in lines if line.startswith("#")]
    assert [line.split()[3] for line in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert re.match(r"#4 +\d+\.\d{3}s +\+\d\.\d{3}s +content_block_delta +\{.*\"text\":\"Hel\"", events[3])
    assert lines[-1].startswith("── complete after")


def test_show_numbers_events_as_replay_fault_options_count_them(tmp_path):
    """The number a person reads in `show` is the one to give replay: `#k tool_use` and `--swap k,k+1` puts
    the tool_result before exactly that tool_use; `--cut-after k` ends right after it. Comments and other
    lines are not counted by either; `--json` keeps the 0-based position in `index`."""
    from replay_helpers import ev, parse_events, write_recording

    from sse_capture_addon.recording import read_recording
    from sse_capture_addon.replay.faults import Faults
    from sse_capture_addon.replay.schedule import build_plan

    rec = write_recording(tmp_path / "agent.jsonl", [
        {"t": 0.005, "kind": "comment", "text": " connected"},
        ev(0.01, {"type": "start"}, "session_start"), ev(0.02, {"type": "ping"}, "ping"),
        {"t": 0.025, "kind": "comment", "text": " keepalive"},
        ev(0.03, {"id": "call_1"}, "tool_use"), ev(0.04, {"tool_use_id": "call_1"}, "tool_result"),
        ev(0.05, "ok", "text"), ev(0.06, "[DONE]", "done")])
    shown = [line.split() for line in run("show", rec).out.splitlines() if line.startswith("#")]
    assert [(row[0], row[3]) for row in shown] == [
        ("#1", "session_start"), ("#2", "ping"), ("#3", "tool_use"), ("#4", "tool_result"), ("#5", "text"),
        ("#6", "done")]
    k = int(next(row[0] for row in shown if row[3] == "tool_use").removeprefix("#"))

    def replayed(faults: Faults) -> list[str]:
        plan = build_plan(read_recording(rec), faults=faults)
        assert plan.warnings == []
        return [event_type for event_type, _, _ in parse_events(b"".join(w.data for w in plan.writes))]

    assert replayed(Faults(swap=(k, k + 1))) == ["session_start", "ping", "tool_result", "tool_use", "text", "done"]
    assert replayed(Faults(cut_after=k)) == ["session_start", "ping", "tool_use"]
    as_json = [json.loads(line) for line in run("show", rec, "--json").out.splitlines()]
    assert next(r["index"] for r in as_json if r.get("event") == "tool_use") == k - 1


def test_show_pretty_full_and_shortened(recs):
    pretty = run("show", recs["anthropic-ok"], "--pretty").out
    assert re.search(r'message_start\n +\{\n +"type": "message_start",\n +"message": \{\n +"id": "msg_1"', pretty)
    short = run("show", recs["anthropic-ok"], "-w", "30").out
    assert "… (+" in short
    assert "… (+" not in run("show", recs["anthropic-ok"], "--full").out


def test_show_marks_bad_endings_and_the_unterminated_tail(recs):
    spec = run("show", recs["spec"]).out
    assert "── unterminated last event, not delivered: data: cut off" in spec
    assert "ignored id field" in spec and "ignored retry field" in spec
    assert "── server error" in run("show", recs["openai-reset"]).out
    assert "── client disconnected" in run("show", recs["client-gone"]).out
    killed = run("show", recs["killed"]).out
    assert "── proxy died after" in killed and ", 2 events" in killed


def test_a_write_cut_short_by_a_kill_is_left_out_and_said(recs, tmp_path):
    """A proxy killed mid-write can leave the start of a line (the kernel stops a write at a page boundary):
    its chunk was never forwarded. Every reader stops before it, calls the stream "proxy died" and says so."""
    from sse_capture_addon.inspect.reader import RecordingStream
    from sse_capture_addon.recording import read_recording

    killed = recs["killed"].read_bytes()
    lines = killed.count(b"\n")
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(killed + b'{"t":0.031,"kind":"chunk","n":3,"blo')
    rec = read_recording(torn)
    assert rec.torn == (lines + 1, 36) and rec.ending == "proxy_died"
    assert rec.records == read_recording(recs["killed"]).records
    for follow in (False, True):
        stream = RecordingStream(torn, follow=follow, poll=0.01)
        assert list(stream) == rec.records and stream.torn == (lines + 1, 36) and stream.ending == "proxy_died"
    shown = run("show", torn)
    assert shown.code == 0 and "── proxy died after" in shown.out
    assert f"line {lines + 1} is the first 36 bytes of a write the proxy did not finish" in shown.out
    last = json.loads(run("show", torn, "--json").out.splitlines()[-1])
    assert (last["ending"], last["torn_line"], last["torn_bytes"]) == ("proxy_died", lines + 1, 36)
    assert run("ls", torn).code == 0 and run("stats", torn).code == 0
    # while a proxy still holds the file, a half-written last line is a write in progress, not a cut one
    import fcntl
    import os
    fd = os.open(torn, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        live = run("show", torn, "--json")
        last = json.loads(live.out.splitlines()[-1])
        assert live.code == 0 and last["ending"] == "in_progress" and "torn_line" not in last
        assert "did not finish" not in run("show", torn).out
    finally:
        os.close(fd)
    # only the last line: a cut-off line before a whole one is a bad file
    middle = tmp_path / "middle.jsonl"
    middle.write_bytes(killed + b'{"t":0.031,"kind":"chu\n' + killed.splitlines(keepends=True)[-1])
    bad = run("show", middle)
    assert bad.code != 0 and f"middle.jsonl:{lines + 1}: invalid JSON" in bad.err


def test_show_json_gives_exact_data(recs):
    r = run("show", recs["tools"], "--json")
    items = [json.loads(line) for line in r.out.splitlines()]
    assert items[0] == {**items[0], "kind": "event", "event": "tool_use", "index": 0,
                        "data": '{"id":"call_1","name":"search"}'}
    assert items[-1]["ending"] == "complete" and items[-1]["events"] == 5


# --- stats ---------------------------------------------------------------------------------------------------

def test_stats_of_a_stream_with_a_stall(recs):
    r = run("stats", recs["stall"], "--json")
    assert r.code == 0, r.err
    [s] = json.loads(r.out)["recordings"]
    assert s["events"] == 3 and s["types"] == {"a": 1, "b": 1, "done": 1}
    assert 1.2 <= s["gap_max"] < 2.5 and s["gap_p50"] < s["gap_max"]
    assert s["longest_stall"]["after_index"] == 0 and s["longest_stall"]["before_type"] == "b"
    assert 0 <= s["time_to_first_event"] < 0.5 and s["duration"] >= s["gap_max"]
    text = run("stats", recs["stall"]).out
    assert re.search(r"longest stall +1\.\d\ds at \d\.\d{3}s, between event #1 \(a\) and event #2 \(b\)", text)


def test_stats_over_a_directory_has_totals(recs):
    data = json.loads(run("stats", recs["dir"], "--json").out)
    assert len(data["recordings"]) == 10
    totals = data["totals"]
    assert totals["recordings"] == 10
    assert totals["events"] == sum(s["events"] for s in data["recordings"])
    assert totals["endings"]["proxy_died"] == 1
    assert totals["longest_stall"]["path"] == str(recs["stall"]) and totals["longest_stall"]["seconds"] >= 1.2
    assert "totals over 10 recordings" in run("stats", recs["dir"], "--totals").out


# --- lint ----------------------------------------------------------------------------------------------------

def _codes(result) -> list[str]:
    return [f["code"] for rec in json.loads(result.out)["recordings"] for f in rec["findings"]]


def test_lint_passes_good_anthropic_and_openai_streams(recs):
    for name, protocol in (("anthropic-ok", "anthropic"), ("openai-ok", "openai")):
        r = run("lint", recs[name], "--json")
        assert r.code == 0, r.out
        assert json.loads(r.out)["recordings"][0]["protocol"] == protocol


def test_lint_finds_spec_problems(recs):
    r = run("lint", recs["spec"], "--terminal", "done", "--json")
    assert r.code == 1
    findings = json.loads(r.out)["recordings"][0]["findings"]
    codes = {f["code"]: f for f in findings}
    assert set(codes) == {"bom", "mixed-line-endings", "id-null", "retry-not-digits", "unterminated-event"}
    assert codes["id-null"]["index"] == 1 and codes["id-null"]["t"] > 0
    assert codes["unterminated-event"]["index"] == 3
    assert codes["mixed-line-endings"]["message"] == "mixed line endings: 7 LF, 2 CRLF"


def test_lint_terminal_and_pairing_rules(recs):
    r = run("lint", recs["tools"], "--terminal", "done",
            "--rule", "tool_result after tool_use by data.tool_use_id=data.id")
    assert r.code == 1
    lines = r.out.splitlines()
    assert any(re.search(r"#3 .* error rule-follows: tool_result without an earlier tool_use with "
                         r"data\.id = 'call_9'", line) for line in lines), r.out
    assert any(re.search(r"#5 .* error after-terminal: note after the terminal event #4 \(done\)", line)
               for line in lines), r.out
    assert lines[-1] == "2 problem(s) in 1 of 1 recording(s)"


def test_lint_rules_file(recs, tmp_path):
    rules = tmp_path / "agent.toml"
    rules.write_text('terminal = ["done"]\n[[rules]]\nkind = "follows"\nevent = "tool_result"\n'
                     'after = "tool_use"\nevent_key = "data.tool_use_id"\nafter_key = "data.id"\n')
    assert _codes(run("lint", recs["tools"], "--rules", rules, "--json")) == ["rule-follows", "after-terminal"]
    broken = tmp_path / "broken.toml"
    broken.write_text('[[rules]]\nkind = "follows"\nevent = "x"\n')
    r = run("lint", recs["tools"], "--rules", broken)
    assert r.code == 2 and "broken.toml: a follows rule needs after" in r.err


def test_lint_streams_that_ended_badly(recs):
    assert _codes(run("lint", recs["openai-reset"], "--json")) == ["no-terminal"]
    killed = run("lint", recs["killed"], "--terminal", "done", "--json")
    [finding] = json.loads(killed.out)["recordings"][0]["findings"]
    assert finding["code"] == "no-terminal" and "proxy_died" in finding["message"]
    assert killed.code == 1


def test_lint_stalls(recs):
    r = run("lint", recs["stall"], "--max-stall", "1", "--json")
    [finding] = json.loads(r.out)["recordings"][0]["findings"]
    assert r.code == 1 and finding["code"] == "stall" and finding["index"] == 1
    assert finding["message"].startswith("no event for 1.") and "after event #1" in finding["message"]
    assert run("lint", recs["stall"]).code == 0


def test_lint_directory_reports_each_recording(recs):
    r = run("lint", recs["dir"], "--json")
    data = json.loads(r.out)
    assert r.code == 1 and len(data["recordings"]) == 10
    failing = {re.search(r"_sse_i-([a-z-]+)_", rec["path"]).group(1)
               for rec in data["recordings"] if rec["findings"]}
    assert failing == {"openai-reset", "spec"}  # the others speak no preset, so no terminal is required


# --- diff ----------------------------------------------------------------------------------------------------

def test_diff_same_stream_modulo_ignored_ids(recs):
    a, b = recs["anthropic-ok"], recs["anthropic-other-id"]
    r = run("diff", a, b)
    assert r.code == 1
    assert "first difference at event #1 (data): data.message.id: 'msg_1' ≠ 'msg_2'" in r.out
    assert run("diff", a, b, "-i", "data.message.id").code == 0
    assert run("diff", a, b, "--ignore-common").code == 0
    slow = run("diff", a, b, "-i", "data.**.id", "--timing", "0.01", "--json")
    assert slow.code == 1 and json.loads(slow.out)["divergence"]["what"] == "timing"


def test_diff_shows_first_divergence_in_context(recs):
    r = run("diff", recs["anthropic-ok"], recs["anthropic-changed"], "-C", "2")
    assert r.code == 1
    lines = r.out.splitlines()
    assert "first difference at event #5 (data): data.delta.text: 'lo' ≠ 'p'" in lines[2]
    assert lines[3].strip().startswith("#3") and lines[4].strip().startswith("#4")
    assert lines[5].startswith("  - A #5") and lines[6].startswith("  + B #5")


def test_diff_against_a_stream_that_ended_badly(recs):
    r = run("diff", recs["openai-ok"], recs["openai-reset"], "--json")
    d = json.loads(r.out)
    assert r.code == 1 and d["divergence"]["index"] == 2 and d["divergence"]["what"] == "missing"
    assert d["ending_b"] == "server_error"
    r = run("diff", recs["client-gone"], recs["killed"], "--json")
    d = json.loads(r.out)
    assert r.code == 1 and d["divergence"]["what"] == "ending" and d["events_a"] == d["events_b"] == 2
    assert (d["ending_a"], d["ending_b"]) == ("client_disconnected", "proxy_died")  # codes, as ls --json gives
    assert run("diff", recs["client-gone"], recs["killed"], "--no-ending").code == 0
    # the text says them as ls and show do
    lines = run("diff", recs["client-gone"], recs["killed"]).out.splitlines()
    assert lines[0].endswith(": 2 events, client disconnected") and lines[1].endswith(": 2 events, proxy died")
    assert "A ended client disconnected, B ended proxy died" in lines[2]


# --- cat -----------------------------------------------------------------------------------------------------

def test_cat_writes_the_stream_at_recorded_timing(recs):
    start = time.monotonic()
    proc = cli_process("cat", recs["stall"])
    lines = []
    for line in iter(proc.stdout.readline, b""):
        lines.append((time.monotonic() - start, line))
    assert proc.wait(timeout=20) == 0, proc.stderr.read()
    assert b"".join(line for _, line in lines) == b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\nevent: done\ndata: 3\n\n"
    t_a = next(t for t, line in lines if line == b"event: a\n")
    t_b = next(t for t, line in lines if line == b"event: b\n")
    assert 1.1 <= t_b - t_a < 3  # the recorded 1.3s pause
    fast = run("cat", recs["stall"], "--speed", "max")
    assert fast.code == 0 and fast.out.count("event:") == 3


def test_cat_keeps_the_unterminated_tail_and_raw_bytes(recs):
    out = run("cat", recs["spec"], "--speed", "max").out
    assert out.startswith("\ufeffdata: one")
    assert out.endswith("event: done\ndata: {}\n\ndata: cut off")
    raw = run("cat", recs["spec"], "--speed", "max", "--raw")
    assert raw.code == 0
    assert raw.out_bytes == b"".join(s for s in SPEC_PROBLEMS if isinstance(s, bytes))
    r = run("cat", recs["spec"], "--speed", "fast")
    assert r.code == 2 and "speed must be" in r.err
