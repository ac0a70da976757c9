"""Memory on one long stream: proxy peak RSS (VmHWM) after a short stream vs after one big stream.

Fresh mitmdump processes; each gets a 1 MB warm-up stream (baseline VmHWM), then one --mb MB stream
(default 200) of 1 KB events, 64 per chunk. Growth = VmHWM after - VmHWM before. Target: addon growth < 10 MB.
"""

from __future__ import annotations

import asyncio

from common import Stack, base_args, emit, fetch, query, table, target, targets_table

SIZE, PER_CHUNK = 1000, 64


def main() -> None:
    ap = base_args(__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, help="stream size in MB (default 200; --quick 20)")
    args = ap.parse_args()
    mb = args.mb or (20 if args.quick else 200)
    proxies = ("plain", "addon")
    rows, data = [], {}
    with Stack(configs=proxies) as st:
        for cfg in proxies:
            proc = st.proxies[cfg]
            start = proc.vmhwm_mb()
            asyncio.run(fetch(st.server.port, proc.port, query(1000, SIZE, PER_CHUNK)))
            short = proc.vmhwm_mb()
            n = mb * 1_000_000 // SIZE
            r = asyncio.run(fetch(st.server.port, proc.port, query(n, SIZE, PER_CHUNK)))
            if r.events != n:
                raise SystemExit(f"{cfg}: {r.events} events, expected {n}")
            long = proc.vmhwm_mb()
            data[cfg] = {"hwm_start_mb": start, "hwm_short_mb": short, "hwm_long_mb": long,
                         "growth_mb": long - short, "rss_after_mb": proc.vmrss_mb(),
                         "seconds": r.duration, "mb_per_s": r.body_bytes / r.duration / 1e6}
            rows.append([cfg, start, short, long, long - short, proc.vmrss_mb(), r.body_bytes / r.duration / 1e6])
        files, cap_mb = st.captured_files(), st.captured_bytes() / 1e6
    tg = [target(f"{mb} MB stream: addon VmHWM growth", data["addon"]["growth_mb"], 10, False, " MB")]
    text = (f"### Memory: one {mb} MB stream ({SIZE} B events, {PER_CHUNK}/chunk)\n\n"
            + table(["config", "VmHWM at start MB", "after 1 MB stream", f"after {mb} MB stream", "growth MB",
                     "VmRSS after MB", "MB/s"], rows)
            + f"\n\ncapture files written: {files} ({cap_mb:.0f} MB on disk)\n\n" + targets_table(tg))
    emit(args, "memory", text, {"results": data, "targets": tg}, files=files)


if __name__ == "__main__":
    main()
