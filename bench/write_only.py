"""``mitmdump -s bench/write_only.py --set write_only_dir=DIR``: the floor of the crash-safety rule.

Streams SSE like plain_stream.py and appends each chunk's raw bytes to a file (one ``os.write`` per chunk,
before the chunk is forwarded), doing nothing else: no parsing, no encoding, no header line. Any recorder
that writes what the client will see before forwarding it costs at least this much over plain streaming.
"""

import os

from mitmproxy import ctx, http


class WriteOnly:
    def __init__(self):
        self.files: dict[str, int] = {}  # flow id -> fd

    def load(self, loader):
        loader.add_option("write_only_dir", str, "", "Directory for the raw chunk files.")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if "text/event-stream" not in flow.response.headers.get("content-type", ""):
            return
        fd = self.files[flow.id] = os.open(os.path.join(ctx.options.write_only_dir, f"{flow.id}.raw"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)

        def stream(chunk: bytes) -> bytes:
            os.write(fd, chunk)
            return chunk

        flow.response.stream = stream

    def response(self, flow: http.HTTPFlow) -> None:
        self._close(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._close(flow)

    def _close(self, flow: http.HTTPFlow) -> None:
        fd = self.files.pop(flow.id, None)
        if fd is not None:
            os.close(fd)


addons = [WriteOnly()]
