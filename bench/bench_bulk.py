"""Bulk throughput: one stream of N small events sent as fast as possible, per configuration.

Reports events/s and MB/s (body bytes), proxy CPU per event, and the ratios addon/plain (target >= 0.5)
and plain/direct. "addon-no-writes" (bench/addon_without_writes.py) is the addon with its writes skipped: how
far parsing and encoding alone would let it go, and so what the writes cost. Configurations are interleaved; each figure is the median of --reps runs. The CPU ratio
(plain CPU / addon CPU for the same stream) is the steadier figure on a busy machine.
"""

from __future__ import annotations

import asyncio

from common import WITH_FLOOR, Stack, base_args, emit, fetch, interleaved, median, query, ratio, table, target, \
    targets_table


def main() -> None:
    ap = base_args(__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, help="events in the stream (default 500000; --quick 20000)")
    ap.add_argument("--size", type=int, default=64, help="bytes per event")
    ap.add_argument("--per-chunk", type=int, default=100, help="events per server write")
    args = ap.parse_args()
    n = args.events or (20_000 if args.quick else 500_000)
    reps = args.reps or (1 if args.quick else 15)  # a run is ~0.5 s; one run's ratio moves by ±20 %
    path = query(n, args.size, args.per_chunk)

    configs = WITH_FLOOR + ("addon-no-writes",)
    runs = {c: [] for c in configs}
    with Stack(configs) as st:
        asyncio.run(fetch(st.server.port, st.port_for("plain"), query(1000)))  # warm-up
        warm = asyncio.run(fetch(st.server.port, st.port_for("addon"), query(1000)))
        for _, cfg in interleaved(configs, reps):
            proc = st.proxies.get(cfg)
            cpu0 = proc.cpu() if proc else 0.0
            r = asyncio.run(fetch(st.server.port, st.port_for(cfg), path))
            cpu = proc.cpu() - cpu0 if proc else 0.0
            if r.events != n:
                raise SystemExit(f"{cfg}: got {r.events} events, expected {n}")
            runs[cfg].append({"seconds": r.duration, "events_per_s": n / r.duration,
                              "mb_per_s": r.body_bytes / r.duration / 1e6, "proxy_cpu_s": cpu,
                              "bytes": r.body_bytes})
        files = st.captured_files()
        # the recordings' size against what the addon carried (its warm-up stream included)
        size_ratio = st.captured_bytes() / (warm.body_bytes + sum(x["bytes"] for x in runs["addon"]))

    med = {c: {k: median([x[k] for x in runs[c]]) for k in runs[c][0]} for c in configs}
    rows = [[c, med[c]["events_per_s"], med[c]["mb_per_s"], med[c]["seconds"], med[c]["proxy_cpu_s"],
             med[c]["proxy_cpu_s"] / n * 1e6] for c in configs]
    cpu_p_a = ratio(med["plain"]["proxy_cpu_s"], med["addon"]["proxy_cpu_s"])
    a_p = ratio(med["addon"]["events_per_s"], med["plain"]["events_per_s"])
    p_d = ratio(med["plain"]["events_per_s"], med["direct"]["events_per_s"])
    w_p = ratio(med["write-only"]["events_per_s"], med["plain"]["events_per_s"])
    nw_p = ratio(med["addon-no-writes"]["events_per_s"], med["plain"]["events_per_s"])
    writes_us = (med["addon"]["proxy_cpu_s"] - med["addon-no-writes"]["proxy_cpu_s"]) / n * 1e6
    pairs = [p["seconds"] / a["seconds"] for a, p in zip(runs["addon"], runs["plain"])]  # each run against plain's
    tg = [target("bulk throughput addon/plain", a_p, 0.5, True, "x", pairs)]
    text = (f"### Bulk: 1 stream, {n:,} events x {args.size} B, {args.per_chunk} events/chunk "
            f"(median of {reps})\n\n"
            + table(["config", "events/s", "MB/s", "seconds", "proxy CPU s", "proxy CPU us/event"], rows)
            + f"\n\nthroughput addon/plain = {a_p:.3f}x (CPU-time equivalent: plain CPU / addon CPU = "
              f"{cpu_p_a:.3f}x), write-only/plain = {w_p:.3f}x (the floor of writing each chunk before "
              f"forwarding it), plain/direct = {p_d:.3f}x, capture files written: {files}, their size "
              f"{size_ratio:.2f}x the bytes streamed. Without its writes the addon would reach {nw_p:.3f}x: its "
              f"writes cost {writes_us:.2f} us of CPU per event, parsing and encoding the rest.\n\n"
            + targets_table(tg))
    emit(args, "bulk", text, {"runs": runs, "median": med, "addon_over_plain": a_p, "plain_over_direct": p_d, "write_only_over_plain": w_p,
                              "no_writes_over_plain": nw_p, "writes_us_per_event": writes_us,
                              "cpu_plain_over_addon": cpu_p_a, "recording_size_over_stream": size_ratio, "targets": tg}, files=files)


if __name__ == "__main__":
    main()
