"""``mitmdump -s bench/addon_per_chunk_floor.py --set sse_capture_dir=DIR [--set floor_chunk_work=none|write]``: the
capture addon (this checkout's) with its work per chunk replaced, everything per stream kept (the file, its header
line, the end line, the hooks, the log). ``none``: each chunk is forwarded untouched; ``write``: each chunk is only
written to the recording as it came, one ``os.write`` before it is forwarded. Against the addon, in one
``bench/ab.py realistic`` run, they split its cost into what it pays per stream, what the write of each chunk
costs, and what parsing and encoding cost::

    .venv/bin/python bench/ab.py realistic now=. none=bench/addon_per_chunk_floor.py \\
        write=bench/addon_per_chunk_floor.py,floor_chunk_work=write

Not a way to run the addon: its recordings hold no event lines.
"""

import os

from mitmproxy import ctx

from sse_capture_addon import recorder
from sse_capture_addon.addon import addons as capture_addons


class ChunkWork:
    write = False

    def load(self, loader):
        loader.add_option("floor_chunk_work", str, "none", "What the addon does per chunk: none, or write.",
                          choices=("none", "write"))

    def configure(self, updated):
        ChunkWork.write = ctx.options.floor_chunk_work == "write"


def _feed(self: recorder.StreamRecorder, chunk: bytes) -> bytes:
    if ChunkWork.write:
        os.write(self.file.fd, chunk)
    return chunk


recorder.StreamRecorder.feed = _feed
addons = [ChunkWork(), *capture_addons]
