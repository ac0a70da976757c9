"""``diff``: two recordings compared as event sequences (type, id, data, optionally timing, and how each
ended). Data that is JSON is compared as JSON (key order and spacing do not matter) after removing
ignored paths such as ``data.id`` or ``data.**.created``. Both files are streamed side by side."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .events import MISSING, data_json, data_text, format_path, value_text
from .fmt import ending_label, event_number
from .reader import EVENT_KINDS, RecordingStream, unterminated_tail

#: ``--ignore-common``: the usual per-response noise of LLM streaming APIs.
COMMON_IGNORES = ("id", "data.**.id", "data.**.created", "data.**.created_at", "data.**.timestamp",
                  "data.**.system_fingerprint", "data.**.usage")


@dataclass
class DiffOptions:
    ignore: list[tuple] = field(default_factory=list)   # parsed paths, may contain * and **
    timing: float | None = None                          # compare event times within this many seconds
    compare_ending: bool = True
    context: int = 3


@dataclass
class Divergence:
    index: int | None            # event index; None when only the endings differ
    what: str                    # "type", "id", "data", "timing", "missing", "ending"
    detail: str
    a: dict | None = None
    b: dict | None = None


@dataclass
class DiffResult:
    a: str
    b: str
    events_a: int = 0
    events_b: int = 0
    ending_a: str = ""
    ending_b: str = ""
    divergence: Divergence | None = None
    before: list[tuple[int, dict]] = field(default_factory=list)          # equal events before it
    after: list[tuple[dict | None, dict | None]] = field(default_factory=list)  # what follows on each side

    @property
    def same(self) -> bool:
        return self.divergence is None


# --- ignoring paths ----------------------------------------------------------------------------------------

def strip(value: Any, pattern: tuple) -> Any:
    """``value`` without what ``pattern`` (path below ``data``, may hold ``*`` and ``**``) points at."""
    if not pattern:
        return MISSING
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        value = strip(value, rest)     # zero levels
        if value is MISSING:
            return MISSING
        return _each_child(value, lambda child: strip(child, pattern))
    if isinstance(value, dict):
        if head == "*":
            return _each_child(value, lambda child: strip(child, rest))
        if head in value:
            out = dict(value)
            new = strip(value[head], rest)
            if new is MISSING:
                del out[head]
            else:
                out[head] = new
            return out
    if isinstance(value, list) and (head == "*" or isinstance(head, int)):
        if head == "*":
            return _each_child(value, lambda child: strip(child, rest))
        if -len(value) <= head < len(value):
            out = list(value)
            new = strip(value[head], rest)
            out[head] = None if new is MISSING else new   # keep positions stable
            return out
    return value


def _each_child(value: Any, fn) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            new = fn(v)
            if new is not MISSING:
                out[k] = new
        return out
    if isinstance(value, list):
        return [None if (new := fn(v)) is MISSING else new for v in value]
    return value


def first_difference(a: Any, b: Any, path: tuple = ("data",)) -> tuple[tuple, Any, Any] | None:
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                        and not isinstance(a, bool) and not isinstance(b, bool)):
        return path, a, b
    if isinstance(a, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return path + (key,), a.get(key, MISSING), b.get(key, MISSING)
            found = first_difference(a[key], b[key], path + (key,))
            if found:
                return found
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, path + (i,))
            if found:
                return found
        if len(a) != len(b):
            i = min(len(a), len(b))
            return path + (i,), a[i] if i < len(a) else MISSING, b[i] if i < len(b) else MISSING
        return None
    return None if a == b else (path, a, b)


def _shown(value: Any) -> str:
    return "(missing)" if value is MISSING else value_text(value) if not isinstance(value, str) else repr(value)


# --- comparing ------------------------------------------------------------------------------------------------

def _ignored(options: DiffOptions, root: str) -> bool:
    return any(p == (root,) for p in options.ignore)


def ids_differ(a: dict | None, b: dict | None, options: DiffOptions) -> bool:
    """Whether two events' last event IDs differ where the comparison looks at them (the listing shows them then)."""
    return a is not None and b is not None and a.get("id", "") != b.get("id", "") and not _ignored(options, "id")


def compare_events(a: dict, b: dict, options: DiffOptions) -> tuple[str, str] | None:
    """``(what, detail)`` of the first difference between two event records, or None."""
    if a["event"] != b["event"] and not _ignored(options, "event"):
        return "type", f"event type {a['event']!r} ≠ {b['event']!r}"
    if ids_differ(a, b, options):
        return "id", f"id {a.get('id', '')!r} ≠ {b.get('id', '')!r}"
    if a["kind"] != b["kind"]:
        return "data", f"{a['kind']} ≠ {b['kind']}"
    if not _ignored(options, "data"):
        ja, jb = data_json(a), data_json(b)
        if ja is not MISSING and jb is not MISSING:
            for pattern in options.ignore:
                if pattern[0] == "data":
                    ja, jb = strip(ja, pattern[1:]), strip(jb, pattern[1:])
            found = first_difference(ja, jb)
            if found:
                path, va, vb = found
                return "data", f"{format_path(path)}: {_shown(va)} ≠ {_shown(vb)}"
        elif data_text(a) != data_text(b):
            return "data", f"data {_shown(data_text(a)[:200])} ≠ {_shown(data_text(b)[:200])}"
    if options.timing is not None and abs(a["t"] - b["t"]) > options.timing:
        return "timing", f"time {a['t']:.3f}s vs {b['t']:.3f}s differs by {abs(a['t'] - b['t']):.3f}s " \
                         f"(tolerance {options.timing:g}s)"
    return None


def _events(stream: RecordingStream) -> Iterator[dict]:
    return (r for r in stream if r["kind"] in EVENT_KINDS)


def _ending(stream: RecordingStream) -> str:
    """The ending's code, with the unterminated tail described (what --json gives, and is compared)."""
    tail = unterminated_tail(stream)
    return stream.ending + (f" with unterminated tail {tail.describe(60)}" if tail else "")


def ending_text(ending: str) -> str:
    """``_ending``'s text with the ending's label ("client disconnected"), as ls and show say it."""
    code, sep, rest = ending.partition(" ")
    return ending_label(code) + sep + rest


def diff(path_a: str, path_b: str, options: DiffOptions) -> DiffResult:
    sa, sb = RecordingStream(path_a), RecordingStream(path_b)
    result = DiffResult(path_a, path_b)
    before: deque[tuple[int, dict]] = deque(maxlen=options.context)
    ea, eb = _events(sa), _events(sb)
    counts = [0, 0]
    for index, (a, b) in enumerate(itertools.zip_longest(ea, eb)):
        counts[0] += a is not None
        counts[1] += b is not None
        if result.divergence is not None:
            if len(result.after) < options.context:
                result.after.append((a, b))
            continue  # only counting from here on
        if a is None or b is None:
            side = "A" if a is None else "B"
            result.divergence = Divergence(index, "missing", f"{side} has no event {event_number(index)}", a, b)
        elif (found := compare_events(a, b, options)) is not None:
            result.divergence = Divergence(index, *found, a, b)
        else:
            before.append((index, a))
            continue
        result.before = list(before)
    result.events_a, result.events_b = counts
    result.ending_a, result.ending_b = _ending(sa), _ending(sb)
    if result.divergence is None and options.compare_ending and result.ending_a != result.ending_b:
        result.divergence = Divergence(None, "ending", f"A ended {ending_text(result.ending_a)}, "
                                                       f"B ended {ending_text(result.ending_b)}")
    return result
