"""Turn a recording into a timed plan of byte writes. Knows nothing of mitmproxy or sockets.

A ``Plan`` says what to send: the response head, then ``writes`` each due at ``at`` seconds after the
head was sent, then how the stream ends. Times are absolute offsets from the stream start (never gaps),
so a player that sleeps until ``start + at`` before each write does not accumulate error.

Two ways to get the bytes:

- events (default): every recorded line is re-serialised as SSE. A spec-compliant client receives
  exactly the recorded events (type, data byte for byte, id, retry), comments and id/retry-only blocks.
- byte-exact: the raw chunks as they reached the client, still content-encoded, with their boundaries
  and timing (needs a recording made with raw chunks).

Pipeline: records -> faults on events -> pieces of bytes at recorded times -> pause cap and speed ->
writes (pieces due at the same time go out together) -> re-chunking.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from ..recording import (IN_PROGRESS, PROXY_DIED, DiedTail, Recording, RecordingError, chunk_bytes, decode_data,
                         died_tail)
from ..sse import Comment, Ignored, tail_parser
from . import faults as faults_mod
from .faults import Faults

#: How a replayed stream ends on the wire.
COMPLETE = "complete"   # the body is terminated properly (chunked: the final 0-size chunk)
RESET = "reset"         # the connection is reset (TCP RST) mid-body
CLOSE = "close"         # the connection is closed (FIN) mid-body, without terminating it
HOLD = "hold"           # nothing more is sent; the stream stays open until the client goes away
ENDINGS = (COMPLETE, RESET, CLOSE, HOLD)

#: The recorded end reason -> how the replay ends. A client that went away left the server's stream
#: open (the client saw silence, then left); a server error was a reset; a proxy that died or shut down
#: closed the client's connection mid-body.
_ENDING_OF_REASON = {
    "complete": COMPLETE,
    "client_disconnected": HOLD,
    "server_error": RESET,
    "proxy_shutdown": CLOSE,
    PROXY_DIED: CLOSE,
    IN_PROGRESS: HOLD,
}

_ENDING_OF_FAULT = {"cut_after": RESET, "stall_after": HOLD, "stop_mid_event": COMPLETE}

#: Recorded response headers that describe the recorded connection or framing, not the content. The
#: replay server frames its own response, so these are never replayed.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "content-length",
})
REDACTED = "[REDACTED]"

#: With re-chunking, the pieces of one write go out this far apart so that they reach the client as
#: separate reads instead of being coalesced by TCP.
RECHUNK_GAP = 0.002


@dataclass(frozen=True)
class Timing:
    speed: float = 1.0               # > 0; math.inf sends everything at once ("max")
    max_pause: float | None = None   # recorded pauses longer than this (seconds) are shortened to it

    def __post_init__(self):
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.max_pause is not None and self.max_pause < 0:
            raise ValueError(f"max pause must be >= 0 seconds, got {self.max_pause}")


def parse_speed(text: str) -> float:
    """``"0.5"`` -> 0.5, ``"2x"`` -> 2.0, ``"max"`` -> inf."""
    text = str(text).strip().lower()
    if text == "max":
        return math.inf
    try:
        speed = float(text.removesuffix("x"))
    except ValueError:
        raise ValueError(f"speed must be a number > 0 or 'max', got {text!r}") from None
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a number > 0 or 'max', got {text!r}")
    return speed


@dataclass(slots=True)
class Piece:
    """Bytes due at recorded time ``t``; ``events``: how many whole events they complete."""
    t: float
    data: bytes
    events: int = 0


@dataclass(slots=True)
class Write:
    at: float       # seconds after the response head, already scaled
    data: bytes
    events: int = 0


@dataclass
class Plan:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    head_delay: float                 # seconds from the request to the response head
    writes: list[Write]
    ending: str                       # one of ENDINGS
    end_at: float                     # when the ending happens, seconds after the head
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    spacing: float = 0.0              # seconds the player keeps between two writes even when behind (re-chunking)

    @property
    def events(self) -> int:
        return sum(w.events for w in self.writes)


# --- building plans ---------------------------------------------------------------------------------------

def build_plan(rec: Recording, timing: Timing = Timing(), faults: Faults = Faults(),
               byte_exact: bool = False) -> Plan:
    warnings: list[str] = []
    ending, end_t = recorded_ending(rec, warnings)
    if byte_exact:
        faults_mod.check_byte_exact(faults)
        pieces = byte_pieces(rec)
    else:
        records, stop = faults_mod.apply_to_records(rec.records, faults, warnings)
        pieces = event_pieces(rec, records, warnings, end_t, with_tail=stop is None)
        if stop is not None:
            ending, end_t = _ENDING_OF_FAULT[stop.fault], stop.t
            if stop.half_last:
                pieces[-1] = faults_mod.half(pieces[-1])
    writes, head_delay, end_at = retime(pieces, end_t, rec.header.get("ttfb") or 0.0, timing)
    spacing = 0.0
    if faults.rechunk:
        writes = faults_mod.rechunk(writes, faults.rechunk, RECHUNK_GAP)
        end_at = max(end_at, writes[-1].at if writes else 0.0)
        spacing = RECHUNK_GAP
    response = rec.header["response"]
    return Plan(status=response["status"], reason=response.get("reason") or "",
                headers=replay_headers(response["headers"], keep_encoding=byte_exact),
                head_delay=head_delay, writes=writes, ending=ending, end_at=end_at, source=rec.path,
                warnings=warnings, spacing=spacing)


def recorded_ending(rec: Recording, warnings: list[str]) -> tuple[str, float]:
    reason = rec.ending
    if reason == "recording_failed":
        warnings.append("the recording failed part-way (lines were lost); the replay is incomplete")
        reason = rec.end.get("stream_ended") or "complete"
    if rec.end is not None:
        t = rec.end["t"]
    else:
        t = rec.records[-1]["t"] if rec.records else 0.0
    return _ENDING_OF_REASON.get(reason, CLOSE), t


def replay_headers(recorded: list[list[str]], keep_encoding: bool) -> list[tuple[str, str]]:
    """The recorded headers that still describe what the replay sends."""
    out = []
    for name, value in recorded:
        lower = name.lower()
        if lower in HOP_BY_HOP or value == REDACTED:
            continue
        if lower == "content-encoding" and not keep_encoding:
            continue  # event replay sends decoded text
        out.append((name, value))
    return out


def check_raw_chunks(rec: Recording) -> None:
    # (a stream whose server sent nothing has no chunk line: its bytes, none, are known)
    kinds = {r["kind"] for r in rec.records} if rec.records_read else rec.kinds
    sent_nothing = not kinds and (rec.end is None or rec.end["bytes"] == 0)
    if not rec.header.get("raw_chunks") or not (sent_nothing or "chunk" in kinds):
        if rec.header.get("redacted_keys") and not rec.header.get("raw_chunks"):
            how = ("it was made with sse_capture_redact_keys, which stores no raw bytes (they cannot be redacted); "
                   "replay its events, without byte-exact mode")
        else:
            how = "record with sse_capture_raw_chunks=on"
        raise RecordingError(rec.path, 1, f"byte-exact replay needs raw chunks, and this recording has none ({how})")


def byte_pieces(rec: Recording) -> list[Piece]:
    """Raw chunks; each carries the count of events it completed (they follow it in the file)."""
    check_raw_chunks(rec)
    pieces: list[Piece] = []
    for i, r in enumerate(rec.records):
        if r["kind"] == "chunk":
            pieces.append(Piece(r["t"], chunk_bytes(rec.records, i)))
        elif r["kind"] in ("event", "oversized") and pieces:
            pieces[-1].events += 1
    return pieces


class _Serializer:
    """Re-serialises recorded lines as SSE text, tracking the client's last event ID."""

    def __init__(self, newline: str):
        self.nl = newline
        self.last_id = ""

    def _id(self, new_id: str, force: bool = False) -> str:
        if new_id == self.last_id and not force:
            return ""
        self.last_id = new_id
        return f"id: {new_id}{self.nl}" if new_id else f"id{self.nl}"  # a bare "id" empties the last ID

    def event(self, record: dict, data: str) -> str:
        nl = self.nl
        out = []
        if record["event"] not in ("message", ""):
            out.append(f"event: {record['event']}{nl}")
        out.append(self._id(record.get("id", "")))
        if "retry" in record:
            out.append(f"retry: {record['retry']}{nl}")
        # "data: " with one space: a client strips exactly one, so data that starts with a space survives
        out.extend(f"data: {part}{nl}" for part in data.split("\n"))
        out.append(nl)
        return "".join(out)

    def no_dispatch(self, record: dict) -> str:
        out = self._id(record["id"], force=True) if "id" in record else ""
        if "retry" in record:
            out += f"retry: {record['retry']}{self.nl}"
        return out + self.nl

    # A comment or an ignored field is sent as a block of its own: a blank line ends a block without
    # dispatching anything when it has no data, and the event it was recorded in is serialised whole after it.
    def comment(self, record: dict) -> str:
        return f":{record['text']}{self.nl}{self.nl}"

    def ignored(self, record: dict) -> str:
        if record["field"] == "comment":  # one longer than max_event_size: its start
            return f":{record['value']}{self.nl}{self.nl}"
        return f"{record['field']}: {record['value']}{self.nl}{self.nl}"


def _newline(end: dict | None) -> str:
    counts = (end or {}).get("line_endings") or {}
    lf, crlf, cr = (counts.get(k, 0) for k in ("lf", "crlf", "cr"))
    if crlf > lf and crlf >= cr:
        return "\r\n"
    if cr > lf and cr > crlf:
        return "\r"
    return "\n"


def event_pieces(rec: Recording, records: list[dict], warnings: list[str], end_t: float,
                 with_tail: bool = True) -> list[Piece]:
    """The records as SSE, each at its time, then the unterminated tail at ``end_t`` (the recorded ending's)."""
    tail, truncated, bom = recorded_tail(rec.end, lambda: died_tail(rec) if rec.ending == PROXY_DIED else None)
    return list(iter_event_pieces(records, rec.end, tail if with_tail else None, truncated, bom, warnings,
                                  lambda: end_t))


def recorded_tail(end: dict | None, died: Callable[[], DiedTail | None]) -> tuple[str | None, bool, bool]:
    """(unterminated tail, truncated, bom) as the end line says, or without one as ``died`` finds them in the raw
    chunks of a recording whose proxy died (None: nothing to say)."""
    if end is not None:
        return end.get("tail"), bool(end.get("tail_truncated")), bool(end.get("bom"))
    return died() or (None, False, False)


#: Lines that send nothing, or a comment or ignored field that the unterminated tail may carry (see tail_lines)
_TAIL_KINDS = frozenset({"comment", "ignored", "chunk", "error"})


_BOM = b"\xef\xbb\xbf"


def iter_event_pieces(records: Iterable[dict], end: dict | None, tail: str | None, truncated: bool, bom: bool,
                      warnings: list[str], end_t: Callable[[], float]) -> Iterator[Piece]:
    """``event_pieces`` one at a time, from records read once (``cat`` streams a file through it in bounded
    memory): only the lines after the last event are held, for ``tail_lines``. The warnings are added as they are
    known, the counts at the end; ``end_t`` is asked for once the records are through."""
    ser = _Serializer(_newline(end))
    counts = {"redacted": 0, "oversized": 0}
    held: list[dict] = []
    started = False

    def piece(r: dict) -> Piece | None:
        kind = r["kind"]
        if kind == "event":
            counts["redacted"] += bool(r.get("redacted"))
            return Piece(r["t"], ser.event(r, decode_data(r["data"])).encode("utf-8", "surrogatepass"), 1)
        if kind == "oversized":
            counts["oversized"] += 1
            return Piece(r["t"], ser.event(r, r.get("data_prefix", "")).encode("utf-8", "surrogatepass"), 1)
        if kind == "comment":
            return Piece(r["t"], ser.comment(r).encode("utf-8", "surrogatepass"))
        if kind == "no_dispatch":
            return Piece(r["t"], ser.no_dispatch(r).encode("utf-8", "surrogatepass"))
        if kind == "ignored":
            return Piece(r["t"], ser.ignored(r).encode("utf-8", "surrogatepass"))
        if kind == "error" and r.get("what") in ("decode", "parse"):
            warnings.append(f"the recording stopped parsing events at t={r['t']}: {r['message']} "
                            "(byte-exact replay sends everything)")
        return None

    def first(p: Piece) -> Piece:
        nonlocal started
        if started:
            return p
        started = True
        if bom:
            return replace(p, data=_BOM + p.data)
        if p.data.startswith(_BOM):
            # a U+FEFF that did not start the stream (a tail after lines that are not recorded, such as an unknown
            # field's): sent first, a client would drop it as a byte order mark. A blank line first, which
            # dispatches nothing, keeps it a character
            return replace(p, data=ser.nl.encode() + p.data)
        return p

    for r in records:
        if r["kind"] in _TAIL_KINDS:
            held.append(r)
            continue
        for h in [*held, r]:
            if (p := piece(h)) is not None:
                yield first(p)
        held = []
    carried, rest = tail_lines(held, tail) if tail else ({}, "")
    for i, h in enumerate(held):
        p = Piece(h["t"], carried[i].encode("utf-8", "surrogatepass")) if i in carried else piece(h)
        if p is not None:
            yield first(p)
    if counts["redacted"]:
        warnings.append(f"{counts['redacted']} event(s) had JSON keys redacted when recorded; they are replayed "
                        "redacted")
    if counts["oversized"]:
        warnings.append(f"{counts['oversized']} oversized event(s) were recorded without their data; "
                        "each is replayed with the data prefix that was kept")
    if tail and truncated:
        warnings.append("the unterminated tail was truncated when recorded")
    if rest:
        yield first(Piece(end_t(), rest.encode("utf-8", "surrogatepass")))
    if bom and not started:
        yield Piece(0.0, _BOM)


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def tail_lines(records: list[dict], tail: str) -> tuple[dict[int, str], str]:
    """The unterminated tail in pieces. A client reads a comment or an ignored field of the tail when its line
    comes, so the recording has a line for each: the last comment and ignored lines of ``records``. Each of them
    is sent as the tail's text up to its line, at its time, and not again as a block of its own. Returns
    ``({index in records: text}, the text after the last of them)``. When the records do not end with exactly the
    lines that the tail's text gives (it was truncated when recorded), they are the only copy of some of them: then
    all are sent as blocks, and the tail's text whole after them."""
    whole = ({}, tail)
    last = []  # the indices of the comment and ignored lines at the end of the records, the last first
    for i in range(len(records) - 1, -1, -1):
        kind = records[i]["kind"]
        if kind in ("comment", "ignored"):
            last.append(i)
        elif kind not in ("chunk", "error"):  # (lines that send nothing)
            break
    if not last:
        return whole
    parser = tail_parser(tail)
    lines = []  # (item, where its line ends in the tail)
    for m in _LINE.finditer(tail):
        lines += ((item, m.end()) for item in parser.feed(m.group().encode("utf-8", "surrogatepass")))
    if not lines or len(lines) > len(last):
        return whole
    carried, start = {}, 0
    for i, (item, stop) in zip(reversed(last[:len(lines)]), lines):
        if not _same(records[i], item):
            return whole
        carried[i], start = tail[start:stop], stop
    return carried, tail[start:]


def _same(record: dict, item) -> bool:
    if isinstance(item, Comment):
        return record["kind"] == "comment" and record["text"] == item.text
    return isinstance(item, Ignored) and record["kind"] == "ignored" and \
        (record["field"], record["value"], record["reason"]) == (item.field, item.value, item.reason)


# --- timing -----------------------------------------------------------------------------------------------

def retime(pieces: list[Piece], end_t: float, ttfb: float, timing: Timing) -> tuple[list[Write], float, float]:
    """Recorded times -> scaled offsets; pieces due at the same moment are merged into one write.

    Returns (writes, head delay, end offset). Each offset comes from its own recorded time (minus the
    pause time the cap removed before it), never from a running sum of gaps."""
    offset = offsets(timing)
    writes: list[Write] = []
    # the pieces of each write are joined once at the end: appending bytes to bytes copies the whole write
    # every time, quadratic when everything is due at once (speed max)
    parts: list[list[bytes]] = []
    for p in pieces:
        at = offset(p.t)
        if writes and writes[-1].at == at:
            parts[-1].append(p.data)
            writes[-1].events += p.events
        else:
            writes.append(Write(at, p.data, p.events))
            parts.append([p.data])
    for write, data in zip(writes, parts):
        if len(data) > 1:
            write.data = b"".join(data)
    end_at = offset(end_t)
    cap = timing.max_pause
    head_delay = _scaled(min(ttfb, cap) if cap is not None else ttfb, timing.speed)
    return writes, head_delay, end_at


def _scaled(t: float, speed: float) -> float:
    return t / speed if math.isfinite(speed) else 0.0


def offsets(timing: Timing) -> Callable[[float], float]:
    """Recorded times, given in order, -> scaled offsets from the stream start. Each offset comes from its own
    recorded time (minus the pause time the cap removed before it), never from a running sum of gaps."""
    speed, cap = timing.speed, timing.max_pause
    removed = 0.0  # recorded pause time cut out by the cap so far
    prev = 0.0

    def offset(t: float) -> float:
        nonlocal removed, prev
        t = max(t, prev)
        if cap is not None and t - prev > cap:
            removed += t - prev - cap
        prev = t
        return _scaled(t - removed, speed)

    return offset
