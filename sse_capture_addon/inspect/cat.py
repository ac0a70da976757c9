"""``cat``: a recording played back as SSE text on a byte stream at the recorded timing.

The bytes and their timing come from the replay package's plan (``replay/schedule.py``), so ``cat`` and
replay through the proxy send exactly the same thing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import BinaryIO

from ..recording import Recording, read_recording
from ..replay.schedule import Plan, Timing, build_plan


def plan_for(path: str, speed: float = 1.0, max_pause: float | None = None, raw: bool = False) -> Plan:
    rec = read_recording(path)
    timing = Timing(speed=speed, max_pause=max_pause)
    if raw and sent_nothing(rec):
        # replay's byte-exact plan takes "no chunk lines" for "recorded without raw chunks"; here none were sent
        return dataclasses.replace(build_plan(rec, timing), writes=[])
    return build_plan(rec, timing, byte_exact=raw)


def sent_nothing(rec: Recording) -> bool:
    """A stream recorded with raw chunks whose server sent no bytes at all (so there is no chunk line)."""
    return bool(rec.header.get("raw_chunks")) and not rec.records and (rec.end is None or rec.end["bytes"] == 0)


def play(plan: Plan, out: BinaryIO, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> None:
    """Write each piece at its time (offsets from the start, so delays do not add up), then wait for the
    recorded end so a silence before the end is kept too."""
    start = clock()
    for write in plan.writes:
        if (delay := start + write.at - clock()) > 0:
            sleep(delay)
        out.write(write.data)
        out.flush()
    if (delay := start + plan.end_at - clock()) > 0:
        sleep(delay)
