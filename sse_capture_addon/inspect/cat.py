"""``cat``: a recording played back as SSE text on a byte stream at the recorded timing.

The bytes and their timing come from the replay package's plan (``replay/schedule.py``), so ``cat`` and
replay through the proxy send exactly the same thing. ``cat`` streams the file through it: the end line (read
first, from the file's end) says how lines end and what the unterminated tail is, and the rest is read line by
line, so memory stays bounded however long the recording.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ..recording import Recording, died_tail_at, iter_lines, raw_chunks, writer_alive
from ..replay.schedule import (Piece, Timing, check_raw_chunks, iter_event_pieces, offsets, recorded_ending,
                               recorded_tail)
from .listing import end_line_of


class Stream:
    """A recording's pieces of bytes at their recorded times, read from the file as they are taken."""

    def __init__(self, path: str, raw: bool = False):
        self.path = path
        self.warnings: list[str] = []
        self.end = end_line_of(path)
        self.last_t = 0.0
        self._seen: list[dict] = []  # the first record, for check_raw_chunks
        self._lines = iter_lines(path)
        _, self.header = next(self._lines)
        self.raw = raw
        if self.end is not None and self.end["reason"] == "recording_failed":
            recorded_ending(Recording(path, self.header, [], self.end), self.warnings)
        if raw and not self.header.get("raw_chunks"):
            check_raw_chunks(Recording(path, self.header, [], self.end))  # (says why there are none)

    @property
    def end_t(self) -> float:
        """When the stream ended (the end line's time, else its last line's): known once the pieces are through."""
        return self.end["t"] if self.end is not None else self.last_t

    def _records(self) -> Iterator[dict]:
        for _, record in self._lines:
            if record["kind"] == "end":
                continue
            if not self._seen:
                self._seen.append(record)
            self.last_t = record["t"]
            yield record

    def pieces(self) -> Iterator[Piece]:
        if self.raw:
            chunks = 0
            for t, data in raw_chunks(self._records()):
                chunks += 1
                yield Piece(t, data)
            if not chunks:
                check_raw_chunks(Recording(self.path, self.header, self._seen, self.end))
            return
        tail, truncated, bom = recorded_tail(
            self.end, lambda: None if writer_alive(self.path) else died_tail_at(self.path))  # (the proxy died)
        yield from iter_event_pieces(self._records(), self.end, tail, truncated, bom, self.warnings,
                                     lambda: self.end_t)


def play(stream: Stream, out: BinaryIO, speed: float = 1.0, max_pause: float | None = None,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Write each piece at its time (offsets from the start, so delays do not add up; pieces due at once are
    flushed together), then wait for the recorded end so a silence before the end is kept too."""
    offset = offsets(Timing(speed=speed, max_pause=max_pause))
    start = clock()
    for piece in stream.pieces():
        if (delay := start + offset(piece.t) - clock()) > 0:
            out.flush()
            sleep(delay)
        out.write(piece.data)
    out.flush()
    if (delay := start + offset(stream.end_t) - clock()) > 0:
        sleep(delay)
