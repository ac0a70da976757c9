"""How often a process killed in the middle of a write() leaves the start of a line at the end of its file.

    .venv/bin/python bench/kill_mid_write.py [--runs 40] [--dir DIR]

A child appends 5,000-byte writes of 1,000-byte lines to a file as fast as it can; it is SIGKILLed once the file
passes 100 kB, and the file's last byte is checked. Linux checks for a fatal signal between the pages of a write,
so a write that spans a page boundary can end early: this is why recording readers must accept a cut last line
(see README, "Each chunk's lines are appended in one write").
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

WRITER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
lines = (b"{" + b"x" * 997 + b"}\n") * 5
while True:
    os.write(fd, lines)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--dir", help="where the files go (default: a temporary directory under TMPDIR)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        cut = 0
        for i in range(args.runs):
            path = os.path.join(tmp, f"{i}.jsonl")
            child = subprocess.Popen([sys.executable, "-c", WRITER, path])
            deadline = time.monotonic() + 10
            while (not os.path.exists(path) or os.path.getsize(path) < 100_000) and time.monotonic() < deadline:
                time.sleep(0.001)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                cut += f.read(1) != b"\n"
            os.unlink(path)
    print(f"{cut} of {args.runs} files of a writer killed mid-write end in the start of a line")


if __name__ == "__main__":
    main()
