"""pytest plugin for the test_inspect_* modules (``pytest_plugins = ["inspect_fixtures"]``): one set of
recordings of good and badly ending streams, made through real mitmdumps once per session."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from harness import Mitmdump, Scenario
from inspect_helpers import OPENAI, SPEC_PROBLEMS, TOOLS, anthropic_stream, recording_for, sse, stream_through


@pytest.fixture(scope="session")
def recs(certs, servers, upstream_app, tmp_path_factory):
    """Recordings made through real mitmdumps: name -> path."""
    work = tmp_path_factory.mktemp("inspect")
    base = servers["h1"].base
    gate = threading.Event()
    out = {}
    scenarios = {
        "anthropic-ok": anthropic_stream(),
        "anthropic-other-id": anthropic_stream(message_id="msg_2", pause=0.06),
        "anthropic-changed": anthropic_stream(words=("Hel", "p")),
        "openai-ok": OPENAI,
        "openai-reset": OPENAI[:3] + [0.05, "abort"],
        "tools": TOOLS,
        "spec": SPEC_PROBLEMS,
        "stall": [sse("a", "1"), 1.3, sse("b", "2"), 0.01, sse("done", "3")],
        "client-gone": [sse("a", "1"), 0.01, sse("a", "2"), gate],
        "killed": [sse("a", "1"), 0.01, sse("a", "2"), gate],
    }
    for name, steps in scenarios.items():
        upstream_app.add(f"i-{name}", Scenario(list(steps)))
    with Mitmdump(certs, work, record_dir=work / "recordings") as mitm:
        for name in list(scenarios)[:8]:
            stream_through(mitm, certs, f"{base}/sse/i-{name}")
            out[name] = recording_for(mitm, f"i-{name}")
        stream_through(mitm, certs, f"{base}/sse/i-client-gone", stop_after=b"data: 2\n\n")
        out["client-gone"] = recording_for(mitm, "i-client-gone")
    victim = Mitmdump(certs, work, record_dir=work / "recordings")
    try:
        def kill_when_streaming():
            recording_for(victim, "i-killed", ended=False)
            while upstream_app.scenarios["i-killed"].sent < 2:
                time.sleep(0.01)
            time.sleep(0.2)
            victim.kill(signal.SIGKILL)
        killer = threading.Thread(target=kill_when_streaming)
        killer.start()
        stream_through(victim, certs, f"{base}/sse/i-killed")
        killer.join(20)
        out["killed"] = recording_for(victim, "i-killed", ended=False)
    finally:
        gate.set()
        victim.stop()
    out["dir"] = work / "recordings"
    return out
