"""Where the addon's time goes.

  python bench/profile_addon.py            # in-process: StreamRecorder.feed on token streams, cProfile top-N
  python bench/profile_addon.py --live realistic|bulk|flows   # py-spy on a real addon mitmdump under that load
  TMPDIR=/dev/shm python bench/profile_addon.py --hooks       # in-process: the hooks of one short stream, us/flow
  python bench/profile_addon.py --cold        # in-process: one event's chunk with warm and with evicted caches


In-process mode times ``StreamRecorder.feed`` per chunk (one event per chunk, as LLM APIs send them) with raw
chunks on and off, then prints the top functions by own time and by cumulative time. Live mode samples
the mitmdump process with py-spy and prints inclusive/self percentages per function, so the addon's share
of a proxied event can be compared with mitmproxy's own, and the addon's lines that were running (a C
function counts on the line that called it: writer.py's ``os.write`` line is the write of each chunk).

Cold mode times the recording of a one-event chunk with warm caches and with caches evicted before each call, and
the parts of that path alone: a live proxy runs ~200 us of mitmproxy's own code between two chunks of a stream,
so the addon's code and data are mostly out of the caches when a chunk arrives.

Hooks mode drives ``SSECapture``'s hooks with mitmproxy's test flows for bench_flows' kind of stream (a GET, 5
events in 5 chunks): time per flow in each hook, then cProfile's top functions. It is the steadiest figure for
the addon's own per-stream cost on a shared machine, where whole-proxy CPU per flow varies by more than that
cost; a recording directory on tmpfs (TMPDIR=/dev/shm) leaves out the file system, whose file creation can cost
from 10 us to 1 ms of kernel time. A warm loop: in a real proxy the same code runs 2-3x slower (cold caches).
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_parser import anthropic_stream, openai_stream, rechunk
from bench_realistic import run_batch
from common import PY, Stack, base_args, fetch, median, query, short_flows, table, use_addon_package

use_addon_package()


def make_recorder(tmp: str, raw_chunks: bool):
    from sse_capture_addon.recorder import StreamRecorder
    from sse_capture_addon.sse import DEFAULT_MAX_EVENT_SIZE
    from sse_capture_addon.writer import RecordingFile
    f = RecordingFile(tmp, f"rec-{time.perf_counter_ns()}.jsonl")
    header = {"kind": "header", "format": "sse-capture", "version": 1, "stream_id": "x" * 32,
              "started": "2024-01-01T00:00:00Z", "request": {}, "response": {}}
    return StreamRecorder(f, header, raw_chunks=raw_chunks, max_event_size=DEFAULT_MAX_EVENT_SIZE)


def in_process(quick: bool, top: int) -> None:
    nbytes = 500_000 if quick else 5_000_000
    inputs = {"openai 1 ev/chunk": openai_stream(nbytes), "anthropic 1 ev/chunk": anthropic_stream(nbytes),
              "openai 16 KiB chunks": rechunk(openai_stream(nbytes), 16384)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, chunks in inputs.items():
            for raw in (True, False):
                times = []
                for _ in range(3):
                    rec = make_recorder(tmp, raw)
                    t0 = time.perf_counter()
                    for c in chunks:
                        rec.feed(c)
                    rec.finish("complete")
                    times.append(time.perf_counter() - t0)
                rows.append([name, "on" if raw else "off", len(chunks), median(times) / len(chunks) * 1e6,
                             nbytes / median(times) / 1e6])
        print("### StreamRecorder.feed alone (median of 3)\n")
        print(table(["stream", "raw chunks", "chunks", "us/chunk", "MB/s"], rows))
        for name in ("openai 1 ev/chunk", "openai 16 KiB chunks"):
            rec = make_recorder(tmp, True)
            prof = cProfile.Profile()
            prof.enable()
            for c in inputs[name]:
                rec.feed(c)
            rec.finish("complete")
            prof.disable()
            for key in ("tottime", "cumulative"):
                total = pstats.Stats(prof).total_tt
                print(f"\n### cProfile, {name}, raw chunks on, by {key} (total {total:.3f} s, "
                      "cProfile inflates per-call overhead)\n")
                print(_pct_table(prof, key, top))


def cold(quick: bool) -> None:
    """One chunk of one event, as the realistic load sends it, into 50 recorders in turn: with warm caches (a
    loop) and with the caches evicted before each call (8 MiB touched, a byte per 64-byte line), which is closer
    to a live proxy, where ~200 us of mitmproxy's own code runs between two chunks of a stream. Also the parts
    of the path alone, and a bare os.write, the floor of the crash-safety rule."""
    import gc
    import os
    from sse_capture_addon import _speedups
    from sse_capture_addon.sse import _c_simple_blocks
    n = 600 if quick else 3000
    pollute = bytearray(8 << 20)
    ones = b"\x01" * (len(pollute) // 64)

    def evict() -> None:
        pollute[::64] = ones

    chunk = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":' \
            b'{"content":" token"}}]}\n\n'
    head = b'{"t":1.000000,"kind":"event","event":"message","data":'
    with tempfile.TemporaryDirectory() as tmp:
        recs = [make_recorder(tmp, True) for _ in range(50)]
        for rec in recs:
            rec.feed(chunk)
        parts = {
            "StreamRecorder.feed (raw chunks on), all of it": lambda r: r.feed(chunk),
            "part: the C parse (simple_blocks)": lambda r: _c_simple_blocks(r.parser, chunk, False),
            "part: the C event line (exact_lines)": lambda r: _speedups.exact_lines(chunk, 1, head),
            "part: a chunk line by bytes % (...)": lambda r: b'{"t":%.6f,"kind":"chunk","n":%d,"blocks":%d}\n' % (
                1.5, r.chunks, 1),
            "part: time.monotonic()": lambda r: time.monotonic(),
            "part: os.write of the chunk": lambda r: os.write(r.file.fd, chunk),
        }
        rows = []
        gc.disable()
        try:
            for name, fn in parts.items():
                medians = []
                for evicting in (False, True):
                    times = []
                    for i in range(n):
                        rec = recs[i % len(recs)]
                        if evicting:
                            evict()
                        t0 = time.perf_counter_ns()
                        fn(rec)
                        times.append(time.perf_counter_ns() - t0)
                    medians.append(median(times) / 1e3)
                rows.append([name, medians[0], medians[1], medians[1] / medians[0]])
        finally:
            gc.enable()
    print(f"### One chunk of one event into 50 recorders in turn, warm and cold caches (median of {n})\n")
    print(table(["path", "warm us", "cold us", "cold/warm"], rows))


def _pct_table(prof: cProfile.Profile, key: str, top: int) -> str:
    st = pstats.Stats(prof)
    total = st.total_tt
    idx = 2 if key == "tottime" else 3
    items = sorted(st.stats.items(), key=lambda kv: kv[1][idx], reverse=True)[:top]
    rows = [[f"{Path(f).name}:{ln}({fn})", cc, v[2], 100 * v[2] / total, v[3], 100 * v[3] / total]
            for (f, ln, fn), v in items for cc in [v[1]]]
    return table(["function", "calls", "own s", "own %", "cum s", "cum %"], rows)


def live(load: str, quick: bool, top: int, streams: int, seconds: float) -> None:
    """py-spy the addon mitmdump while a load runs; summarise the collapsed stacks."""
    with Stack(configs=("addon",)) as st, tempfile.TemporaryDirectory() as tmp:
        proc = st.proxies["addon"]
        out = Path(tmp) / "stacks.txt"
        asyncio.run(run_batch(st.server.port, proc.port, 5, 50, 0.2, 200))  # warm-up
        # py-spy's default, blocking sampling: it pauses the proxy for each sample (~1 % at 250 Hz). With
        # --nonblocking it reads the stacks while they change, and gave impossible ones (recorder code calling into
        # mitmproxy's header validation), which put the addon's time on the wrong lines.
        spy = subprocess.Popen([str(Path(PY).parent / "py-spy"), "record", "-p", str(proc.pid), "-r", "250",
                                "-f", "raw", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1)
        if load == "realistic":
            what = f"{streams} streams x 50 ev/s, {seconds:g} s"
            asyncio.run(run_batch(st.server.port, proc.port, streams, 50, seconds, 200))
        elif load == "bulk":
            n, runs = (50_000, 1) if quick else (500_000, 5)  # a run is ~0.5 s: five for enough samples
            what = f"{runs} x one stream of {n} x 64 B events, 100/chunk"
            for _ in range(runs):
                asyncio.run(fetch(st.server.port, proc.port, query(n, 64, 100)))
        else:
            n = 100 if quick else 1000
            what = f"{n} sequential short streams"
            asyncio.run(short_flows(st.server.port, proc.port, n))
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(60)
        if not out.exists():
            sys.exit(f"py-spy failed: {spy.stderr.read().decode()[-500:]}")
        incl, own, total = collections.Counter(), collections.Counter(), 0
        for stack, n in _stacks(out):
            frames = [_short(f) for f in stack.split(";")]
            total += n
            for f in set(frames):
                incl[f] += n
            own[frames[-1]] += n
        print(f"### py-spy of the addon mitmdump: {what}, {total} samples\n")
        print(table(["function (inclusive)", "%"], [[f, 100 * c / total] for f, c in incl.most_common(top)]))
        print()
        print(table(["function (self)", "%"], [[f, 100 * c / total] for f, c in own.most_common(top)]))
        mine = sum(c for ln, c in _stacks(out) if "sse_capture_addon" in ln)
        print(f"\nshare of samples with sse_capture_addon code on the stack: {100 * mine / total:.1f}%; "
              f"in the idle selector: {100 * own.get('EpollSelector.select (selectors.py)', 0) / total:.1f}%\n")
        # what the addon's own time is made of: frames at or below the first sse_capture_addon frame
        sub = collections.Counter()
        for stack, n in _stacks(out):
            frames = stack.split(";")
            first = next((i for i, f in enumerate(frames) if "sse_capture_addon" in f), None)
            if first is not None:
                for f in set(frames[first:]):
                    sub[_short(f)] += n
        print(table(["inside the addon (inclusive)", "% of all samples"],
                    [[f, 100 * c / total] for f, c in sub.most_common(top)]))
        # the line of the addon's code that was running: its deepest frame on the stack (a C function it called,
        # os.write or the C accelerator, counts on the line that called it)
        lines = collections.Counter()
        for stack, n in _stacks(out):
            ours = [f for f in stack.split(";") if "sse_capture_addon" in f]
            if ours:
                lines[_short(ours[-1], line=True)] += n
        print()
        print(table(["the addon's line running", "% of all samples"],
                    [[f, 100 * c / total] for f, c in lines.most_common(top)]))


def _short(frame: str, line: bool = False) -> str:
    """``func (path/file.py:line)`` -> ``func (file.py)``, or ``func (file.py:line)``."""
    where = frame.split(" (")[-1].rstrip(")").rsplit("/", 1)[-1]
    return frame.split(" (")[0] + " (" + (where if line else where.split(":")[0]) + ")"


def _stacks(path: Path):
    """(collapsed stack, sample count) pairs of a py-spy ``-f raw`` file."""
    for ln in path.read_text().splitlines():
        stack, _, n = ln.rpartition(" ")
        yield stack, int(n)


def _short_stream_flow():
    """A flow as bench_flows' requests reach the addon's responseheaders hook."""
    from mitmproxy.test import tflow
    f = tflow.tflow(resp=True)
    f.request.url = "http://127.0.0.1:43210" + query(5, 200)
    f.request.headers.clear()
    f.request.headers.update({"Host": "127.0.0.1:43210", "Accept": "text/event-stream"})
    f.request.content = b""
    f.response.headers.clear()
    f.response.headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                               "Connection": "close", "Transfer-Encoding": "chunked"})
    f.response.content = None
    f.response.stream = False
    return f


def hooks(quick: bool, top: int) -> None:
    from mitmproxy.test import taddons
    from sse_capture_addon.capture import SSECapture
    n, runs = (300, 3) if quick else (2000, 5)
    chunk = b"data: " + b"x" * 200 + b"\n\n"

    async def run(prof: cProfile.Profile | None = None) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {"responseheaders": [], "5 chunks": [], "response": []}
        with tempfile.TemporaryDirectory() as tmp, taddons.context() as tctx:
            addon = SSECapture()
            tctx.master.addons.add(addon)
            tctx.configure(addon, sse_capture_dir=tmp)
            flows = [_short_stream_flow() for _ in range(n)]
            clock = time.perf_counter
            if prof:
                prof.enable()
            for f in flows:
                t0 = clock()
                pending = addon.responseheaders(f)
                if pending is not None:  # files are being made in worker threads (slow file system)
                    await pending
                t1 = clock()
                for _ in range(5):
                    f.response.stream(chunk)
                t2 = clock()
                addon.response(f)
                t3 = clock()
                for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                    times[k].append(v)
            if prof:
                prof.disable()
        return times

    asyncio.run(run())  # warm-up
    results = [asyncio.run(run()) for _ in range(runs)]
    rows = [[k, min(median(r[k]) for r in results) * 1e6, min(sum(r[k]) / n for r in results) * 1e6]
            for k in results[0]]
    rows.append(["all", sum(r[1] for r in rows), sum(r[2] for r in rows)])
    print(f"### SSECapture hooks per short stream, in-process ({n} flows, best of {runs} runs)\n")
    print(table(["hook", "median us/flow", "mean us/flow"], rows))
    prof = cProfile.Profile()
    asyncio.run(run(prof))
    print("\n### cProfile of the same, by own time (cProfile inflates per-call overhead)\n")
    print(_pct_table(prof, "tottime", top))


def main() -> None:
    ap = base_args(__doc__.splitlines()[0])
    ap.add_argument("--live", choices=("realistic", "bulk", "flows"),
                    help="py-spy a live addon mitmdump under this load instead of in-process cProfile")
    ap.add_argument("--hooks", action="store_true",
                    help="time the capture addon's hooks per short stream, in-process (mitmproxy's test flows)")
    ap.add_argument("--cold", action="store_true",
                    help="time a one-event chunk's recording with warm and with evicted caches, and its parts")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    if args.hooks:
        hooks(args.quick, args.top)
    elif args.cold:
        cold(args.quick)
    elif args.live:
        live(args.live, args.quick, args.top, 20 if args.quick else args.streams, 3 if args.quick else args.seconds)
    else:
        in_process(args.quick, args.top)


if __name__ == "__main__":
    main()
