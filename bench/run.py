"""Run every benchmark scenario (each as its own process) and write bench/RESULTS.md.

    .venv/bin/python bench/run.py            # full suite (~10-15 min)
    .venv/bin/python bench/run.py --quick    # smoke test (~1 min), writes bench/RESULTS-quick.md
    .venv/bin/python bench/run.py --only bulk ttfe   # re-run some; RESULTS.md keeps the others' last results

Each scenario's results are kept as JSON in bench/results/ (bench/results-quick/ with --quick), and
RESULTS.md is assembled from all of them, each section with its own date and command.

The scenarios' files (recordings, write-only's files) stay in one temporary directory until the end of the run,
emptied when their scenario ends: deleting thousands of files makes creating the next ones slow for minutes on
ext4 without a journal (its inode allocator checks recently deleted inodes one by one; 500-750 us a file instead
of 20-90 us on this machine), which would charge one scenario's clean-up to the next one's per-stream figures,
and keeping their contents would have the kernel write hundreds of MB back to disk during the next scenarios.
Each scenario reports what creating a file cost when it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH, PY, ROOT, addon_available, machine_info, targets_table

SCENARIOS = {  # name -> script, in the order they run
    "parser": "bench_parser.py",
    "bulk": "bench_bulk.py",
    "realistic": "bench_realistic.py",
    "ttfe": "bench_ttfe.py",
    "memory": "bench_memory.py",
    "flows": "bench_flows.py",
    "sizes": "bench_sizes.py",
}


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()


def run_scenarios(names: list[str], store: Path, quick: bool, workroot: str, failed: list[str]) -> None:
    """Each scenario as its own process, its JSON in ``store``, its files under ``workroot``; the names of those
    that fail are added to ``failed``."""
    for name in names:
        js = store / f"{name}.json"
        js.unlink(missing_ok=True)
        argv = [PY, str(BENCH / SCENARIOS[name])] + (["--quick"] if quick else [])
        print(f"\n=== {name}: {' '.join(argv)}", flush=True)
        t, load0 = time.time(), os.getloadavg()[0]
        rc = subprocess.run(argv + ["--json", str(js)], cwd=ROOT,
                            env={**os.environ, "SSE_BENCH_WORKROOT": workroot}).returncode
        if rc or not js.exists():
            failed.append(name)
            js.write_text(json.dumps({"scenario": name, "markdown": f"### {name}\n\n**FAILED** (exit {rc})",
                                      "targets": [], "machine": machine_info()}))
        res = json.loads(js.read_text())
        res.update(seconds=time.time() - t, load=(load0, os.getloadavg()[0]),
                   command=" ".join(["python", f"bench/{SCENARIOS[name]}"] + (["--quick"] if quick else [])))
        js.write_text(json.dumps(res, indent=1, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=list(SCENARIOS))
    ap.add_argument("--out", help="Markdown output (default bench/RESULTS.md, or RESULTS-quick.md with --quick)")
    args = ap.parse_args()
    out = Path(args.out or BENCH / ("RESULTS-quick.md" if args.quick else "RESULTS.md"))
    names = args.only or list(SCENARIOS)

    info = machine_info()
    load_before = os.getloadavg()
    t0 = time.time()
    store = BENCH / ("results-quick" if args.quick else "results")
    store.mkdir(exist_ok=True)
    failed = []
    workroot = tempfile.mkdtemp(prefix="sse-bench-run-")
    try:
        run_scenarios(names, store, args.quick, workroot, failed)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    results = [json.loads((store / f"{n}.json").read_text()) for n in SCENARIOS if (store / f"{n}.json").exists()]

    all_targets = [t for r in results for t in r.get("targets", [])]
    mitm_version = subprocess.run([PY, "-c", "import mitmproxy.version as v; print(v.VERSION)"],
                                  capture_output=True, text=True).stdout.strip()
    rev = sh("git rev-parse --short HEAD 2>/dev/null") or "none"
    dirty = " (uncommitted changes)" if sh("git status --porcelain -- sse_capture_addon") else ""
    parts = [
        "# sse-capture benchmark results",
        "",
        f"Produced by `{' '.join(['.venv/bin/python', 'bench/run.py'] + sys.argv[1:])}` "
        f"(or `bench/run_all.sh`) in {time.time() - t0:.0f} s"
        + ("" if args.only is None else "; other sections are from earlier runs (see their dates)") + ".",
        "",
        f"- date: {info['date']}",
        f"- machine: `nproc` = {sh('nproc')}, `uname -a` = `{sh('uname -a')}`",
        f"- python {info['python']}, mitmproxy {mitm_version}",
        f"- project revision: {rev}{dirty}; addon importable: {addon_available()}",
        f"- load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
        "(shared machine: compare ratios within one run, not absolute numbers across runs)",
        "- configurations: **direct** = client -> bench/sse_server.py; **plain** = via `mitmdump -s "
        "bench/plain_stream.py` (stream=True only); **write-only** (bulk, realistic, flows) = via `mitmdump -s "
        "bench/write_only.py` (plain + one os.write per chunk before forwarding it: the floor of the crash-safety "
        "rule); **addon** = via `mitmdump -s sse_capture_addon/addon.py "
        "--set sse_capture_dir=<tmp>` (default options). mitmdump runs with `--listen-host 127.0.0.1 "
        "--listen-port <free> -q --set confdir=<tmp>`; the client is raw asyncio sockets in the bench process.",
        "",
        "## Targets",
        "",
        targets_table(all_targets) if all_targets else "(none)",
        "",
    ]
    if failed:
        parts += [f"**Failed scenarios: {', '.join(failed)}**", ""]
    for r in results:
        parts += [f"## {r['scenario']}", "", f"Command: `{r['command']}`, run {r['machine']['date']}"
                  + (f" ({r['seconds']:.0f} s, load average {r['load'][0]:.1f} -> {r['load'][1]:.1f})"
                     if "seconds" in r else ""), "",
                  r["markdown"].replace("### ", "#### ", 1), ""]
    out.write_text("\n".join(parts))
    print(f"\nwrote {out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
