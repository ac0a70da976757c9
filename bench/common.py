"""Shared benchmark machinery: processes (SSE server, mitmdump), /proc readings, a cheap SSE client, stats
and reporting. Every scenario script imports this; nothing here talks to anything but 127.0.0.1.

Configurations:
  direct  client -> bench/sse_server.py
  plain   client -> mitmdump -s bench/plain_stream.py -> server   (streaming, no addon: the ceiling)
  addon   client -> mitmdump -s sse_capture_addon/addon.py --set sse_capture_dir=TMP -> server
If the addon does not exist yet, "addon" runs bench/plain_stream.py instead and results say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
MITMDUMP = str(Path(PY).parent / "mitmdump")
#: The addon script; SSE_BENCH_ADDON=/path/to/addon.py benchmarks another checkout of it.
ADDON = Path(os.environ.get("SSE_BENCH_ADDON") or ROOT / "sse_capture_addon" / "addon.py").resolve()
#: Set by run.py: each Stack's files go under it and stay (emptied) until the whole run is over (see run.py).
WORKROOT = os.environ.get("SSE_BENCH_WORKROOT") or None
PLAIN = BENCH / "plain_stream.py"
WRITE_ONLY = BENCH / "write_only.py"
NO_WRITES = BENCH / "addon_without_writes.py"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIGS = ("direct", "plain", "addon")
#: plus the floor of "write each chunk before forwarding it": plain streaming + one os.write per chunk
WITH_FLOOR = ("direct", "plain", "write-only", "addon")


def use_addon_package() -> None:
    """Make ``import sse_capture_addon`` load the benchmarked checkout (see SSE_BENCH_ADDON)."""
    root = str(ADDON.parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


@functools.cache
def addon_available() -> bool:
    """addon.py exists and its package imports (it may still be being written)."""
    if not ADDON.exists():
        return False
    return subprocess.run([PY, "-c", "import sse_capture_addon.capture"], cwd=ADDON.parent.parent,
                          capture_output=True).returncode == 0


# --- processes -----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout}s")


class Proc:
    """A child process with CPU / memory readings from /proc."""

    def __init__(self, name: str, argv: list[str], port: int, **popen):
        self.name, self.argv, self.port = name, argv, port
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **popen)
        self.pid = self.p.pid

    def cpu(self) -> float:
        """utime + stime in seconds."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(utime, stime) in seconds: CPU in the process's own code, and in the kernel on its behalf."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK

    def status_kb(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for ln in f:
                if ln.startswith(key + ":"):
                    return int(ln.split()[1])
        raise KeyError(key)

    def vmhwm_mb(self) -> float:
        return self.status_kb("VmHWM") / 1024

    def vmrss_mb(self) -> float:
        return self.status_kb("VmRSS") / 1024

    def stop(self) -> None:
        if self.p.poll() is None:
            os.kill(self.pid, signal.SIGTERM)  # this process only, by id
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(5)


def start_server() -> Proc:
    proc = Proc("server", [PY, str(BENCH / "sse_server.py"), "--port", "0"], 0,
                stdout=subprocess.PIPE, text=True)
    line = proc.p.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.stop()
        raise RuntimeError("sse_server did not start")
    proc.port = int(line[1])
    return proc


def start_proxy(config: str, workdir: Path, extra: list[str] | None = None, addon: Path = ADDON,
                captures: Path | None = None) -> Proc:
    """mitmdump for ``plain``, ``write-only``, ``addon`` or ``addon-no-writes``; confdir shared under workdir,
    captures under ``captures`` (default workdir/captures; the addon), workdir/captures-no-writes or
    workdir/write-only. ``addon``: another checkout's addon.py (bench/ab.py)."""
    port = free_port()
    confdir = workdir / "confdir"
    confdir.mkdir(exist_ok=True)
    argv = [MITMDUMP, "--listen-host", HOST, "--listen-port", str(port), "-q",
            "--set", f"confdir={confdir}"]
    writers = {  # config -> its script, the option naming its files' directory, that directory
        "addon": (addon, "sse_capture_dir", captures or workdir / "captures"),
        "addon-no-writes": (NO_WRITES, "sse_capture_dir", workdir / "captures-no-writes"),
        "write-only": (WRITE_ONLY, "write_only_dir", workdir / "write-only"),
    }
    if config in writers and (config != "addon" or addon != ADDON or addon_available()):
        script, option, directory = writers[config]
        directory.mkdir(exist_ok=True)
        argv += ["-s", str(script), "--set", f"{option}={directory}"]
    else:
        argv += ["-s", str(PLAIN)]
    argv += extra or []
    log = open(workdir / f"{config}-{port}.log", "wb")
    # addon.py imports the package by name, which an editable install resolves to *its* checkout: put the
    # benchmarked checkout first, or SSE_BENCH_ADDON would measure this one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(addon.parent.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = Proc(config, argv, port, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
    wait_port(port, proc.p)
    return proc


#: Above this, creating a file costs more than the addon's whole per-stream work on a healthy file system
SLOW_CREATE_US = 200


def file_creation_us(directory: Path, n: int = 50) -> float:
    """CPU time one file creation (``os.open`` with O_CREAT|O_EXCL, as the addon and write-only do) costs in
    ``directory``: the median of ``n``. The files stay (the caller's directory is removed with them)."""
    probe = directory / "creation-probe"
    probe.mkdir(exist_ok=True)
    times = []
    for i in range(n):
        t0 = time.thread_time_ns()
        fd = os.open(probe / f"{i}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        times.append((time.thread_time_ns() - t0) / 1000)
        os.close(fd)
    return statistics.median(times)


def creation_note(us: float) -> str:
    """What ``file_creation_us`` found, for a scenario's text: each recording and write-only file pays it."""
    text = f"creating a file in the recordings' directory ({WORKROOT or tempfile.gettempdir()}) cost {us:.0f} us of CPU (median of 50)"
    if us > SLOW_CREATE_US:
        text += (f", over {SLOW_CREATE_US} us: **slow**. On ext4 without a journal (this machine's root file system) "
                 "the inode allocator checks every inode deleted in the last seconds to minutes one by one, and the "
                 "tests' and benchmarks' own deleted files make that thousands. Per-stream figures (flows, the start "
                 "of realistic, ttfe) then measure the file system's state as much as the addon; a fresh directory "
                 "creates a file in ~20-90 us, tmpfs in ~8 (TMPDIR=/dev/shm)")
    return text + "."


class Stack:
    """The server plus one mitmdump per proxied config; ``port_for(cfg)`` is the proxy (None = direct).
    ``creation_us``: what creating a file costs in its directory (``file_creation_us``)."""

    def __init__(self, configs=CONFIGS, proxy_extra: list[str] | None = None):
        self.configs = list(configs)
        self.proxy_extra = proxy_extra
        self.workdir = Path(tempfile.mkdtemp(prefix="sse-bench-", dir=WORKROOT))
        self.server: Proc | None = None
        self.proxies: dict[str, Proc] = {}

    def __enter__(self) -> Stack:
        self.creation_us = file_creation_us(self.workdir)
        self.server = start_server()
        for cfg in self.configs:  # sequential: the shared confdir's CA is created by the first one
            if cfg != "direct":
                self.proxies[cfg] = start_proxy(cfg, self.workdir, self.proxy_extra)
        return self

    def __exit__(self, *exc) -> None:
        for p in list(self.proxies.values()) + [self.server]:
            if p is not None:
                p.stop()
        if WORKROOT is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:  # emptied, not deleted (run.py deletes them at the end): no writeback of them during later scenarios
            for f in self.workdir.rglob("*"):
                if f.is_file():
                    os.truncate(f, 0)

    def port_for(self, cfg: str) -> int | None:
        return self.proxies[cfg].port if cfg in self.proxies else None

    def captured_files(self) -> int:
        d = self.workdir / "captures"
        return sum(1 for _ in d.rglob("*.jsonl")) if d.exists() else 0

    def captured_bytes(self) -> int:
        d = self.workdir / "captures"
        return sum(f.stat().st_size for f in d.rglob("*.jsonl")) if d.exists() else 0


# --- client --------------------------------------------------------------------------------------------

class ChunkedDecoder:
    """Incremental HTTP/1.1 chunked-body decoder (trailers ignored)."""

    def __init__(self):
        self.buf = bytearray()
        self.need = 0  # chunk data bytes still to come
        self.trail = 0  # CRLF bytes after chunk data still to skip
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self.buf
        buf += data
        out, pos, end = [], 0, len(buf)
        while pos < end and not self.done:
            if self.need:
                take = min(self.need, end - pos)
                out.append(bytes(buf[pos:pos + take]))
                pos += take
                self.need -= take
            elif self.trail:
                take = min(self.trail, end - pos)
                pos += take
                self.trail -= take
            else:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    break
                size = int(bytes(buf[pos:nl]).split(b";")[0], 16)
                pos = nl + 2
                if size == 0:
                    self.done = True
                else:
                    self.need, self.trail = size, 2
        del buf[:pos]
        return b"".join(out)


@dataclass
class FetchResult:
    t_start: float = 0.0  # perf_counter at connect
    t_first_event: float | None = None  # perf_counter when the first complete event arrived
    t_end: float = 0.0
    body_bytes: int = 0
    events: int = 0
    latencies_ns: list[int] = field(default_factory=list)  # receive - send, when ts=1

    @property
    def ttfe(self) -> float:
        return (self.t_first_event or self.t_end) - self.t_start

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start


def query(n: int, size: int = 64, per_chunk: int = 1, rate: float = 0, ts: bool = False,
          enc: str = "chunked") -> str:
    return f"/sse?n={n}&size={size}&per_chunk={per_chunk}&rate={rate:g}&ts={int(ts)}&enc={enc}"


async def fetch(server_port: int, proxy_port: int | None, path: str, latencies: bool = False,
                bufsize: int = 1 << 18) -> FetchResult:
    """GET one SSE stream (through the proxy when proxy_port is set) and count what arrives.

    Events are counted by their ``\\n\\n`` terminator; with ``latencies`` each event's ``"t":`` (send time,
    ns) is subtracted from the receive time of the read that completed it.
    """
    r = FetchResult(t_start=time.perf_counter())
    reader, writer = await asyncio.open_connection(HOST, proxy_port or server_port, limit=bufsize)
    target = f"http://{HOST}:{server_port}{path}" if proxy_port else path
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {HOST}:{server_port}\r\nAccept: text/event-stream\r\n\r\n"
                 .encode())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"HTTP {status!r}: {head[:200]!r}")
        chunked = b"transfer-encoding: chunked" in head.lower()
        dec = ChunkedDecoder() if chunked else None
        pending = b""  # incomplete trailing event (only kept when parsing latencies)
        last = b""
        while True:
            data = await reader.read(bufsize)
            if not data:
                break
            body = dec.feed(data) if dec else data
            if body:
                r.body_bytes += len(body)
                if latencies:
                    now = time.time_ns()
                    parts = (pending + body).split(b"\n\n")
                    pending = parts.pop()
                    for ev in parts:
                        i = ev.find(b'"t":') + 4
                        r.latencies_ns.append(now - int(ev[i:ev.index(b",", i)]))
                    k = len(parts)
                else:
                    k = body.count(b"\n\n") + (last == b"\n" and body[:1] == b"\n")
                    last = body[-1:]
                if k and r.t_first_event is None:
                    r.t_first_event = time.perf_counter()
                r.events += k
            if dec and dec.done:
                break
    finally:
        r.t_end = time.perf_counter()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return r


# --- stats / reporting ---------------------------------------------------------------------------------

async def short_flows(server_port: int, proxy_port: int | None, n: int, label: str = "") -> None:
    """``n`` sequential short streams as bench_flows runs them: 5 events of 200 B each, a new connection each."""
    for _ in range(n):
        r = await fetch(server_port, proxy_port, query(5, 200))
        if r.events != 5:
            raise SystemExit(f"{label}: {r.events} events" if label else f"a short stream got {r.events} events")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, q: float):
    """q-th percentile (0..100), nearest-rank on sorted data."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def median_ci(xs, level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of ``xs``: the order statistics whose ranks the
    binomial(n, 1/2) distribution puts around the middle (no assumption about the noise's shape, which on a
    shared machine is skewed: stalls only ever add time). NaNs when ``xs`` is too short for ``level``."""
    s, n = sorted(xs), len(xs)
    tail, k = (1 - level) / 2, 0
    cumulative = math.comb(n, 0) / 2 ** n if n else 1.0
    while n and cumulative + math.comb(n, k + 1) / 2 ** n <= tail:  # the largest k with P(X <= k) <= tail
        k += 1
        cumulative += math.comb(n, k) / 2 ** n
    if not n or cumulative > tail:
        return float("nan"), float("nan")
    return s[k], s[n - 1 - k]


def interval_text(xs) -> str | None:
    """``median_ci(xs)`` as ``lo-hi``; None when ``xs`` is too short for an interval."""
    lo, hi = median_ci(xs)
    return None if lo != lo else f"{lo:.3f}-{hi:.3f}"


def ratio(a, b):
    return a / b if b else float("nan")


def fmt(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "n/a"
        a = abs(v)
        return f"{v:.3g}" if a < 1000 else f"{v:,.0f}"
    return str(v)


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in cells[1:]])


#: Fewest repetitions whose median has a 95 % interval (``median_ci``): with 6 it runs from the least to the most.
MIN_PAIRS = 6


def target(name: str, value: float, limit: float, higher_is_better: bool, unit: str = "",
           pairs: list[float] | None = None) -> dict:
    """A target's verdict. ``pairs``: the measurement of each repetition on its own (the addon's ratio or difference
    to plain in that repetition, which ran beside it). With at least ``MIN_PAIRS`` of them the value is their
    median and the verdict comes from its 95 % confidence interval: met when the whole interval is within the
    limit, missed when the whole interval is beyond it, else undecided (the run cannot tell the difference from
    the machine's noise). Without, the verdict is the value's alone."""
    good = (lambda v: v >= limit) if higher_is_better else (lambda v: v <= limit)
    ci = None
    if pairs is not None and len(pairs) >= MIN_PAIRS:
        value, ci = median(pairs), median_ci(pairs)
        verdict = "yes" if good(ci[0]) and good(ci[1]) else "NO" if not good(ci[0]) and not good(ci[1]) else \
            "undecided"
    else:
        verdict = "yes" if value == value and good(value) else "NO"
    return {"target": name, "value": value, "limit": f"{'>=' if higher_is_better else '<='} {limit:g}{unit}",
            "met": verdict == "yes", "verdict": verdict, "ci": ci,
            "repetitions": None if pairs is None else len(pairs)}


def targets_table(targets: list[dict]) -> str:
    def interval(t: dict) -> str:
        if t.get("ci"):
            return f"{fmt(t['ci'][0])} to {fmt(t['ci'][1])} ({t['repetitions']} reps)"
        return "n/a" if t.get("repetitions") is None else f"n/a ({t['repetitions']} reps: too few)"

    return table(["target", "measured", "95% CI", "limit", "met"],
                 [[t["target"], t["value"], interval(t), t["limit"],
                   {"yes": "yes", "NO": "**NO**"}.get(t.get("verdict", "yes" if t["met"] else "NO"), "undecided")]
                  for t in targets])


def base_args(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: takes seconds (smoke test)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    ap.add_argument("--reps", type=int, help="repetitions per configuration (default depends on --quick)")
    return ap


def machine_info() -> dict:
    return {"nproc": os.cpu_count(), "uname": " ".join(platform.uname()), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "addon_present": addon_available()}


def emit(args, name: str, text: str, data: dict, files: int | None = None) -> None:
    """Print the scenario's Markdown and optionally dump JSON (with the Markdown and the command line).

    ``files`` is the number of recordings the addon wrote (None for scenarios without a proxy)."""
    if files is not None and not addon_available():
        text += "\n\n_sse_capture_addon not importable yet: the 'addon' column ran bench/plain_stream.py._"
    elif files == 0:
        text += "\n\n**WARNING: the addon wrote no recordings: its figures measure streaming only.**"
    print(text, flush=True)
    if args.json:
        out = {"scenario": name, "markdown": text, "command": " ".join([Path(sys.executable).name] + sys.argv),
               "machine": machine_info(), **data}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


def interleaved(configs, reps: int):
    """(rep, config) pairs in the order a fair comparison runs them: config order rotates each rep."""
    configs = list(configs)
    for rep in range(reps):
        k = rep % len(configs)
        for cfg in configs[k:] + configs[:k]:
            yield rep, cfg
