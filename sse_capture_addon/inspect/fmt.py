"""Formatting shared by the commands: times, durations, shortened data, endings, colours, tables.

Text is styled with ``click.style``; whether the colour reaches the terminal is decided when it is echoed
(plain when piped, or with NO_COLOR set), see ``inspect_cli``.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone

import click
import orjson

from ..recording import IN_PROGRESS, PROXY_DIED
from ..shown import path_text, printable, shown_path  # noqa: F401 - the commands use them as fmt.*

ENDING_LABELS = {
    "complete": "complete",
    "client_disconnected": "client disconnected",
    "server_error": "server error",
    "proxy_shutdown": "proxy shut down",
    "recording_failed": "recording failed",
    PROXY_DIED: "proxy died",
    IN_PROGRESS: "still being written",
}

_TYPE_COLOURS = ("cyan", "green", "magenta", "blue", "yellow", "bright_cyan", "bright_green",
                 "bright_magenta", "bright_blue")


def event_number(index: int) -> str:
    """An event's number as people read it: ``#1`` is the first event, as replay's fault options count them
    (``--cut-after N``, ``--swap A,B``), so a number read in ``show`` can be passed to them. Internal indexes,
    and ``index`` in ``--json`` output, stay 0-based positions."""
    return f"#{index + 1}"


def ending_label(ending: str) -> str:
    return ENDING_LABELS.get(ending, ending)


def ended_badly(ending: str) -> bool:
    return ending not in ("complete", IN_PROGRESS)


def style_ending(ending: str) -> str:
    colour = "green" if ending == "complete" else "yellow" if ending == IN_PROGRESS else "red"
    return click.style(ending_label(ending), fg=colour, bold=ending != "complete")


def style_type(event_type: str) -> str:
    """The same event type gets the same colour everywhere (a stable hash, not Python's salted one)."""
    colour = _TYPE_COLOURS[zlib.crc32(event_type.encode("utf-8", "surrogatepass")) % len(_TYPE_COLOURS)]
    return click.style(printable(event_type), fg=colour)


def dim(text: str) -> str:
    return click.style(text, dim=True)


def bold(text: str) -> str:
    return click.style(text, bold=True)


def bad(text: str) -> str:
    return click.style(text, fg="red", bold=True)


def warn(text: str) -> str:
    return click.style(text, fg="yellow")


def seconds(t: float | None) -> str:
    """A time on the stream's own clock, e.g. ``12.345s``."""
    return "-" if t is None else f"{t:.3f}s"


def duration(s: float | None) -> str:
    """A length of time for people: ``850ms``, ``3.20s``, ``2m05s``, ``1h02m``."""
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.2f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def utc(iso: str) -> str:
    """A recording's ISO start time (UTC) as ``YYYY-MM-DD HH:MM:SS.mmm``."""
    return iso.replace("T", " ").rstrip("Z")[:23]


def started_at(header: dict) -> datetime:
    if isinstance(header.get("started_unix"), (int, float)):
        return datetime.fromtimestamp(header["started_unix"], timezone.utc)
    return datetime.fromisoformat(header["started"].replace("Z", "+00:00"))


def json_text(value, indent: bool = False) -> str:
    """``value`` as JSON, compact or indented by two spaces."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else None).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: a retry field is any run of digits
        return json.dumps(value, ensure_ascii=False, indent=2 if indent else None,
                          separators=None if indent else (",", ":"))


def pretty_json(value) -> str:
    return json_text(value, indent=True)


def shorten(text: str, width: int | None) -> str:
    """``text`` on one line (``printable``), cut to ``width`` characters with a note of how much was left out."""
    text = printable(text)
    if width is None or len(text) <= width:
        return text
    kept = max(width - len(f"… (+{len(text)} chars)"), 10)  # (the note as long as it can be)
    return text[:kept] + f"… (+{len(text) - kept} chars)"


def table(rows: list[list[str]], headings: list[str], right: set[int] = frozenset()) -> list[str]:
    """Rows of already-styled cells padded into columns (ANSI codes do not count towards the width)."""
    widths = [len(h) for h in headings]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(click.unstyle(cell)))

    def pad(i: int, cell: str) -> str:
        gap = " " * (widths[i] - len(click.unstyle(cell)))
        return gap + cell if i in right else cell + gap

    lines = ["  ".join(pad(i, click.style(h, bold=True)) for i, h in enumerate(headings)).rstrip()]
    lines += ["  ".join(pad(i, c) for i, c in enumerate(row)).rstrip() for row in rows]
    return lines
