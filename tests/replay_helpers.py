"""Helpers for the replay tests: hand-built recordings, the replay proxy, pages that log what they get."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness import (CHECKOUT_ENV, PAGE_EVENTSOURCE, PAGE_FETCH, ROOT, Certs, Mitmdump, free_port, stop_process,
                     wait_for_port)

from sse_capture_addon.recorder import StreamRecorder
from sse_capture_addon.recording import FORMAT, FORMAT_VERSION, encode_data, line
from sse_capture_addon.sse import Comment, Event, SSEParser
from sse_capture_addon.writer import RecordingFile

REPLAY_SCRIPT = ROOT / "scripts" / "replay.py"
SSE_HEADERS = [["content-type", "text/event-stream"], ["cache-control", "no-cache"]]


# --- recordings ------------------------------------------------------------------------------------------

def ev(t: float, data, event: str = "message", id: str | None = None, retry: int | None = None) -> dict:
    record = {"t": t, "kind": "event", "event": event}
    if id:
        record["id"] = id
    if retry is not None:
        record["retry"] = retry
    record["data"] = encode_data(data) if isinstance(data, str) else data
    return record


def chunk(t: float, n: int, raw: bytes) -> dict:
    return {"t": t, "kind": "chunk", "n": n, "b64": base64.b64encode(raw).decode()}


def write_recording(path: Path, records: list[dict], *, url: str = "http://api.test/sse/chat", method: str = "GET",
                    end: str | None = "complete", end_t: float | None = None, tail: str | None = None,
                    status: int = 200, headers: list | None = None, body: str | None = None,
                    started: str = "2026-01-01T00:00:00.000000Z", ttfb: float = 0.0, raw_chunks: bool = False,
                    **end_fields) -> Path:
    header = {"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": path.stem,
              "started": started, "request": {"method": method, "url": url, "headers": [], "body": body},
              "response": {"status": status, "reason": "OK", "headers": headers or SSE_HEADERS},
              "ttfb": ttfb, "raw_chunks": raw_chunks}
    lines = [line(header)] + [line(r) for r in records]
    if end is not None:
        t = end_t if end_t is not None else (records[-1]["t"] if records else 0.0)
        events = sum(r["kind"] == "event" for r in records)
        lines.append(line({"t": t, "kind": "end", "reason": end, "events": events, "bytes": 0, "tail": tail,
                           **end_fields}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path


def chat_recording(path: Path, n: int = 5, gap: float = 0.05, **kwargs) -> Path:
    """``n`` ``delta`` events ``gap`` seconds apart, ids 1..n, then a ``done`` event."""
    records = [ev(round(gap * (i + 1), 6), {"i": i, "text": f"tok{i}"}, "delta", id=str(i + 1)) for i in range(n)]
    records.append(ev(round(gap * (n + 1), 6), "[DONE]", "done", id=str(n)))
    return write_recording(path, records, **kwargs)


def record_body(path: Path, *chunks: bytes, times: list[float] | None = None, died: bool = False,
                content_encoding: str | None = None) -> Path:
    """A stream's body recorded as the proxy records it: ``chunks`` at ``times`` (default: one a second), the end
    line a second after the last; with ``died``, the file closed without one (the proxy died)."""
    times = list(times or range(1, len(chunks) + 1))
    clock = iter([0.0, *times, (times[-1] if times else 0.0) + 1.0])
    headers = SSE_HEADERS + ([["content-encoding", content_encoding]] if content_encoding else [])
    header = {"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": path.stem,
              "started": "2026-01-01T00:00:00.000000Z", "request": {"method": "GET", "url": "http://api.test/sse/chat",
                                                                    "headers": []},
              "response": {"status": 200, "reason": "OK", "headers": headers}, "ttfb": 0.0, "raw_chunks": True}
    recorder = StreamRecorder(RecordingFile(str(path.parent), path.name), header, max_event_size=1 << 20,
                              clock=lambda: float(next(clock)), content_encoding=content_encoding)
    for chunk in chunks:
        recorder.feed(chunk)
    if died:
        recorder.file.close()
    else:
        recorder.finish("complete")
    return path


# --- what a client makes of the bytes ---------------------------------------------------------------------

def parse_events(data: bytes) -> list[tuple[str, str, str]]:
    """(type, data, last event id) of every event a spec-compliant client dispatches from ``data``."""
    return [(e.type, e.data, e.last_event_id) for e in SSEParser().feed(data) if isinstance(e, Event)]


def parse_comments(data: bytes) -> list[str]:
    return [c.text for c in SSEParser().feed(data) if isinstance(c, Comment)]


# --- the replay proxy -------------------------------------------------------------------------------------

def replay_proxy(certs: Certs, workdir: Path, *recordings: Path, mitm_args: Iterable[str] = (), **options) -> Mitmdump:
    """A real mitmdump with scripts/replay.py; ``options`` are sse_replay_* without the prefix (a list value
    sets a sequence option, True a boolean), ``mitm_args`` more of mitmdump's arguments. The script imports this
    checkout's package, not an installed one."""
    args = list(mitm_args)
    for rec in recordings:
        args += ["--set", f"sse_replay={rec}"]
    for name, value in options.items():
        for v in value if isinstance(value, list) else [value]:
            args += ["--set", f"sse_replay_{name}={str(v).lower() if isinstance(v, bool) else v}"]
    return Mitmdump(certs, workdir, scripts=[REPLAY_SCRIPT], args=args)


# --- sse-capture serve ------------------------------------------------------------------------------------

SERVE = [sys.executable, "-m", "sse_capture_addon.cli", "serve"]


class Served:
    """A running ``sse-capture serve``: ``base`` is its URL; ``output`` (stdout and stderr) once it stopped."""

    def __init__(self, port: int):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.output = ""


@contextlib.contextmanager
def serve_process(*args) -> Iterator[Served]:
    served = Served(free_port())
    proc = subprocess.Popen([*SERVE, *map(str, args), "--port", str(served.port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=CHECKOUT_ENV)
    try:
        wait_for_port(served.port, proc=proc)
        yield served
    finally:
        stop_process(proc)
        served.output = proc.stdout.read().decode(errors="replace")
        proc.stdout.close()


def run_serve(*args, timeout: float = 20) -> tuple[int, str]:
    """``sse-capture serve`` expected to refuse to start: (exit code, stderr). A serve that starts anyway
    runs until ``timeout`` and fails the test with ``TimeoutExpired``."""
    proc = subprocess.run([*SERVE, *map(str, args)], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=CHECKOUT_ENV)
    return proc.returncode, proc.stderr.decode(errors="replace")


# --- pages in the browser ---------------------------------------------------------------------------------

TIMED_PAGE = """<!doctype html><meta charset=utf-8><title>timed</title><script>
window.__log = []; window.__done = false;
const es = new EventSource(%(src)s);
let t0 = null;
es.onopen = () => { t0 = performance.now(); };
es.addEventListener("delta", e => window.__log.push({data: e.data, t: (performance.now() - t0) / 1000}));
es.onerror = () => { es.close(); window.__done = true; };
</script>"""


def open_page(ctx, origin: str, kind: str, src: str, types=("message",)):
    """Open a logging page at ``origin`` (``es``, ``fetch`` or ``timed``). The page itself is answered by the
    browser (so it loads while the backend is offline); only its stream request goes through the proxy."""
    template = {"es": PAGE_EVENTSOURCE, "fetch": PAGE_FETCH, "timed": TIMED_PAGE}[kind]
    html = template % {"src": json.dumps(src), "types": json.dumps(list(types))}
    url = f"{origin}/page/{kind}"
    page = ctx.new_page()
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html))
    page.goto(url)
    return page


def page_result(page, timeout: float = 20.0) -> dict:
    page.wait_for_function("window.__done === true", timeout=timeout * 1000)
    return page.evaluate("({log: window.__log, text: window.__text, chunks: window.__chunks,"
                         " error: window.__error, status: window.__status})")


def es_events(log: list[dict]) -> list[tuple[str, str, str]]:
    return [(e["type"], e["data"], e["id"]) for e in log if e["type"] != "error"]
