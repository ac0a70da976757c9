"""Floods of tiny items: what 32 MiB of comments, blank lines or empty events cost the recorder, compressed (32 KB
of hostile gzip) and uncompressed (a heartbeat loop gone wrong), before and with the limits on what parsing may cost.

    .venv/bin/python bench/floods.py [--mib 32]

In-process: one ``StreamRecorder`` per flood and setting, writing to a file in TMPDIR; the gzip body as one chunk
(as a proxy reads 32 KB at once), the uncompressed one in 64 KiB chunks. "before" sets ``LINE_COST`` and
``ITEM_COST`` to 0 (gzip: decoded bytes alone count toward the bomb limit) or ``MAX_DENSITY`` out of reach
(uncompressed) for its run. The CPU is the proxy's thread held: every other stream waits that long.
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


def run(directory: str, name: str, chunks: list[bytes], encoding: str | None) -> tuple[float, int, int, bool]:
    """CPU seconds, recording bytes, items recorded, and whether parsing stopped."""
    rec = StreamRecorder(RecordingFile(directory, name), {"v": 3}, max_event_size=1 << 20, content_encoding=encoding)
    c0 = time.process_time()
    for chunk in chunks:
        rec.feed(chunk)
    cpu = time.process_time() - c0
    rec.finish("complete")
    return cpu, os.path.getsize(os.path.join(directory, name)), rec.events + rec.comments, bool(rec.errors)


def compare(directory: str, chunks: list[bytes], encoding: str | None, before: dict) -> list:
    """``run`` with the decoding module's constants set to ``before``, then as they are."""
    now = {name: getattr(decoding, name) for name in before}
    figures = []
    for settings in (before, now):
        for name, value in settings.items():
            setattr(decoding, name, value)
        try:
            figures.append(run(directory, f"{len(os.listdir(directory))}.jsonl", chunks, encoding))
        finally:
            for name, value in now.items():
                setattr(decoding, name, value)
    return figures


def table(title: str, head: str, rows: list) -> None:
    print(f"#### {title}\n")
    print(f"| flood | {head} | before | now | CPU ratio |")
    print("|---|---|---|---|---|")
    for kind, size, (c0, s0, n0, _), (c1, s1, n1, stopped) in rows:
        print(f"| {kind} | {size:,} | {c0:.2f} s / {s0 / 1e6:.1f} MB / {n0:,} | {c1:.2f} s / {s1 / 1e6:.1f} MB / "
              f"{n1:,}{' (stopped)' if stopped else ''} | {c0 / c1:.0f}x |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=32, help="decoded size of each flood (default 32 MiB)")
    args = ap.parse_args()
    gzipped, identity = [], []
    with tempfile.TemporaryDirectory() as directory:
        for kind, unit in FLOODS.items():
            body = b"data: first\n\n" + unit * ((args.mib << 20) // len(unit))
            packed = gzip.compress(body)
            gzipped.append((kind, len(packed), *compare(directory, [packed], "gzip", {"LINE_COST": 0, "ITEM_COST": 0})))
            chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
            identity.append((kind, len(body), *compare(directory, chunks, None, {"MAX_DENSITY": 10 ** 12})))
    costs = f"LINE_COST={decoding.LINE_COST}, ITEM_COST={decoding.ITEM_COST}"
    table(f"{args.mib} MiB floods in gzip, one chunk each, before = decoded bytes alone counted toward the bomb limit, "
          f"now = lines and items too ({costs}): CPU s / recording MB / items recorded", "gzip bytes", gzipped)
    table(f"{args.mib} MiB floods uncompressed, 64 KiB chunks (a fast upstream), before = no density limit, now = "
          f"MAX_DENSITY={decoding.MAX_DENSITY}, CHUNK_ALLOWANCE={decoding.CHUNK_ALLOWANCE}: CPU s / recording MB / "
          "items recorded", "bytes", identity)


if __name__ == "__main__":
    main()
