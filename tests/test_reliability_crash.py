"""The proxy dies or is stopped mid-stream: what the client saw is in the file, every line whole.

SIGKILL: no end line, and the reader reports "proxy_died" (the lock is gone with the process).
SIGINT / SIGTERM: mitmproxy shuts down cleanly and the addon writes the end line "proxy_shutdown".
"""

import signal
import threading

import httpx
import pytest

from harness import Mitmdump, Scenario, httpx_client
from reliability_helpers import reference_events, whole_lines
from sse_capture_addon.recording import decode_data, read_recording

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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
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
