"""Recording size per server style: how big a recording is against the bytes streamed, and what the recorder
costs per chunk, for the ways real servers write their streams.

In-process: ``StreamRecorder.feed`` on each chunk, writing to a file in TMPDIR (``TMPDIR=/dev/shm`` leaves the
file system out). Size is what raw chunk lines cost on top of the event lines: a chunk kept by its lines
("blocks") costs a few dozen bytes, one in base64 a third more than the chunk itself. CPU is the best of
--reps, per chunk, write included. ``SSE_BENCH_ADDON=<checkout>/sse_capture_addon/addon.py`` measures another
checkout (for a before/after).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time

from bench_parser import anthropic_stream, openai_stream, rechunk
from common import base_args, emit, table, use_addon_package

use_addon_package()

from sse_capture_addon.recorder import StreamRecorder  # noqa: E402
from sse_capture_addon.recording import FORMAT, FORMAT_VERSION, read_recording  # noqa: E402
from sse_capture_addon.writer import RecordingFile  # noqa: E402


def _events(nbytes: int, make) -> list[bytes]:
    out, size = [], 0
    for i in itertools.count():
        out.append(make(i))
        size += len(out[-1])
        if size >= nbytes:
            return out


def starlette_stream(nbytes: int) -> list[bytes]:
    """sse-starlette (FastAPI) with ids and types: CRLF, id, event, data; a ``: ping`` comment every 50 events."""
    def make(i: int) -> bytes:
        data = json.dumps({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": f" tok{i}"}}).encode()
        ping = b": ping - 2026-11-26 03:50:00.123456+00:00\r\n\r\n" if i % 50 == 49 else b""
        return b"id: %d\r\nevent: delta\r\ndata: %b\r\n\r\n%b" % (i, data, ping)
    return _events(nbytes, make)


def mcp_stream(nbytes: int) -> list[bytes]:
    """MCP SDK server messages: an explicit ``event: message`` and a JSON-RPC ``data`` line."""
    return _events(nbytes, lambda i: b"event: message\ndata: %b\n\n" % json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/progress",
         "params": {"progressToken": 1, "progress": i, "total": 100000}}).encode())


def resumable_stream(nbytes: int) -> list[bytes]:
    """An OpenAI-style token stream with an ``id:`` on every event (for Last-Event-ID resumption)."""
    return _events(nbytes, lambda i: b'id: %d\ndata: {"choices":[{"delta":{"content":" tok%d"}}]}\n\n' % (i, i))


STYLES = {
    "OpenAI, 1 event/chunk": openai_stream,
    "OpenAI, 16 KiB chunks cut mid-event": lambda n: rechunk(openai_stream(n), 16384),
    "Anthropic, 1 event/chunk": anthropic_stream,
    "sse-starlette: CRLF, id, event, data, pings": starlette_stream,
    "MCP: event: message, JSON-RPC data": mcp_stream,
    "Gemini: CRLF, data only": lambda n: [c.replace(b"\n", b"\r\n") for c in openai_stream(n)],
    "OpenAI with id: on every event": resumable_stream,
    "CR-only line endings (stays in base64)": lambda n: rechunk([c.replace(b"\n", b"\r") for c in openai_stream(n)],
                                                                 4096),
}


HEADER = {"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": "bench",
          "started": "2026-11-26T00:00:00.000000Z", "request": {"method": "GET", "url": "http://127.0.0.1/", "headers": []},
          "response": {"status": 200, "headers": []}, "raw_chunks": True}


def measure(chunks: list[bytes], tmp: str, name: str) -> dict:
    """Feed ``chunks`` to a recorder; its CPU per chunk, the file's size, and checks that it reads back."""
    ticks = itertools.count()
    rec = StreamRecorder(RecordingFile(tmp, name), HEADER, max_event_size=1 << 20, clock=lambda: next(ticks) / 1000)
    t0 = time.process_time()
    for chunk in chunks:
        rec.feed(chunk)
    cpu = time.process_time() - t0
    rec.finish("complete")
    path = os.path.join(tmp, name)
    recording = read_recording(path)
    if [raw for _, raw in recording.chunks] != chunks:
        raise SystemExit(f"{path}: the recording's chunks are not the stream's")
    lines = [r for r in recording.records if r["kind"] == "chunk"]
    size = os.path.getsize(path)
    os.unlink(path)
    return {"cpu_us_per_chunk": cpu / len(chunks) * 1e6, "file_bytes": size,
            "base64_share": sum("b64" in r for r in lines) / len(lines)}


def main() -> None:
    ap = base_args(__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, help="MB per stream (default 2; --quick 0.1)")
    args = ap.parse_args()
    nbytes = int((args.mb or (0.1 if args.quick else 2)) * 1e6)
    reps = args.reps or (1 if args.quick else 3)
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for style, make in STYLES.items():
            chunks = make(nbytes)
            streamed = sum(map(len, chunks))
            runs = [measure(chunks, tmp, f"{len(data)}-{rep}.jsonl") for rep in range(reps)]
            best = min(runs, key=lambda r: r["cpu_us_per_chunk"])
            data[style] = {**best, "stream_bytes": streamed, "chunks": len(chunks),
                           "size_over_stream": best["file_bytes"] / streamed}
            rows.append([style, len(chunks), streamed / 1e6, best["file_bytes"] / 1e6,
                         best["file_bytes"] / streamed, f"{best['base64_share']:.0%}", best["cpu_us_per_chunk"]])
    text = (f"### Recording size per server style ({nbytes / 1e6:g} MB each, in-process, best of {reps})\n\n"
            + table(["stream", "chunks", "streamed MB", "recording MB", "recording/stream", "chunk lines in base64",
                     "feed CPU us/chunk"], rows)
            + "\n\nEvery recording's chunks were read back and compared with the stream.")
    emit(args, "sizes", text, {"styles": data, "targets": []})


if __name__ == "__main__":
    main()
