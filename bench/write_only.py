"""``mitmdump -s bench/write_only.py --set write_only_dir=DIR``: the floor of the crash-safety rule.

Streams SSE like plain_stream.py and appends each chunk's raw bytes to a file (one ``os.write`` per chunk,
before the chunk is forwarded), doing nothing else: no parsing, no encoding, no header line. Any recorder
that writes what the client will see before forwarding it costs at least this much over plain streaming.

``--set write_only_report=PATH`` also measures each write's CPU time (the thread's, around ``os.write``) and
writes a JSON summary there when the proxy stops (``bench/write_cost.py``); without it nothing is timed.
"""

import json
import os
import time

from mitmproxy import ctx, http


class WriteOnly:
    def __init__(self):
        self.files: dict[str, int] = {}  # flow id -> fd
        self.writes = self.bytes = self.cpu_ns = 0

    def load(self, loader):
        loader.add_option("write_only_dir", str, "", "Directory for the raw chunk files.")
        loader.add_option("write_only_report", str, "", "Time each write; a JSON summary goes here at shutdown.")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if "text/event-stream" not in flow.response.headers.get("content-type", ""):
            return
        fd = self.files[flow.id] = os.open(os.path.join(ctx.options.write_only_dir, f"{flow.id}.raw"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)

        def stream(chunk: bytes) -> bytes:
            os.write(fd, chunk)
            return chunk

        def timed_stream(chunk: bytes) -> bytes:
            c0 = time.thread_time_ns()
            os.write(fd, chunk)
            self.cpu_ns += time.thread_time_ns() - c0
            self.writes += 1
            self.bytes += len(chunk)
            return chunk

        flow.response.stream = timed_stream if ctx.options.write_only_report else stream

    def response(self, flow: http.HTTPFlow) -> None:
        self._close(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._close(flow)

    def _close(self, flow: http.HTTPFlow) -> None:
        fd = self.files.pop(flow.id, None)
        if fd is not None:
            os.close(fd)

    def done(self) -> None:
        if ctx.options.write_only_report:
            with open(ctx.options.write_only_report, "w") as f:
                json.dump({"writes": self.writes, "bytes": self.bytes, "cpu_ns": self.cpu_ns}, f)


addons = [WriteOnly()]
