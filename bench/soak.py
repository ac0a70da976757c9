"""Soak: many concurrent SSE streams through mitmdump + the capture addon for a long time; nothing lost,
memory flat. The CI-sized variant is tests/test_reliability_load.py (200 x 10 s); this one is the issue's
500 x 60 s and longer.

    .venv/bin/python bench/soak.py                              # 500 streams x 60 s, 10 events/s each
    .venv/bin/python bench/soak.py --duration 600 --stream-seconds 30   # 10 min, each slot reconnecting
    .venv/bin/python bench/soak.py --streams 200 --duration 10 --json out.json

Every client must get exactly the bytes its upstream sent; every recording must hold every event (ids
0..n-1) and a ``complete`` end line; the proxy's VmRSS over the last fifth of the run must be within
--rss-limit MiB of the second fifth. Exit status 0 when all holds. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from harness import Mitmdump, make_certs  # noqa: E402
from reliability_helpers import check_load, proc_status, run_load, stream_bytes  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=500, help="concurrent streams (default 500)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--stream-seconds", type=float, default=None,
                    help="length of one stream; each slot reconnects until --duration (default: = duration)")
    ap.add_argument("--rate", type=float, default=10.0, help="events/s per stream, one per chunk (default 10)")
    ap.add_argument("--pad", type=int, default=40, help="padding characters per event (default 40)")
    ap.add_argument("--rss-limit", type=float, default=16.0, help="allowed RSS growth, MiB (default 16)")
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument("--keep", action="store_true", help="keep the recordings directory")
    ap.add_argument("--plain", action="store_true",
                    help="baseline: mitmdump with bench/plain_stream.py (streaming only, no recording); checks "
                         "the bytes and memory only")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sse-soak-"))
    certs = make_certs(work / "certs")
    last_print = [0.0]

    def progress(result, elapsed, sent):
        if elapsed - last_print[0] >= 10:
            last_print[0] = elapsed
            events = sum(r.events_sent for r in sent.values())
            print(f"  t={elapsed:6.1f}s  streams started {len(sent)}  events sent {events}  "
                  f"proxy VmRSS {result.rss_samples[-1][1] / 1024:.1f} MiB", flush=True)

    # the proxy may need many file descriptors: 2 sockets + 1 recording per stream
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.streams * 4 + 256))

    def raise_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    raise_nofile()
    print(f"soak: {args.streams} streams x {args.duration:.0f} s at {args.rate:g} events/s "
          f"(stream length {args.stream_seconds or args.duration:.0f} s), work dir {work}", flush=True)
    summary: dict = {"config": vars(args) | {"json": str(args.json) if args.json else None}}
    ok = False
    try:
        scripts = [ROOT / "bench" / "plain_stream.py"] if args.plain else None
        with Mitmdump(certs, work, preexec_fn=raise_nofile, scripts=scripts) as mitm:
            rss_start = proc_status(mitm.proc.pid)["VmRSS"]
            result = asyncio.run(run_load(mitm.port, mitm.proc.pid, streams=args.streams, duration=args.duration,
                                          rate=args.rate, stream_seconds=args.stream_seconds, pad=args.pad,
                                          progress=progress))
            status = proc_status(mitm.proc.pid)
            log = mitm.log()
        early, late = result.rss_early_late(args.duration)
        summary.update({
            "elapsed_s": round(result.elapsed, 1),
            "proxy_cpu_s": round(result.cpu_seconds, 1),
            "rss_start_mib": round(rss_start / 1024, 1),
            "rss_early_mib": round(early / 1024, 1),
            "rss_late_mib": round(late / 1024, 1),
            "rss_peak_mib": round(status["VmHWM"] / 1024, 1),
            "rss_timeline_mib": [(round(t, 1), round(kb / 1024, 1)) for t, kb in result.rss_samples[::10]],
            "errors_in_log": sum(1 for row in log.splitlines() if "Traceback" in row or "NOT recording" in row),
        })
        try:
            if args.plain:
                # the bytes must still match; there are no recordings to check
                bad = [r for r in result.streams if r.error or r.sha_recv != hashlib.sha256(
                    stream_bytes(r.slot, r.seq, r.events_sent, args.pad)).hexdigest()]
                assert not bad, f"{len(bad)} streams lost bytes"
                summary.update({"streams": len(result.streams),
                                "events_sent": sum(r.events_sent for r in result.streams)})
            else:
                summary.update(check_load(result, mitm.record_dir, pad=args.pad))
            problems = None
        except AssertionError as e:
            problems = str(e)
            summary["problems"] = problems.splitlines()[:50]
        growth = summary["rss_late_mib"] - summary["rss_early_mib"]
        summary["rss_growth_mib"] = round(growth, 1)
        if summary.get("events_sent"):
            summary["achieved_events_per_s"] = round(summary["events_sent"] / result.elapsed)
            summary["proxy_cpu_us_per_event"] = round(result.cpu_seconds / summary["events_sent"] * 1e6, 1)
        ok = problems is None and growth < args.rss_limit and summary["errors_in_log"] == 0
        summary["ok"] = ok
    finally:
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "rss_timeline_mib"}, indent=1))
    print("soak:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
