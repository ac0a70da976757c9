"""Sans-IO incremental parser for text/event-stream (WHATWG HTML, "Interpreting an event stream").

Bytes go in through SSEParser.feed(), parsed items come out; no I/O, no knowledge of HTTP or mitmproxy.
Work per chunk is done by C-level str methods (count/split/rfind); Python code runs once per line.
Pending state (incomplete line, unterminated block text, data buffer) is capped by max_event_size.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import NamedTuple

DEFAULT_MAX_EVENT_SIZE = 8 * 1024 * 1024
PREFIX_CHARS = 1024  # Oversized.data_prefix length
_HEAD_CHARS = 2 * PREFIX_CHARS  # kept of an oversized line: enough for its field name and a data prefix
_EOL = re.compile(r"(\r\n|\r|\n)")


class Event(NamedTuple):
    """A dispatched event. A named tuple because the hot path makes one per event, and tuples are the
    cheapest immutable objects Python builds."""

    type: str
    data: str
    last_event_id: str
    retry: int | None


@dataclass(slots=True, frozen=True)
class Comment:
    text: str


@dataclass(slots=True, frozen=True)
class NoDispatch:
    last_event_id: str
    retry: int | None
    id_changed: bool


@dataclass(slots=True, frozen=True)
class Oversized:
    type: str
    size: int
    data_prefix: str
    last_event_id: str
    retry: int | None


@dataclass(slots=True, frozen=True)
class Ignored:
    field: str
    value: str
    reason: str


class MessageBatch(NamedTuple):
    """Several "message" events without retry, one after the other. Only a parser made with
    ``message_batches=True`` returns these, for runs of blocks that are each one ``data: `` line (a token
    stream's chunk), so that a consumer can handle the run with a few calls rather than a few per event.
    ``blocks`` is their text in UTF-8 with LF line endings, ``b"data: A\n\ndata: B\n\n"``."""

    blocks: bytes
    count: int
    last_event_id: str

    @property
    def datas(self) -> list[bytes]:
        """The events' data in UTF-8: between "data: " and the last blank line, split at each
        ``MESSAGE_SEPARATOR`` (it holds an LF, which no data does)."""
        return self.blocks[6:-2].split(MESSAGE_SEPARATOR)


MESSAGE_SEPARATOR = b"\n\ndata: "  # between two data in MessageBatch.blocks


Item = Event | Comment | NoDispatch | Oversized | Ignored | MessageBatch

try:  # the C fast path for chunks of whole simple blocks (_speedups.c); the same results without it
    from ._speedups import ParserCore as _ParserCore, set_types as _set_types, simple_blocks as _c_simple_blocks
    _set_types(Event, MessageBatch)
    _CORE_SLOTS: tuple[str, ...] = ()
except ImportError:
    _c_simple_blocks = None
    _ParserCore = object
    _CORE_SLOTS = ("max_event_size", "message_batches", "line_endings", "bytes_in", "last_event_id", "_id_buffer",
                   "_held", "_c_ready", "_started", "_undecoded")  # ParserCore's

_new_tuple = tuple.__new__
_HOLD_MAX = 64 * 1024  # see SSEParser._feed_py


def _pure_crlf_bytes(data: bytes) -> bool:
    """Every CR is followed by an LF and every LF preceded by a CR, and the bytes end with a blank line."""
    return data.endswith(b"\r\n\r\n") and data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")


def _holdable(rest: bytes) -> bool:
    """``rest`` (what follows a block boundary) can be held for the next chunk: at most _HOLD_MAX bytes, no LF, and no
    CR or only a last one that ends an empty line or a data line (neither gives an item when it ends)."""
    if len(rest) > _HOLD_MAX or b"\n" in rest:
        return False
    cr = rest.find(b"\r")
    return cr < 0 or (cr == len(rest) - 1 and (cr == 0 or rest.startswith(b"data:")))


def _event(type_: str, data: str, last_event_id: str, retry: int | None) -> Event:
    return _new_tuple(Event, (type_, data, last_event_id, retry))


class _Text:
    """Text appended in pieces and kept up to `limit` characters (beyond that only counted). Pieces are joined
    in batches so that a long run of tiny chunks does not cost a list entry and a str object per byte."""

    __slots__ = ("done", "batch", "kept", "total", "limit")

    def __init__(self, limit: int):
        self.done: list[str] = []
        self.batch: list[str] = []
        self.kept = self.total = 0
        self.limit = limit

    def add(self, text: str) -> None:
        self.total += len(text)
        room = self.limit - self.kept
        if room > 0:
            if len(text) > room:
                text = text[:room]
            self.kept += len(text)
            self.batch.append(text)
            if len(self.batch) >= 64:
                self.done.append("".join(self.batch))
                self.batch = []

    def text(self) -> str:
        return "".join(self.done) + "".join(self.batch)


class SSEParser(_ParserCore):
    """One stream: ``feed(data)`` returns the items that its bytes complete, ``close()`` ends the stream. feed is
    _feed_py, or where _speedups is built, ParserCore.feed: the same steps in C."""

    # Slots, not a __dict__: with a C base class, Python reads attributes in a __dict__ more slowly.
    __slots__ = ("reconnection_time", "bom", "slow_lines", "_decoder", "_at_boundary", "_cr", "_line",
                 "_tail", "_data", "_data_len", "_type", "_retry", "_id_changed", "_block_chars", "_oversized",
                 "_prefix") + _CORE_SLOTS

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE, message_batches: bool = False):
        self.max_event_size = max_event_size
        self.message_batches = bool(message_batches)
        self.last_event_id = ""  # the spec's "last event ID string": updated from the buffer at each blank line
        self._id_buffer = ""
        self.reconnection_time: int | None = None
        self.bom = False
        self.line_endings = {"lf": 0, "crlf": 0, "cr": 0}
        self.bytes_in = 0
        # lines read one by one, not by a block fast path: what parsing costs beyond its bytes (a few more without
        # the C fast path, which holds the start of a line back more often)
        self.slow_lines = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._undecoded = False  # the decoder holds the start of a multi-byte sequence
        self._at_boundary = False  # at a block boundary with nothing pending: the fast path applies
        self._c_ready = False  # ... and no undecoded bytes, and the C fast path is there
        self._held = b""  # the start of a line, held back at a block boundary for the next chunk (see feed)
        self._started = False  # a first character was decoded (the BOM check is done)
        self._cr = False  # the last chunk ended with CR: a leading LF in the next one completes a CRLF
        self._line = _Text(max(max_event_size, _HEAD_CHARS))  # the incomplete line
        self._tail = _Text(max_event_size)  # text since the last blank line, for close()
        self._reset_block()

    @property
    def tail_truncated(self) -> bool:
        """The unterminated tail exceeds max_event_size characters (close() returns only its start)."""
        return self._tail.total > self.max_event_size

    def _reset_block(self) -> None:
        self._data: list[str] = []  # data field values; the buffer is "\n".join(...) + "\n"
        self._data_len = 0
        self._type = ""
        self._retry: int | None = None
        self._id_changed = False
        self._block_chars = 0  # characters of the block's non-empty lines, reported by Oversized
        self._oversized = False
        self._prefix: str | None = None  # Oversized.data_prefix; None until a data line is seen

    # --- input -------------------------------------------------------------------------------------------

    def _feed_py(self, data: bytes) -> list[Item]:
        self.bytes_in += len(data)
        held = self._held
        if held:
            data = held + data
            self._held = b""
        elif not self._started and not self._undecoded and data and data[0] != 0xEF:
            # The stream's first bytes, and no BOM (EF BB BF) in front: nothing to strip, and the stream starts at
            # a block boundary with nothing pending, which is what _settle finds after a first chunk. So the fast
            # paths take every chunk of a short stream, the first too.
            self._started = True
            self._settle()
        if self._c_ready and len(data) <= self.max_event_size:
            items = _c_simple_blocks(self, data, False)
            if items is not None:
                return items
            if _pure_crlf_bytes(data):
                # the same blocks with CRLF endings (sse-starlette's, Gemini's): _feed_text's pure-CRLF path,
                # without decoding and re-encoding the chunk
                items = _c_simple_blocks(self, data.replace(b"\r\n", b"\n"), True)
                if items is not None:
                    return items
            # Whole blocks, then the start of a line (a chunk cut anywhere, e.g. a proxy's 16 KiB reads): the blocks
            # in C, and that start held back to go in front of the next chunk, so that the next chunk also starts at
            # a block boundary. A piece of a line yields nothing until the line ends, so holding it changes no
            # output. What is held is always a piece of the new chunk (its blank line is past what was held
            # before), so no byte is held twice and the copying stays linear.
            k = data.rfind(b"\n\n")
            if k >= len(held):
                rest = data[k + 2:]
                if len(rest) <= _HOLD_MAX and b"\n" not in rest and b"\r" not in rest:
                    items = _c_simple_blocks(self, data[:k + 2], False)
                    if items is not None:
                        self._held = rest
                        return items
            k = data.rfind(b"\r\n\r\n")
            if k >= len(held):
                # The same with CRLF endings. A cut between the CR and the LF of a line is held too when that line
                # is a data line or the first half of a blank line: neither gives an item when it ends.
                rest = data[k + 4:]
                if _holdable(rest) and _pure_crlf_bytes(blocks := data[:k + 4]):
                    items = _c_simple_blocks(self, blocks.replace(b"\r\n", b"\n"), True)
                    if items is not None:
                        self._held = rest
                        return items
        return self._feed_text(data)

    if _ParserCore is object:
        feed = _feed_py

    def _feed_text(self, data: bytes) -> list[Item]:
        if self._undecoded:
            text = self._decode(data)
        else:
            try:
                text = data.decode()
            except UnicodeDecodeError:  # invalid, or a character split across chunks
                text = self._decode(data)
        if "\r" not in text:
            if self._at_boundary:
                if text.startswith("data:") and text.find("\n") == len(text) - 2 and text[-1] == "\n" \
                        and len(text) <= self.max_event_size:
                    # The commonest chunk by far, one "data:" line and the blank line: inlined.
                    self.line_endings["lf"] += 2
                    data = text[6:-2] if text[5] == " " else text[5:-2]
                    return [_new_tuple(Event, ("message", data, self.last_event_id, None))]
                if text.startswith("event:") and text.count("\n") == 3 and text.endswith("\n\n") \
                        and len(text) <= self.max_event_size:
                    # The next commonest: one "event:" line, one "data:" line and the blank line.
                    head, sep, value = text.partition("\ndata:")
                    if sep and "\n" not in head:
                        self.line_endings["lf"] += 3
                        type_ = head[7:] if head[6:7] == " " else head[6:]
                        data = value[1:-2] if value[:1] == " " else value[:-2]
                        return [_new_tuple(Event, (type_ or "message", data, self.last_event_id, None))]
            elif "\n" not in text and text and self._started and not self._cr:
                # the middle of a line (tiny chunks, a long line): nothing to interpret yet
                self._line.add(text)
                self._tail.add(text)
                return []
            return self._whole_blocks_inside(text)
        if self._at_boundary and len(text) <= self.max_event_size and self._pure_crlf(text):
            events = self._simple_blocks(text.replace("\r\n", "\n"), "crlf")
            if events is not None:
                return events
        if "\r\n\r\n" in text:
            out = self._crlf_blocks_inside(text)
            if out is not None:
                return out
        elif "\n" not in text:
            out = self._cr_blocks_inside(text)
            if out is not None:
                return out
        out = []
        self._text(text, out)
        self._settle()
        return out

    def _settle(self) -> None:
        """After a chunk: note whether it ended at a block boundary with nothing pending (the fast paths)."""
        self._at_boundary = self._started and not self._cr and not self._tail.total
        self._c_ready = self._at_boundary and not self._undecoded and _c_simple_blocks is not None

    def _whole_blocks_inside(self, text: str) -> list[Item]:
        """An LF-only chunk: what ends the block in progress, then the whole blocks after it (the fast path
        of _simple_blocks when they are simple), then the start of the next block. Chunks cut at arbitrary
        points (a proxy's 16 KiB reads) are mostly whole blocks."""
        out: list[Item] = []
        first = -2 if self._at_boundary else text.find("\n\n")  # the blank line ending the block in progress
        last = text.rfind("\n\n")
        if last < 0 or last == first:  # no whole block: the general path
            self._text(text, out)
        else:
            if first >= 0:
                self._text(text[:first + 2], out)
            blocks = text[first + 2:last + 2]
            events = self._simple_blocks(blocks, "lf") if len(blocks) <= self.max_event_size else None
            if events is None:
                self._text(blocks, out)
            else:
                out += events
            if last + 2 < len(text):
                self._text(text[last + 2:], out)
        self._settle()
        return out

    def _crlf_blocks_inside(self, text: str) -> list[Item] | None:
        """_whole_blocks_inside for CRLF endings (sse-starlette's, Gemini's) when the whole blocks in the chunk are
        pure CRLF; and the start of a line after them is held for the next chunk as feed holds it, so that the next
        chunk takes the fast paths again. Without it, a CRLF stream cut where feed cannot hold (between the CR and
        the LF of a blank line, say) was read line by line from there on, at a 25th of the speed. None when the
        blocks are not pure CRLF (nothing is done then)."""
        first = -4 if self._at_boundary else text.find("\r\n\r\n")  # the blank line ending the block in progress
        last = text.rfind("\r\n\r\n")
        if last == first:
            return None
        blocks = text[first + 4:last + 4]
        if len(blocks) > self.max_event_size or not self._pure_crlf(blocks):  # (blocks ends with a blank line)
            return None
        out: list[Item] = []
        if first >= 0:
            self._text(text[:first + 4], out)
        events = self._simple_blocks(blocks.replace("\r\n", "\n"), "crlf")
        if events is None:
            self._text(blocks, out)
        else:
            out += events
        rest = text[last + 4:]
        if rest:
            # the bytes it came from, when it was decoded whole and without a replacement character
            held = rest.encode() if "\ufffd" not in rest and not self._undecoded else None
            if held is not None and _holdable(held):
                self._held = held
            else:
                self._text(rest, out)
        self._settle()
        return out

    def _cr_blocks_inside(self, text: str) -> list[Item] | None:
        """_whole_blocks_inside for CR line endings alone (no LF in the chunk): every "\r\r" ends a block, so the
        whole blocks are those of the text with its CRs as LFs. None when it has no whole block (nothing is done)."""
        if self._cr:  # the chunk before ended with a CR, which no LF follows: it ended its line alone
            self._cr = False
            self._at_boundary = self._started and not self._tail.total
        first = -2 if self._at_boundary else text.find("\r\r")  # the blank line ending the block in progress
        last = text.rfind("\r\r")
        if last < 0 or last == first or last - first > self.max_event_size:
            return None
        out: list[Item] = []
        if first >= 0:
            self._text(text[:first + 2], out)
        blocks = text[first + 2:last + 2]
        events = self._simple_blocks(blocks.replace("\r", "\n"), "cr")
        if events is None:
            self._text(blocks, out)
        else:
            out += events
            self._cr = True  # (a blank line's CR, which an LF at the start of the next chunk would complete)
        if last + 2 < len(text):
            self._text(text[last + 2:], out)
        self._settle()
        return out

    @staticmethod
    def _pure_crlf(text: str) -> bool:
        return text.endswith("\r\n\r\n") and text.count("\r") == text.count("\n") == text.count("\r\n")

    def _simple_blocks(self, text: str, ending: str) -> list[Item] | None:
        """Fast path for a chunk of whole blocks (LF-terminated here) that are each "data:" lines, after one
        "event:" line or none, as LLM APIs stream (the C path takes an "id:" line too); None if the chunk is anything
        else."""
        if not text.endswith("\n\n"):
            return None
        lid = self.last_event_id
        if _c_simple_blocks is not None:
            items = _c_simple_blocks(self, text.encode(), ending == "crlf")
            if items is not None and ending == "cr":  # counted as LF endings: they were CRs
                counts, lines = self.line_endings, text.count("\n")
                counts["lf"] -= lines
                counts["cr"] += lines
            return items
        if text.startswith("data: "):
            n = text.count("\n\ndata: ") + 1
            if text.count("\n") == 2 * n:
                # every block is exactly one "data: " line (the only LFs are the blank lines between them): the
                # whole chunk in a few C calls
                self.line_endings[ending] += 2 * n
                if self.message_batches:
                    return [_new_tuple(MessageBatch, (text.encode(), n, lid))]
                return [_new_tuple(Event, ("message", data, lid, None)) for data in text[6:-2].split("\n\ndata: ")]
        blocks = text.split("\n\n")
        if blocks.pop():  # not "": the text ends with an odd run of LFs, e.g. "data: x\n\n\n"
            return None
        events: list[Item] = []
        lf = 2 * len(blocks)
        for block in blocks:
            type_ = "message"
            if block.startswith("event:"):
                head, sep, block = block.partition("\n")
                if not sep:
                    return None
                type_ = (head[7:] if head.startswith("event: ") else head[6:]) or "message"
                lf += 1
            if block.startswith("data: "):
                value = block[6:]
            elif block.startswith("data:"):
                value = block[5:]
            else:
                return None
            if "\n" in value:  # a text with LFs, sent as one "data:" line each
                first, *more = value.split("\ndata:")
                if "\n" in first or any("\n" in v for v in more):
                    return None  # another field in the block
                value = "\n".join([first] + [v[1:] if v[:1] == " " else v for v in more])
                lf += len(more)
            events.append(_event(type_, value, lid, None))
        self.line_endings[ending] += lf
        return events

    def _decode(self, data: bytes, final: bool = False) -> str:
        text = self._decoder.decode(data, final)
        self._undecoded = bool(self._decoder.getstate()[0])
        self._c_ready = False  # until _settle
        return text

    def close(self) -> str | None:
        """End of stream: flush the UTF-8 decoder; return the unterminated tail (the decoded text received
        after the last blank line that ended a block, including any incomplete line, truncated to
        max_event_size characters), or None if the stream ended exactly at a block boundary / nothing pending.
        An incomplete event is NOT dispatched (spec)."""
        if self._held:
            held, self._held = self._held, b""
            self._feed_text(held)  # a piece of a line, or a data line cut before its LF: nothing to dispatch
        self._text(self._decode(b"", True), [])  # at most U+FFFD for a truncated sequence
        if not self._tail.total:
            return None
        return self._tail.text()

    def _text(self, text: str, out: list[Item]) -> None:
        if not self._started and text:
            self._started = True
            if text[0] == "\ufeff":
                self.bom = True
                text = text[1:]
        if self._cr and text:
            self._cr = False
            if text[0] == "\n":  # second half of a CRLF split across chunks: the line already ended
                self.line_endings["cr"] -= 1
                self.line_endings["crlf"] += 1
                if self._tail.total:
                    self._tail.add("\n")
                text = text[1:]
        if not text:
            return

        counts = self.line_endings
        parts = None
        if "\r" not in text:
            sep = "\n"
            segs = text.split(sep)
            counts["lf"] += len(segs) - 1
        else:
            crlf = text.count("\r\n")
            cr, lf = text.count("\r") - crlf, text.count("\n") - crlf
            counts["crlf"] += crlf
            counts["cr"] += cr
            counts["lf"] += lf
            self._cr = text[-1] == "\r"
            if not (cr or lf):
                sep = "\r\n"
                segs = text.split(sep)
            elif not (crlf or lf):
                sep = "\r"
                segs = text.split(sep)
            else:  # mixed
                sep = ""
                parts = _EOL.split(text)  # [line, terminator, line, ..., incomplete line]
                segs = parts[::2]

        if len(segs) == 1:  # no terminator: all of it belongs to the incomplete line
            self._line.add(text)
            self._tail.add(text)
            return

        # Where the block left unterminated by this chunk starts (after its last blank line), if it does.
        tail = None
        if parts is None:
            k = text.rfind(sep + sep)
            if k >= 0:
                tail = text[k + 2 * len(sep) :]
            elif not segs[0] and not self._line.total:
                tail = text[len(sep) :]
        else:
            for i in range(len(segs) - 2, -1, -1):
                if not segs[i] and (i or not self._line.total):
                    tail = "".join(parts[2 * i + 2 :])
                    break
        if tail is not None:
            self._tail = _Text(self.max_event_size)
            text = tail
        self._tail.add(text)

        last = segs.pop()
        if self._line.total:
            line_len = self._line.total + len(segs[0])
            if line_len > self.max_event_size:
                self._oversized_line((self._line.text()[:_HEAD_CHARS] + segs[0][:_HEAD_CHARS])[:_HEAD_CHARS], line_len, out)
                segs = segs[1:]
            else:
                segs[0] = self._line.text() + segs[0]
            self._line = _Text(self._line.limit)
        if last:
            self._line.add(last)
        self._lines(segs, out)

    # --- interpretation ----------------------------------------------------------------------------------

    def _lines(self, lines: list[str], out: list[Item]) -> None:
        max_size = self.max_event_size
        self.slow_lines += len(lines)
        for line in lines:
            if not line:
                if self._data and not self._oversized:  # the common case of _dispatch, inlined
                    self.last_event_id = self._id_buffer
                    out.append(_event(self._type or "message", "\n".join(self._data), self._id_buffer, self._retry))
                    self._reset_block()
                else:
                    self._dispatch(out)
            elif len(line) > max_size:
                self._oversized_line(line[:_HEAD_CHARS], len(line), out)
            elif line[0] == ":":
                self._block_chars += len(line)
                out.append(Comment(line[1:]))
            else:
                self._block_chars += len(line)
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    self._data_len += len(value) + 1
                    if self._oversized:
                        self._add_prefix(value)
                    else:
                        self._data.append(value)
                        if self._data_len > max_size:
                            self._start_oversized()
                elif name == "event":
                    self._type = value
                elif name == "id":
                    if "\0" in value:
                        out.append(Ignored("id", value[:200], "id contains U+0000 NULL"))
                    else:
                        self._id_buffer = value
                        self._id_changed = True
                elif name == "retry":
                    self._retry_field(value, out)

    def _retry_field(self, value: str, out: list[Item]) -> None:
        if not (value.isascii() and value.isdigit()):
            out.append(Ignored("retry", value[:200], "retry value is not all ASCII digits"))
            return
        try:
            retry = int(value)
        except ValueError:  # beyond sys.get_int_max_str_digits()
            out.append(Ignored("retry", value[:200], "retry value is too large"))
            return
        self._retry = self.reconnection_time = retry

    def _oversized_line(self, head: str, length: int, out: list[Item]) -> None:
        """A line longer than max_event_size, of which ``head`` (its first _HEAD_CHARS characters) was kept. Its
        data, event type or id makes the block's event oversized (the type and the id kept as their first
        PREFIX_CHARS characters); a retry is read when it was kept whole; a comment is recorded as ignored, and any
        other field is ignored, as the spec says."""
        self._block_chars += length
        if head[:1] == ":":
            out.append(Ignored("comment", head[1:201], f"comment longer than max_event_size ({length - 1} characters)"))
            return
        name, _, value = head.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            if not self._oversized:
                self._start_oversized()
            self._add_prefix(value)
        elif name == "event":
            self._type = value[:PREFIX_CHARS]
            if not self._oversized:
                self._start_oversized()
        elif name == "id":
            if "\0" in value:
                out.append(Ignored("id", value[:200], "id contains U+0000 NULL"))
                return
            self._id_buffer = value[:PREFIX_CHARS]
            self._id_changed = True
            if not self._oversized:
                self._start_oversized()
        elif name == "retry":
            if length > len(head) and value.isascii() and value.isdigit():
                out.append(Ignored("retry", value[:200], "retry value is too large"))
            else:
                self._retry_field(value, out)

    def _start_oversized(self) -> None:
        self._oversized = True
        self._prefix = "\n".join(self._data)[:PREFIX_CHARS] if self._data else None
        self._data = []

    def _add_prefix(self, value: str) -> None:
        if self._prefix is None:  # first data line of the block
            self._prefix = value[:PREFIX_CHARS]
        elif len(self._prefix) < PREFIX_CHARS:
            self._prefix = (self._prefix + "\n" + value[:PREFIX_CHARS])[:PREFIX_CHARS]

    def _dispatch(self, out: list[Item]) -> None:
        self.last_event_id = self._id_buffer
        if self._oversized and self._prefix is not None:  # (None: no data line, so no event)
            out.append(Oversized(self._type or "message", self._block_chars, self._prefix or "", self.last_event_id, self._retry))
        elif self._data:
            out.append(_event(self._type or "message", "\n".join(self._data), self.last_event_id, self._retry))
        elif self._id_changed or self._retry is not None:
            out.append(NoDispatch(self.last_event_id, self._retry, self._id_changed))
        self._reset_block()


def tail_parser(tail: str) -> SSEParser:
    """A parser to read an unterminated tail (``SSEParser.close()``'s text) again as the stream's parser read it:
    feed it the tail's text in UTF-8, and it gives the items the tail's lines gave."""
    parser = SSEParser(max_event_size=len(tail) + 1)  # the lines of a tail kept whole were within the stream's limit
    parser.feed(b"\n")  # now mid-stream, where a U+FEFF is no BOM (a blank line here ends nothing)
    return parser
