"""Deterministic, event-indexed faults applied to a replay. Knows nothing of mitmproxy or sockets.

Events are numbered from 1 in recorded order, counting every event a client dispatches (``event`` and
``oversized`` lines), before any fault is applied: "event 3" is the recording's third event even when
an earlier one is dropped or swapped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import NamedTuple

EVENT_KINDS = ("event", "oversized")


class FaultError(ValueError):
    """A bad fault; ``field`` is the Faults field it is about (the first, when they conflict)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Faults:
    cut_after: int | None = None        # reset the connection right after event N (0: right after the head)
    stall_after: int | None = None      # after event N send nothing more, keep the stream open
    drop_types: frozenset[str] = frozenset()  # leave out events of these types, and "#N": event N
    stop_mid_event: int | None = None   # send the first half of event N's bytes, then end the body
    rechunk: int | None = None          # split every write into N-byte chunks
    swap: tuple[int, int] | None = None  # events A and B trade places (each keeps the other's time slot)
    drop_events: frozenset[int] = field(init=False, default=frozenset())  # the N of drop_types' "#N"

    def __post_init__(self):
        for name in ("cut_after", "stall_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise FaultError(name, f"{name} must be an event number >= 0, got {value}")
        if self.stop_mid_event is not None and self.stop_mid_event < 1:
            raise FaultError("stop_mid_event",
                             f"stop_mid_event must be an event number >= 1, got {self.stop_mid_event}")
        if self.rechunk is not None and self.rechunk < 1:
            raise FaultError("rechunk", f"rechunk must be a chunk size >= 1 byte, got {self.rechunk}")
        if self.swap is not None:
            a, b = self.swap
            if a < 1 or b < 1 or a == b:
                raise FaultError("swap", f"swap needs two different event numbers >= 1, got {a},{b}")
        stops = [n for n in ("cut_after", "stall_after", "stop_mid_event") if getattr(self, n) is not None]
        if len(stops) > 1:
            raise FaultError(stops[0], f"{' and '.join(stops)} each end the stream; choose one")
        numbers = {t for t in self.drop_types if t.startswith("#")}
        for t in numbers:
            if not _EVENT_NUMBER.fullmatch(t):
                raise FaultError("drop", f"drop takes an event type, or # and an event number >= 1 (as show "
                                         f"numbers them), got {t!r}")
        object.__setattr__(self, "drop_types", frozenset(self.drop_types) - numbers)
        object.__setattr__(self, "drop_events", frozenset(int(t[1:]) for t in numbers))

    @property
    def stop(self) -> tuple[str, int] | None:
        for name in ("cut_after", "stall_after", "stop_mid_event"):
            if getattr(self, name) is not None:
                return name, getattr(self, name)
        return None

    @property
    def on_events(self) -> bool:
        return bool(self.stop or self.drop_types or self.drop_events or self.swap)


_EVENT_NUMBER = re.compile(r"#[1-9][0-9]*")


def parse_swap(text: str) -> tuple[int, int]:
    """``"3,5"`` -> (3, 5)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"swap must be two event numbers like 3,5, got {text!r}") from None
    return a, b


def check_byte_exact(faults: Faults) -> None:
    if faults.on_events:
        raise ValueError("byte-exact replay sends the recorded chunks as they were; only re-chunking applies "
                         "to it (cut, stall, drop, stop-mid-event and swap act on events)")


class Stop(NamedTuple):
    fault: str       # "cut_after", "stall_after" or "stop_mid_event"
    t: float         # recorded time of the event it happens at
    half_last: bool  # the last record kept is the event to send only half of


def apply_to_records(records: list[dict], faults: Faults, warnings: list[str]) -> tuple[list[dict], Stop | None]:
    """Swap, cut/stall/stop and drop, on recorded lines. Returns the lines to send and, when a fault ends
    the stream, how and when."""
    numbered: list[tuple[int, dict]] = []
    total = 0
    for r in records:
        if r["kind"] in EVENT_KINDS:
            total += 1
            numbered.append((total, r))
        else:
            numbered.append((0, r))

    if faults.swap is not None:
        a, b = faults.swap
        if max(a, b) > total:
            warnings.append(f"swap {a},{b} not applied: the recording has {total} events")
        else:
            ia, ib = (next(i for i, (n, _) in enumerate(numbered) if n == k) for k in (a, b))
            (na, ra), (nb, rb) = numbered[ia], numbered[ib]
            numbered[ia], numbered[ib] = (nb, {**rb, "t": ra["t"]}), (na, {**ra, "t": rb["t"]})

    stop = None
    if faults.stop is not None:
        fault, n = faults.stop
        if n > total:
            warnings.append(f"{fault}={n} not applied: the recording has {total} events")
        elif n == 0:
            numbered, stop = [], Stop(fault, 0.0, False)
        else:  # the n-th event sent: after a swap, what the client gets in the first n places
            i = [i for i, (k, _) in enumerate(numbered) if k][n - 1]
            numbered = numbered[: i + 1]
            stop = Stop(fault, numbered[i][1]["t"], fault == "stop_mid_event")

    for n in sorted(faults.drop_events):
        if n > total:
            warnings.append(f"drop #{n} not applied: the recording has {total} events")
    if faults.drop_types or faults.drop_events:
        def dropped(n: int, r: dict) -> bool:
            return bool(n) and (r["event"] in faults.drop_types or n in faults.drop_events)

        if stop is not None and stop.half_last and dropped(*numbered[-1]):
            warnings.append(f"stop_mid_event={faults.stop_mid_event} not applied: that event is dropped")
            stop = stop._replace(half_last=False)
        # A dropped event's retry still reaches the client, in a block of its own: it sets how long the client
        # waits before it reconnects, which is not what an event type is about.
        numbered = [(0, {"t": r["t"], "kind": "no_dispatch", "retry": r["retry"]}) if dropped(n, r) else (n, r)
                    for n, r in numbered if not dropped(n, r) or "retry" in r]
    return [r for _, r in numbered], stop


def half(piece):
    """The first half of an event's bytes: never its terminating blank line."""
    return replace(piece, data=piece.data[: len(piece.data) // 2], events=0)


def rechunk(writes: list, size: int, gap: float) -> list:
    """Split each write into ``size``-byte writes at least ``gap`` seconds apart (a write's events count on its
    last piece). A piece is due at its write's time, or ``gap`` after the piece before when that is later: a
    write with more pieces than fit before the next write's time pushes the rest of the stream later."""
    out = []
    at = -math.inf
    for w in writes:
        pieces = [w.data[i:i + size] for i in range(0, len(w.data), size)] or [b""]
        for k, data in enumerate(pieces):
            at = max(w.at, at + gap)
            last = k == len(pieces) - 1
            out.append(replace(w, at=at, data=data, events=w.events if last else 0))
    return out
