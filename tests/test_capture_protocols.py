"""Capture through a real mitmdump: every protocol combination, pass-through fidelity, the recording."""

import os
import stat
import threading

import httpx
import pytest

from harness import RawServer, Scenario, httpx_client
from reliability_helpers import gzip_of_zeros, proc_status, recording_for, reset_hwm
from sse_capture_addon.recording import decode_data, read_recording

STREAM = [
    b": hello\n\n",
    0.02,
    b"data: first\n\n",
    0.02,
    b'event: tool_use\nid: 7\ndata: {"type":"tool_use","id":"call_1","input":{"q":"x"}}\n\n',
    0.02,
    b"data: multi\ndata: line\nretry: 1500\n\n",
    0.02,
    b'event: done\ndata: {"ok": true}\n\n',
]
EXPECTED = [
    ("message", "first", None, None),
    ("tool_use", '{"type":"tool_use","id":"call_1","input":{"q":"x"}}', "7", None),
    ("message", "multi\nline", "7", 1500),
    ("done", '{"ok": true}', "7", None),
]


def _events(rec):
    return [(e["event"], decode_data(e["data"]), e.get("id"), e.get("retry")) for e in rec.events]


@pytest.mark.parametrize("kind,http2", [("h1", False), ("h1-tls", False), ("h2-tls", False), ("h2-tls", True)])
def test_records_every_event_and_passes_bytes_through(mitm, certs, servers, upstream_app, scenario_name,
                                                       kind, http2):
    upstream_app.add(scenario_name, Scenario(list(STREAM)))
    server = servers[kind]
    with httpx_client(mitm, certs, http2=http2) as client:
        with client.stream("GET", f"{server.base}/sse/{scenario_name}?x=1") as r:
            body = b"".join(r.iter_raw())
            client_http = r.http_version
    assert body == b"".join(s for s in STREAM if isinstance(s, bytes))
    [path] = mitm.wait_for_recordings(1)
    rec = read_recording(path)
    assert _events(rec) == EXPECTED
    assert [c["text"] for c in rec.records if c["kind"] == "comment"] == [" hello"]
    assert rec.ending == "complete"
    assert rec.end["events"] == 4 and rec.end["bytes"] == len(body) and rec.end["tail"] is None
    assert b"".join(b for _, b in rec.chunks) == body
    # every chunk is whole blocks (a comment, an id, two data lines, a retry): each is kept by its lines, none in
    # base64, and they rebuild the body (above)
    lines = [r for r in rec.records if r["kind"] == "chunk"]
    assert len(lines) == 5 and all("blocks" in line and "b64" not in line for line in lines), lines
    h = rec.header
    assert h["format"] == "sse-capture" and h["version"] == 3
    assert h["request"]["method"] == "GET"
    assert h["request"]["url"] == f"{server.base}/sse/{scenario_name}?x=1"
    assert h["response"]["status"] == 200
    # mitmproxy offers the upstream the protocol the client negotiated
    assert h["response"]["http_version"] == ("HTTP/2.0" if http2 else "HTTP/1.1")
    assert client_http == ("HTTP/2" if http2 else "HTTP/1.1")
    times = [r["t"] for r in rec.records]
    assert times == sorted(times) and times[-1] >= 0.06  # relative to the response headers, in order
    # grep-friendly: compact JSON data is a JSON value on the line
    assert '"data":{"type":"tool_use","id":"call_1"' in path.read_text()


def test_a_retry_beyond_64_bits_is_recorded_exactly_and_the_recording_still_reads(mitm, certs, servers,
                                                                                   upstream_app, scenario_name):
    """The spec takes any run of ASCII digits as a retry; JSON can hold it, orjson neither writes nor reads it."""
    big, bigger = 2**64, 10**30
    stream = [b"retry: %d\ndata: a\n\n" % big, b"retry: %d\n\n" % bigger, b"data: after\n\n"]
    upstream_app.add(scenario_name, Scenario(stream))
    with httpx_client(mitm, certs) as client:
        assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").content == b"".join(stream)
    [path] = mitm.wait_for_recordings(1)
    rec = read_recording(path)
    assert _events(rec) == [("message", "a", None, big), ("message", "after", None, None)]
    assert [r["retry"] for r in rec.records if r["kind"] == "no_dispatch"] == [bigger]
    assert rec.ending == "complete" and rec.end["errors"] == []
    assert b"".join(b for _, b in rec.chunks) == b"".join(stream)


@pytest.mark.parametrize("types", [("text/plain", "text/event-stream"), ("text/event-stream", "text/event-stream")])
def test_a_response_with_two_content_types_is_streamed_and_recorded_as_browsers_take_it(mitm, types):
    """Browsers take the last valid Content-Type (Fetch's "extract a MIME type"); mitmproxy would otherwise hold
    the whole stream back until it ends."""
    first_seen = threading.Event()

    def respond(request):
        yield ("HTTP/1.1 200 OK\r\n" + "".join(f"content-type: {t}\r\n" for t in types) + "connection: close\r\n\r\n").encode()
        yield b"data: first\n\n"
        first_seen.wait(10)  # the rest only once the client has the first event: streamed, not buffered
        yield b"data: second\n\n"

    server = RawServer(respond)
    try:
        with httpx.Client(proxy=mitm.url, timeout=20) as client, client.stream("GET", f"{server.base}/sse/two") as r:
            chunks = r.iter_raw()
            assert next(chunks) == b"data: first\n\n"
            first_seen.set()
            assert b"".join(chunks) == b"data: second\n\n"
    finally:
        server.stop()
    [path] = mitm.wait_for_recordings(1)
    rec = read_recording(path)
    assert _events(rec) == [("message", "first", None, None), ("message", "second", None, None)]
    assert rec.ending == "complete"


def test_file_name_sorts_by_time_and_shows_endpoint_and_is_owner_only(mitm, certs, servers, upstream_app,
                                                                       scenario_name):
    upstream_app.add(scenario_name, Scenario([b"data: x\n\n"]))
    with httpx_client(mitm, certs) as client:
        for _ in range(3):
            assert client.post(f"{servers['h1'].base}/sse/{scenario_name}", content=b"{}").status_code == 200
    paths = mitm.wait_for_recordings(3)
    names = [p.name for p in paths]
    assert names == sorted(names)
    starts = [read_recording(p).header["started"] for p in paths]
    assert starts == sorted(starts)
    for p in paths:
        assert p.parent.parent == mitm.record_dir and len(p.parent.name) == len("2026-11-25")
        assert f"_POST_127.0.0.1-{servers['h1'].port}_sse_{scenario_name}_" in p.name
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


@pytest.mark.parametrize("content_type", ["text/event-stream", "Text/Event-Stream; charset=utf-8",
                                          "text/event-stream;charset=UTF-8"])
def test_any_case_and_parameters_are_sse(mitm, certs, servers, upstream_app, scenario_name, content_type):
    upstream_app.add(scenario_name, Scenario([b"data: x\n\n"], headers=[("content-type", content_type)]))
    with httpx_client(mitm, certs) as client:
        assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").text == "data: x\n\n"
    [path] = mitm.wait_for_recordings(1)
    assert [decode_data(e["data"]) for e in read_recording(path).events] == ["x"]


def test_non_sse_responses_pass_untouched_and_are_not_recorded(mitm, certs, servers, upstream_app, scenario_name):
    upstream_app.add(scenario_name, Scenario([b"data: not sse\n\n"], headers=[("content-type", "text/plain")]))
    with httpx_client(mitm, certs) as client:
        assert client.get(f"{servers['h1'].base}/sse/{scenario_name}").text == "data: not sse\n\n"
        assert client.get(f"{servers['h1'].base}/sse/missing").status_code == 404
    assert mitm.recordings() == []


def test_chunks_reach_the_client_as_they_arrive(mitm, certs, servers, upstream_app, scenario_name):
    """No buffering: the client reads event 1 while the server still holds event 2 back."""
    import threading

    gate = threading.Event()
    upstream_app.add(scenario_name, Scenario([b"data: one\n\n", gate, b"data: two\n\n"]))
    with httpx_client(mitm, certs) as client:
        with client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}") as r:
            chunks = r.iter_raw()
            assert next(chunks) == b"data: one\n\n"
            gate.set()
            assert b"".join(chunks) == b"data: two\n\n"


def test_a_compressed_request_body_is_decoded_only_as_far_as_max_body(mitm, certs, servers, upstream_app,
                                                                     scenario_name):
    """265 KB of gzip that decode to 256 MiB (it took the proxy to 900 MB): the upstream gets the body unchanged, the
    recording its first sse_capture_max_body bytes."""
    body = gzip_of_zeros(b'{"q":"', 256 * 1024 * 1024)
    upstream_app.add(f"warm-{scenario_name}", Scenario([b"data: warm\n\n"]))
    scenario = upstream_app.add(scenario_name, Scenario([b"data: x\n\n"]))
    with httpx_client(mitm, certs) as client:
        client.get(f"{servers['h1'].base}/sse/warm-{scenario_name}")   # imports, first flow
        mitm.wait_for_recordings(1)
        pid = mitm.proc.pid
        before = proc_status(pid)["VmRSS"]
        reset_hwm(pid)
        r = client.post(f"{servers['h1'].base}/sse/{scenario_name}", content=body,
                        headers={"content-encoding": "gzip", "content-type": "application/json"})
        assert r.status_code == 200
        path = recording_for(mitm, f"/sse/{scenario_name}")
        peak = proc_status(pid)["VmHWM"]
    print(f"gzip request body of {len(body)} bytes: RSS before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")
    assert scenario.requests[0]["body"] == body
    request = read_recording(path).header["request"]
    assert request["body"] == '{"q":"' + "\0" * (1024 * 1024 - 6)
    assert request["body_truncated"] is True and request["body_size"] is None
    assert peak - before < 100 * 1024, f"peak RSS grew by {(peak - before) / 1024:.0f} MiB"


def test_request_body_and_headers_recorded_with_credentials_redacted(mitm, certs, servers, upstream_app,
                                                                      scenario_name):
    upstream_app.add(scenario_name, Scenario([b"data: x\n\n"],
                                             headers=[("content-type", "text/event-stream"),
                                                      ("set-cookie", "session=s3cret")]))
    with httpx_client(mitm, certs) as client:
        client.post(f"{servers['h1'].base}/sse/{scenario_name}", json={"prompt": "hello"},
                    headers={"Authorization": "Bearer sk-live-123", "Cookie": "a=b", "X-Api-Key": "k1",
                             "Api-Key": "k2", "X-Trace": "visible"})
    [path] = mitm.wait_for_recordings(1)
    text = path.read_text()
    for secret in ("sk-live-123", "a=b", "k1", "k2", "s3cret"):
        assert secret not in text
    rec = read_recording(path)
    req = dict((k.lower(), v) for k, v in rec.header["request"]["headers"])
    assert req["authorization"] == "[REDACTED]" and req["x-trace"] == "visible"
    assert rec.header["request"]["body"] == '{"prompt":"hello"}'
    assert dict(rec.header["response"]["headers"])["set-cookie"] == "[REDACTED]"
