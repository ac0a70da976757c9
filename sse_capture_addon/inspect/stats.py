"""``stats``: timing and counts of one recording or of every recording in a directory, in bounded memory
(records are streamed; gap distributions switch from exact values to a log histogram past a limit)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..recording import RecordingError
from .fmt import path_text
from .reader import EVENT_KINDS, RecordingStream, each_readable
from .stalls import Silences, Stall

EXACT_LIMIT = 10_000       # samples kept exactly before switching to the histogram
_GROWTH = 1.01             # histogram buckets are 1% wide, so quantiles are within 1%
_FLOOR = 1e-6              # values below a microsecond share one bucket


class Distribution:
    """Quantiles (nearest rank) of a stream of non-negative numbers in bounded memory."""

    def __init__(self) -> None:
        self.count = 0
        self.max: float | None = None
        self._exact: list[float] | None = []
        self._buckets: Counter[int] = Counter()

    def add(self, x: float) -> None:
        self.count += 1
        self.max = x if self.max is None else max(self.max, x)
        if self._exact is not None:
            self._exact.append(x)
            if len(self._exact) > EXACT_LIMIT:
                self._to_histogram()
        else:
            self._buckets[self._bucket(x)] += 1

    def merge(self, other: "Distribution") -> None:
        if other.count == 0:
            return
        self.max = other.max if self.max is None else max(self.max, other.max)
        if self._exact is not None and other._exact is not None and \
                len(self._exact) + len(other._exact) <= EXACT_LIMIT:
            self._exact.extend(other._exact)
            self.count += other.count
            return
        self._to_histogram()
        if other._exact is not None:
            for x in other._exact:
                self._buckets[self._bucket(x)] += 1
        else:
            self._buckets.update(other._buckets)
        self.count += other.count

    def quantile(self, p: float) -> float | None:
        if self.count == 0:
            return None
        rank = max(1, math.ceil(p * self.count))
        if self._exact is not None:
            return sorted(self._exact)[rank - 1]
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(self._value(bucket), self.max)
        return self.max

    @staticmethod
    def _bucket(x: float) -> int:
        return -1 if x < _FLOOR else int(math.log(x / _FLOOR, _GROWTH))

    @staticmethod
    def _value(bucket: int) -> float:
        return 0.0 if bucket < 0 else _FLOOR * _GROWTH ** (bucket + 0.5)

    def _to_histogram(self) -> None:
        if self._exact is not None:
            for x in self._exact:
                self._buckets[self._bucket(x)] += 1
            self._exact = None


@dataclass
class StreamStats:
    path: str
    url: str
    ending: str
    ttfb: float | None = None
    first_event: float | None = None
    duration: float = 0.0
    events: int = 0
    events_passed: int | None = None  # through the proxy, as the end line counts them: more when lines were lost
    comments: int = 0
    bytes: int | None = None
    types: Counter = field(default_factory=Counter)
    gaps: Distribution | None = field(default_factory=Distribution)
    gap_summary: dict = field(default_factory=dict)   # gap_p50, gap_p99, gap_max
    stall: Stall | None = None

    @property
    def events_per_second(self) -> float | None:
        events = self.events if self.events_passed is None else max(self.events, self.events_passed)
        return events / self.duration if self.duration > 0 else None

    def to_json(self) -> dict:
        return {"path": path_text(self.path), "url": self.url, "ending": self.ending, "ttfb": self.ttfb,
                "time_to_first_event": self.first_event, "duration": self.duration, "events": self.events,
                "events_passed": self.events_passed, "comments": self.comments, "bytes": self.bytes,
                "events_per_second": _round(self.events_per_second), "types": dict(self.types.most_common()),
                **self.gap_summary,
                "longest_stall": self.stall.to_json() if self.stall else None}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def gap_json(gaps: Distribution) -> dict:
    return {"gap_p50": _round(gaps.quantile(0.5)), "gap_p99": _round(gaps.quantile(0.99)),
            "gap_max": _round(gaps.max)}


def _consider(stats: StreamStats, stall: Stall) -> None:
    if not stall.unknown and (stats.stall is None or stall.seconds > stats.stall.seconds):
        stats.stall = stall


def stream_stats(path: str) -> StreamStats:
    stream = RecordingStream(path)
    request = stream.header["request"]
    stats = StreamStats(path=path, url=request.get("pretty_url") or request["url"], ending="",
                        ttfb=stream.header.get("ttfb"))
    silences = Silences(path)
    last_t = 0.0
    for record in stream:
        last_t = record["t"]
        kind = record["kind"]
        if kind == "comment":
            stats.comments += 1
        elif kind == "error":
            silences.error(record)
        if kind not in EVENT_KINDS:
            continue
        stall = silences.event(record["t"], record["event"])
        if not stall.unknown:  # (lines were lost in it: no gap between two events the stream sent one after the other)
            if stats.events == 0:
                stats.first_event = record["t"]
            else:
                stats.gaps.add(stall.seconds)
        _consider(stats, stall)
        stats.events += 1
        stats.types[record["event"]] += 1
    stats.ending = stream.ending
    stats.gap_summary = gap_json(stats.gaps)
    stats.duration = stream.end["t"] if stream.end else last_t
    if stream.end:
        stats.bytes = stream.end["bytes"]
        stats.events_passed = stream.end["events"] + stream.end.get("oversized", 0)
    _consider(stats, silences.until_end(stats.duration))
    return stats


@dataclass
class Totals:
    """Across every recording of a directory."""

    recordings: int = 0
    events: int = 0
    duration: float = 0.0
    endings: Counter = field(default_factory=Counter)
    types: Counter = field(default_factory=Counter)
    gaps: Distribution = field(default_factory=Distribution)
    first_event: Distribution = field(default_factory=Distribution)
    stall: Stall | None = None

    def add(self, s: StreamStats) -> None:
        self.recordings += 1
        self.events += s.events
        self.duration += s.duration
        self.endings[s.ending] += 1
        self.types.update(s.types)
        self.gaps.merge(s.gaps)
        if s.first_event is not None:
            self.first_event.add(s.first_event)
        if s.stall and (self.stall is None or s.stall.seconds > self.stall.seconds):
            self.stall = s.stall

    def to_json(self) -> dict:
        return {"recordings": self.recordings, "events": self.events, "duration": round(self.duration, 6),
                "endings": dict(self.endings), "types": dict(self.types.most_common()),
                "time_to_first_event_p50": _round(self.first_event.quantile(0.5)),
                "time_to_first_event_max": _round(self.first_event.max), **gap_json(self.gaps),
                "longest_stall": self.stall.to_json() if self.stall else None}


def collect(path: str, errors: list[RecordingError], keep_streams: bool = True) -> tuple[list[StreamStats], Totals]:
    """Stats for ``path`` (a file or directory); unreadable recordings go to ``errors``. With
    ``keep_streams`` false only the totals are kept (a huge directory)."""
    streams, totals = [], Totals()
    for s in each_readable(path, stream_stats, errors):
        totals.add(s)
        if keep_streams:
            s.gaps = None  # its samples were only needed for the totals
            streams.append(s)
    return streams, totals
