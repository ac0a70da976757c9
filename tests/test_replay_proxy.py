"""The replay addon in a real mitmdump, with httpx as the client: matching, endings, headers, bad input."""

import asyncio
import fcntl
import gzip
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from harness import ROOT, RawServer, Scenario, free_port, httpx_client, run_mitmdump_expect_failure, wait_for_port, wait_until
from reliability_helpers import raw_proxy_request
from replay_helpers import REPLAY_SCRIPT, chat_recording, chunk, ev, parse_events, replay_proxy, write_recording

import mitmproxy.flow
from mitmproxy.addons import proxyserver
from mitmproxy.exceptions import OptionsError
from mitmproxy.test import taddons, tflow

from sse_capture_addon.processes import listens
from sse_capture_addon.replay_addon import SSEReplay
from sse_capture_addon.replay_cli import replay, serve
from sse_capture_addon.testing import ReplayProxy, sse_replay_proxy  # noqa: F401 - the fixture

OFFLINE = f"127.0.0.1:{free_port()}"  # nothing listens here: the backend is offline


def chat_events(n: int) -> list[tuple[str, str, str]]:
    return [("delta", json.dumps({"i": i, "text": f"tok{i}"}, separators=(",", ":")), str(i + 1))
            for i in range(n)] + [("done", "[DONE]", str(n))]


def read_stream(client, method: str, url: str, **kwargs) -> tuple[httpx.Response, bytes, str]:
    """(response, body received, how the body ended: "complete" or the exception's class name)."""
    body = b""
    with client.stream(method, url, **kwargs) as r:
        try:
            for data in r.iter_raw():
                body += data
        except httpx.HTTPError as e:
            return r, body, type(e).__name__
    return r, body, "complete"


def test_https_replay_with_the_backend_offline(certs, tmp_path):
    # (HTTP/2 to the client: see the browser tests; with the lazy connection strategy mitmproxy takes the
    # client's first ALPN choice, which is http/1.1 for httpx and h2 for browsers)
    url = f"https://{OFFLINE}/v1/chat?stream=1"
    rec = chat_recording(tmp_path / "recs" / "chat.jsonl", n=4, gap=0.01, url=url, method="POST")
    with replay_proxy(certs, tmp_path, tmp_path / "recs") as mitm, httpx_client(mitm, certs) as client:
        r = client.post(url, json={"q": "hi"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert parse_events(r.content) == chat_events(4)
    log = mitm.log()
    assert f"> POST {url} <- {rec} (5 events over 0.05s, ends: complete)" in log
    assert f"= POST {url}: 5/5 events in" in log


@pytest.mark.parametrize("extra, outcome", [("forward", 502), ("404", 404), ("kill", "RemoteProtocolError")])
def test_one_endpoint_is_served_in_recorded_order_then_unmatched(certs, tmp_path, extra, outcome):
    url = f"http://{OFFLINE}/sse"
    for name, second in (("b", 2), ("a", 1)):
        write_recording(tmp_path / f"{name}.jsonl", [ev(0.01, f"recording {second}")], url=url,
                        started=f"2026-01-01T00:00:0{second}.000000Z")
    with replay_proxy(certs, tmp_path, tmp_path / "a.jsonl", tmp_path / "b.jsonl", extra=extra) as mitm, \
            httpx_client(mitm, certs) as client:
        assert [parse_events(client.get(url).content)[0][1] for _ in range(2)] == ["recording 1", "recording 2"]
        try:
            got = client.get(url).status_code
        except httpx.HTTPError as e:
            got = type(e).__name__
        assert got == outcome


def test_a_forwarded_request_to_a_recorded_endpoint_is_logged_with_why_it_did_not_match(certs, tmp_path):
    """The default --extra forward: with the backend offline the user sees only mitmproxy's 502, so the log says
    why the request had no recording, when its endpoint has some."""
    write_recording(tmp_path / "chat.jsonl", [ev(0.01, "hi")], url=f"http://{OFFLINE}/api/chat?_=1", method="POST")
    with replay_proxy(certs, tmp_path, tmp_path / "chat.jsonl") as mitm, httpx_client(mitm, certs) as client:
        assert client.post(f"http://{OFFLINE}/api/chat?_=2&access_token=s3cret").status_code == 502
        assert client.get(f"http://{OFFLINE}/favicon.ico").status_code == 502
    said = [line.split("] ", 1)[1] for line in mitm.log().splitlines() if "sse-replay: no recording" in line]
    assert said == [f"sse-replay: no recording for POST http://{OFFLINE}/api/chat?_=2&access_token=[REDACTED]: recorded "
                    "with other query parameters (_, access_token): try --ignore-param _ --ignore-param access_token"]


def test_a_cors_preflight_for_a_recorded_request_is_answered_with_the_backend_offline(certs, tmp_path):
    """A frontend on another origin POSTs JSON: the browser first sends OPTIONS, which the real server (offline)
    would have answered. The proxy answers it for a request it has a recording for, and only then."""
    url = f"http://{OFFLINE}/api/chat"
    chat_recording(tmp_path / "recs" / "chat.jsonl", n=2, gap=0.01, url=url, method="POST")
    asking = {"origin": "http://127.0.0.1:5173", "access-control-request-method": "POST",
              "access-control-request-headers": "content-type"}
    with replay_proxy(certs, tmp_path, tmp_path / "recs", extra="404") as mitm, httpx_client(mitm, certs) as client:
        pre = client.options(url, headers=asking)
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "http://127.0.0.1:5173"
        assert pre.headers["access-control-allow-methods"] == "POST"
        assert pre.headers["access-control-allow-headers"] == "content-type"
        assert client.options(url, headers={**asking, "access-control-request-method": "PUT"}).status_code == 404
        assert client.options(f"http://{OFFLINE}/api/other", headers=asking).status_code == 404
        assert parse_events(client.post(url, json={"q": 1}).content) == chat_events(2)  # not used up by OPTIONS


def test_reuse_starts_over(certs, tmp_path):
    url = f"http://{OFFLINE}/sse"
    write_recording(tmp_path / "a.jsonl", [ev(0.01, "only")], url=url)
    with replay_proxy(certs, tmp_path, tmp_path / "a.jsonl", reuse=True) as mitm, httpx_client(mitm, certs) as client:
        assert [parse_events(client.get(url).content) for _ in range(3)] == [[("message", "only", "")]] * 3


def test_a_request_the_client_aborts_before_the_response_begins_leaves_its_recording_for_the_next(certs, tmp_path):
    """React's StrictMode runs an effect twice: the first fetch is aborted at once, the second must get the
    first recording, not the second or nothing."""
    url = f"http://{OFFLINE}/sse"
    for name, second in (("b", 2), ("a", 1)):
        write_recording(tmp_path / f"{name}.jsonl", [ev(0.01, f"recording {second}")], url=url, ttfb=1.0,
                        started=f"2026-01-01T00:00:0{second}.000000Z")
    with replay_proxy(certs, tmp_path, tmp_path / "a.jsonl", tmp_path / "b.jsonl", extra="404") as mitm:
        with httpx_client(mitm, certs) as client, pytest.raises(httpx.ReadTimeout):
            client.get(url, timeout=httpx.Timeout(5, read=0.3))  # gone during the recorded 1 s to first byte
        with httpx_client(mitm, certs) as client:
            got = [parse_events(client.get(url).content)[0][1] for _ in range(2)]
            assert got == ["recording 1", "recording 2"]
            assert client.get(url).status_code == 404
    assert f"= GET {url}: 0/1 events in" in mitm.log()
    assert "client went away before the response began: served again next time" in mitm.log()


def test_a_retry_that_arrives_before_the_abort_still_gets_the_first_recording(certs, tmp_path):
    """The abort may reach the proxy after the retry (another connection): the retry waits while the first is
    still waiting for its first byte, and gets the recording the first gives back."""
    url = f"http://{OFFLINE}/sse"
    for name, second in (("b", 2), ("a", 1)):
        write_recording(tmp_path / f"{name}.jsonl", [ev(0.01, f"recording {second}")], url=url, ttfb=1.0,
                        started=f"2026-01-01T00:00:0{second}.000000Z")
    got = {}
    with replay_proxy(certs, tmp_path, tmp_path / "a.jsonl", tmp_path / "b.jsonl", extra="404") as mitm:
        first = socket.create_connection(("127.0.0.1", mitm.port))
        first.sendall(f"GET {url} HTTP/1.1\r\nHost: {OFFLINE}\r\n\r\n".encode())
        wait_until(lambda: "server connect" in mitm.log(), timeout=10)  # booked: it waits 1 s for its head
        retry = threading.Thread(target=lambda: got.setdefault("retry", httpx.get(url, proxy=mitm.url, timeout=10)))
        retry.start()
        time.sleep(0.1)  # the retry is in, waiting for its turn (0.25 s at most)
        first.close()  # now the first one's client goes away
        retry.join(10)
        with httpx_client(mitm, certs) as client:
            third = client.get(url)
    assert parse_events(got["retry"].content)[0][1] == "recording 1"
    assert parse_events(third.content)[0][1] == "recording 2"


def test_a_request_the_client_leaves_after_the_response_began_uses_up_its_recording(certs, tmp_path):
    url = f"http://{OFFLINE}/sse"
    for name, second in (("b", 2), ("a", 1)):
        write_recording(tmp_path / f"{name}.jsonl", [ev(0.01, f"recording {second}"), ev(3.0, "late")], url=url,
                        started=f"2026-01-01T00:00:0{second}.000000Z")
    with replay_proxy(certs, tmp_path, tmp_path / "a.jsonl", tmp_path / "b.jsonl", extra="404") as mitm:
        with httpx_client(mitm, certs) as client, client.stream("GET", url) as r:
            assert r.status_code == 200
            assert b"recording 1" in next(r.iter_raw())  # the page saw the first event, then went away
        with httpx_client(mitm, certs) as client:
            assert parse_events(client.get(url).content)[0][1] == "recording 2"


def test_the_replay_log_shows_no_live_token_and_no_raw_control_characters(certs, tmp_path):
    url = f"http://{OFFLINE}/sse?room=1&access_token=[REDACTED]"
    rec = write_recording(tmp_path / "recs\x1b]0;title\x07" / "chat.jsonl",
                          [ev(0.01, "one"), {"t": 0.02, "kind": "error", "what": "parse", "message": "\x1b[2Jgone"}],
                          url=url)
    rec.write_bytes(rec.read_bytes().replace(b'"raw_chunks"', b'"redacted_params":["access_token"],"raw_chunks"', 1))
    with replay_proxy(certs, tmp_path, rec, extra="404") as mitm, httpx_client(mitm, certs) as client:
        assert client.get(url.replace("[REDACTED]", "live-SECRET1")).status_code == 200
        assert client.get(f"http://{OFFLINE}/other?sig=live-SECRET2").status_code == 404
    ours = "\n".join(line for line in mitm.log().splitlines() if "sse-replay" in line)
    assert "live-SECRET" not in ours and "\x1b" not in ours
    assert f"> GET {url} <- " in ours and f"no recording for GET http://{OFFLINE}/other?sig=[REDACTED]: 404" in ours
    assert "stopped parsing events at t=0.02: \\x1b[2Jgone" in ours and "recs\\x1b]0;title\\x07" in ours


def test_a_mapping_serves_a_recording_for_a_url_pattern(certs, tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=2, gap=0.01, url="https://prod.example/api/chat")
    with replay_proxy(certs, tmp_path, map=f"|/api/v[0-9]+/stream|{rec}") as mitm, \
            httpx_client(mitm, certs) as client:
        for url in ("http://localhost:5173/api/v2/stream?session=1", "https://staging.test/api/v3/stream"):
            assert parse_events(client.get(url).content) == chat_events(2)


def test_the_fixture_replays_a_mapping_alone(sse_replay_proxy, certs, tmp_path):
    # docs/replay.md: with a mapping, no other recording need be named; the fixture passes it as --set sse_replay_map
    rec = chat_recording(tmp_path / "chat.jsonl", n=2, gap=0.01, url="https://prod.example/api/chat")
    proxy = sse_replay_proxy(speed="max", confdir=certs.mitm_confdir, map=f"|/api/chat|{rec}")
    with httpx.Client(proxy=proxy.url, timeout=10) as client:
        assert parse_events(client.get(f"http://{OFFLINE}/api/chat?session=1").content) == chat_events(2)


def test_matching_on_the_body(certs, tmp_path):
    url = f"http://{OFFLINE}/v1/chat"
    for word in ("hello", "bye"):
        write_recording(tmp_path / f"{word}.jsonl", [ev(0.01, f"re: {word}")], url=url, method="POST",
                        body=json.dumps({"messages": [word]}))
    with replay_proxy(certs, tmp_path, tmp_path / "hello.jsonl", tmp_path / "bye.jsonl", match_body=True) as mitm, \
            httpx_client(mitm, certs) as client:
        assert parse_events(client.post(url, json={"messages": ["bye"]}).content) == [("message", "re: bye", "")]
        assert parse_events(client.post(url, json={"messages": ["hello"]}).content) == [("message", "re: hello", "")]


def test_matching_on_a_compressed_body_compares_it_as_it_was_recorded(certs, tmp_path):
    """The capture addon records a request body as its Content-Encoding decodes; a client that compresses its
    request (gzip here) sends the same bytes again when the test replays it, and must get the recording."""
    url = f"http://{OFFLINE}/v1/chat"
    for word in ("hello", "bye"):
        write_recording(tmp_path / f"{word}.jsonl", [ev(0.01, f"re: {word}")], url=url, method="POST",
                        body=json.dumps({"messages": [word]}))
    with replay_proxy(certs, tmp_path, tmp_path / "hello.jsonl", tmp_path / "bye.jsonl", match_body=True,
                      extra="404") as mitm, httpx_client(mitm, certs) as client:
        for word in ("bye", "hello"):
            r = client.post(url, content=gzip.compress(json.dumps({"messages": [word]}).encode()),
                            headers={"content-type": "application/json", "content-encoding": "gzip"})
            assert parse_events(r.content) == [("message", f"re: {word}", "")]
        r = client.post(url, content=gzip.compress(b'{"messages":["other"]}'), headers={"content-encoding": "gzip"})
        assert r.status_code == 404


def test_a_recording_from_an_https_server_answers_an_http_dev_origin_with_ignore_host(certs, tmp_path):
    """Recorded against https://staging, replayed to a frontend on http://localhost:5173 (docs/replay.md's recipe):
    ignoring the host ignores the scheme too. Without it, the log says what differs and what to try."""
    chat_recording(tmp_path / "chat.jsonl", n=2, gap=0.01, url="https://staging.example/api/chat", method="POST")
    dev = f"http://127.0.0.1:{free_port()}/api/chat"
    with replay_proxy(certs, tmp_path, tmp_path / "chat.jsonl", ignore_host=True, ignore_port=True) as mitm, \
            httpx_client(mitm, certs) as client:
        assert parse_events(client.post(dev, json={}).content) == chat_events(2)
    with replay_proxy(certs, tmp_path, tmp_path / "chat.jsonl", ignore_port=True, extra="404") as mitm, \
            httpx_client(mitm, certs) as client:
        assert client.post(dev, json={}).status_code == 404
    assert ("recorded over https and for another host (staging.example): try --ignore-host" in mitm.log())


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_replay_in_upstream_mode_answers_from_recordings_and_forwards_the_rest_upstream(certs, tmp_path, scheme):
    """--mode upstream (a corporate proxy in front of the internet): a matched request is answered by the replay
    server on this machine, not sent to the upstream proxy; the other requests still go through that proxy, on
    the same client connection too."""
    upstream = RawServer(lambda request: [b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\nconnection: close\r\n\r\n"
                                          b"from upstream"])
    url = f"{scheme}://{OFFLINE}/api/chat"
    chat_recording(tmp_path / "chat.jsonl", n=2, gap=0.01, url=url, method="POST")
    try:
        with replay_proxy(certs, tmp_path, tmp_path / "chat.jsonl", reuse=True,
                          mitm_args=["--mode", f"upstream:http://127.0.0.1:{upstream.port}"]) as mitm, \
                httpx_client(mitm, certs) as client:
            assert parse_events(client.post(url, json={}).content) == chat_events(2)
            if scheme == "http":
                assert client.get(f"http://{OFFLINE}/other").text == "from upstream"
                assert parse_events(client.post(url, json={}).content) == chat_events(2)
                assert [r.split(b"\r\n")[0] for r in upstream.requests] == [f"GET http://{OFFLINE}/other HTTP/1.1".encode()]
            else:
                assert upstream.requests == []  # not even a CONNECT
    finally:
        upstream.stop()
    assert mitm.log().count(f"= POST {url}: 3/3 events in") == (2 if scheme == "http" else 1)


def test_replayed_headers_match_the_bytes_sent(certs, tmp_path):
    url = f"http://{OFFLINE}/sse"
    text = b"event: delta\ndata: one\n\nevent: delta\ndata: two\n\n"
    encoded = gzip.compress(text)
    headers = [["content-type", "text/event-stream"], ["content-encoding", "gzip"], ["transfer-encoding", "chunked"],
               ["content-length", "999"], ["set-cookie", "[REDACTED]"], ["x-request-id", "r1"]]
    rec = write_recording(tmp_path / "gz.jsonl", [chunk(0.01, 1, encoded[:10]), chunk(0.02, 2, encoded[10:]),
                                                  ev(0.02, "one", "delta"), ev(0.02, "two", "delta")],
                          url=url, headers=headers, raw_chunks=True)
    for byte_exact in (False, True):
        with replay_proxy(certs, tmp_path, rec, bytes=byte_exact) as mitm, httpx_client(mitm, certs) as client:
            r, raw, how = read_stream(client, "GET", url)
        assert (r.status_code, how) == (200, "complete")
        assert "content-length" not in r.headers and "set-cookie" not in r.headers
        assert "connection" not in r.headers  # the replay server's own "close" is not the recording's
        assert r.headers["x-request-id"] == "r1"
        if byte_exact:  # the recorded encoded bytes, labelled as such
            assert r.headers["content-encoding"] == "gzip" and raw == encoded
        else:
            assert "content-encoding" not in r.headers
            assert parse_events(raw) == [("delta", "one", ""), ("delta", "two", "")]


ENDINGS = {  # recorded ending -> how the client's read ends
    "complete": ({"end": "complete"}, "complete"),
    "server-reset": ({"end": "server_error"}, "RemoteProtocolError"),
    "proxy-died": ({"end": None}, "RemoteProtocolError"),
    "client-left": ({"end": "client_disconnected"}, "ReadTimeout"),  # the stream stays open
    "tail": ({"end": "complete", "tail": "data: unterminat"}, "complete"),
}


def test_the_recorded_ending_through_the_proxy(certs, tmp_path):
    for name, (end, _) in ENDINGS.items():
        write_recording(tmp_path / "recs" / f"{name}.jsonl", [ev(0.01, "a"), ev(0.02, "b")],
                        url=f"http://{OFFLINE}/{name}", end_t=0.05, **end)
    with replay_proxy(certs, tmp_path, tmp_path / "recs") as mitm, httpx.Client(proxy=mitm.url, timeout=1.5) as client:
        for name, (end, how) in ENDINGS.items():
            r, raw, got = read_stream(client, "GET", f"http://{OFFLINE}/{name}")
            assert (name, r.status_code, got) == (name, 200, how)
            assert parse_events(raw) == [("message", "a", ""), ("message", "b", "")]
            assert raw.endswith(end.get("tail", "").encode())


def test_a_forwarded_live_stream_is_streamed_not_buffered(certs, tmp_path, servers, upstream_app, scenario_name):
    gate = threading.Event()
    upstream_app.add(scenario_name, Scenario([b"data: first\n\n", gate, b"data: second\n\n"]))
    rec = write_recording(tmp_path / "other.jsonl", [ev(0.01, "x")], url=f"http://{OFFLINE}/other")
    with replay_proxy(certs, tmp_path, rec) as mitm, httpx.Client(proxy=mitm.url, timeout=10) as client:
        with client.stream("GET", f"{servers['h1'].base}/sse/{scenario_name}") as r:
            chunks = r.iter_raw()
            assert next(chunks) == b"data: first\n\n"  # while the server still holds the rest back
            gate.set()
            assert b"".join(chunks) == b"data: second\n\n"


def test_the_pytest_fixture_starts_a_replay_proxy(sse_replay_proxy, certs, tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=3, gap=0.01, url="https://api.test/chat")
    proxy = sse_replay_proxy(rec, speed="max", confdir=certs.mitm_confdir, drop="done", ignore_host=True)
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=certs.mitm_ca), timeout=10) as client:
        assert parse_events(client.get("https://localhost/chat").content) == chat_events(3)[:3]
    assert "HTTP(S) proxy listening at 127.0.0.1:" in proxy.log()
    assert proxy.log().count("recording(s)") == 1  # read once, though ignore_host came in a --set of its own


def test_the_fixture_refuses_a_port_another_program_listens_on(certs, tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    with socket.socket() as dev_server:
        dev_server.bind(("127.0.0.1", 0))
        dev_server.listen()
        port = dev_server.getsockname()[1]
        with pytest.raises(RuntimeError) as e:
            ReplayProxy(rec, port=port, confdir=certs.mitm_confdir, log_dir=tmp_path)
    assert str(e.value).startswith(f"the replay proxy did not start: process exited with 1 before listening on {port}")
    assert "address already in use" in str(e.value)


def test_replay_proxy_outside_pytest_leaves_no_log_file_behind(certs, tmp_path):
    """docs/replay.md's `with ReplayProxy(...)`: without a log_dir its log is a temporary file, removed at stop (a
    /tmp/sse-replay-*.log was left by every use), its text still there for log(); failing to start too."""
    rec = chat_recording(tmp_path / "chat.jsonl", n=1, url=f"http://{OFFLINE}/sse")
    with ReplayProxy(rec, speed="max", confdir=certs.mitm_confdir) as proxy:
        with httpx.Client(proxy=proxy.url, timeout=10) as client:
            assert parse_events(client.get(f"http://{OFFLINE}/sse").content) == chat_events(1)
        assert proxy.log_path.exists()
    assert not proxy.log_path.exists() and f"GET http://{OFFLINE}/sse" in proxy.log()
    logs = set(Path(tempfile.gettempdir()).glob("sse-replay-*.log"))
    with socket.socket() as dev_server:
        dev_server.bind(("127.0.0.1", 0))
        dev_server.listen()
        with pytest.raises(RuntimeError, match="address already in use"):
            ReplayProxy(rec, port=dev_server.getsockname()[1], confdir=certs.mitm_confdir)
    assert set(Path(tempfile.gettempdir()).glob("sse-replay-*.log")) <= logs


def test_the_replay_proxy_stops_when_the_test_run_that_started_it_is_killed(certs, tmp_path):
    """CI cancels a job with SIGTERM, which runs no clean-up: the fixture's proxy outlived pytest, holding its port."""
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    script = ("import sys, time\nfrom sse_capture_addon.testing import ReplayProxy\n"
              f"p = ReplayProxy({str(rec)!r}, confdir={str(certs.mitm_confdir)!r}, log_dir={str(tmp_path)!r})\n"
              "print(p.proc.pid, flush=True)\ntime.sleep(60)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    proxy_pid = None
    try:
        proxy_pid = int(run.stdout.readline())
        run.terminate()  # SIGTERM: Python's default, no finally, no atexit
        run.wait(10)
        wait_until(lambda: not os.path.exists(f"/proc/{proxy_pid}") or
                   open(f"/proc/{proxy_pid}/stat").read().split()[2] == "Z", timeout=10, what="the proxy to stop")
        proxy_pid = None
    finally:
        run.kill()
        run.stdout.close()
        if proxy_pid is not None:  # (the failure: no orphan left behind by the test itself)
            os.kill(proxy_pid, 9)
    [log] = tmp_path.glob("sse-replay-*.log")
    assert "the process that started this proxy is gone; stopping" in log.read_text()


def test_waiting_for_a_port_waits_for_the_process_not_for_whoever_answers(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            with pytest.raises(TimeoutError):
                wait_for_port(port, timeout=1, proc=child)
            assert listens(child.pid, port) is False and listens(os.getpid(), port) is True
        finally:
            child.kill()
            child.wait()
        wait_for_port(port, timeout=1)  # (without a process, anything listening will do)
    # /proc showing no listening socket on the port at all (WSL1's is empty) cannot tell: not "no"
    assert listens(os.getpid(), free_port()) is None


def test_changing_only_how_requests_match_does_not_read_the_recordings_again(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    addon = SSEReplay()
    with taddons.context(addon, proxyserver.Proxyserver()) as tctx:
        tctx.configure(addon, sse_replay=[str(rec)])
        [loaded] = addon.matcher.recordings
        tctx.configure(addon, sse_replay_ignore_host=True, sse_replay_reuse=True)
        assert addon.matcher.options.ignore_host and addon.matcher.recordings[0] is loaded
        tctx.configure(addon, sse_replay=[str(rec), str(rec)])  # another value: read again
        assert addon.matcher.recordings[0] is not loaded
    assert [r.message for r in caplog.records if "recording(s)" in r.message] == ["sse-replay: 1 recording(s)"] * 2


def test_the_replay_addon_leaves_out_a_recording_a_proxy_is_still_writing(tmp_path, caplog):
    done = chat_recording(tmp_path / "recs" / "a.jsonl", n=1)
    live = write_recording(tmp_path / "recs" / "b.jsonl", [ev(0.1, "so far")], end=None)
    addon = SSEReplay()
    with open(live, "rb") as held, taddons.context(addon, proxyserver.Proxyserver()) as tctx:
        fcntl.flock(held, fcntl.LOCK_EX)
        tctx.configure(addon, sse_replay=[str(tmp_path / "recs")])
    assert [r.path for r in addon.matcher.recordings] == [str(done)]
    assert f"sse-replay: {live}: still being written by a proxy; left out" in caplog.text


# --- bad input -------------------------------------------------------------------------------------------

HEADER = ('{"kind":"header","format":"sse-capture","version":%d,"stream_id":"x","started":"2026-01-01T00:00:00Z",'
          '"request":{"method":"GET","url":"http://a.test/","headers":[]},"response":{"status":200,"headers":[]}}\n')


def test_a_bad_recording_stops_mitmdump_with_file_and_line(certs, tmp_path):
    (tmp_path / "recs").mkdir()
    (tmp_path / "recs" / "ok.jsonl").write_text(HEADER % 1)
    bad = tmp_path / "recs" / "bad.jsonl"
    bad.write_text(HEADER % 1 + '{"t":0.1,"kind":"comment","text":"a"}\n{"t":0.2,"kind":"event",\n')
    code, out = run_mitmdump_expect_failure(certs, tmp_path, ["-s", str(REPLAY_SCRIPT),
                                                              "--set", f"sse_replay={tmp_path / 'recs'}"])
    assert code != 0
    assert f"{bad}:3: invalid JSON" in out


def test_an_option_value_mitmproxy_cannot_parse_stops_mitmdump(certs, tmp_path):
    code, out = run_mitmdump_expect_failure(certs, tmp_path, ["-s", str(REPLAY_SCRIPT),
                                                              "--set", "sse_replay_cut_after=three"])
    assert code != 0
    assert "sse-replay: Failed to parse option sse_replay_cut_after: not an integer: three" in out


def test_a_bad_option_stops_the_replay_command_with_a_clear_message(tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    proc = subprocess.run([sys.executable, "-m", "sse_capture_addon.cli", "replay", str(rec), "--speed", "0",
                           "--listen-port", str(free_port())], capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == "Error: sse_replay_speed: speed must be a number > 0 or 'max', got '0'"


def test_a_replayed_request_the_proxy_could_not_deliver_is_not_blamed_on_the_client(tmp_path, caplog):
    """The error hook before the replay server had the request: a client that left, or a proxy that could not
    reach the replay server (mitmproxy's words for each), and the recording is served again either way."""
    rec = chat_recording(tmp_path / "chat.jsonl", n=1, url="http://api.test/sse")

    async def run() -> None:
        addon = SSEReplay()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, sse_replay=[str(rec)])
            await addon.running()
            try:
                for message in ("Client disconnected.", "Connection refused", "stream reset by client (CANCEL)"):
                    f = tflow.tflow()
                    f.request.url = "http://api.test/sse"
                    await addon.request(f)
                    assert "sse_replay" in f.metadata
                    f.error = mitmproxy.flow.Error(message)
                    addon.error(f)
            finally:
                await addon.done()

    with caplog.at_level(logging.INFO, logger="sse_replay"):
        asyncio.run(run())
    ended = [r.getMessage().split("events in ", 1)[1].split("s, ", 1)[1] for r in caplog.records
             if r.getMessage().startswith("sse-replay: = GET http://api.test/sse: 0/2")]
    assert ended == ["client went away before the response began: served again next time",
                     "not delivered (Connection refused) before the response began: served again next time",
                     "client went away before the response began: served again next time"]


def refused(**options) -> str:
    """The message with which the addon refuses these option values."""
    addon = SSEReplay()
    with taddons.context(addon) as tctx:
        with pytest.raises(OptionsError) as e:
            tctx.configure(addon, **options)
    return str(e.value)


@pytest.mark.parametrize("content, where, message", [
    (HEADER % 4, 1, "unsupported format version 4"),
    ('{"t":0.1,"kind":"event","event":"message","data":"x"}\n', 1, "missing header line"),
])
def test_a_bad_recording_is_refused_with_file_and_line(tmp_path, content, where, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    assert refused(sse_replay=[str(bad)]).startswith(f"{bad}:{where}: {message}")


@pytest.mark.parametrize("options, message", [
    ({"sse_replay_max_pause": "soon"}, "sse_replay_max_pause: must be a number of seconds, got 'soon'"),
    ({"sse_replay_swap": "3"}, "sse_replay_swap: swap must be two event numbers like 3,5, got '3'"),
    ({"sse_replay_cut_after": 1, "sse_replay_stall_after": 2},
     "sse_replay_cut_after: cut_after and stall_after each end the stream; choose one"),
    ({"sse_replay_rechunk": 0}, "sse_replay_rechunk: rechunk must be a chunk size >= 1 byte, got 0"),
    ({"sse_replay_cut_after": -1}, "sse_replay_cut_after: cut_after must be an event number >= 0, got -1"),
    ({"sse_replay_stall_after": -2}, "sse_replay_stall_after: stall_after must be an event number >= 0, got -2"),
    ({"sse_replay_stop_mid_event": 0}, "sse_replay_stop_mid_event: stop_mid_event must be an event number >= 1"),
    ({"sse_replay_map": ["|/chat|"]}, "sse_replay_map: mapping must look like |url-regex|recording.jsonl"),
    ({"sse_replay": ["/nonexistent"]}, "/nonexistent: no such file or directory"),  # (no line: the whole file)
])
def test_a_bad_option_is_refused(options, message):
    assert refused(**options).startswith(message)


@pytest.mark.parametrize("command", [replay, serve], ids=["replay", "serve"])
def test_a_missing_directory_is_named_without_a_line_number(tmp_path, command):
    result = CliRunner().invoke(command, [f"{tmp_path}/nonexistent/", "-p", "0"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {tmp_path}/nonexistent/: no such file or directory"


@pytest.mark.parametrize("extra", ["abc", "FORWARD", "999", "302", "200", ""])
def test_an_unknown_extra_is_refused(extra):
    assert refused(sse_replay_extra=extra) == \
        f"sse_replay_extra: must be one of forward, kill, 204, 400, 404, 500, got {extra!r}"


def test_an_unknown_extra_stops_mitmdump(certs, tmp_path, monkeypatch):
    # mitmproxy does not hold --set values to an option's choices: each unmatched request failed, or got that status
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the script imports this checkout's package
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    code, out = run_mitmdump_expect_failure(certs, tmp_path, ["-s", str(REPLAY_SCRIPT), "--set", f"sse_replay={rec}",
                                                              "--set", "sse_replay_extra=302"])
    assert code != 0
    assert "sse_replay_extra: must be one of forward, kill, 204, 400, 404, 500, got '302'" in out


SHARED_BAD_VALUES = [  # serve's and the addon's options for one bad value of each option they share
    (["--speed", "0"], {"sse_replay_speed": "0"}),
    (["--speed", "nan"], {"sse_replay_speed": "nan"}),
    (["--max-pause", "nan"], {"sse_replay_max_pause": "nan"}),
    (["--max-pause", "-1"], {"sse_replay_max_pause": "-1"}),
    (["--max-pause", "soon"], {"sse_replay_max_pause": "soon"}),
    (["--swap", "3"], {"sse_replay_swap": "3"}),
    (["--swap", "2,2"], {"sse_replay_swap": "2,2"}),
    (["--cut-after", "-1"], {"sse_replay_cut_after": -1}),
    (["--stall-after", "-1"], {"sse_replay_stall_after": -1}),
    (["--stop-mid-event", "0"], {"sse_replay_stop_mid_event": 0}),
    (["--rechunk", "0"], {"sse_replay_rechunk": 0}),
    (["--cut-after", "1", "--stop-mid-event", "2"], {"sse_replay_cut_after": 1, "sse_replay_stop_mid_event": 2}),
    (["--bytes", "--drop", "done"], {"sse_replay_bytes": True, "sse_replay_drop": ["done"]}),
    (["--drop", "#0"], {"sse_replay_drop": ["#0"]}),
]


@pytest.mark.parametrize("args, options", SHARED_BAD_VALUES, ids=[" ".join(a) for a, _ in SHARED_BAD_VALUES])
def test_serve_and_replay_refuse_the_same_values(tmp_path, args, options):
    """One check for all: a value the replay addon refuses, naming its option, serve refuses with the same reason,
    naming its command-line option, and the replay command as the addon does."""
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    option, reason = refused(sse_replay=[str(rec)], **options).split(": ", 1)
    assert option == next(iter(options))
    result = CliRunner().invoke(serve, [str(rec), *args, "--port", "0"])
    assert result.exit_code == 2, result.output
    assert result.output.rstrip().endswith(f"Error: Invalid value for {args[0]}: {reason}")
    result = CliRunner().invoke(replay, [str(rec), *args, "--listen-port", "0"])
    assert result.exit_code == 1, result.output
    assert result.output.rstrip() == f"Error: {option}: {reason}"


def test_byte_exact_replay_refuses_a_recording_without_raw_chunks(tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    assert refused(sse_replay=[str(rec)], sse_replay_bytes=True) == \
        f"{rec}:1: byte-exact replay needs raw chunks, and this recording has none (record with sse_capture_raw_chunks=on)"


def test_a_recording_of_an_ipv6_upstream_is_replayed(certs, tmp_path):
    # mitmproxy records such a URL without brackets ("http://::1:PORT/x"); replay must match it all the same
    port = free_port()
    url = f"http://::1:{port}/v1/chat"
    chat_recording(tmp_path / "recs" / "chat.jsonl", n=3, gap=0.01, url=url, method="GET")
    with replay_proxy(certs, tmp_path, tmp_path / "recs") as mitm:  # by hand: httpx drops the brackets
        head, body = raw_proxy_request(mitm.port, f"http://[::1]:{port}/v1/chat", f"[::1]:{port}")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert parse_events(body) == chat_events(3)
