"""Silences: the times without an event, which ``stats`` (the longest) and ``lint`` (any over a threshold) both
report, so both count the same ones: from the start of the response to the first event, between two events,
and from the last event (or the start, when there was none) to the end of the recording — its end line, or its
last line when it has none.

A silence in which the recording lost lines (an ``error`` line: ``write``, lines not written while the disk was
full; ``parse``, ``decode`` or ``bypassed``, no events recorded from there on) is ``unknown``: the events that
were not recorded may have broken it, so neither command calls it a stall."""

from __future__ import annotations

from dataclasses import dataclass

from .fmt import event_number, path_text


@dataclass
class Stall:
    """A time without an event: before the first, between two, or after the last until the end."""

    seconds: float
    start: float
    after_index: int | None = None     # None: from the start of the stream
    after_type: str | None = None
    before_index: int | None = None    # None: until the end of the recording
    before_type: str | None = None
    path: str | None = None
    unknown: bool = False              # the recording lost lines in it: how long the stream was silent is not known

    def where(self) -> str:
        after = "the start" if self.after_index is None else \
            f"event {event_number(self.after_index)} ({self.after_type})"
        before = "the end" if self.before_index is None else \
            f"event {event_number(self.before_index)} ({self.before_type})"
        return f"at {self.start:.3f}s, between {after} and {before}"

    def to_json(self) -> dict:
        out = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "unknown"}
        return {**out, "path": None if self.path is None else path_text(self.path)}


class Silences:
    """Feed it each event's time and type as a recording streams past, then the end of the recording; each call
    gives the silence that just ended."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.events = 0
        self._last: tuple[int, str, float] | None = None   # index, type, t of the last event
        self._lost = False       # the silence under way lost lines
        self._lost_for_good = False

    def error(self, record: dict) -> None:
        """An ``error`` line of the recording."""
        what = record.get("what")
        if what == "write":
            self._lost = True
        elif what in ("parse", "decode", "bypassed"):
            self._lost = self._lost_for_good = True

    def event(self, t: float, event_type: str) -> Stall:
        index = self.events
        if self._last is None:
            stall = Stall(t, 0.0, before_index=index, before_type=event_type, path=self.path, unknown=self._lost)
        else:
            last_index, last_type, last_t = self._last
            stall = Stall(t - last_t, last_t, last_index, last_type, index, event_type, self.path, self._lost)
        self._lost = self._lost_for_good
        self._last = (index, event_type, t)
        self.events += 1
        return stall

    def until_end(self, end_t: float) -> Stall:
        if self._last is None:
            return Stall(end_t, 0.0, path=self.path, unknown=self._lost)
        last_index, last_type, last_t = self._last
        return Stall(max(end_t - last_t, 0.0), last_t, last_index, last_type, path=self.path, unknown=self._lost)
