"""Compressed floods of tiny items: what 32 KB of hostile gzip cost the recorder, counting a stream's decoded bytes
alone toward the decompression-bomb limit, and with its lines and items counted too (what the recorder does).

    .venv/bin/python bench/floods.py [--mib 32]

In-process: one ``StreamRecorder`` per flood, fed the whole gzip body as one chunk (as a proxy reads 32 KB at
once), writing to a file in TMPDIR. "bytes only" sets ``LINE_COST`` and ``ITEM_COST`` to 0 for its run. The CPU
is the proxy's thread held by that one chunk: every other stream waits that long.
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time

from common import use_addon_package

use_addon_package()

from sse_capture_addon import decoding  # noqa: E402
from sse_capture_addon.recorder import StreamRecorder  # noqa: E402
from sse_capture_addon.writer import RecordingFile  # noqa: E402

FLOODS = {
    ": comments": b":\n",
    ": ping blocks": b": ping\n\n",
    "empty events (data:)": b"data:\n\n",
    "blank lines": b"\n",
    "CR-only blank lines": b"\r",
    "unknown fields": b"x\n",
    "data lines never dispatched": b"data: x\n",
}


def run(directory: str, name: str, body: bytes) -> tuple[float, int, int, bool]:
    """CPU seconds, recording bytes, items recorded, and whether decoding stopped."""
    rec = StreamRecorder(RecordingFile(directory, name), {"v": 3}, max_event_size=1 << 20, content_encoding="gzip")
    c0 = time.process_time()
    rec.feed(body)
    cpu = time.process_time() - c0
    rec.finish("complete")
    return cpu, os.path.getsize(os.path.join(directory, name)), rec.events + rec.comments, bool(rec.errors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=32, help="decoded size of each flood (default 32 MiB)")
    args = ap.parse_args()
    costs = decoding.LINE_COST, decoding.ITEM_COST
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for i, (kind, unit) in enumerate(FLOODS.items()):
            body = gzip.compress(b"data: first\n\n" + unit * ((args.mib << 20) // len(unit)))
            figures = []
            for label, (line_cost, item_cost) in (("bytes only", (0, 0)), ("lines and items", costs)):
                decoding.LINE_COST, decoding.ITEM_COST = line_cost, item_cost
                try:
                    figures.append(run(directory, f"{i}-{line_cost}.jsonl", body))
                finally:
                    decoding.LINE_COST, decoding.ITEM_COST = costs
            rows.append((kind, len(body), *figures))
    print(f"#### {args.mib} MiB floods in gzip, one chunk each: CPU s / recording MB / items recorded "
          f"(LINE_COST={costs[0]}, ITEM_COST={costs[1]})\n")
    print("| flood | gzip bytes | bytes only | lines and items counted | CPU ratio |")
    print("|---|---|---|---|---|")
    for kind, size, (c0, s0, n0, _), (c1, s1, n1, stopped) in rows:
        print(f"| {kind} | {size:,} | {c0:.2f} s / {s0 / 1e6:.1f} MB / {n0:,} | {c1:.2f} s / {s1 / 1e6:.1f} MB / "
              f"{n1:,}{' (stopped)' if stopped else ''} | {c0 / c1:.0f}x |")


if __name__ == "__main__":
    main()
