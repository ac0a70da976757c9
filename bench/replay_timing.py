"""Replay timing: how late each event arrives, through the proxy and without it, against ceilings.

    .venv/bin/python bench/replay_timing.py [--events 2000] [--streams 200] [--stream-events 300] [--repeat 1]

1. One recording of ``--events`` events with 5-20 ms gaps, replayed through a real mitmdump running
   scripts/replay.py at speed 1 and 2, side by side with a naive replayer (a separate process that
   sleeps each recorded gap before each event, reached through the same proxy as an unmatched request).
2. Many concurrent replays at speed 1, in three loads: ``--streams`` x ``--stream-events`` at 5-20 ms
   gaps (~16,000 events/s in all), 50 streams at 5-20 ms (~4,000/s) and ``--streams`` at 50-200 ms
   (~1,600/s, a third as many events each). The requests are spread over the first ``--ramp`` seconds
   (a new connection costs mitmproxy milliseconds of CPU; 0 sends them all at once). Each load is
   played by five configurations, one after the other (the order rotates with every load and
   repetition):

   - ``ideal, direct``: the ceiling. A minimal asyncio server (a separate process) that schedules every
     pre-framed chunk with ``loop.call_at`` at its exact time, read directly.
   - ``ideal, plain mitmdump``: the same sender through ``mitmdump -s bench/plain_stream.py`` (streaming
     on, no addon): what mitmproxy itself costs.
   - ``replay server alone``: ``sse-capture serve``, read directly.
   - ``sse-capture replay``: mitmdump with scripts/replay.py.
   - ``replay server behind plain mitmdump``: ``sse-capture serve`` as the upstream of plain mitmdump, the
     layout the replay proxy would have with its server in a process of its own.

The client (this process) timestamps every event as it arrives: lateness = arrival - t / speed - (the
same for the stream's least-delayed event). ``cpu us/ev`` is the CPU time of the serving processes (the
proxy, and the sender or replay server when it is a process of its own) per event delivered; ``steady
p99`` counts only the events that arrived from 1 s after the last request on, once every connection is
set up. Everything listens on 127.0.0.1.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import free_port, wait_port  # noqa: E402
from sse_capture_addon.recording import FORMAT, FORMAT_VERSION, line, read_recording  # noqa: E402

MITMDUMP = Path(sys.executable).parent / "mitmdump"
REPLAY_SCRIPT = ROOT / "scripts" / "replay.py"
PLAIN_SCRIPT = ROOT / "bench" / "plain_stream.py"
EVENT_INDEX = re.compile(rb'"i":(\d+),')
URL = "http://bench.test/sse"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """utime + stime in seconds of a process and its descendants (alive ones)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / CLK_TCK
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                total += sum(tree_cpu(int(child)) for child in f.read().split())
    except FileNotFoundError:
        return 0.0
    return total


def make_recording(path: Path, events: int, rng: random.Random, gaps=(0.005, 0.020)) -> list[float]:
    header = {"kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": path.stem,
              "started": "2026-01-01T00:00:00.000000Z",
              "request": {"method": "GET", "url": URL, "headers": []},
              "response": {"status": 200, "headers": [["content-type", "text/event-stream"]]}}
    times, t, lines = [], 0.0, [line(header)]
    for i in range(events):
        t = round(t + rng.uniform(*gaps), 6)
        times.append(t)
        lines.append(line({"t": t, "kind": "event", "event": "message", "data": {"i": i, "pad": "x" * 60}}))
    lines.append(line({"t": t, "kind": "end", "reason": "complete", "events": events, "bytes": 0}))
    path.write_bytes(b"".join(lines))
    return times


def recorded_events(recording: str) -> list[tuple[float, bytes]]:
    rec = read_recording(recording)
    return [(r["t"], b'data: {"i":%d,"pad":"%s"}\n\n' % (r["data"]["i"], r["data"]["pad"].encode()))
            for r in rec.events]


# --- the naive replayer and the ideal sender (each run as a separate process) --------------------------------

async def naive_server(port: int, recording: str, speed: float) -> None:
    events = recorded_events(recording)

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


async def ideal_server(port: int, recording: str) -> None:
    """The ceiling: every chunk framed in advance and handed to the event loop's timer heap at its exact
    time; the only work per event is the timer callback and one ``transport.write``."""
    events = [(t, b"%x\r\n%s\r\n" % (len(data), data)) for t, data in recorded_events(recording)]
    end_at = events[-1][0] if events else 0.0
    loop = asyncio.get_running_loop()

    async def handle(reader, writer):
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")
        start = loop.time()
        for t, chunk in events:
            loop.call_at(start + t, writer.transport.write, chunk)
        done = loop.create_future()
        loop.call_at(start + end_at, done.set_result, None)
        await done
        writer.write(b"0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- the client -------------------------------------------------------------------------------------------

class _StreamClient(asyncio.Protocol):
    """Reads one SSE response and timestamps each event as it arrives (a protocol, not a stream reader:
    the client shares the machine with what it measures, so it should cost little)."""

    def __init__(self, request: bytes, times: list[float], speed: float):
        self.request, self.times, self.speed = request, times, speed
        self.loop = asyncio.get_running_loop()
        self.closed = self.loop.create_future()
        self.start: float | None = None
        self.buffer = b""
        self.arrived: list[float] = []
        self.arrival: list[float] = []  # loop time of each event's arrival

    def connection_made(self, transport) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        scan_from = max(0, len(self.buffer) - 16)
        self.buffer += data
        if self.start is None:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            self.start, self.buffer, scan_from = now, self.buffer[head_end + 4:], 0
        arrived, times = self.arrived, self.times
        for m in EVENT_INDEX.finditer(self.buffer, scan_from):
            i = int(m.group(1))
            if i == len(arrived):
                arrived.append(now - self.start - times[i] / self.speed)
                self.arrival.append(now)
        self.buffer = self.buffer[-16:]

    def connection_lost(self, exc) -> None:
        self.closed.set_result(None)


async def lateness_of_one_stream(port: int, url: str, times: list[float], speed: float, delay: float = 0.0,
                                 steady: tuple[float, list[float]] | None = None) -> list[float]:
    """Per-event lateness in seconds, in event order, for one stream read from ``port``: a proxy when
    ``url`` is absolute, else the server itself. The request is sent after ``delay`` seconds.
    ``steady``: (loop time, list): the lateness of events arriving from then on is added to the list."""
    await asyncio.sleep(delay)
    host = url.split("/")[2] if "://" in url else f"127.0.0.1:{port}"
    request = f"GET {url} HTTP/1.1\r\nhost: {host}\r\naccept: text/event-stream\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: _StreamClient(request, times, speed), "127.0.0.1", port)
    await client.closed
    arrived = client.arrived
    if len(arrived) != len(times):
        raise RuntimeError(f"{url}: got {len(arrived)} of {len(times)} events")
    # measured from the stream's best-case path (the least-delayed event), so that a response head held
    # up on its way to the client does not count as events arriving early
    best = min(arrived)
    if steady is not None:
        steady[1].extend(x - best for x, at in zip(arrived, client.arrival) if at >= steady[0])
    return [x - best for x in arrived]


def concurrently(streams: int, port: int, url: str, times: list[float],
                 ramp: float = 0.0) -> tuple[list[list[float]], list[float]]:
    """``streams`` replays at once; their requests are spread evenly over the first ``ramp`` seconds.
    Returns the lateness of each stream's events, and of all events that arrived from 1 s after the
    last request on (the steady state, once every connection is set up)."""
    async def run():
        steady = (asyncio.get_running_loop().time() + ramp + 1.0, [])
        streams_lateness = await asyncio.gather(*(lateness_of_one_stream(port, url, times, 1.0, ramp * i / streams,
                                                                         steady) for i in range(streams)))
        return streams_lateness, steady[1]

    return asyncio.run(run())


HEADER = (f"{'config':<50} {'speed':>5} {'events':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'end drift ms':>12} {'cpu us/ev':>9} {'steady p99':>10}")


def summary(name: str, speed: float, streams: list[list[float]], cpu: float | None = None,
            steady: list[float] | None = None) -> str:
    pooled = sorted(x * 1000 for s in streams for x in s)
    p = lambda q: pooled[min(len(pooled) - 1, int(q * len(pooled)))]  # noqa: E731
    drift = max(s[-1] for s in streams) * 1000
    count = f"{len(streams)}x{len(streams[0])}" if len(streams) > 1 else str(len(streams[0]))
    cpu_text = f"{cpu * 1e6 / len(pooled):>9.1f}" if cpu is not None else f"{'':>9}"
    steady_text = f" {sorted(steady)[int(0.99 * len(steady))] * 1000:>10.2f}" if steady else ""
    return (f"{name:<50} {speed:>5g} {count:>9} {p(0.5):>8.2f} {p(0.99):>8.2f} {pooled[-1]:>8.2f} "
            f"{drift:>12.2f} {cpu_text}{steady_text}")


class Processes:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], port: int) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs.append(proc)
        wait_port(port, proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


def start_mitmdump(procs: Processes, *args: str) -> tuple[int, subprocess.Popen]:
    port = free_port()
    proc = procs.start([str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", str(port), "-q", *args], port)
    return port, proc


def start_replay_proxy(procs: Processes, recording: Path, speed: float) -> tuple[int, subprocess.Popen]:
    return start_mitmdump(procs, "-s", str(REPLAY_SCRIPT), "--set", f"sse_replay={recording}",
                          "--set", f"sse_replay_speed={speed}", "--set", "sse_replay_reuse=true")


def start_self(procs: Processes, *args: str) -> tuple[int, subprocess.Popen]:
    port = free_port()
    return port, procs.start([sys.executable, __file__, *args[:1], str(port), *args[1:]], port)


def concurrent_load(name: str, streams: int, recording: Path, times: list[float], rotation: int,
                    ramp: float) -> list[str]:
    """The configurations on one load, in rotated order; returns their rows in a fixed order."""
    procs = Processes()
    try:
        ideal, ideal_proc = start_self(procs, "--ideal-server", str(recording))
        plain, plain_proc = start_mitmdump(procs, "-s", str(PLAIN_SCRIPT))
        serve_port = free_port()
        serve_proc = procs.start([sys.executable, "-m", "sse_capture_addon.cli", "serve", str(recording), "--reuse",
                                  "--port", str(serve_port)], serve_port)
        replay, replay_proc = start_replay_proxy(procs, recording, 1.0)
        configs = [
            ("ideal, direct", ideal, "/sse", [ideal_proc]),
            ("ideal, plain mitmdump", plain, f"http://127.0.0.1:{ideal}/sse", [plain_proc, ideal_proc]),
            ("replay server alone", serve_port, "/sse", [serve_proc]),
            ("sse-capture replay", replay, URL, [replay_proc]),
            # the replay server in a process of its own, behind a proxy: what that split would give
            ("replay server behind plain mitmdump", plain, f"http://127.0.0.1:{serve_port}/sse", [plain_proc, serve_proc]),
        ]
        rows = {}
        for i in range(len(configs)):
            label, port, url, measured = configs[(i + rotation) % len(configs)]
            before = sum(tree_cpu(p.pid) for p in measured)
            result, steady = concurrently(streams, port, url, times, ramp)
            cpu = sum(tree_cpu(p.pid) for p in measured) - before
            rows[label] = summary(f"{name}: {label}", 1.0, result, cpu, steady)
            print(rows[label], flush=True)
        return [rows[label] for label, *_ in configs]
    finally:
        procs.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=200, help="concurrent replays")
    parser.add_argument("--stream-events", type=int, default=300, help="events per concurrent replay")
    parser.add_argument("--repeat", type=int, default=1, help="play every concurrent load this many times")
    parser.add_argument("--ramp", type=float, default=2.0,
                        help="concurrent streams start spread evenly over this many seconds (0: all at once)")
    parser.add_argument("--skip-single", action="store_true", help="only the concurrent loads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--naive-server", nargs=3, metavar=("PORT", "RECORDING", "SPEED"), help=argparse.SUPPRESS)
    parser.add_argument("--ideal-server", nargs=2, metavar=("PORT", "RECORDING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        port, recording, speed = args.naive_server
        asyncio.run(naive_server(int(port), recording, float(speed)))
        return
    if args.ideal_server:
        port, recording = args.ideal_server
        asyncio.run(ideal_server(int(port), recording))
        return

    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="sse-replay-bench-"))
    long_rec = workdir / "long.jsonl"
    long_times = make_recording(long_rec, args.events, rng)
    loads = []  # (name, streams, recording, times)
    for name, streams, events, gaps in [
        (f"{args.streams}x5-20ms", args.streams, args.stream_events, (0.005, 0.020)),
        ("50x5-20ms", 50, args.stream_events, (0.005, 0.020)),
        (f"{args.streams}x50-200ms", args.streams, max(1, args.stream_events // 3), (0.050, 0.200)),
    ]:
        path = workdir / f"{name}.jsonl"
        loads.append((name, streams, path, make_recording(path, events, rng, gaps)))

    rows = [HEADER]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    procs = Processes()
    try:
        for speed in () if args.skip_single else (1.0, 2.0):
            proxy, proxy_proc = start_replay_proxy(procs, long_rec, speed)
            naive_port, _ = start_self(procs, "--naive-server", str(long_rec), str(speed))
            before = tree_cpu(proxy_proc.pid)
            ours = asyncio.run(lateness_of_one_stream(proxy, URL, long_times, speed))
            rows.append(summary("sse-capture replay", speed, [ours], tree_cpu(proxy_proc.pid) - before))
            naive = asyncio.run(lateness_of_one_stream(proxy, f"http://127.0.0.1:{naive_port}/sse", long_times, speed))
            rows.append(summary("naive gap-by-gap", speed, [naive]))
            print(rows[-2], rows[-1], sep="\n", flush=True)
            procs.stop()
            if speed == 1.0:  # the ceiling: the ideal sender through plain mitmdump
                ideal, ideal_proc = start_self(procs, "--ideal-server", str(long_rec))
                plain, plain_proc = start_mitmdump(procs, "-s", str(PLAIN_SCRIPT))
                before = tree_cpu(plain_proc.pid)
                best = asyncio.run(lateness_of_one_stream(plain, f"http://127.0.0.1:{ideal}/sse", long_times, 1.0))
                rows.append(summary("ideal, plain mitmdump", speed, [best], tree_cpu(plain_proc.pid) - before))
                print(rows[-1], flush=True)
                procs.stop()
        rotation = 0
        for _ in range(args.repeat):
            for name, streams, path, times in loads:
                rows += concurrent_load(name, streams, path, times, rotation, args.ramp)
                rotation += 1
    finally:
        procs.stop()
    print()
    print("\n".join(rows))
    print(f"\nlateness = arrival - t / speed, from the stream's least-delayed event, at the client; end drift = "
          f"lateness of the last event (worst stream); cpu us/ev = CPU of the serving processes per event "
          f"(for the single stream: the replay proxy's); steady p99 = p99 of the events that arrived from 1 s "
          f"after the last request on. load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
