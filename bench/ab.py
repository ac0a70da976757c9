"""A/B: the capture addon of several checkouts (or option sets) in one run, interleaved with plain and write-only.

    .venv/bin/python bench/ab.py bulk old=/tmp/old new=.
    .venv/bin/python bench/ab.py realistic --streams 50 old=/tmp/old new=. noraw=.,sse_capture_raw_chunks=off
    .venv/bin/python bench/ab.py flows --reps 8 old=/tmp/old new=.
    .venv/bin/python bench/ab.py bulk now=. nowrite=bench/addon_without_writes.py
    .venv/bin/python bench/ab.py realistic --streams 25 disk=. tmpfs=.,sse_capture_dir=/dev/shm/ab-captures
    .venv/bin/python bench/ab.py realistic --streams 25 --seconds 3 --churn 3000 old=/tmp/old new=.

Each ``NAME=DIR[,OPTION=VALUE...]`` is one mitmdump running ``DIR/sse_capture_addon/addon.py`` with DIR first on
its PYTHONPATH (so it imports that checkout's package, and that checkout's C accelerator: copy this checkout's
``sse_capture_addon/_speedups*.so`` there when the C source is the same, else build it there with setuptools'
``setup.py build_ext --inplace``), and each OPTION as ``--set``. A checkout of an older commit:
``git worktree add /tmp/old COMMIT``. ``NAME=SCRIPT.py`` runs that mitmdump script instead of addon.py, with this
checkout's package (``bench/addon_without_writes.py``: the addon without its writes).

On a shared machine, differences between separate runs are mostly the machine; within one run, configurations
take turns (the order rotates each repetition), so drift hits all of them alike. The report gives medians over
the repetitions: proxy CPU per event (bulk, realistic) or per flow (flows) and its ratio to plain, and the
throughput against plain (bulk, flows) or the p99 latency (realistic; also paired from each stream's second second
on, since the streams start together and their starts hold most of the slowest events, and the median latency of
the events in each stream's first 0.1 s, which is what the proxy's per-stream work at a burst of starts delays).
``--churn N`` creates and deletes N files beside the recordings' directories before each repetition, as a retention
job or a test run would: on some file systems (this machine's journal-less ext4) the next files then take much
longer to create.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_realistic import RATE, run_batch
from common import (Proc, fetch, interleaved, interval_text, median, pct, query, short_flows, start_proxy,
                    start_server, table)

START = RATE // 10  # realistic: a stream's events in its first 0.1 s


def churn(directory: Path, files: int) -> None:
    """Create ``files`` files in ``directory`` and delete them again."""
    directory.mkdir(exist_ok=True)
    for i in range(files):
        os.close(os.open(directory / str(i), os.O_WRONLY | os.O_CREAT, 0o600))
    for i in range(files):
        os.unlink(directory / str(i))


def parse_config(spec: str) -> tuple[str, Path, list[str]]:
    name, sep, rest = spec.partition("=")
    if not sep or not name or name in ("plain", "write-only"):
        raise SystemExit(f"bad configuration {spec!r}: expected NAME=DIR[,OPTION=VALUE...], NAME not plain/write-only")
    directory, *options = rest.split(",")
    if directory.endswith(".py"):  # a script run instead of addon.py, with this checkout's package
        script = Path(directory).resolve()
        if not script.exists():
            raise SystemExit(f"{spec}: no {script}")
        root = Path(__file__).resolve().parent.parent
    else:
        root = Path(directory).resolve()
        script = root / "sse_capture_addon" / "addon.py"
        if not script.exists():
            raise SystemExit(f"{spec}: no sse_capture_addon/addon.py in {root}")
    if any("=" not in o for o in options):
        raise SystemExit(f"{spec}: options must be OPTION=VALUE")
    if not list((root / "sse_capture_addon").glob("_speedups*.so")):
        print(f"warning: {name}: no C accelerator in {root / 'sse_capture_addon'}: it runs the pure-Python code",
              file=sys.stderr)
    return name, script, options


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=["bulk", "realistic", "flows"])
    ap.add_argument("configs", nargs="+", metavar="NAME=DIR[,OPTION=VALUE...]")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per configuration (default 5)")
    ap.add_argument("--events", type=int, default=500_000, help="bulk: events in the stream")
    ap.add_argument("--streams", type=int, default=50, help=f"realistic: concurrent streams ({RATE} events/s each)")
    ap.add_argument("--seconds", type=float, default=5, help="realistic: seconds per stream")
    ap.add_argument("--flows", type=int, default=150, help="flows: sequential short streams per repetition")
    ap.add_argument("--churn", type=int, default=0, metavar="N",
                    help="create and delete N files beside the recordings before each repetition (default 0)")
    args = ap.parse_args()
    addons = [parse_config(c) for c in args.configs]
    if len({name for name, _, _ in addons}) != len(addons):
        raise SystemExit("configuration names must differ")

    workdir = Path(tempfile.mkdtemp(prefix="sse-ab-"))
    procs: dict[str, Proc] = {}
    server = start_server()
    try:
        for cfg in ("plain", "write-only"):  # one after the other: the first creates the shared CA
            procs[cfg] = start_proxy(cfg, workdir)
        for name, script, options in addons:
            # the recordings' directory is an option start_proxy sets: given twice, mitmproxy refuses both
            captures = next((Path(o.partition("=")[2]) for o in options if o.startswith("sse_capture_dir=")),
                            workdir / f"captures-{name}")
            procs[name] = start_proxy("addon", workdir, [a for o in options if not o.startswith("sse_capture_dir=")
                                                         for a in ("--set", o)], addon=script, captures=captures)

        if args.scenario == "bulk":
            units, unit = args.events, "event"
            def once(port: int) -> tuple[float, float | None, float | None]:
                r = asyncio.run(fetch(server.port, port, query(args.events, 64, 100)))
                if r.events != args.events:
                    raise SystemExit(f"got {r.events} events, expected {args.events}")
                return r.duration, None, None
        elif args.scenario == "realistic":
            units, unit = int(args.streams * RATE * args.seconds), "event"
            def once(port: int) -> tuple[float, float | None, float | None]:
                rs = asyncio.run(run_batch(server.port, port, args.streams, RATE, args.seconds, 200))
                if sum(r.events for r in rs) != units:
                    raise SystemExit(f"got {sum(r.events for r in rs)} events, expected {units}")
                # the p99, and the p99 from each stream's second second on: the streams start together, and
                # their first second holds most of the slowest events; and the median of their first 0.1 s
                return (pct([x / 1e6 for r in rs for x in r.latencies_ns], 99),
                        pct([x / 1e6 for r in rs for x in r.latencies_ns[RATE:]], 99),
                        median([x / 1e6 for r in rs for x in r.latencies_ns[:START]]))
        else:
            units, unit = args.flows, "flow"
            def once(port: int) -> tuple[float, float | None, float | None]:
                t0 = time.perf_counter()
                asyncio.run(short_flows(server.port, port, args.flows))
                return time.perf_counter() - t0, None, None

        for proc in procs.values():  # warm-up
            asyncio.run(short_flows(server.port, proc.port, 20))
        cpu: dict[str, list[float]] = {c: [] for c in procs}
        measure: dict[str, list[float]] = {c: [] for c in procs}
        steady: dict[str, list[float]] = {c: [] for c in procs}  # realistic: p99 from each stream's second second
        starts: dict[str, list[float]] = {c: [] for c in procs}  # realistic: p50 of each stream's first 0.1 s
        for _, cfg in interleaved(procs, args.reps):
            proc = procs[cfg]
            if args.churn:
                churn(workdir / "churn", args.churn)
            before = proc.cpu()
            value, steady_value, start_value = once(proc.port)
            cpu[cfg].append((proc.cpu() - before) / units * 1e6)
            measure[cfg].append(value)
            if steady_value is not None:
                steady[cfg].append(steady_value)
            if start_value is not None:
                starts[cfg].append(start_value)
    finally:
        for proc in [*procs.values(), server]:
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    plain_cpu, plain_m = median(cpu["plain"]), median(measure["plain"])
    rows = []
    for cfg in procs:
        c, m = median(cpu[cfg]), median(measure[cfg])
        last = m if args.scenario == "realistic" else plain_m / m  # p99 ms, or throughput against plain
        ratios = [v / p for v, p in zip(cpu[cfg], cpu["plain"]) if p]  # each repetition's CPU over plain's
        if args.scenario == "realistic":  # each repetition's p99 less plain's
            own = [v - p for v, p in zip(measure[cfg], measure["plain"])]
        else:  # each repetition's throughput over plain's (the measure is the seconds the work took)
            own = [p / v for v, p in zip(measure[cfg], measure["plain"]) if v]
        rows.append([cfg, c, c / plain_cpu, _quartiles(ratios), interval_text(ratios) or "n/a", last,
                     _median_and_interval(own)])
        if args.scenario == "realistic":
            rows[-1].append(_median_and_interval([v - p for v, p in zip(steady[cfg], steady["plain"])]))
            rows[-1].append(_median_and_interval([v - p for v, p in zip(starts[cfg], starts["plain"])]))
    last_header = "p99 latency ms" if args.scenario == "realistic" else "throughput / plain"
    own_header = "paired p99 - plain ms [95% CI]" if args.scenario == "realistic" else \
        "paired throughput / plain [95% CI]"
    churned = f", {args.churn} files created and deleted before each" if args.churn else ""
    print(f"### A/B, {args.scenario}: median of {args.reps}, configurations interleaved{churned}\n")
    print(table(["config", f"proxy CPU us/{unit}", "CPU / plain", "paired: median [quartiles]", "95% CI of that median",
                 last_header, own_header] + (["the same from each stream's second second on",
                                              "p50 of each stream's first 0.1 s - plain ms [95% CI]"]
                                             if args.scenario == "realistic" else []), rows))
    print("\n'paired': each repetition's CPU over plain's in the same repetition (they ran minutes apart at most), "
          "then the median and quartiles of those ratios: a difference between two configurations smaller than "
          "the spread of their quartiles is not one this run can tell from the machine's noise. The confidence "
          "interval of the paired median (distribution-free, from the ranks) says where it would land on a run of "
          "many more repetitions: a target is met, or missed, when the whole interval is on one side of it.")


def _median_and_interval(values: list[float]) -> str:
    values = [v for v in values if v == v]  # NaN: nothing to measure (no stream lasted past its first second)
    interval = interval_text(values)
    return "n/a" if not values else f"{median(values):.3f}" + (f" [{interval}]" if interval else "")


def _quartiles(values: list[float]) -> str:
    return f"{median(values):.3f} [{pct(values, 25):.3f}-{pct(values, 75):.3f}]" if values else "n/a"


if __name__ == "__main__":
    main()
