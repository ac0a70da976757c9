"""``show --follow`` on a recording a running proxy is still writing."""

from __future__ import annotations

import os
import selectors
import signal
import threading
import time

from harness import Mitmdump, Scenario
from inspect_helpers import cli_process, recording_for, run, sse, stream_through


class LineReader:
    """Lines of a child's stdout as they arrive, with a timeout."""

    def __init__(self, proc):
        self.proc, self.buf, self.lines = proc, b"", []
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def until(self, predicate, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not any(predicate(line) for line in self.lines):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; got {self.lines}"
            if self.sel.select(left):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.buf += chunk
                *done, self.buf = self.buf.split(b"\n")
                self.lines += [line.decode() for line in done]
        return self.lines


def _follow_while_streaming(certs, servers, upstream_app, tmp_path, name, finish):
    gate = threading.Event()
    scenario = upstream_app.add(name, Scenario([sse("tick", "1"), 0.01, sse("tick", "2"), gate,
                                                sse("tick", "3"), 0.01, sse("done", "bye")]))
    mitm = Mitmdump(certs, tmp_path)
    client = threading.Thread(target=stream_through, args=(mitm, certs, f"{servers['h1'].base}/sse/{name}"),
                              daemon=True)
    client.start()
    try:
        path = recording_for(mitm, name, ended=False)
        while scenario.sent < 2:
            time.sleep(0.01)
        assert run("show", path).out.splitlines()[-2].startswith("── still being written")
        proc = cli_process("show", "--follow", "--poll", "0.05", path)
        out = LineReader(proc)
        out.until(lambda line: " tick  2" in line)
        assert proc.poll() is None  # still following
        return finish(mitm, gate, proc, out, scenario)
    finally:
        gate.set()
        mitm.stop()


def test_follow_prints_events_live_and_stops_at_the_end(certs, servers, upstream_app, tmp_path, scenario_name):
    def finish(mitm, gate, proc, out, scenario):
        gate.set()
        lines = out.until(lambda line: line.startswith("── "))
        assert proc.wait(timeout=10) == 0
        events = [line.split()[3] for line in lines if line.startswith("#")]
        assert events == ["tick", "tick", "tick", "done"]
        assert lines[-1].startswith("── complete after")

    _follow_while_streaming(certs, servers, upstream_app, tmp_path, scenario_name, finish)


def test_follow_notices_the_proxy_dying(certs, servers, upstream_app, tmp_path, scenario_name):
    def finish(mitm, gate, proc, out, scenario):
        mitm.kill(signal.SIGKILL)
        lines = out.until(lambda line: line.startswith("── "))
        assert proc.wait(timeout=10) == 0
        assert lines[-1].startswith("── proxy died after") and lines[-1].endswith(", 2 events")

    _follow_while_streaming(certs, servers, upstream_app, tmp_path, scenario_name, finish)
