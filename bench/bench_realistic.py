"""Realistic load: many concurrent streams at a fixed event rate, one event per chunk.

For each stream count (default 25, 100 and 200) and each configuration, interleaved, --reps times:
proxy CPU per event (utime+stime of the mitmdump process from /proc, before/after) and the per-event
latency receive - send (the server stamps time.time_ns() into every event). Reports p50/p99 latency and
what each proxy adds over direct. Targets: addon CPU/event <= 1.05x plain; addon p99 <= plain p99 + 1 ms; each
judged on the median of the repetitions' own figures (the addon's against plain's in the same repetition) and
its 95 % interval (common.target).
"steady p99" leaves out each stream's first second, when all the streams start at once and the addon
creates all their files. "write-only" (bench/write_only.py) is the floor of writing each chunk to a file
before forwarding it.
"proxy CPU %" is the mitmdump process's CPU time over the wall time of the batch: near 100 % it is saturated
(one Python thread), events queue up and latency measures the backlog, not the per-event cost.
"""

from __future__ import annotations

import asyncio
import time

from common import WITH_FLOOR, Stack, base_args, creation_note, emit, fetch, interleaved, interval_text, median, \
    pct, query, ratio, table, target, targets_table

RATE = 50  # events a second on each stream: the realistic load (ab.py and write_cost.py use it too)


async def run_batch(server_port: int, proxy_port: int | None, streams: int, rate: float, seconds: float,
                    size: int):
    """``streams`` concurrent streams, start times spread over one event interval."""
    path = query(int(rate * seconds), size, 1, rate, ts=True)

    async def one(i: int):
        await asyncio.sleep(i / streams / rate)
        return await fetch(server_port, proxy_port, path, latencies=True)

    return await asyncio.gather(*(one(i) for i in range(streams)))


def _cpu_over_plain(runs: dict[str, list[dict]], cfg: str) -> list[float]:
    """Each repetition's CPU per event of ``cfg`` over plain's in the same repetition."""
    return [r["proxy_cpu_us_per_event"] / p["proxy_cpu_us_per_event"]
            for r, p in zip(runs[cfg], runs["plain"]) if p["proxy_cpu_us_per_event"]]


def paired_text(pairs: list[float]) -> str:
    """``pairs``' median and its 95 % interval, when there are enough of them for one."""
    interval = interval_text(pairs)
    return f" (median of each repetition's own ratio {median(pairs):.3f}, 95 % interval {interval})" if interval \
        else ""


def main() -> None:
    ap = base_args(__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", help="concurrent stream counts (default 25 100 200)")
    ap.add_argument("--rate", type=float, default=RATE, help="events/s per stream")
    ap.add_argument("--seconds", type=float, help="stream duration (default 10; --quick 2)")
    ap.add_argument("--size", type=int, default=200, help="bytes per event")
    args = ap.parse_args()
    counts = args.streams or ([20] if args.quick else [25, 100, 200])
    seconds = args.seconds or (2 if args.quick else 10)
    reps = args.reps or (1 if args.quick else 6)  # 6: the fewest whose median has a 95 % interval

    results, text, tg = {}, [], []
    configs = WITH_FLOOR
    with Stack(configs) as st:
        asyncio.run(run_batch(st.server.port, st.port_for("plain"), 5, 50, 0.2, args.size))  # warm-up
        warm = asyncio.run(run_batch(st.server.port, st.port_for("addon"), 5, 50, 0.2, args.size))
        carried = sum(r.body_bytes for r in warm)  # by the addon's proxy, for the recordings' size
        for streams in counts:
            runs = {c: [] for c in configs}
            for _, cfg in interleaved(configs, reps):
                proc = st.proxies.get(cfg)
                cpu0 = proc.cpu() if proc else 0.0
                scpu0, ccpu0, t0 = st.server.cpu(), time.process_time(), time.perf_counter()
                rs = asyncio.run(run_batch(st.server.port, st.port_for(cfg), streams, args.rate, seconds, args.size))
                events = sum(r.events for r in rs)
                if cfg == "addon":
                    carried += sum(r.body_bytes for r in rs)
                expected = streams * int(args.rate * seconds)
                if events != expected:
                    raise SystemExit(f"{cfg}: {events} events, expected {expected}")
                lat = [x / 1e6 for r in rs for x in r.latencies_ns]
                # from each stream's second second on: without the burst of 25-200 streams starting at once
                steady = [x / 1e6 for r in rs for x in r.latencies_ns[int(args.rate):]]
                runs[cfg].append({
                    "events": events,
                    "proxy_cpu_s": (proc.cpu() - cpu0) if proc else 0.0,
                    "proxy_cpu_us_per_event": ((proc.cpu() - cpu0) / events * 1e6) if proc else 0.0,
                    "proxy_cpu_pct": ((proc.cpu() - cpu0) / (time.perf_counter() - t0) * 100) if proc else 0.0,
                    "server_cpu_s": st.server.cpu() - scpu0, "client_cpu_s": time.process_time() - ccpu0,
                    "lat_p50_ms": pct(lat, 50), "lat_p90_ms": pct(lat, 90), "lat_p99_ms": pct(lat, 99),
                    "lat_max_ms": max(lat), "steady_p99_ms": pct(steady, 99),
                })
            med = {c: {k: median([x[k] for x in runs[c]]) for k in runs[c][0]} for c in configs}
            rows = []
            for c in configs:
                m = med[c]
                rows.append([c, m["proxy_cpu_us_per_event"], m["proxy_cpu_pct"], m["lat_p50_ms"], m["lat_p90_ms"], m["lat_p99_ms"],
                             m["lat_max_ms"], m["steady_p99_ms"], m["lat_p50_ms"] - med["direct"]["lat_p50_ms"],
                             m["lat_p99_ms"] - med["direct"]["lat_p99_ms"], m["server_cpu_s"], m["client_cpu_s"]])
            cpu_ratio = ratio(med["addon"]["proxy_cpu_us_per_event"], med["plain"]["proxy_cpu_us_per_event"])
            pairs, floor_pairs = _cpu_over_plain(runs, "addon"), _cpu_over_plain(runs, "write-only")
            p99_pairs = [a["lat_p99_ms"] - p["lat_p99_ms"] for a, p in zip(runs["addon"], runs["plain"])]
            p99_diff = med["addon"]["lat_p99_ms"] - med["plain"]["lat_p99_ms"]
            steady_diff = med["addon"]["steady_p99_ms"] - med["plain"]["steady_p99_ms"]
            floor_ratio = ratio(med["write-only"]["proxy_cpu_us_per_event"], med["plain"]["proxy_cpu_us_per_event"])
            floor_p99 = med["write-only"]["lat_p99_ms"] - med["plain"]["lat_p99_ms"]
            tg += [target(f"{streams} streams: CPU/event addon/plain", cpu_ratio, 1.05, False, "x", pairs),
                   target(f"{streams} streams: p99 latency addon - plain", p99_diff, 1.0, False, " ms", p99_pairs)]
            text.append(
                f"### Realistic: {streams} streams x {args.rate:g} events/s x {seconds:g} s, 1 event/chunk, "
                f"{args.size} B events (median of {reps})\n\n"
                + table(["config", "proxy CPU us/event", "proxy CPU %", "p50 ms", "p90 ms", "p99 ms", "max ms",
                         "steady p99 ms", "p50 added ms", "p99 added ms", "server CPU s", "client CPU s"], rows)
                + f"\n\nCPU/event addon/plain = {cpu_ratio:.3f}x (each repetition's own ratio: "
                  f"{', '.join(f'{x:.3f}' for x in sorted(pairs))}); p99 addon - plain = {p99_diff:+.3f} ms "
                  f"(steady, from each stream's second second on: {steady_diff:+.3f} ms). "
                  f"The floor of writing each chunk before forwarding it (write-only): CPU/event "
                  f"{floor_ratio:.3f}x plain{paired_text(floor_pairs)}, p99 {floor_p99:+.3f} ms. The targets "
                  "judge the median of each repetition's own figure and its 95 % interval.")
            results[streams] = {"runs": runs, "median": med, "cpu_ratio": cpu_ratio, "p99_diff_ms": p99_diff,
                                "steady_p99_diff_ms": steady_diff, "write_only_cpu_ratio": floor_ratio, "write_only_p99_diff_ms": floor_p99}
        files = st.captured_files()
        size_ratio = st.captured_bytes() / carried
        creation = st.creation_us
    text.append(f"capture files written: {files}, their size {size_ratio:.2f}x the bytes streamed; every stream "
                f"starts by creating one (write-only's too), all within one event interval: {creation_note(creation)}\n\n"
                + targets_table(tg))
    emit(args, "realistic", "\n\n".join(text), {"results": results, "recording_size_over_stream": size_ratio,
                                                  "file_creation_us": creation, "targets": tg}, files=files)


if __name__ == "__main__":
    main()
