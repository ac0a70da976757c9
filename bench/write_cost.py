"""What one write of a recording costs: inside a live proxy, against the same writes made in a loop.

    .venv/bin/python bench/write_cost.py [--streams 25] [--seconds 5] [--events 500000]

The write-only proxy (``bench/write_only.py``, the floor of the crash-safety rule) times the CPU of each of its
writes (the thread's CPU clock around ``os.write``) under the realistic load (N streams x 50 events/s, one 200 B
event a chunk) and under bulk's (one stream, 100 64 B events a chunk). This process then makes writes of the same
sizes in a loop, to new files in the same directory: back to back; paced as the realistic streams are (each file
written every 20 ms, so every write is the first in its file for a while, and changes its modification time),
and the second write right after each paced one; and the paced writes again on tmpfs (/dev/shm). The clock's own
cost (two readings) is subtracted from every figure.

It explains the floor: a write costs several times more inside the proxy than in a loop, and a loop shows how
much of that is the pause between a file's writes (its caches gone cold, its inode's times to update) rather than
the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_realistic import RATE, run_batch
from common import fetch, query, short_flows, start_proxy, start_server, table


def clock_cost_ns(n: int = 20_000) -> float:
    """What one ``thread_time_ns`` pair around nothing reads, on average."""
    tc = time.thread_time_ns
    total = 0
    for _ in range(n):
        c0 = tc()
        total += tc() - c0
    return total / n


def in_proxy(server_port: int, workdir: Path, load: str, args) -> dict:
    report = workdir / f"report-{load}.json"
    proc = start_proxy("write-only", workdir, ["--set", f"write_only_report={report}"])
    try:
        asyncio.run(short_flows(server_port, proc.port, 10))  # warm-up
        if load == "realistic":
            results = asyncio.run(run_batch(server_port, proc.port, args.streams, RATE, args.seconds, 200))
            got, expected = sum(r.events for r in results), int(args.streams * RATE * args.seconds)
        else:
            got, expected = asyncio.run(fetch(server_port, proc.port, query(args.events, 64, 100))).events, args.events
        if got != expected:
            raise SystemExit(f"{load}: got {got} events, expected {expected}")
    finally:
        proc.stop()  # the proxy writes its report as it stops
    return json.loads(report.read_text())


def loop(directory: Path, size: int, files: int, rounds: int, pause: float = 0.0) -> tuple[float, float]:
    """CPU ns per write (first, second) writing ``size`` bytes to each of ``files`` new files, ``rounds`` times,
    sleeping ``pause`` seconds after each round. The second write follows the first into the same file at once;
    back to back (no pause) only the first is made."""
    d = Path(tempfile.mkdtemp(dir=directory, prefix="loop-"))
    try:
        fds = [os.open(d / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
               for i in range(files)]
        buf = b"x" * (size - 1) + b"\n"
        tc, write = time.thread_time_ns, os.write
        first = second = 0
        for _ in range(rounds):
            for fd in fds:
                c0 = tc()
                write(fd, buf)
                c1 = tc()
                first += c1 - c0
                if pause:
                    write(fd, buf)
                    second += tc() - c1
            if pause:
                time.sleep(pause)
        for fd in fds:
            os.close(fd)
        n = files * rounds
        return first / n, (second / n if pause else float("nan"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=25, help="realistic: concurrent streams (default 25)")
    ap.add_argument("--seconds", type=float, default=5, help="realistic: seconds per stream (default 5)")
    ap.add_argument("--events", type=int, default=500_000, help="bulk: events in the stream (default 500,000)")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sse-write-cost-"))
    server = start_server()
    try:
        proxy = {load: in_proxy(server.port, workdir, load, args) for load in ("realistic", "bulk")}
        directory = workdir / "write-only"
        clock = clock_cost_ns()
        us = lambda ns: (ns - clock) / 1e3  # noqa: E731
        rows = []
        real, bulk = proxy["realistic"], proxy["bulk"]
        size = round(real["bytes"] / real["writes"])
        rows.append(["proxy (write-only)", f"realistic, {args.streams} streams", real["writes"], size,
                     us(real["cpu_ns"] / real["writes"])])
        rounds = int(RATE * args.seconds)
        rows.append(["loop, back to back", f"{args.streams} files in turn", args.streams * rounds, size,
                     us(loop(directory, size, args.streams, rounds)[0])])
        first, second = loop(directory, size, args.streams, rounds, 1 / RATE)
        rows.append(["loop, each file every 20 ms", f"{args.streams} files in turn", args.streams * rounds, size,
                     us(first)])
        rows.append(["loop, a second write at once", f"{args.streams} files in turn", args.streams * rounds, size,
                     us(second)])
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            rows.append(["loop, each file every 20 ms, tmpfs", f"{args.streams} files in turn",
                         args.streams * rounds, size, us(loop(shm, size, args.streams, rounds, 1 / RATE)[0])])
        size = round(bulk["bytes"] / bulk["writes"])
        rows.append(["proxy (write-only)", "bulk, 1 stream", bulk["writes"], size, us(bulk["cpu_ns"] / bulk["writes"])])
        rows.append(["loop, back to back", "1 file", bulk["writes"], size,
                     us(loop(directory, size, 1, bulk["writes"])[0])])
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"### CPU of one write: in the proxy and in a loop (files under {workdir.parent})\n")
    print(table(["where", "load", "writes", "bytes/write", "CPU us/write"], rows))
    print(f"\nThe thread's CPU clock around each os.write; its own cost ({clock / 1e3:.2f} us a pair of readings) is "
          "subtracted. Loops write to new files in the directory the proxy wrote to.")


if __name__ == "__main__":
    main()
