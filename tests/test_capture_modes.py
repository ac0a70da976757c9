"""Proxy modes, compression, options and key redaction, each through a real mitmdump."""

import gzip
import re
import time
import zlib
from pathlib import Path

import brotli
import pytest
import zstandard

from harness import (ADDON, LOOPBACK_HEX, Mitmdump, Scenario, free_port, httpx_client, listening_addresses,
                     run_mitmdump_expect_failure, wait_until)
from sse_capture_addon.recording import decode_data, read_recording

EVENTS = b"".join(f"id: {i}\nevent: delta\ndata: {{\"i\":{i},\"text\":\"tok\u00e9n {i}\"}}\n\n".encode()
                  for i in range(50))


def _data(path):
    return [decode_data(e["data"]) for e in read_recording(path).events]


def test_reverse_mode_in_front_of_a_tls_backend(certs, tmp_path, servers, upstream_app, scenario_name):
    import httpx

    upstream_app.add(scenario_name, Scenario([b"data: a\n\n", 0.01, b"data: b\n\n"]))
    backend = servers["h2-tls"]
    with Mitmdump(certs, tmp_path, args=["--mode", f"reverse:{backend.base}"]) as mitm:
        with httpx.Client(timeout=20) as client:  # the client talks plain HTTP to the proxy itself
            assert client.get(f"{mitm.url}/sse/{scenario_name}").text == "data: a\n\ndata: b\n\n"
        [path] = mitm.wait_for_recordings(1)
        rec = read_recording(path)
        assert _data(path) == ["a", "b"]
        assert rec.header["mode"].startswith("reverse:")
        assert rec.header["request"]["url"] == f"{backend.base}/sse/{scenario_name}"


def test_upstream_mode_through_a_second_proxy(certs, tmp_path, servers, upstream_app, scenario_name):
    upstream_app.add(scenario_name, Scenario([b"data: via upstream\n\n"]))
    (tmp_path / "outer").mkdir()
    with Mitmdump(certs, tmp_path, scripts=[]) as upstream_proxy, \
            Mitmdump(certs, tmp_path / "outer", args=["--mode", f"upstream:{upstream_proxy.url}"]) as mitm:
        with httpx_client(mitm, certs) as client:
            assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").text == "data: via upstream\n\n"
        [path] = mitm.wait_for_recordings(1)
        assert _data(path) == ["via upstream"]


def _compress(encoding: str, data: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return brotli.compress(data)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    raise AssertionError(encoding)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_compressed_streams_are_parsed_and_forwarded_unchanged(mitm, certs, servers, upstream_app,
                                                               scenario_name, encoding):
    compressed = _compress(encoding, EVENTS)
    pieces = [compressed[i:i + 97] for i in range(0, len(compressed), 97)]
    steps = [p for piece in pieces for p in (piece, 0.002)]
    upstream_app.add(scenario_name, Scenario(steps, headers=[("content-type", "text/event-stream"),
                                                             ("content-encoding", encoding)]))
    with httpx_client(mitm, certs) as client:
        with client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}",
                           headers={"accept-encoding": encoding}) as r:
            raw = b"".join(r.iter_raw())
    assert raw == compressed  # the client gets the original encoded bytes
    [path] = mitm.wait_for_recordings(1)
    rec = read_recording(path)
    assert [e["id"] for e in rec.events] == [str(i) for i in range(50)]
    assert decode_data(rec.events[3]["data"]) == '{"i":3,"text":"tok\u00e9n 3"}'
    assert rec.end["bytes"] == len(compressed) and rec.end["decoded_bytes"] == len(EVENTS)


@pytest.mark.parametrize("args,message", [
    (["--set", "sse_capture_filter=~u ("], "sse_capture_filter"),
    (["--set", "sse_capture_max_event_size=-5"], "sse_capture_max_event_size must be a positive"),
    (["--set", "sse_capture_max_body=0"], "sse_capture_max_body must be a positive"),
    (["--set", "sse_capture_dir=/proc/self/nope"], "sse_capture_dir: cannot write recordings"),
    (["--set", "sse_capture_raw_chunks=maybe"], "sse_capture_raw_chunks"),
    (["--set", "sse_capture_raw_chunks=on", "--set", "sse_capture_redact_keys=password"], "unredacted"),
    # values mitmproxy parses itself when the script registers its options, where it used to drop the error and
    # run on without the addon (and so without streaming SSE)
    (["--set", "sse_capture_max_event_size=abc"], "sse-capture: Failed to parse option sse_capture_max_event_size"),
    (["--set", "sse_capture_fsync=maybe"], "sse-capture: Failed to parse option sse_capture_fsync"),
    (["--set", "sse_capture_dir=a", "--set", "sse_capture_dir=b"], "Received multiple values for sse_capture_dir"),
])
def test_bad_options_stop_start_up_with_a_clear_message(certs, tmp_path, args, message):
    code, output = run_mitmdump_expect_failure(certs, tmp_path, args)
    assert code != 0
    assert message in output, output


def test_filter_limits_recording_but_every_sse_flow_still_streams(certs, tmp_path, servers, upstream_app,
                                                                   scenario_name):
    import threading

    gate = threading.Event()
    upstream_app.add(scenario_name + "-chat", Scenario([b"data: recorded\n\n"]))
    upstream_app.add(scenario_name + "-other", Scenario([b"data: first\n\n", gate, b"data: second\n\n"]))
    with Mitmdump(certs, tmp_path, args=["--set", "sse_capture_filter=~u -chat"]) as mitm:
        with httpx_client(mitm, certs) as client:
            assert client.get(f"{servers['h1'].base}/sse/{scenario_name}-chat").text == "data: recorded\n\n"
            with client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}-other") as r:
                chunks = r.iter_raw()
                assert next(chunks) == b"data: first\n\n"  # streamed although not recorded
                gate.set()
                assert b"".join(chunks) == b"data: second\n\n"
        [path] = mitm.wait_for_recordings(1)
        assert _data(path) == ["recorded"]


def test_json_keys_redacted_in_body_and_events_and_raw_chunks_off(certs, tmp_path, servers, upstream_app,
                                                                   scenario_name):
    upstream_app.add(scenario_name, Scenario([
        b'data: {"type":"auth","token":"tok-SECRET","nested":[{"Password":"pw-SECRET"}]}\n\n',
        b'data: {"type":"delta","text":"fine"}\n\n',
    ]))
    with Mitmdump(certs, tmp_path, args=["--set", "sse_capture_redact_keys=token,password"]) as mitm:
        with httpx_client(mitm, certs) as client:
            client.post(f"{servers['h1'].base}/sse/{scenario_name}", json={"user": "u", "password": "pw-BODY"})
        [path] = mitm.wait_for_recordings(1)
    text = path.read_text()
    assert "SECRET" not in text and "pw-BODY" not in text
    rec = read_recording(path)
    assert rec.header["raw_chunks"] is False and rec.chunks == []
    first, second = rec.events
    assert first["redacted"] is True
    assert first["data"] == {"type": "auth", "token": "[REDACTED]", "nested": [{"Password": "[REDACTED]"}]}
    assert "redacted" not in second and decode_data(second["data"]) == '{"type":"delta","text":"fine"}'
    assert '"password":"[REDACTED]"' in rec.header["request"]["body"]


REWRITER = """
def responseheaders(flow):
    if flow.response.headers.get("content-type", "").startswith("text/event-stream"):
        flow.response.stream = lambda chunk: chunk.replace(b"secret", b"******")
"""


@pytest.mark.parametrize("order", ["other first", "addon first", "addon first, streamed bodies stored"])
def test_another_addon_that_streams_the_response_itself(certs, tmp_path, servers, upstream_app, scenario_name, order):
    """Loaded first, what it forwards is recorded; loaded after sse-capture, it takes the stream over, and the
    recording and the log say so instead of claiming a complete, empty stream."""
    other = tmp_path / "rewriter.py"
    other.write_text(REWRITER)
    upstream_app.add(scenario_name, Scenario([b"data: secret\n\n", b"data: two\n\n"]))
    scripts = [other, ADDON] if order == "other first" else [ADDON, other]
    args = ["--set", "store_streamed_bodies=true"] if "stored" in order else []  # (the body is there at the end)
    with Mitmdump(certs, tmp_path, scripts=scripts, args=args) as mitm:
        with httpx_client(mitm, certs) as client:
            assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").text == "data: ******\n\ndata: two\n\n"
        [path] = mitm.wait_for_recordings(1)
        log = mitm.log()
    rec = read_recording(path)
    errors = [r for r in rec.records if r["kind"] == "error"]
    if order == "other first":
        assert [decode_data(e["data"]) for e in rec.events] == ["******", "two"] and not errors
    else:
        assert rec.events == [] and [e["what"] for e in errors] == ["bypassed"]
        assert rec.end["errors"] == [errors[0]["message"]] and "another addon replaced" in errors[0]["message"]
        assert "another addon replaced flow.response.stream" in log


def test_a_body_mitmproxy_sends_whole_is_recorded_too(certs, tmp_path, servers, upstream_app, scenario_name):
    """server_replay (and a flow file read with -nr) hands mitmproxy a whole body, which never passes through
    the stream callable: its events are recorded when it ends, and the recording says their times are lost."""
    events = [b"data: one\n\n", b"event: two\ndata: 2\n\n"]
    upstream_app.add(scenario_name, Scenario(events))
    url = f"{servers['h1'].base}/sse/{scenario_name}"
    flows = tmp_path / "flows.mitm"
    (tmp_path / "save").mkdir()
    with Mitmdump(certs, tmp_path / "save", scripts=[], args=["-w", str(flows)]) as plain:  # buffered, saved whole
        with httpx_client(plain, certs) as client:
            assert client.get(url).content == b"".join(events)
    upstream_app.scenarios.pop(scenario_name)  # the backend no longer knows it: only server_replay can answer
    with Mitmdump(certs, tmp_path, args=["--set", f"server_replay={flows}"]) as mitm:
        with httpx_client(mitm, certs) as client:
            assert client.get(url).content == b"".join(events)
        [path] = mitm.wait_for_recordings(1)
        log = mitm.log()
    rec = read_recording(path)
    assert [(e["event"], decode_data(e["data"])) for e in rec.events] == [("message", "one"), ("two", "2")]
    assert [r["what"] for r in rec.records if r["kind"] == "error"] == ["unstreamed"]
    assert rec.ending == "complete" and "not at the times they were sent" in log


def test_the_summary_of_a_burst_comes_when_its_second_is_over(certs, tmp_path, servers, upstream_app, scenario_name):
    """Beyond ten lines a second, completed streams are summed up in one line: at the end of that second, not
    whenever the next stream happens to end (hours later, or never if the proxy is killed)."""
    upstream_app.add(scenario_name, Scenario([b"data: x\n\n"]))
    with Mitmdump(certs, tmp_path) as mitm:
        with httpx_client(mitm, certs) as client:
            for _ in range(30):
                assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").content == b"data: x\n\n"
        mitm.wait_for_recordings(30)
        deadline = time.monotonic() + 5
        while "more stream(s) recorded completely" not in (log := mitm.log()):
            assert time.monotonic() < deadline, log[-2000:]
            time.sleep(0.05)
    lines = [line for line in log.splitlines() if f"/sse/{scenario_name}:" in line and "complete GET" in line]
    held = sum(int(m) for m in re.findall(r"(\d+) more stream\(s\) recorded completely", log))
    assert held and len(lines) + held == 30


def test_a_recordings_directory_under_home_is_expanded(certs, tmp_path, servers, upstream_app, scenario_name):
    """``~`` reaches the option as it is when it is quoted or comes from config.yaml; mitmproxy expands it
    in its own paths, and so does the addon."""
    upstream_app.add(scenario_name, Scenario([b"data: x\n\n"]))
    home = tmp_path / "home"
    home.mkdir()
    with Mitmdump(certs, tmp_path, record_dir=Path("~/recs"), env={"HOME": str(home)}) as mitm:
        with httpx_client(mitm, certs) as client:
            assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").text == "data: x\n\n"
        deadline = time.monotonic() + 15
        while not (paths := sorted((home / "recs").rglob("*.jsonl"))) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(paths) == 1 and read_recording(paths[0]).ending == "complete"
    assert not (tmp_path / "~").exists()


def _only_loopback(port: int) -> bool:
    found = listening_addresses(port)
    return bool(found) and found <= LOOPBACK_HEX


@pytest.mark.parametrize("mode", ["regular", "reverse"])
def test_a_bare_mitmdump_with_the_addon_listens_on_loopback_only(certs, tmp_path, servers, upstream_app,
                                                                  scenario_name, mode):
    """mitmproxy's own default is every interface (no --listen-host): loading the addon moves the proxy to
    127.0.0.1, where it still proxies and records."""
    import httpx

    upstream_app.add(scenario_name, Scenario([b"data: local\n\n"]))
    backend = servers["h1"]
    port = free_port()
    args = ["--mode", f"reverse:{backend.base}"] if mode == "reverse" else []
    with Mitmdump(certs, tmp_path, port=port, listen_host=None, args=args) as mitm:
        wait_until(lambda: _only_loopback(port), what="the proxy on loopback only")
        if mode == "reverse":
            with httpx.Client(timeout=20) as client:
                assert client.get(f"{mitm.url}/sse/{scenario_name}").text == "data: local\n\n"
        else:
            with httpx_client(mitm, certs) as client:
                assert client.get(f"{backend.base}/sse/{scenario_name}").text == "data: local\n\n"
        [path] = mitm.wait_for_recordings(1)
        assert _data(path) == ["local"]
        assert _only_loopback(port)
        assert "listening on 127.0.0.1 only" in mitm.log() and "every network interface" not in mitm.log()


def test_listens_on_every_interface_only_when_asked_and_warns(certs, tmp_path):
    port = free_port()
    with Mitmdump(certs, tmp_path, port=port, listen_host="0.0.0.0") as mitm:
        wait_until(lambda: "listens on every network interface" in mitm.log(), what="the warning")
        assert "00000000" in listening_addresses(port)


def test_the_replay_script_alone_and_beside_the_capture_addon_listens_on_loopback_only(certs, tmp_path):
    replay_script = Path(__file__).parent.parent / "scripts" / "replay.py"
    for scripts in ([replay_script], [ADDON, replay_script]):
        port = free_port()
        with Mitmdump(certs, tmp_path, port=port, listen_host=None, scripts=scripts) as mitm:
            wait_until(lambda: _only_loopback(port), what="the proxy on loopback only")
            assert "Traceback" not in mitm.log()


@pytest.mark.parametrize("specs, listen_port, expected", [
    (["regular"], None, ["regular@127.0.0.1:8080"]),
    (["regular"], 9000, ["regular@127.0.0.1:9000"]),
    (["reverse:https://example.com@8081"], None, ["reverse:https://example.com@127.0.0.1:8081"]),
    (["socks5", "dns"], None, ["socks5@127.0.0.1:1080", "dns@127.0.0.1:53"]),
    (["upstream:http://10.0.0.1:3128"], 8080, ["upstream:http://10.0.0.1:3128@127.0.0.1:8080"]),
    (["regular@0.0.0.0:8080", "reverse:http://x@192.0.2.1:80"], None, ["regular@0.0.0.0:8080", "reverse:http://x@192.0.2.1:80"]),
    (["transparent", "wireguard", "local"], None, ["transparent", "wireguard", "local"]),
])
def test_which_modes_are_moved_to_loopback(specs, listen_port, expected):
    from sse_capture_addon.listening import local_modes

    assert local_modes(specs, listen_port) == expected


@pytest.mark.parametrize("specs, listen_host, everywhere", [
    (["regular"], "", True), (["regular"], "0.0.0.0", True), (["regular"], "::", True),
    (["regular"], "127.0.0.1", False), (["regular@127.0.0.1:8080"], "", False),
    (["regular@127.0.0.1:8080", "regular@0.0.0.0:8081"], "127.0.0.1", True),
    (["transparent"], "", True), (["local"], "", False),
])
def test_what_is_warned_about_as_every_interface(specs, listen_host, everywhere):
    from sse_capture_addon.listening import listens_everywhere

    assert listens_everywhere(specs, listen_host) is everywhere


def test_sse_capture_record_listens_on_loopback_only_unless_asked(certs, tmp_path):
    import subprocess
    import sys

    from harness import wait_for_port

    port = free_port()
    exe = Path(sys.executable).parent / "sse-capture"
    cmd = [str(exe), "record", "--dir", str(tmp_path / "rec"), "--listen-port", str(port),
           "--set", f"confdir={certs.mitm_confdir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)
        assert listening_addresses(port) and listening_addresses(port) <= LOOPBACK_HEX
    finally:
        proc.terminate()
        proc.wait(10)


def test_another_scripts_bad_value_is_reported_as_its_own_not_the_addons(certs, tmp_path):
    # mitmproxy drops the error of a script loaded before ours in silence; our load then meets the value, and
    # must say whose option it is rather than blame sse-capture
    other = tmp_path / "other.py"
    other.write_text("def load(loader):\n    loader.add_option('other_count', int, 1, 'A count.')\n")
    code, output = run_mitmdump_expect_failure(
        certs, tmp_path, ["--set", "other_count=abc", "--set", f"sse_capture_dir={tmp_path / 'rec'}"],
        scripts_before=[other])
    assert code != 0
    assert "Failed to parse option other_count" in output, output
    assert "another script's option" in output and "sse-capture: Failed" not in output, output
