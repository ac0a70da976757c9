"""``show``: a recording as readable lines, one per event (``ShowRenderer`` keeps the running state so the
same code serves a finished file and ``--follow``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..recording import IN_PROGRESS
from .events import MISSING, data_json, data_text
from .fmt import (bad, bold, dim, duration, ending_label, event_number, pretty_json, printable, seconds, shorten,
                  style_ending, style_type, utc, warn)
from .reader import AN_EVENT, EVENT_KINDS, RecordingStream, unterminated_tail


@dataclass
class ShowOptions:
    pretty: bool = False      # pretty-print JSON data on the lines below the event
    width: int | None = 160   # shorten data to this many characters; None = never


def header_lines(header: dict) -> list[str]:
    request, response = header["request"], header["response"]
    url = request.get("pretty_url") or request["url"]
    return [bold(printable(f"{request['method']} {url}")) + f"  → {response['status']}",
            dim(printable(f"started {utc(header['started'])} UTC · stream {header['stream_id']}")
                + (f" · ttfb {duration(header['ttfb'])}" if isinstance(header.get("ttfb"), (int, float)) else ""))]


class ShowRenderer:
    def __init__(self, options: ShowOptions):
        self.options = options
        self.index = 0
        self.previous_t = 0.0
        self.last_id = ""
        self.last_t = 0.0

    def lines(self, record: dict) -> list[str]:
        kind, t = record["kind"], record["t"]
        self.last_t = t
        when = f"{seconds(t):>9}"
        if kind in EVENT_KINDS:
            return self._event(record, when)
        blank = " " * 5
        if kind == "comment":
            return [dim(f"{blank}{when}  {'':>9}  :{shorten(record['text'], self.options.width)}")]
        if kind == "no_dispatch":
            fields = printable(" ".join(f"{k}={record[k]}" for k in ("id", "retry") if k in record))
            if "id" in record:
                self.last_id = record["id"]
            return [dim(f"{blank}{when}  {'':>9}  (no event; sets {fields})")]
        if kind == "ignored":
            return [warn(f"{blank}{when}  {'':>9}  ignored {printable(record['field'])} field "
                         f"{shorten(repr(record['value']), 60)}: {printable(record['reason'])}")]
        if kind == "error":
            return [bad(f"{blank}{when}  {'':>9}  recording error "
                        + printable(f"({record.get('what', '?')}): {record['message']}"))]
        return []  # raw chunks are for replay, not for reading

    def _event(self, record: dict, when: str) -> list[str]:
        gap = record["t"] - self.previous_t
        self.previous_t = record["t"]
        parts = [f"{event_number(self.index):<5}", when, dim(f"+{gap:.3f}s".rjust(9)), style_type(record["event"])]
        self.index += 1
        event_id = record.get("id", "")
        if event_id != self.last_id:
            parts.append(dim(f"id={printable(event_id)}"))
            self.last_id = event_id
        if "retry" in record:
            parts.append(dim(f"retry={record['retry']}"))
        below = []
        if record["kind"] == "oversized":
            parts.append(warn(f"[oversized: {record['size']} chars, data not kept] ")
                         + shorten(record.get("data_prefix", ""), self.options.width))
        else:
            value = data_json(record) if self.options.pretty else MISSING
            if value is not MISSING and isinstance(value, (dict, list)):
                below = ["        " + printable(line) for line in pretty_json(value).split("\n")]
            else:
                parts.append(shorten(data_text(record), self.options.width))
            if record.get("redacted"):
                parts.append(dim("(redacted)"))
        return ["  ".join(parts), *below]

    def ending_lines(self, stream: RecordingStream) -> list[str]:
        end = stream.end
        ending = stream.ending
        t = end["t"] if end else self.last_t
        text = f"── {style_ending(ending)} after {duration(t)}, {self.index} events"
        if end and end.get("message"):
            text += f": {printable(end['message'])}"
        out = [text]
        if tail := unterminated_tail(stream):
            what = "event, not delivered" if tail.lost == AN_EVENT else \
                f"block, not delivered (clients never set {printable(tail.lost)})"
            cut = " (cut)" if tail.truncated else ""
            shown = shorten(tail.text, self.options.width) if tail.text is not None else tail.describe()
            out.append(bad(f"── unterminated last {what}{cut}: ") + shown)
        if torn := _torn_write(stream):
            lineno, size = torn
            out.append(dim(f"   (line {lineno} is the first {size} bytes of a write the proxy did not finish: "
                           "it was killed mid-write; nothing of it had been forwarded)"))
        if ending == IN_PROGRESS:
            out.append(dim("   (the proxy is still writing this recording; use --follow to watch it)"))
        return out


def _torn_write(stream: RecordingStream) -> tuple[int, int] | None:
    """The cut-short last write to report, as (line, bytes): none while a proxy writes, whose last line may be
    half there."""
    return stream.torn if stream.ending != IN_PROGRESS else None


def json_lines(stream: RecordingStream) -> Iterator[dict]:
    """Machine-readable ``show``: every event/comment/... with its index and gap, then the ending."""
    index, previous_t = 0, 0.0
    for record in stream:
        if record["kind"] == "chunk":
            continue
        out = dict(record)
        if record["kind"] in EVENT_KINDS:
            out.update(index=index, gap=round(record["t"] - previous_t, 6))
            if record["kind"] == "event":
                out["data"] = data_text(record)
            index += 1
            previous_t = record["t"]
        yield out
    torn = {}
    if cut := _torn_write(stream):
        torn = {"torn_line": cut[0], "torn_bytes": cut[1]}
    yield {**(stream.end or {"kind": "end"}), "ending": stream.ending, "ending_label": ending_label(stream.ending),
           **torn}
