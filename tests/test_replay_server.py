"""The loopback replay server on its own: endings on the wire, drift-free timing, the ``serve`` command."""

import asyncio
import fcntl
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from harness import ROOT, free_port, wait_for_port
from replay_helpers import chat_recording, ev, parse_events, run_serve, serve_process, write_recording

from sse_capture_addon.replay.schedule import CLOSE, COMPLETE, HOLD, RECHUNK_GAP, RESET, Plan, Write
from sse_capture_addon.replay.server import CLIENT_GONE, Playback, ReplayServer, Timeline

REQUEST = b"GET /sse HTTP/1.1\r\nhost: x\r\n\r\n"


def plan(writes, ending=COMPLETE, end_at=None, head_delay=0.0):
    end_at = end_at if end_at is not None else (writes[-1].at if writes else 0.0)
    return Plan(200, "OK", [("content-type", "text/event-stream")], head_delay, writes, ending, end_at)


async def exchange(the_plan, read_for: float = 3.0):
    """Play ``the_plan`` to a raw client; returns (bytes received, how the read ended, finished playbacks)."""
    ended = []
    server = ReplayServer(lambda request: Playback(the_plan), on_end=ended.append)
    port = await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    data, how = b"", "eof"
    try:
        async with asyncio.timeout(read_for):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        how = "reset"
    except TimeoutError:
        how = "open"
    writer.close()
    await asyncio.sleep(0.05)
    await server.close()
    return data, how, ended


@pytest.mark.parametrize("ending, how, last_chunk", [
    (COMPLETE, "eof", True), (CLOSE, "eof", False), (RESET, "reset", False), (HOLD, "open", False),
])
def test_each_ending_on_the_wire(ending, how, last_chunk):
    the_plan = plan([Write(0.0, b"data: a\n\n", 1), Write(0.05, b"data: b\n\n", 1)], ending)
    data, got, ended = asyncio.run(exchange(the_plan, read_for=0.5))
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert parse_events(body) == [("message", "a", ""), ("message", "b", "")]
    assert got == how
    assert body.endswith(b"0\r\n\r\n") == last_chunk
    assert [(p.events_sent, p.outcome) for p in ended] == [(2, CLIENT_GONE if ending == HOLD else ending)]


class Transport:
    """A transport that notes when each write was made."""

    def __init__(self, loop):
        self.loop, self.sent = loop, []

    def is_closing(self):
        return False

    def write(self, data):
        self.sent.append((self.loop.time(), data))


def test_a_late_write_does_not_delay_the_ones_after_it():
    # a write due every 20 ms; the event loop is blocked for 150 ms at 100 ms
    writes = [Write(0.02 * i, f"data: {i}\n\n".encode(), 1) for i in range(20)]

    async def run():
        asyncio.get_running_loop().call_later(0.1, time.sleep, 0.15)
        server = ReplayServer(lambda request: Playback(plan(writes)))
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await reader.readuntil(b"\r\n\r\n")
        start, arrivals = time.monotonic(), []
        while chunk := await reader.read(65536):
            arrivals += [time.monotonic() - start] * len(parse_events(chunk.partition(b"\r\n")[2]))
        writer.close()
        await server.close()
        return arrivals

    arrivals = asyncio.run(run())
    assert len(arrivals) == 20
    # the writes held up by the block go out at once; the rest are back on the original schedule
    assert arrivals[-1] == pytest.approx(0.38, abs=0.07)  # gap after gap would end at 0.53


def test_the_early_wake_up_never_sends_a_write_before_it_is_due():
    """The timeline wakes ahead of time to beat epoll's millisecond rounding; no write may go out early,
    for one stream or for several interleaved ones."""
    async def run():
        loop = asyncio.get_running_loop()
        timeline = Timeline(loop)
        start = loop.time() + 0.01
        plays = []
        for k in range(3):  # gaps of 0.3-3.3 ms, below and above the wake-up slack, offset per stream
            at, writes = 0.0, []
            for i in range(40):
                at += 0.0003 + 0.001 * ((i * 7 + k) % 4)
                writes.append(Write(at, b"%d.%d" % (k, i), 1))
            transport = Transport(loop)
            plays.append((start, writes, transport, timeline.play(start, writes, transport, False,
                                                                   Playback(plan(writes)))))
        await asyncio.gather(*(done for *_, done in plays))
        return plays

    for start, writes, transport, _ in asyncio.run(run()):
        due = {w.data: start + w.at for w in writes}
        assert b"".join(d for _, d in transport.sent) == b"".join(w.data for w in writes)
        position = 0
        for t, data in transport.sent:  # a write may carry several that were due together
            while data:
                w = writes[position]
                assert data.startswith(w.data)
                assert t >= due[w.data], f"{w.data!r} went out {1000 * (due[w.data] - t):.3f} ms early"
                data, position = data[len(w.data):], position + 1


def test_serve_command(tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=3, gap=0.01, url="https://api.test/sse/chat?x=1", method="POST")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sse_capture_addon.cli", "serve", str(rec), "--port", str(port),
                             "--cors", "--reuse"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            r = client.post("/sse/chat?x=1", headers={"origin": "http://localhost:3000"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
            assert [e[0] for e in parse_events(r.content)] == ["delta"] * 3 + ["done"]
            preflight = client.options("/sse/chat?x=1", headers={
                "origin": "http://localhost:3000", "access-control-request-method": "POST",
                "access-control-request-headers": "content-type"})
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-headers"] == "content-type"
            assert client.post("/sse/other").status_code == 404
            assert client.post("/sse/chat?x=2&token=s3cret").status_code == 404
            # a page may read the 404 too (a browser hides a response without the header, even an error)
            missing = client.get("/sse/other", headers={"origin": "http://localhost:3000"})
            assert missing.status_code == 404
            assert missing.headers["access-control-allow-origin"] == "http://localhost:3000"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert f"serving 1 recording(s) on http://127.0.0.1:{port}" in out
    assert "= POST /sse/chat?x=1: 4/4 events" in out and "complete" in out
    assert "no recording for POST /sse/other: 404\n" in out  # (a path with no recording: nothing more to say)
    assert ("no recording for POST /sse/chat?x=2&token=[REDACTED]: 404; recorded with other query parameters (token, x): "
            "try --ignore-param token --ignore-param x\n") in out


def test_serve_lets_only_loopback_and_named_origins_read_the_recordings(tmp_path):
    """serve answers requests for loopback names only (DNS rebinding), but a page of any site may fetch
    http://127.0.0.1:8000 itself: with --cors only a loopback origin (or one named with --allow-origin) is let read
    the answer, and without it no recorded Access-Control-Allow-Origin (a public API's "*") is passed on."""
    headers = [["content-type", "text/event-stream"], ["access-control-allow-origin", "*"],
               ["access-control-allow-credentials", "true"]]
    rec = write_recording(tmp_path / "chat.jsonl", [ev(0.01, "secret data")], url="https://api.test/sse",
                          headers=headers)
    for args, readers in [([], []), (["--cors"], ["http://localhost:3000", "http://127.0.0.1:5173"]),
                          (["--cors", "--allow-origin", "https://app.example:8443"],
                           ["http://localhost:3000", "http://127.0.0.1:5173", "https://app.example:8443"])]:
        with serve_process(rec, "--reuse", *args) as served, httpx.Client(base_url=served.base, timeout=10) as client:
            for origin in ["http://localhost:3000", "http://127.0.0.1:5173", "https://app.example:8443",
                           "https://evil.example", "null"]:
                r = client.get("/sse", headers={"origin": origin})
                assert r.status_code == 200 and parse_events(r.content) == [("message", "secret data", "")]
                allowed = r.headers.get("access-control-allow-origin")
                assert allowed == (origin if origin in readers else None), (args, origin, allowed)
                preflight = client.options("/sse", headers={"origin": origin, "access-control-request-method": "GET"})
                assert preflight.headers.get("access-control-allow-origin") == (
                    origin if origin in readers else None), (args, origin)


def test_serve_with_only_a_mapping(tmp_path):
    """--map names its recording, so it needs no other (the docs' "serve this one recording for every request
    whose URL matches")."""
    rec = chat_recording(tmp_path / "chat.jsonl", n=2, gap=0.01, url="https://api.test/sse/chat")
    with serve_process("--map", "/any/.*", rec) as served:
        with httpx.Client(base_url=served.base, timeout=10) as client:
            r = client.get("/any/thing?x=1")
            assert r.status_code == 200 and [e[0] for e in parse_events(r.content)] == ["delta"] * 2 + ["done"]
            assert client.get("/sse/chat").status_code == 404  # mapped only, not matched as a recording too
    assert "serving 0 recording(s) and 1 mapping(s)" in served.output
    code, err = run_serve()
    assert code == 2 and "Missing argument 'RECORDING_OR_DIR...' (or --map URL_REGEX RECORDING)" in err


def test_an_error_answer_carries_the_cors_headers_too():
    """A request the server cannot replay (here: a resolver that fails) gets a 500, which a --cors server lets
    the page read; the server goes on serving."""
    def resolve(request):
        raise TypeError("a recording the plan builder cannot handle")

    async def run():
        server = ReplayServer(resolve, cors=True)
        port = await server.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            answers = [await client.get("/sse", headers={"origin": "http://localhost:5173"}) for _ in range(2)]
        await server.close()
        return answers

    for r in asyncio.run(run()):
        assert r.status_code == 500 and "cannot handle" in r.text
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_rechunked_pieces_keep_their_spacing_when_the_replay_is_behind():
    """Pieces that must reach the client one by one (re-chunking) are never written together, not even when
    the event loop was blocked past several of their due times; the rest of the stream moves later."""
    writes = [Write(0.001 * i, b"%d" % (i % 10), 0) for i in range(30)]  # due 1 ms apart: behind from the start

    async def run():
        loop = asyncio.get_running_loop()
        transport = Transport(loop)
        the_plan = plan(writes)
        the_plan.spacing = RECHUNK_GAP
        start = loop.time()
        loop.call_soon(time.sleep, 0.02)  # every piece due in the first 20 ms is overdue when the loop is back
        await Timeline(loop).play(start, writes, transport, False, Playback(the_plan))
        return transport.sent

    sent = asyncio.run(run())
    assert [data for _, data in sent] == [w.data for w in writes]  # one write per piece, in order
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:])]
    assert min(gaps) >= RECHUNK_GAP


# --- sse-capture serve: what it shares with replay ------------------------------------------------------

def test_serve_warns_about_a_fault_the_recording_cannot_take(tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=3, gap=0.01)
    with serve_process(rec, "--speed", "max", "--cut-after", "11", "--swap", "2,12") as served:
        r = httpx.get(f"{served.base}/sse/chat", timeout=10)
        assert len(parse_events(r.content)) == 4
    assert f"{rec}: swap 2,12 not applied: the recording has 4 events" in served.output
    assert f"{rec}: cut_after=11 not applied: the recording has 4 events" in served.output


def test_serve_drops_an_event_by_the_number_show_gives_it(tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=3, gap=0.01)  # 3 deltas, then done: #4
    with serve_process(rec, "--speed", "max", "--drop", "#4") as served:
        r = httpx.get(f"{served.base}/sse/chat", timeout=10)
    assert [event for event, _, _ in parse_events(r.content)] == ["delta"] * 3


@pytest.mark.parametrize("contents", [[], ["notes.txt"]])
def test_serve_refuses_a_directory_without_recordings(tmp_path, contents):
    directory = tmp_path / "recs"
    directory.mkdir()
    for name in contents:
        (directory / name).write_text("not a recording\n")
    code, err = run_serve(directory, "--port", "0")
    assert (code, err.strip()) == (1, f"Error: no recordings (*.jsonl) in {directory}")


def test_a_recording_named_twice_is_served_once(tmp_path):
    directory = tmp_path / "recs"
    for name, second in (("a", 1), ("b", 2)):
        write_recording(directory / f"{name}.jsonl", [ev(0.01, f"recording {second}")],
                        started=f"2026-01-01T00:00:0{second}.000000Z")
    with serve_process(directory, f"{directory}/", directory / "a.jsonl", "--speed", "max") as served:
        got = [httpx.get(f"{served.base}/sse/chat", timeout=10) for _ in range(3)]
    assert [parse_events(r.content)[0][1] for r in got[:2]] == ["recording 1", "recording 2"]
    assert got[2].status_code == 404
    assert "serving 2 recording(s)" in served.output


def test_serve_leaves_out_a_recording_a_proxy_is_still_writing(tmp_path):
    directory = tmp_path / "recs"
    write_recording(directory / "a.jsonl", [ev(0.01, "finished")], started="2026-01-01T00:00:01.000000Z")
    live = write_recording(directory / "b.jsonl", [ev(0.01, "so far")], end=None, started="2026-01-01T00:00:02.000000Z")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the capturing proxy holds it until the stream ends
        with serve_process(directory, "--speed", "max") as served:
            got = [httpx.get(f"{served.base}/sse/chat", timeout=3) for _ in range(2)]
    assert parse_events(got[0].content)[0][1] == "finished"
    assert got[1].status_code == 404  # not a stream held open forever
    assert f"{live}: still being written by a proxy; left out" in served.output
    assert "serving 1 recording(s)" in served.output


def test_serve_gives_a_request_aborted_before_the_response_its_recording_again(tmp_path):
    directory = tmp_path / "recs"
    for name, second in (("a", 1), ("b", 2)):
        write_recording(directory / f"{name}.jsonl", [ev(0.01, f"recording {second}")], ttfb=1.0,
                        started=f"2026-01-01T00:00:0{second}.000000Z")
    with serve_process(directory) as served:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{served.base}/sse/chat", timeout=httpx.Timeout(5, read=0.3))
        got = [httpx.get(f"{served.base}/sse/chat", timeout=10) for _ in range(3)]
    assert [parse_events(r.content)[0][1] for r in got[:2]] == ["recording 1", "recording 2"]
    assert got[2].status_code == 404
    assert "client went away before the response began: served again next time" in served.output


def test_requests_at_once_to_one_endpoint_are_not_held_up_by_each_others_time_to_first_byte(tmp_path):
    for i in range(4):
        write_recording(tmp_path / "turns" / f"{i}.jsonl", [ev(0.01, str(i))], ttfb=1.0,
                        started=f"2026-01-01T00:00:0{i}.000000Z")
    one = write_recording(tmp_path / "one.jsonl", [ev(0.01, "one")], ttfb=1.0)
    for args in ([tmp_path / "turns"], [one, "--reuse"]):
        with serve_process(*args) as served:
            took = []

            def get() -> None:
                start = time.monotonic()
                httpx.get(f"{served.base}/sse/chat", timeout=10)
                took.append(time.monotonic() - start)

            clients = [threading.Thread(target=get) for _ in range(4)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
        # each waits its own recorded second, and at most 0.25 s for the others (in turn, this was 1, 2, 3, 4 s)
        assert len(took) == 4 and max(took) < 1.0 + 0.25 + 0.5, (args, took)


def test_serve_output_shows_no_live_token_and_no_raw_control_characters(tmp_path):
    directory = tmp_path / "recs\x1b]0;title\x07"
    rec = write_recording(directory / "chat.jsonl",
                          [ev(0.01, "one"), {"t": 0.02, "kind": "error", "what": "parse", "message": "\x1b[2Jgone"}],
                          url="http://api.test/sse/chat?room=1&access_token=[REDACTED]")
    rec.write_bytes(rec.read_bytes().replace(b'"raw_chunks"', b'"redacted_params":["access_token"],"raw_chunks"', 1))
    with serve_process(rec, "--speed", "max") as served:
        assert httpx.get(f"{served.base}/sse/chat?room=1&access_token=live-SECRET1", timeout=10).status_code == 200
        assert httpx.get(f"{served.base}/other?token=live-SECRET2", timeout=10).status_code == 404
    assert "live-SECRET" not in served.output
    assert "GET /sse/chat?room=1&access_token=[REDACTED]" in served.output
    assert "no recording for GET /other?token=[REDACTED]: 404" in served.output
    assert "\x1b" not in served.output and "stopped parsing events at t=0.02: \\x1b[2Jgone" in served.output
    assert "recs\\x1b]0;title\\x07" in served.output


def test_serve_answers_only_requests_meant_for_a_loopback_name_unless_allowed(tmp_path):
    """DNS rebinding: a page on attacker.example has its name resolve to 127.0.0.1 and reads what serve answers
    (Chromium blocks that, Firefox does not); its requests carry Host: attacker.example."""
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    with serve_process(rec, "--reuse", "--allow-host", "App.Test") as served:
        url = f"{served.base}/sse/chat"
        for host in (f"127.0.0.1:{served.port}", f"localhost:{served.port}", "web.localhost", "app.test:5173"):
            assert httpx.get(url, headers={"host": host}, timeout=10).status_code == 200, host
        refused = httpx.get(url, headers={"host": f"attacker.example:{served.port}"}, timeout=10)
        assert refused.status_code == 403
        assert "--allow-host attacker.example" in refused.text
        assert httpx.get(url, headers={"host": "127.0.0.1.attacker.example"}, timeout=10).status_code == 403


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_serve_refuses_a_port_out_of_range(tmp_path, port):
    code, err = run_serve(chat_recording(tmp_path / "chat.jsonl", n=1), "-p", port)
    assert code == 2
    assert f"Invalid value for '-p' / '--port': {port} is not in the range 0<=x<=65535" in err
    assert "Traceback" not in err


def test_serve_says_when_its_port_is_in_use(tmp_path):
    rec = chat_recording(tmp_path / "chat.jsonl", n=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run_serve(rec, "-p", port)
    assert (code, err.strip()) == (1, f"Error: cannot listen on 127.0.0.1:{port}: address already in use")
