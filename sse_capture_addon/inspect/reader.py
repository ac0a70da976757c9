"""Reading one recording as a stream: the header at once, the records as you iterate, the end line after.

``RecordingStream(path, follow=True)`` keeps reading a file a proxy is still writing, like ``tail -f``,
and stops at the end line or when the writer lets go of its lock (the proxy died).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..recording import (DEFAULT_MAX_LINE, IN_PROGRESS, PROXY_DIED, LineCheck, RecordingError, died_tail_at,
                         find_recordings, header_pending, iter_lines, open_regular, writer_alive)
from ..sse import Event, NoDispatch, Oversized, tail_parser

#: Kinds that are an event on the wire (``oversized`` events were delivered, only their data not kept).
EVENT_KINDS = ("event", "oversized")
_SETS_CLIENT_STATE = (*EVENT_KINDS, "no_dispatch")  # the kinds with the last event ID and reconnection time


T = TypeVar("T")


class HeaderPending(RecordingError):
    """Not a bad file: one a proxy has just created and not yet written its header line to."""

    def __init__(self, path: str):
        super().__init__(path, 0, "still being written, no header line yet; left out")


def each_readable(path: str, read: Callable[[str], T], errors: list[RecordingError]) -> Iterator[T]:
    """``read(file)`` for every recording at ``path`` (a file or a directory); a file that cannot be read is
    skipped, its error appended to ``errors`` (a ``HeaderPending`` for a file a proxy has only just created)."""
    for file in find_recordings(path):
        try:
            yield read(file)
        except RecordingError as e:
            errors.append(HeaderPending(file) if header_pending(file) else e)


#: ``Tail.lost`` when the tail holds the start of an event
AN_EVENT = "an event"


@dataclass(frozen=True)
class Tail:
    """The unterminated last lines of a stream (no blank line ended them), when a client loses something by them."""

    size: int                 # characters
    text: str | None          # None when the recording kept only its size
    left_out: str | None      # why the text was not kept: "redacted" or "dropped"
    truncated: bool = False   # the text kept is only its start
    lost: str = AN_EVENT      # AN_EVENT, or what a client never sets: "the last event ID to '7'", ...

    def describe(self, width: int = 80) -> str:
        """What a person needs: the start of its text, or its size and why the text is not there."""
        if self.text is None:
            why = "redacted when recorded" if self.left_out == "redacted" else \
                "left out of the end line when the disk was full"
            return f"{self.size} chars, not kept ({why})"
        return repr(self.text[:width]) + (" (cut)" if self.truncated else "")


def tail_loss(text: str, last_id: str = "", retry: int | None = None, truncated: bool = False) -> str | None:
    """What a client does not get because no blank line ended the unterminated ``text``, after a stream that left it
    the last event ID ``last_id`` and the reconnection time ``retry``; None when nothing. A data line starts an event,
    which is not dispatched (``AN_EVENT``). An id line sets only the last event ID buffer, committed at dispatch. A
    retry line takes effect at once, but not when cut short. A comment, an ignored field, an event type without data
    and a field no one knows lose nothing. A ``truncated`` text is only the start of the tail, and the rest may hold
    anything: it is taken for an event."""
    if truncated:
        return AN_EVENT
    parser = tail_parser(text)
    parser.reconnection_time = retry
    parser.feed(text.encode("utf-8", "surrogatepass"))
    before = parser.reconnection_time
    ended = parser.feed(b"\n\n")  # the end of a cut line, and the blank line
    if any(isinstance(item, (Event, Oversized)) for item in ended):
        return AN_EVENT
    lost = []
    if any(isinstance(item, NoDispatch) and item.id_changed and item.last_event_id != last_id for item in ended):
        lost.append(f"the last event ID to {parser.last_event_id!r}")
    if parser.reconnection_time != before:
        lost.append(f"the reconnection time to {parser.reconnection_time} ms")
    return " and ".join(lost) or None


def unterminated_tail(stream: RecordingStream) -> Tail | None:
    """The tail the end line of ``stream`` (read to its end) reports, when a client loses something by it (see
    ``tail_loss``). A tail kept only as its size (``tail_redacted``/``tail_dropped``) is taken for an event. A
    recording whose proxy died has no end line: its raw chunks say what the tail was (the file is read again,
    line by line)."""
    end = stream.end
    if end:
        text, truncated = end.get("tail"), bool(end.get("tail_truncated"))
        if not text:
            for why in ("redacted", "dropped"):
                if end.get(f"tail_{why}") and end.get("tail_size", 0) > 0:
                    return Tail(end["tail_size"], None, why)
            return None
    elif stream.finished and stream.ending == PROXY_DIED:
        try:
            died = died_tail_at(stream.path)
        except RecordingError:
            return None
        if died is None or not died.tail:
            return None
        text, truncated = died.tail, died.truncated
    else:
        return None
    lost = tail_loss(text, stream.last_id, stream.retry, truncated)
    return Tail(len(text), text, None, truncated, lost) if lost else None


class RecordingStream:
    """Iterate to get every record except the header and end line; ``end``/``ending`` are set afterwards."""

    def __init__(self, path: str | os.PathLike, *, follow: bool = False, poll: float = 0.2):
        self.path = os.fspath(path)
        self.torn: tuple[int, int] | None = None  # as Recording.torn
        self._lines = follow_lines(self.path, poll, on_torn=self._torn) if follow else \
            iter_lines(self.path, on_torn=self._torn)
        try:
            _, self.header = next(self._lines)
        except StopIteration:
            raise RecordingError(self.path, 1, "empty file: missing header line") from None
        self.end: dict | None = None
        self.writer_alive = False
        self.finished = False
        self.last_id = ""                 # what a client holds after the records so far: its last event ID
        self.retry: int | None = None     # ... and its reconnection time

    def _torn(self, lineno: int, size: int) -> None:
        self.torn = (lineno, size)

    def __iter__(self) -> Iterator[dict]:
        for _, record in self._lines:
            kind = record["kind"]
            if kind == "end":
                self.end = record
                continue
            if kind in _SETS_CLIENT_STATE:
                self.last_id = record.get("id", self.last_id if kind == "no_dispatch" else "")
                self.retry = record.get("retry", self.retry)
            yield record
        if self.end is None:
            self.writer_alive = writer_alive(self.path)
        self.finished = True

    @property
    def ending(self) -> str:
        if self.end is not None:
            return self.end["reason"]
        return IN_PROGRESS if self.writer_alive else PROXY_DIED


def follow_lines(path: str, poll: float = 0.2, max_line: int = DEFAULT_MAX_LINE,
                 on_torn: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Like ``iter_lines`` but waits for more lines while the writer holds its lock."""
    with open_regular(path) as f:
        pending: list[bytes] = []  # the start of the next line, as read (joined once its end is there)
        pending_size = 0
        check = LineCheck(path, max_line)
        writer_gone = False
        opened = time.monotonic()
        while True:
            chunk = f.read(1 << 16)
            if chunk:
                start = 0
                while (cut := chunk.find(b"\n", start)) >= 0:
                    raw = chunk[start:cut + 1]
                    if pending:
                        raw = b"".join(pending) + raw
                        pending, pending_size = [], 0
                    record = check.line(raw)
                    start = cut + 1
                    yield from check.ready(record, len(raw))
                    if check.ended:
                        return
                if start < len(chunk):
                    pending.append(chunk[start:])
                    pending_size += len(chunk) - start
                    if pending_size > max_line:
                        raise RecordingError(path, check.lineno + 1, f"line longer than {max_line} bytes")
                continue
            if writer_gone:
                break
            # Read once more after seeing the lock gone: the last lines may land just before it is released.
            # A file without a header yet may have been created a moment before its writer locked it.
            if not writer_alive(path) and (check.lineno > 0 or time.monotonic() - opened > 1.0):
                writer_gone = True
                continue
            time.sleep(poll)
        if pending:
            record = check.line(b"".join(pending))  # whole JSON without its newline is taken, as iter_lines does
            if record is None:
                if on_torn is not None:  # a write the dead proxy did not finish
                    on_torn(*check.cut(pending_size))
                return
            yield from check.ready(record, pending_size)
        if check.lineno == 0:
            raise RecordingError(path, 1, "empty file: missing header line")
        if (torn_write := check.cut()) and on_torn is not None:
            on_torn(*torn_write)
