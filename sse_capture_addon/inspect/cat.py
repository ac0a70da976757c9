"""``cat``: a recording played back as SSE text on a byte stream at the recorded timing.

The bytes and their timing come from the replay package's plan (``replay/schedule.py``), so ``cat`` and
replay through the proxy send exactly the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import BinaryIO

from ..recording import read_recording
from ..replay.schedule import Plan, Timing, build_plan


def plan_for(path: str, speed: float = 1.0, max_pause: float | None = None, raw: bool = False) -> Plan:
    return build_plan(read_recording(path), Timing(speed=speed, max_pause=max_pause), byte_exact=raw)


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
