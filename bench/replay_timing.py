"""Replay timing through the proxy: how late each event arrives, against a naive gap-by-gap replayer.

    .venv/bin/python bench/replay_timing.py [--events 2000] [--streams 200] [--stream-events 300]

A recording of ``--events`` events with 5-20 ms gaps is replayed through a real mitmdump running
scripts/replay.py at speed 1 and 2. The client (this process) timestamps every event as it arrives:
lateness = arrival - t / speed - (the same for the stream's least-delayed event). The naive replayer (a separate process)
sleeps each recorded gap before each event, as a hand-written replayer would; it is reached through
the same proxy (an unmatched request, forwarded). Then ``--streams`` replays run concurrently.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sse_capture_addon.recording import FORMAT, FORMAT_VERSION, line, read_recording  # noqa: E402

MITMDUMP = Path(sys.executable).parent / "mitmdump"
REPLAY_SCRIPT = ROOT / "scripts" / "replay.py"
EVENT_INDEX = re.compile(rb'"i":(\d+),')
URL = "http://bench.test/sse"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def make_recording(path: Path, events: int, rng: random.Random) -> list[float]:
    header = {"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": path.stem,
              "started": "2026-01-01T00:00:00.000000Z",
              "request": {"method": "GET", "url": URL, "headers": []},
              "response": {"status": 200, "headers": [["content-type", "text/event-stream"]]}}
    times, t, lines = [], 0.0, [line(header)]
    for i in range(events):
        t = round(t + rng.uniform(0.005, 0.020), 6)
        times.append(t)
        lines.append(line({"t": t, "kind": "event", "event": "message", "data": {"i": i, "pad": "x" * 60}}))
    lines.append(line({"t": t, "kind": "end", "reason": "complete", "events": events, "bytes": 0}))
    path.write_bytes(b"".join(lines))
    return times


# --- the naive replayer (run as a separate process) ----------------------------------------------------------

async def naive_server(port: int, recording: str, speed: float) -> None:
    rec = read_recording(recording)
    events = [(r["t"], b'data: {"i":%d,"pad":"%s"}\n\n' % (r["data"]["i"], r["data"]["pad"].encode()))
              for r in rec.events]

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        previous = 0.0
        for t, data in events:
            await asyncio.sleep((t - previous) / speed)  # gap after gap: every oversleep adds up
            previous = t
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# --- the client -------------------------------------------------------------------------------------------

async def lateness_of_one_stream(port: int, url: str, times: list[float], speed: float) -> list[float]:
    """Per-event lateness in seconds, in event order, for one stream read from ``port``: a proxy when
    ``url`` is absolute, else the server itself."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host = url.split("/")[2] if "://" in url else f"127.0.0.1:{port}"
    writer.write(f"GET {url} HTTP/1.1\r\nhost: {host}\r\naccept: text/event-stream\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    start = loop.time()
    arrived: list[float] = []
    body = b""
    while data := await reader.read(65536):
        now = loop.time()
        scan_from = max(0, len(body) - 16)
        body += data
        for m in EVENT_INDEX.finditer(body, scan_from):
            i = int(m.group(1))
            if i == len(arrived):
                arrived.append(now - start - times[i] / speed)
    writer.close()
    if len(arrived) != len(times):
        raise RuntimeError(f"{url}: got {len(arrived)} of {len(times)} events")
    # measured from the stream's best-case path (the least-delayed event), so that a response head held
    # up on its way to the client does not count as events arriving early
    best = min(arrived)
    return [x - best for x in arrived]


def summary(name: str, speed: float, streams: list[list[float]]) -> str:
    pooled = sorted(x * 1000 for s in streams for x in s)
    p = lambda q: pooled[min(len(pooled) - 1, int(q * len(pooled)))]  # noqa: E731
    drift = max(s[-1] for s in streams) * 1000
    count = f"{len(streams)}x{len(streams[0])}" if len(streams) > 1 else str(len(streams[0]))
    return (f"{name:<28} {speed:>5g} {count:>9} {p(0.5):>8.2f} {p(0.99):>8.2f} {pooled[-1]:>8.2f} "
            f"{drift:>10.2f}")


class Processes:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], port: int) -> None:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs.append(proc)
        wait_for_port(port, proc)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


def concurrently(streams: int, port: int, url: str, times: list[float]) -> list[list[float]]:
    async def run():
        return await asyncio.gather(*(lateness_of_one_stream(port, url, times, 1.0) for _ in range(streams)))

    return asyncio.run(run())


def start_replay_proxy(procs: Processes, recording: Path, speed: float) -> int:
    port = free_port()
    procs.start([str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", str(port), "-q",
                 "-s", str(REPLAY_SCRIPT), "--set", f"sse_replay={recording}", "--set", f"sse_replay_speed={speed}",
                 "--set", "sse_replay_reuse=true"], port)
    return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=200, help="concurrent replays")
    parser.add_argument("--stream-events", type=int, default=300, help="events per concurrent replay")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--naive-server", nargs=3, metavar=("PORT", "RECORDING", "SPEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        port, recording, speed = args.naive_server
        asyncio.run(naive_server(int(port), recording, float(speed)))
        return

    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="sse-replay-bench-"))
    long_rec, short_rec = workdir / "long.jsonl", workdir / "short.jsonl"
    long_times = make_recording(long_rec, args.events, rng)
    short_times = make_recording(short_rec, args.stream_events, rng)

    rows = [f"{'replayer':<28} {'speed':>5} {'events':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'end drift ms':>10}"]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    procs = Processes()
    try:
        for speed in (1.0, 2.0):
            proxy = start_replay_proxy(procs, long_rec, speed)
            naive_port = free_port()
            procs.start([sys.executable, __file__, "--naive-server", str(naive_port), str(long_rec), str(speed)],
                        naive_port)
            ours = asyncio.run(lateness_of_one_stream(proxy, URL, long_times, speed))
            rows.append(summary("sse-capture replay", speed, [ours]))
            naive = asyncio.run(lateness_of_one_stream(proxy, f"http://127.0.0.1:{naive_port}/sse", long_times, speed))
            rows.append(summary("naive gap-by-gap", speed, [naive]))
            print(rows[-2], rows[-1], sep="\n", flush=True)
            procs.stop()

        proxy = start_replay_proxy(procs, short_rec, 1.0)
        rows.append(summary(f"sse-capture, {args.streams} concurrent", 1.0,
                            concurrently(args.streams, proxy, URL, short_times)))
        print(rows[-1], flush=True)
        procs.stop()
        # the same replays from the replay server alone (sse-capture serve): what the proxy adds
        port = free_port()
        procs.start([sys.executable, "-m", "sse_capture_addon.cli", "serve", str(short_rec), "--reuse",
                     "--port", str(port)], port)
        rows.append(summary(f"  same, no proxy", 1.0, concurrently(args.streams, port, "/sse", short_times)))
        procs.stop()
    finally:
        procs.stop()
    print()
    print("\n".join(rows))
    print(f"\nlateness = arrival - t / speed, from the stream's least-delayed event, at the client, through "
          f"mitmdump; end drift = lateness of the last event (worst stream). "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
