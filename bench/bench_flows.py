"""Many short streams: N sequential short SSE responses (5 events each, new connection each), flows/s.

Each configuration runs --flows flows in total, in blocks of --block flows, blocks of the configurations
interleaved (so drift in machine load hits all alike); figures are medians over blocks.
Target: addon >= 0.95x plain.

Each flow creates a file (addon and write-only), in a temp dir: TMPDIR=/dev/shm keeps the file system out of the
comparison (on the 2-core VM, creating a file on ext4 took from 0.02 to 0.9 ms of kernel CPU, varying over
minutes). For the addon's own cost per stream, steadier than any whole-proxy figure on a shared machine:
``profile_addon.py --hooks``.
"""

from __future__ import annotations

import asyncio
import time

from common import WITH_FLOOR, Stack, base_args, emit, fetch, interleaved, median, query, ratio, short_flows, table, \
    creation_note, target, targets_table


def main() -> None:
    ap = base_args(__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, help="flows per configuration (default 2000; --quick 100)")
    ap.add_argument("--block", type=int, default=100,
                    help="flows per interleaved block; each block's ratio to plain's is one of the target's pairs")
    args = ap.parse_args()
    total = args.flows or (100 if args.quick else 2000)
    n = min(args.block, total)
    reps = args.reps or max(1, total // n)
    path = query(5, 200)

    async def block(st: Stack, cfg: str) -> float:
        t0 = time.perf_counter()
        await short_flows(st.server.port, st.port_for(cfg), n, cfg)
        return n / (time.perf_counter() - t0)

    configs = WITH_FLOOR
    runs = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    user = {c: [] for c in configs}
    system = {c: [] for c in configs}
    with Stack(configs) as st:
        for c in ("plain", "write-only", "addon"):
            for _ in range(20):  # warm-up
                asyncio.run(fetch(st.server.port, st.port_for(c), path))
        for _, cfg in interleaved(configs, reps):
            proc = st.proxies.get(cfg)
            u0, s0 = proc.cpu_split() if proc else (0.0, 0.0)
            runs[cfg].append(asyncio.run(block(st, cfg)))
            u1, s1 = proc.cpu_split() if proc else (0.0, 0.0)
            cpu[cfg].append((u1 - u0 + s1 - s0) / n * 1e3)
            user[cfg].append((u1 - u0) / n * 1e3)
            system[cfg].append((s1 - s0) / n * 1e3)
        files = st.captured_files()
        creation = st.creation_us
    med = {c: median(runs[c]) for c in configs}
    rows = [[c, med[c], median(cpu[c]), median(user[c]), median(system[c]), ratio(med[c], med["plain"])]
            for c in configs]
    a_p = ratio(med["addon"], med["plain"])
    pairs = [a / p for a, p in zip(runs["addon"], runs["plain"]) if p]  # each block against plain's beside it
    tg = [target("short flows/s addon/plain", a_p, 0.95, True, "x", pairs)]
    text = (f"### {n * reps:,} sequential short streams per config (5 events each, new connection each; "
            f"median of {reps} interleaved blocks of {n})\n\n"
            + table(["config", "flows/s", "proxy CPU ms/flow", "of it user", "of it system", "vs plain"], rows)
            + f"\n\naddon/plain = {a_p:.3f}x (the target takes the median of each block's own ratio); "
              f"write-only/plain = {ratio(med['write-only'], med['plain']):.3f}x "
              f"(the floor: a file per flow, one write per chunk); capture files written: {files}. 'user' is CPU in "
              f"the proxy's own code (mitmproxy and the addon), 'system' in the kernel on its behalf (/proc "
              f"utime/stime: 10 ms ticks, summed over each block). Both write-only and the addon create a file per "
              f"flow: {creation_note(creation)}\n\n"
              + targets_table(tg))
    emit(args, "flows", text, {"runs": runs, "cpu_ms_per_flow": cpu, "user_ms_per_flow": user,
                               "system_ms_per_flow": system, "addon_over_plain": a_p, "file_creation_us": creation,
                               "targets": tg}, files=files)


if __name__ == "__main__":
    main()
