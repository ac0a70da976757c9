"""The proxy dies or is stopped mid-stream: what the client saw is in the file, every line whole.

SIGKILL: no end line, and the reader reports "proxy_died" (the lock is gone with the process).
SIGINT / SIGTERM: mitmproxy shuts down cleanly and the addon writes the end line "proxy_shutdown"; SIGHUP too
(the addon's ShutdownOnHangup), unless it is ignored.
"""

import os
import shutil
import signal
import threading
import time

import httpx
import pytest

from harness import ADDON, Mitmdump, Scenario, httpx_client, wait_until
from reliability_helpers import reference_events, whole_lines
from sse_capture_addon.inspect.lint import LintOptions, lint_file
from sse_capture_addon.inspect.reader import RecordingStream, unterminated_tail
from sse_capture_addon.recording import decode_data, read_recording
from sse_capture_addon.replay.schedule import CLOSE, build_plan

N = 25


def _stream(n: int) -> list[bytes]:
    # varied shapes: JSON data, multi-line data, ids, a comment, an event split across two chunks
    out = []
    for i in range(n):
        if i % 7 == 3:
            out += [f"id: {i}\nevent: delta\ndata: {{\"i\":{i},".encode(), f"\"t\":\"tok {i}\"}}\n\n".encode()]
        elif i % 5 == 1:
            out.append(f": ping {i}\ndata: line {i}\ndata: second\n\n".encode())
        else:
            out.append(f"id: {i}\ndata: {{\"i\":{i}}}\n\n".encode())
    return out


def _play(chunks: list[bytes], gate: threading.Event, after: list[bytes]) -> list:
    steps = []
    for c in chunks:
        steps += [c, 0.002]
    return steps + [gate, *after]


def _events(rec):
    return [(e["event"], decode_data(e["data"]), e.get("id")) for e in rec.events]


def _signal_mid_stream(mitm: Mitmdump, certs, url: str, sent: bytes, sig: int, http2: bool = False) -> None:
    """Read ``url`` through the proxy until ``sent`` has arrived unchanged, send ``sig`` to the proxy, and check
    that the client's stream then fails without a byte more."""
    with httpx_client(mitm, certs, http2=http2) as client:
        with client.stream("GET", url) as r:
            got = bytearray()
            it = r.iter_raw()
            while len(got) < len(sent):
                got += next(it)
            assert bytes(got) == sent   # traffic flowed unchanged up to the signal
            mitm.kill(sig)
            with pytest.raises(httpx.HTTPError):
                for piece in it:
                    got += piece
            assert bytes(got) == sent


@pytest.mark.parametrize("kind,http2", [("h1", False), ("h1-tls", False), ("h2-tls", True)])
def test_sigkill_mid_stream_loses_nothing_the_client_saw(certs, tmp_path, servers, upstream_app, scenario_name,
                                                         kind, http2):
    gate = threading.Event()
    chunks = _stream(N) + [b"event: half\ndata: the client saw this half"]   # an unfinished event too
    upstream_app.add(scenario_name, Scenario(_play(chunks, gate, [b"data: never\n\n"])))
    sent = b"".join(chunks)
    mitm = Mitmdump(certs, tmp_path)
    try:
        _signal_mid_stream(mitm, certs, f"{servers[kind].base}/sse/{scenario_name}", sent, signal.SIGKILL, http2)
        assert mitm.proc.returncode == -signal.SIGKILL
    finally:
        gate.set()
        mitm.stop()
    [path] = mitm.recordings()
    rows = whole_lines(path)            # every line whole JSON, file ends with a newline
    rec = read_recording(path)          # and valid
    assert rec.end is None and rec.ending == "proxy_died"
    assert rows[-1]["kind"] != "end"
    # every event the client received is in the file, in order, exactly
    assert _events(rec) == reference_events(sent) and len(rec.events) == N
    # raw chunks: the bytes the client got, including the half event
    assert b"".join(b for _, b in rec.chunks) == sent
    # and the default (event) replay sends the half event too, with the last chunk, before closing mid-body
    plan = build_plan(rec)
    assert plan.ending == CLOSE and plan.writes[-1].at == max(w.at for w in plan.writes)
    replayed = b"".join(w.data for w in plan.writes)
    assert replayed.endswith(b"\n\nevent: half\ndata: the client saw this half")
    assert reference_events(replayed) == reference_events(sent)
    # and the inspect commands report it, as for a stream that ended mid-event
    stream = RecordingStream(path)
    list(stream)
    assert unterminated_tail(stream).text == "event: half\ndata: the client saw this half"
    findings, _, ending = lint_file(str(path), LintOptions(preset="none"))
    assert ending == "proxy_died" and [f.code for f in findings if f.code == "unterminated-event"] == \
        ["unterminated-event"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_clean_shutdown_mid_stream_writes_proxy_shutdown(certs, tmp_path, servers, upstream_app, scenario_name,
                                                         sig):
    gate = threading.Event()
    chunks = _stream(10) + [b"data: unfinished"]
    upstream_app.add(scenario_name, Scenario(_play(chunks, gate, [b"data: never\n\n"])))
    sent = b"".join(chunks)
    mitm = Mitmdump(certs, tmp_path)
    try:
        _signal_mid_stream(mitm, certs, f"{servers['h1'].base}/sse/{scenario_name}", sent, sig)
    finally:
        gate.set()
        mitm.stop()
    [path] = mitm.recordings()
    whole_lines(path)
    rec = read_recording(path)
    assert rec.ending == "proxy_shutdown", (rec.end, mitm.log()[-3000:])
    assert rec.end["events"] == 10 == len(rec.events)
    assert _events(rec) == reference_events(sent)
    assert rec.end["bytes"] == len(sent)
    assert rec.end["tail"] == "data: unfinished"
    assert "proxy_shutdown" in mitm.log()


def test_an_ignored_hangup_changes_nothing(certs, tmp_path, servers, upstream_app, scenario_name):
    # under nohup SIGHUP is ignored, and the addon leaves it so: the proxy and the stream go on
    gate = threading.Event()
    chunks = _stream(5)
    upstream_app.add(scenario_name, Scenario([*chunks, gate, b"data: after\n\n"]))
    mitm = Mitmdump(certs, tmp_path, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        with httpx_client(mitm, certs) as client, \
                client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}") as r:
            got = bytearray()
            it = r.iter_raw()
            while len(got) < len(b"".join(chunks)):
                got += next(it)
            mitm.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert mitm.proc.poll() is None
            gate.set()
            for piece in it:
                got += piece
        assert bytes(got) == b"".join(chunks) + b"data: after\n\n"
        [path] = mitm.wait_for_recordings(1)
    finally:
        gate.set()
        mitm.stop()
    assert read_recording(path).ending == "complete"


SLOW_DONE = "import asyncio\n\nclass SlowDone:\n    async def done(self):\n        await asyncio.sleep(0.3)\n\naddons = [SlowDone()]\n"


def _steady(n: int, gap: float) -> list:
    steps = []
    for i in range(n):
        steps += [f"id: {i}\ndata: ev {i}\n\n".encode(), gap]
    return steps


def test_no_event_reaches_the_client_after_its_shutdown_end_line(certs, tmp_path, servers, upstream_app,
                                                                 scenario_name):
    """mitmproxy forwards until its event loop stops, after the addons' `done`; an addon whose `done` takes a while
    (here 0.3 s, loaded after sse-capture) makes that window wide."""
    upstream_app.add(scenario_name, Scenario(_steady(3000, 0.002)))
    slow = tmp_path / "slow_done.py"
    slow.write_text(SLOW_DONE)
    mitm = Mitmdump(certs, tmp_path, scripts=[ADDON, slow])
    got = bytearray()

    def read() -> None:
        try:
            with httpx_client(mitm, certs) as client, \
                    client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}") as r:
                for data in r.iter_raw():
                    got.extend(data)
        except httpx.HTTPError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    try:
        wait_until(lambda: got.count(b"\n\n") >= 50, timeout=10)
        mitm.proc.send_signal(signal.SIGTERM)
        mitm.proc.wait(15)
        reader.join(15)
    finally:
        mitm.stop()
    [path] = mitm.recordings()
    rec = read_recording(path)
    assert rec.ending == "proxy_shutdown"
    recorded = b"".join(data for _, data in rec.chunks)
    assert bytes(got) == recorded  # every byte the client got is in the file, and nothing after it
    assert got.count(b"\n\n") == len(rec.events) >= 50


RELOADED_STREAM = 30


def test_a_reload_of_the_addons_script_mid_stream_loses_nothing(certs, tmp_path, servers, upstream_app,
                                                                scenario_name):
    """mitmproxy reloads a -s script whose file changes (an editor's save, a git pull); the new instance takes the
    open streams over, and their recordings go on to their real end."""
    upstream_app.add(scenario_name, Scenario(_steady(RELOADED_STREAM, 0.1)))
    script = tmp_path / "addon.py"
    shutil.copy(ADDON, script)
    with Mitmdump(certs, tmp_path, scripts=[script], args=["--set", f"sse_capture_dir={tmp_path / 'recordings'}"]) \
            as mitm, httpx_client(mitm, certs) as client:
        with client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}") as r:
            got = b""
            for data in r.iter_raw():
                got += data
                if got.count(b"\n\n") == 5:
                    os.utime(script)  # mitmproxy looks for changes once a second
        [path] = mitm.wait_for_recordings(1)
        log = mitm.log()
    rec = read_recording(path)
    assert log.count("Loading script") >= 2 and "1 open stream(s) go on being recorded" in log
    assert (rec.ending, len(rec.events)) == ("complete", RELOADED_STREAM) == ("complete", got.count(b"\n\n"))
    assert b"".join(data for _, data in rec.chunks) == got


def test_unloading_the_addon_mid_stream_ends_its_recordings_as_failed_and_traffic_goes_on(
        certs, tmp_path, servers, upstream_app, scenario_name):
    upstream_app.add(scenario_name, Scenario(_steady(20, 0.1)))
    setter = tmp_path / "set_option.py"
    setter.write_text(
        "from mitmproxy import ctx, http\n\nclass SetScripts:\n    def request(self, flow):\n"
        "        if flow.request.host == 'set.test':\n"
        f"            ctx.options.update(scripts=[{str(setter)!r}])\n"
        "            flow.response = http.Response.make(200, b'ok')\n\naddons = [SetScripts()]\n")
    with Mitmdump(certs, tmp_path, scripts=[ADDON, setter]) as mitm, httpx_client(mitm, certs) as client:
        with client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}") as r:
            got = b""
            for data in r.iter_raw():
                got += data
                if got.count(b"\n\n") == 5:
                    with httpx_client(mitm, certs) as other:
                        assert other.get("http://set.test/").text == "ok"
        [path] = mitm.wait_for_recordings(1)
    rec = read_recording(path)
    assert got.count(b"\n\n") == 20  # traffic went on
    assert rec.ending == "recording_failed" and "unloaded mid-stream" in rec.end["message"]
    assert 5 <= len(rec.events) < 20
