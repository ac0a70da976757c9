"""Time to first event: connect, send the request, wait for the first complete event; new connection each
time, configurations interleaved, many repetitions. Target: addon median within 1 ms of plain.
"""

from __future__ import annotations

import asyncio

from common import CONFIGS, Stack, base_args, emit, fetch, interleaved, median, pct, query, table, target, \
    creation_note, targets_table


def main() -> None:
    ap = base_args(__doc__.splitlines()[0])
    args = ap.parse_args()
    reps = args.reps or (20 if args.quick else 300)
    path = query(3, 200)

    async def measure(st: Stack) -> dict[str, list[float]]:
        out = {c: [] for c in CONFIGS}
        for _ in range(5):  # warm-up
            for c in CONFIGS:
                await fetch(st.server.port, st.port_for(c), path)
        for _, cfg in interleaved(CONFIGS, reps):
            r = await fetch(st.server.port, st.port_for(cfg), path)
            if r.events != 3:
                raise SystemExit(f"{cfg}: {r.events} events")
            out[cfg].append(r.ttfe * 1e3)
        return out

    with Stack() as st:
        ms = asyncio.run(measure(st))
        files = st.captured_files()
        creation = st.creation_us
    rows = [[c, median(ms[c]), pct(ms[c], 10), pct(ms[c], 90), pct(ms[c], 99),
             median(ms[c]) - median(ms["direct"])] for c in CONFIGS]
    diff = median(ms["addon"]) - median(ms["plain"])
    pairs = [a - p for a, p in zip(ms["addon"], ms["plain"])]  # each connection against plain's beside it
    tg = [target("time to first event: addon - plain (median)", diff, 1.0, False, " ms", pairs)]
    text = (f"### Time to first event ({reps} connections per config, interleaved)\n\n"
            + table(["config", "median ms", "p10 ms", "p90 ms", "p99 ms", "added vs direct ms"], rows)
            + f"\n\naddon - plain = {diff:+.3f} ms (median); capture files written: {files}; the addon's first event "
              f"waits for its file: {creation_note(creation)}\n\n"
            + targets_table(tg))
    emit(args, "ttfe", text, {"ms": ms, "addon_minus_plain_ms": diff, "file_creation_us": creation, "targets": tg}, files=files)


if __name__ == "__main__":
    main()
