"""``ls``: one summary per recording, cheap: the header line and the end line (read from the file's end)
are usually all that is needed; only a recording without an end line is read through to count its events."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase

import orjson

from ..recording import DEFAULT_MAX_LINE, RecordingError, header_of, open_regular, validate_record
from .fmt import ended_badly, path_text, started_at
from .reader import EVENT_KINDS, RecordingStream, each_readable


@dataclass
class Summary:
    path: str
    started: str
    started_unix: float
    method: str
    url: str
    status: int
    events: int
    duration: float
    ending: str
    message: str | None

    def to_json(self) -> dict:
        return {**asdict(self), "path": path_text(self.path)}


def _last_line(path: str, block: int = 1 << 16, max_line: int = DEFAULT_MAX_LINE) -> bytes:
    """The file's last line (without reading the rest of it, however long the file); ``RecordingError`` when it is
    longer than ``max_line``, as any reader refuses such a line. Each block is searched once: a long last line
    costs its length, not its length squared."""
    with open_regular(path) as f:
        pos = f.seek(0, os.SEEK_END)
        blocks: list[bytes] = []
        size = 0
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            piece = f.read(step)
            # the newline that ends the last line itself does not start it
            cut = piece.rfind(b"\n", 0, len(piece) - 1 if not blocks else len(piece))
            if cut >= 0:
                return b"".join([piece[cut + 1:], *reversed(blocks)])
            blocks.append(piece)
            size += step
            if size > max_line + 1:
                raise RecordingError(path, 0, f"its last line is longer than {max_line} bytes")
        return b"".join(reversed(blocks))


def end_line_of(path: str) -> dict | None:
    """The recording's end line, read from the end of the file (checked as a record), or None when its last line
    is not one."""
    try:
        last = orjson.loads(_last_line(path))
        if isinstance(last, dict) and last.get("kind") == "end":
            return validate_record(path, 0, last)
    except (orjson.JSONDecodeError, RecordingError, OSError):
        pass
    return None


def summarize(path: str) -> Summary:
    header = header_of(path)
    end = end_line_of(path)
    if end is not None:
        events, duration, ending, message = end["events"] + end.get("oversized", 0), end["t"], end["reason"], \
            end.get("message")
    else:
        stream = RecordingStream(path)
        events, duration = 0, 0.0
        for record in stream:
            events += record["kind"] in EVENT_KINDS
            duration = record["t"]
        ending, message = stream.ending, None
    request, response = header["request"], header["response"]
    return Summary(path=path, started=header["started"], started_unix=started_at(header).timestamp(),
                   method=request["method"], url=request.get("pretty_url") or request["url"],
                   status=response["status"], events=events, duration=duration, ending=ending, message=message)


_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``2h``, ``1d`` ago, or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(timezone.utc)
    m = _AGO.match(text.strip())
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: expected e.g. 30m, 2h, 1d or 2024-05-01T12:00") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass
class Filters:
    endpoint: str | None = None   # substring of the URL, or a glob when it has * or ?
    bad_only: bool = False
    since: datetime | None = None

    def keep(self, s: Summary) -> bool:
        if self.endpoint:
            if any(c in self.endpoint for c in "*?["):
                if not fnmatchcase(s.url, self.endpoint):
                    return False
            elif self.endpoint not in s.url:
                return False
        if self.bad_only and not ended_badly(s.ending):
            return False
        return self.since is None or s.started_unix >= self.since.timestamp()


def list_recordings(directory: str, filters: Filters, errors: list[RecordingError]) -> list[Summary]:
    """Summaries sorted by start time; unreadable recordings are appended to ``errors`` and skipped."""
    out = [summary for summary in each_readable(directory, summarize, errors) if filters.keep(summary)]
    out.sort(key=lambda s: (s.started_unix, s.path))
    return out
