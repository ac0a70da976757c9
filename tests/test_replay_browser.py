"""Real capture, real replay, real Chromium: the page logs the same events with the backend stopped.

A module fixture records live streams through mitmdump with the capture addon into pages that log every
event (EventSource, and fetch() POST reading the body), then stops the backend. Each test replays those
recordings (or hand-built ones) through mitmdump with scripts/replay.py and compares what the page logs.
"""

import json
import time

import pytest
from harness import HypercornServer, Mitmdump, Scenario, UpstreamApp, browser, free_port, wait_until
from replay_helpers import (
    chat_recording, ev, open_page, page_result, parse_comments, parse_events, replay_proxy, write_recording,
)

from sse_capture_addon.recording import read_recording
from sse_capture_addon.sse import SSEParser
from sse_capture_addon.testing import sse_replay_proxy  # noqa: F401 - the fixture

TYPES = ["message", "delta", "done"]
CHAT_STEPS = [
    b"retry: 2000\n\n",
    0.03, b"event: delta\nid: 1\ndata: {\"i\":0}\n\n",
    0.03, b": keep-alive\n\n",
    0.03, b"event: delta\nid: 2\ndata: line one\ndata:  line two\n\n",
    0.03, "data: h\u00e9llo \u2713\n\nevent: delta\nid: 3\ndata: {\"i\":2}\n\n".encode(),
    0.03, b"event: delta\nid: 4\ndata: spl", 0.03, b"it\n\n",
    0.03, b"event: done\ndata: [DONE]\n\n",
]
# Chromium's fetch() loses what the page has not read yet when the network error comes (a reader that starts 0.3 s
# late gets nothing), so the reset comes late enough for a page on a loaded machine to read what came before it
RESET_STEPS = [b"event: delta\ndata: before the reset\n\n", 0.05, b"event: delta\ndata: partial", 0.5, "abort"]
# sse-starlette's (FastAPI's) way: CRLF, id before event, keep-alive pings; here also an explicit "message", two data
# lines and a retry
STARLETTE_STEPS = [
    b"id: 1\r\nevent: delta\r\ndata: {\"i\":0}\r\n\r\n",
    0.03, b": ping - 2026-11-26 03:50:00.123456+00:00\r\n\r\n",
    0.03, b"id: 2\r\nevent: message\r\ndata: two\r\ndata: lines\r\n\r\n",
    0.03, b"id: 3\r\nevent: delta\r\ndata: {\"i\":2}\r\nretry: 1500\r\n\r\n",
    0.03, b"id: 4\r\nevent: done\r\ndata: [DONE]\r\n\r\n",
]


def fetch_view(result: dict) -> tuple:
    """What a fetch() reader's SSE parser makes of the body, and whether reading failed."""
    text = result["text"].encode()
    return parse_events(text), parse_comments(text), result["error"] is not None


def record_live(kind: str, certs, workdir) -> dict:
    """Record the chat stream (EventSource and fetch) and a stream the server resets, then stop the server."""
    app = UpstreamApp()
    app.add("chat", Scenario(CHAT_STEPS))
    app.add("reset", Scenario(RESET_STEPS))
    app.add("starlette", Scenario(STARLETTE_STEPS))
    server = HypercornServer(app, kind, certs)
    with Mitmdump(certs, workdir) as mitm, browser(mitm.url) as ctx:
        logs = {"es": page_result(open_page(ctx, server.base, "es", "/sse/chat", TYPES)),
                "fetch": page_result(open_page(ctx, server.base, "fetch", "/sse/chat", TYPES)),
                "reset": page_result(open_page(ctx, server.base, "fetch", "/sse/reset", TYPES)),
                "starlette-es": page_result(open_page(ctx, server.base, "es", "/sse/starlette", TYPES)),
                "starlette": page_result(open_page(ctx, server.base, "fetch", "/sse/starlette", TYPES))}
        mitm.wait_for_recordings(5)
    server.stop()
    return {"origin": server.base, "recordings": mitm.record_dir, "logs": logs}


@pytest.fixture(scope="module")
def live(certs, tmp_path_factory):
    """``live(kind)``: the live recordings and page logs over ``h1`` or ``h2-tls``, made once per module."""
    made = {}

    def get(kind: str) -> dict:
        if kind not in made:
            made[kind] = record_live(kind, certs, tmp_path_factory.mktemp(f"live-{kind}"))
        return made[kind]

    return get


def replay_pages(certs, live, tmp_path, **options) -> dict:
    with replay_proxy(certs, tmp_path, live["recordings"], **options) as mitm, browser(mitm.url) as ctx:
        logs = {"es": page_result(open_page(ctx, live["origin"], "es", "/sse/chat", TYPES)),
                "fetch": page_result(open_page(ctx, live["origin"], "fetch", "/sse/chat", TYPES)),
                "reset": page_result(open_page(ctx, live["origin"], "fetch", "/sse/reset", TYPES)),
                "starlette-es": page_result(open_page(ctx, live["origin"], "es", "/sse/starlette", TYPES)),
                "starlette": page_result(open_page(ctx, live["origin"], "fetch", "/sse/starlette", TYPES))}
    return {**logs, "mitm_log": mitm.log()}


@pytest.mark.parametrize("kind", ["h1", "h2-tls"])
def test_the_page_logs_identical_events_with_the_backend_stopped(certs, live, tmp_path, kind):
    live = live(kind)
    replayed = replay_pages(certs, live, tmp_path)
    recorded = live["logs"]
    assert len(recorded["es"]["log"]) == 7  # 6 events and the error at the end of the stream
    assert replayed["es"]["log"] == recorded["es"]["log"]
    assert fetch_view(replayed["fetch"]) == fetch_view(recorded["fetch"])
    assert fetch_view(recorded["fetch"])[2] is False
    # the server reset: the same events, then the same kind of end
    assert fetch_view(replayed["reset"]) == fetch_view(recorded["reset"])
    assert fetch_view(recorded["reset"]) == ([("delta", "before the reset", "")], [], True)
    if live["origin"].startswith("https"):
        assert "GET https://127.0.0.1" in replayed["mitm_log"] and "HTTP/2.0" in replayed["mitm_log"]


def test_byte_exact_replay_gives_the_page_the_recorded_bytes(certs, live, tmp_path):
    live = live("h1")
    replayed = replay_pages(certs, live, tmp_path, bytes=True)
    recorded = live["logs"]
    assert replayed["fetch"]["text"] == recorded["fetch"]["text"]
    assert replayed["es"]["log"] == recorded["es"]["log"]
    assert replayed["reset"]["text"] == recorded["reset"]["text"]  # including the unterminated "partial"
    assert replayed["reset"]["error"] is not None
    # a CRLF stream: its recording keeps no chunk in base64 (each is its lines, in the stream's form), and the page
    # gets the same bytes, CR LF and all
    assert recorded["starlette"]["text"] == b"".join(s for s in STARLETTE_STEPS if isinstance(s, bytes)).decode()
    assert replayed["starlette"]["text"] == recorded["starlette"]["text"]
    assert replayed["starlette-es"]["log"] == recorded["starlette-es"]["log"]
    assert [e["data"] for e in recorded["starlette-es"]["log"][:4]] == ['{"i":0}', "two\nlines", '{"i":2}', "[DONE]"]
    for path in live["recordings"].rglob("*_sse_starlette_*.jsonl"):
        chunks = [r for r in read_recording(path).records if r["kind"] == "chunk"]
        assert chunks and all("blocks" in c and c.get("crlf") for c in chunks), (path, chunks)


def test_playwright_regression_test_recipe(sse_replay_proxy, certs, live):  # noqa: F811
    """The recipe from docs/replay.md: a real recording, the replay proxy fixture, assertions on the page."""
    live = live("h1")
    recording = next(p for p in live["recordings"].rglob("*.jsonl") if "_GET_" in p.name and "_sse_chat_" in p.name)
    proxy = sse_replay_proxy(recording, speed="max", confdir=certs.mitm_confdir)
    with browser(proxy.url) as ctx:
        page = open_page(ctx, live["origin"], "es", "/sse/chat", TYPES)
        page.wait_for_function("window.__log.some(e => e.type === 'done')")
        assert page.evaluate("window.__log")[:6] == live["logs"]["es"]["log"][:6]


# --- timing ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("speed", [1, 0.5])
def test_events_arrive_at_the_recorded_times_scaled_by_speed(certs, tmp_path, speed):
    times = [round(0.1 * (i + 1), 6) for i in range(10)]
    rec = write_recording(tmp_path / "timed.jsonl", [ev(t, f"{i}", "delta") for i, t in enumerate(times)],
                          url="http://api.test/sse/timed")
    with replay_proxy(certs, tmp_path, rec, speed=speed) as mitm, browser(mitm.url) as ctx:
        log = page_result(open_page(ctx, "http://api.test", "timed", "/sse/timed"))["log"]
    assert [e["data"] for e in log] == [str(i) for i in range(10)]
    # loose: a shared 2-core machine; bench/replay_timing.py measures the real figures
    for e, t in zip(log, times):
        assert e["t"] == pytest.approx(t / speed, abs=0.3), log


# --- faults, as the page observes them --------------------------------------------------------------------

@pytest.fixture
def chat(tmp_path):
    """5 delta events (ids 1..5) 50 ms apart, then done: for EventSource (GET) and fetch (POST)."""
    for method in ("GET", "POST"):
        chat_recording(tmp_path / "recs" / f"{method}.jsonl", n=5, gap=0.05, method=method,
                       url="http://api.test/sse/chat")
    return tmp_path / "recs"


def chat_pages(certs, tmp_path, recordings, *kinds, **faults):
    with replay_proxy(certs, tmp_path, recordings, **faults) as mitm, browser(mitm.url) as ctx:
        return [page_result(open_page(ctx, "http://api.test", kind, "/sse/chat", TYPES)) for kind in kinds]


def deltas(events) -> list[int]:
    return [json.loads(data)["i"] for type_, data, _ in events if type_ == "delta"]


def test_cut_after(certs, tmp_path, chat):
    es, fetch = chat_pages(certs, tmp_path, chat, "es", "fetch", cut_after=2)
    assert [e.get("id") for e in es["log"]] == ["1", "2", None]  # two events, then the error
    events, _, failed = fetch_view(fetch)
    assert deltas(events) == [0, 1] and failed


def test_stall_after(certs, tmp_path, chat):
    with replay_proxy(certs, tmp_path, chat, stall_after=2) as mitm, browser(mitm.url) as ctx:
        page = open_page(ctx, "http://api.test", "fetch", "/sse/chat", TYPES)
        wait_until(lambda: len(parse_events(page.evaluate("window.__text").encode())) == 2, what="two events")
        time.sleep(1.0)  # the recording would have ended after 0.3 s
        assert page.evaluate("[window.__done, window.__error]") == [False, None]
        assert deltas(parse_events(page.evaluate("window.__text").encode())) == [0, 1]


def test_drop_the_done_event(certs, tmp_path, chat):
    (es,) = chat_pages(certs, tmp_path, chat, "es", drop="done")
    assert [e["type"] for e in es["log"]] == ["delta"] * 5 + ["error"]


def test_stop_mid_event(certs, tmp_path, chat):
    (fetch,) = chat_pages(certs, tmp_path, chat, "fetch", stop_mid_event=3)
    events, _, failed = fetch_view(fetch)
    assert deltas(events) == [0, 1] and not failed  # the body ended cleanly, half-way through event 3
    parser = SSEParser()
    parser.feed(fetch["text"].encode())
    assert parser.close().startswith("event: delta\nid: 3")


def test_rechunk_one_byte_at_a_time(certs, tmp_path, chat):
    es, fetch = chat_pages(certs, tmp_path, chat, "es", "fetch", rechunk=1, speed="max")
    assert deltas(fetch_view(fetch)[0]) == [0, 1, 2, 3, 4]
    assert [e["type"] for e in es["log"]] == ["delta"] * 5 + ["done", "error"]
    # the reader saw many small chunks (TCP may still join a few bytes on a busy machine)
    assert len(fetch["chunks"]) > len(fetch["text"]) / 4 and min(fetch["chunks"]) == 1


def test_swap_two_events(certs, tmp_path, chat):
    (es,) = chat_pages(certs, tmp_path, chat, "es", swap="2,3")
    assert [json.loads(e["data"])["i"] for e in es["log"] if e["type"] == "delta"] == [0, 2, 1, 3, 4]


ABORT_THEN_FETCH_PAGE = """<!doctype html><meta charset=utf-8><title>strict mode</title><script>
// React's StrictMode mounts a component twice in development: the first effect's fetch is aborted, then the
// effect runs again
(async () => {
  await fetch("/warm-up").catch(() => null);  // the connection (and TLS) first, so the next request is out at once
  const first = new AbortController();
  const aborted = fetch(%(src)s, {signal: first.signal}).then(() => "answered", e => e.name);
  await new Promise(resolve => setTimeout(resolve, 300));  // the request is out, waiting for its first byte
  first.abort();
  window.__first = await aborted;
  const r = await fetch(%(src)s);
  window.__text = await r.text();
  window.__done = true;
})();
</script>"""


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_fetch_aborted_before_its_response_leaves_the_recording_for_the_next_fetch(certs, tmp_path, scheme):
    origin = f"{scheme}://127.0.0.1:{free_port()}"  # nothing listens there: the backend is offline
    for name, second in (("b", 2), ("a", 1)):
        write_recording(tmp_path / "recs" / f"{name}.jsonl", [ev(0.01, f"recording {second}")],
                        url=f"{origin}/sse/chat", ttfb=1.0, started=f"2026-01-01T00:00:0{second}.000000Z")
    with replay_proxy(certs, tmp_path, tmp_path / "recs") as mitm, browser(mitm.url) as ctx:
        page = ctx.new_page()
        html = ABORT_THEN_FETCH_PAGE % {"src": json.dumps("/sse/chat")}
        page.route(f"{origin}/page", lambda route: route.fulfill(status=200, content_type="text/html", body=html))
        page.goto(f"{origin}/page")
        page.wait_for_function("window.__done === true", timeout=20_000)
        first, text = page.evaluate("[window.__first, window.__text]")
    assert first == "AbortError"
    assert parse_events(text.encode()) == [("message", "recording 1", "")]


CROSS_ORIGIN_POST_PAGE = """<!doctype html><meta charset=utf-8><title>cross-origin</title><script>
(async () => {
  try {
    const r = await fetch(%(src)s, {method: "POST", headers: {"content-type": "application/json"},
                                    credentials: "include", body: JSON.stringify({q: "hi"})});
    window.__text = await r.text();
  } catch (e) { window.__error = String(e); }
  window.__done = true;
})();
</script>"""


def test_a_recording_made_from_another_frontend_origin_replays_to_this_one(certs, tmp_path):
    """Recorded with the frontend on staging; replayed with it on localhost: the recorded Allow-Origin names
    staging's frontend, which the browser would hold against the page."""
    api = f"http://127.0.0.1:{free_port()}"  # offline
    page_origin = f"http://localhost:{free_port()}"
    headers = [["content-type", "text/event-stream"],
               ["access-control-allow-origin", "https://app.staging.test"],
               ["access-control-allow-credentials", "true"]]
    write_recording(tmp_path / "recs" / "chat.jsonl", [ev(0.01, "hello"), ev(0.02, "[DONE]", event="done")],
                    url=f"{api}/v1/chat", method="POST", headers=headers, body='{"q":"hi"}')
    with replay_proxy(certs, tmp_path, tmp_path / "recs") as mitm, browser(mitm.url) as ctx:
        page = ctx.new_page()
        html = CROSS_ORIGIN_POST_PAGE % {"src": json.dumps(f"{api}/v1/chat")}
        page.route(f"{page_origin}/page", lambda route: route.fulfill(status=200, content_type="text/html", body=html))
        page.goto(f"{page_origin}/page")
        page.wait_for_function("window.__done === true", timeout=20_000)
        error, text = page.evaluate("[window.__error, window.__text]")
    assert error is None
    assert parse_events(text.encode()) == [("message", "hello", ""), ("done", "[DONE]", "")]
