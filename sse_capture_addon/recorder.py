"""One stream's recording: chunks in, lines appended to the file. Knows nothing of mitmproxy.

``StreamRecorder.feed`` is called with each chunk *before* the chunk is forwarded to the client and
appends everything the chunk completed in a single write (a compressed chunk that decodes to more than a
piece: one write a piece), so the file always holds at least what the client has seen. It never raises: a
failure is remembered, reported through ``on_error`` once, and the caller keeps forwarding traffic.

The end line matters most: without it readers take the recording for one whose proxy died. So when it
cannot be written, ``finish`` retries with space from the directory's ``SpaceReserve`` (disk full) and then
with a smaller end line whose unterminated tail is left out (its size is kept).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from . import recording as _recording
from .decoding import (CHUNK_ALLOWANCE, FREE_DECODED, ITEM_COST, LINE_COST, MAX_DENSITY, MAX_RATIO, DecodeError,
                       UnsupportedEncoding, make_decoder, too_dense, too_inflated)
from .recording import (DEFAULT_FORM, blocks_chunk_line, chunk_line, comment_block, data_json, encode_data,
                        event_line_json, form_block, header_line, line, line_at, line_ending, message_lines, sse_block,
                        time_json)
from .redact import Redactor
from .sse import Comment, Event, Ignored, MessageBatch, NoDispatch, Oversized, SSEParser
from .writer import NO_SPACE, RecordingFile, SpaceReserve

# A token stream's chunk line and event lines in one C call (_speedups.c), the same lines as without it. It scans
# with exact_json's scanner, so only when that passed recording's check against the orjson installed here.
_token_chunk = _typed_chunk = None
if _recording._exact_c is not None:
    from ._speedups import token_chunk as _token_chunk, typed_chunk as _typed_chunk


def _blocks_of(items: list) -> tuple[bytes, int] | None:
    """What ``recording.event_block`` makes of the lines of ``items`` in the default form, and how many lines there
    are, if they are all events that have such a block."""
    blocks, count = [], 0
    for item in items:
        if type(item) is MessageBatch:
            blocks.append(item.blocks)
            count += item.count
            continue
        if type(item) is not Event or item[3] is not None:
            return None
        blocks.append(sse_block(item[0], item[1]))  # when the chunk is these, the event lines have no CR or LF
        count += 1
    return b"".join(blocks), count


def _blocks_in_form(items: list, form: str, eol: bytes) -> tuple[bytes, int] | None:
    """``_blocks_of`` for another form (see ``recording.DEFAULT_FORM``)."""
    blocks, count = [], 0
    for item in items:
        kind = type(item)
        if kind is Event:
            block = form_block(form, eol, *item)
            if block is None:
                return None
            blocks.append(block)
            count += 1
        elif kind is Comment and "c" in form:
            blocks.append(comment_block(item.text, eol))
            count += 1
        elif kind is MessageBatch:
            if "E" not in form and not (item.last_event_id and "i" in form):
                # each of its events is written "data: DATA" and a blank line, as the batch holds them (its data
                # have no LF): only the line endings differ (a CRLF stream of data-only blocks, Gemini's)
                blocks.append(item.blocks if eol == b"\n" else item.blocks.replace(b"\n", eol))
            else:
                blocks += [form_block(form, eol, "message", data.decode("utf-8", "surrogatepass"),
                                      item.last_event_id, None) for data in item.datas]
            count += item.count
        else:
            return None
    return b"".join(blocks), count


_FIELD_LETTERS = {b"event": "e", b"id": "i", b"data": "d", b"retry": "r"}


def _forms_of(text: bytes, items: list, current: str) -> list[tuple[str, bool]]:
    """The forms to try for a chunk that is not in the stream's ``current`` form: the order of the fields in the
    block of ``text`` with data that has the most fields (among the first few lines), its line endings, ``c`` if
    the chunk has comments; and the same with the other kind of event line (``e``/``E``), which a block cannot
    tell. A chunk of comments alone (a keep-alive) is tried in the current form with ``c``."""
    crlf = b"\r\n" in text
    comments = any(type(item) is Comment for item in items)
    letters = block = ""
    for line_ in text.split(line_ending(crlf), 64)[:64]:
        if line_:
            letter = _FIELD_LETTERS.get(line_.partition(b":")[0])
            if letter is not None and letter not in block:
                block += letter
            continue
        if "d" in block and len(block) > len(letters):
            letters = block
        block = ""
    if not letters:
        if comments and all(type(item) is Comment for item in items):
            return [(current if "c" in current else current + "c", crlf)]
        return []
    if "e" not in letters:  # "message" events: where an event line of another type goes is a guess
        letters = "e" + letters
    if comments:
        letters += "c"
    return [(letters, crlf), (letters.replace("e", "E"), crlf)]


_CRLF_DEFAULT = (DEFAULT_FORM, True)  # a stream's _form once its blocks have shown CRLF endings
_KEPT_MAX = 64 * 1024  # the most of a block's start kept across chunks that complete nothing (see _chunk_line)


class _Inflated(Exception):
    """A compressed stream decoded to more than MAX_RATIO allows (the message says so)."""


def _failure(e: Exception, doing: str) -> tuple[str, str]:
    """The error line's ``what`` and message for an exception from decoding (``decode``) or from ``doing``."""
    if isinstance(e, _Inflated):
        return "decode", str(e)
    if isinstance(e, DecodeError):
        return "decode", f"Content-Encoding decoding failed: {e}"
    return "parse", f"{doing} failed: {type(e).__name__}: {e}"


class StreamRecorder:
    def __init__(
        self,
        file: RecordingFile,
        header: dict,
        *,
        content_encoding: str | None = None,
        raw_chunks: bool = True,
        max_event_size: int,
        redactor: Redactor | None = None,
        on_error: Callable[[str], None] = lambda message: None,
        clock: Callable[[], float] = time.monotonic,
        reserve: SpaceReserve | None = None,
    ):
        self.file = file
        self.reserve = reserve
        self.header = header
        self.raw_chunks = raw_chunks
        self.redactor = redactor
        self.plain_events = redactor is None or not redactor.json_keys  # event data stored as received
        self.on_error = on_error
        self.clock = clock
        self.t0 = clock()
        self.parser: SSEParser | None = SSEParser(max_event_size=max_event_size, message_batches=self.plain_events)
        self.decoder = None
        self.events = 0
        self.comments = 0
        self.oversized = 0
        self.chunks = 0
        self._rest = b""  # what the last chunk line kept after its blocks: the start of a block (see _chunk_line)
        self._form: tuple[str, bool] | None = None  # the form (and crlf) the last blocks line had, None: the default
        self._chunk_line_failed = False
        self.last_chunk_t = 0.0
        self.bytes = 0
        self.decoded_bytes = 0
        # what the parser gave for the decoded bytes (see too_inflated, too_dense), but the token fast path's
        # batches (one a chunk: never dense)
        self.decoded_items = 0
        self.errors: list[str] = []
        self.lost_lines = 0
        self.write_failed = False
        self.write_error: str | None = None  # the first failed write, as reported
        self.write_errno: int | None = None  # of the last failed write
        self.finished = False
        self._unwritten_head = b""  # the header line (and what came with it) when writing it failed
        pending = [header_line(header)]
        try:
            self.decoder = make_decoder(content_encoding)
        except UnsupportedEncoding as e:
            self.parser = None
            pending.append(self._error_line(0.0, "decode", f"cannot decode Content-Encoding: {e}; events not parsed"))
        if not self._append(b"".join(pending)):
            # a file must start with its header to be read at all: it goes first in the next write that succeeds
            self._unwritten_head = b"".join(pending)
            self.lost_lines -= len(pending)

    # -- hot path ---------------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """Record ``chunk`` and return it unchanged (so this can be mitmproxy's ``response.stream`` callable)."""
        if self.finished or not chunk:
            return chunk
        if self.decoder is not None:
            return self._feed_compressed(chunk)
        t = self.last_chunk_t = self.clock() - self.t0
        self.chunks += 1
        self.bytes += len(chunk)
        out: list[bytes] = []
        items = t_json = None
        if self.parser is not None:
            try:
                self.decoded_bytes += len(chunk)
                parsed = self.parser.feed(chunk)
                if len(parsed) == 1 and type(batch := parsed[0]) is MessageBatch and self.raw_chunks \
                        and not self._rest and not batch.last_event_id and _token_chunk:
                    # A token stream's chunk: the lines _chunk_line and _add_lines give it, in one C call. On a
                    # live proxy, where the caches are cold when a chunk comes, that takes a quarter less time.
                    # With CRLF line endings (Gemini's, sse-starlette's) too, once the stream has shown them.
                    lines = None
                    if batch.blocks is chunk:
                        lines = _token_chunk(chunk, batch.count, t, self.chunks)
                    elif self._form == _CRLF_DEFAULT and len(chunk) == len(batch.blocks) + 2 * batch.count \
                            and chunk == batch.blocks.replace(b"\n", b"\r\n"):
                        lines = _token_chunk(batch.blocks, batch.count, t, self.chunks, True)
                    if lines is not None:
                        self.events += batch.count
                        self._append(lines)
                        return chunk
                if parsed and type(first := parsed[0]) is Event and not first[2] and self.raw_chunks \
                        and not self._rest and self._form is None and _typed_chunk \
                        and (lines := _typed_chunk(chunk, len(parsed), t, self.chunks)) is not None:
                    # The same for typed events ("event:" and "data:" lines, Anthropic's stream), when the chunk is
                    # nothing else (the C call checks)
                    self.events += len(parsed)
                    self._append(lines)
                    return chunk
                t_json = time_json(t)  # every line a chunk completes shares its arrival time
                self._add_lines(t_json, parsed, out)
                items = parsed
                self.decoded_items += len(parsed)
                self._stop_if_too_dense(t, out)
            except Exception as e:  # noqa: BLE001 - a parser bug must never break traffic
                out.append(self._stop_parsing(t, *_failure(e, "parser")))
        if self.raw_chunks:
            if t_json is None:
                t_json = time_json(t)
            try:
                line_ = self._chunk_line(t_json, chunk, items)
            except Exception as e:  # noqa: BLE001 - never break traffic: base64 keeps any chunk exactly
                self._rest = b""
                line_ = chunk_line(t_json, self.chunks, chunk)
                if not self._chunk_line_failed:
                    self._chunk_line_failed = True
                    message = (f"keeping chunks by their lines failed ({type(e).__name__}: {e}); "
                               "chunks are kept in base64 instead")
                    self.errors.append(message)
                    self.on_error(message)
            out.insert(0, line_)
        if out:
            self._append(out[0] if len(out) == 1 else b"".join(out))
        return chunk

    def _feed_compressed(self, chunk: bytes) -> bytes:
        """``feed`` for a stream with a Content-Encoding: what a chunk decodes to is parsed piece by piece as it is
        decoded, and the chunk line is the chunk in base64."""
        t = self.last_chunk_t = self.clock() - self.t0
        self.chunks += 1
        self.bytes += len(chunk)
        t_json = time_json(t)
        out = [chunk_line(t_json, self.chunks, chunk)] if self.raw_chunks else []
        if self.parser is not None:
            try:
                self.decoder.decode_to(chunk, self._parse_pieces(t_json, out))
                self._stop_if_too_dense(t, out)
            except Exception as e:  # noqa: BLE001 - a decoding error or a parser bug must never break traffic
                out.append(self._stop_parsing(t, *_failure(e, "parser")))
        if out:
            self._append(out[0] if len(out) == 1 else b"".join(out))
        return chunk

    def _parse_pieces(self, t_json: bytes, out: list[bytes]) -> Callable[[bytes], None]:
        """The decoder's sink for one chunk (or its flush): parses each piece into lines in ``out``. The lines of
        the pieces before are written first, so that however far the chunk inflates only a piece and its lines
        are held; and decoding stops (``_Inflated``) once the stream has inflated beyond ``MAX_RATIO``, its lines
        (those it reads one by one) and items counted as ``LINE_COST`` and ``ITEM_COST`` bytes each."""
        start = self.decoded_bytes

        def parse(piece: bytes) -> None:
            if self.decoded_bytes > start and out:
                self._append(b"".join(out))
                out.clear()
            lines = self.parser.slow_lines
            if too_inflated(self.bytes, self.decoded_bytes + len(piece), lines, self.decoded_items):
                raise _Inflated(f"{self.bytes} compressed byte(s) decoded to more than {self.decoded_bytes} "
                                f"({lines} lines read one by one, {self.decoded_items} items): over {MAX_RATIO} times "
                                f"their size past the first {FREE_DECODED >> 20} MiB, with each such line counted as "
                                f"{LINE_COST} bytes more and each event, comment or run of data-only events as "
                                f"{ITEM_COST}, as from a decompression bomb; no longer decoded or parsed (the client "
                                "still gets every byte)")
            self.decoded_bytes += len(piece)
            items = self.parser.feed(piece)
            self.decoded_items += len(items)
            self._add_lines(t_json, items, out)

        return parse

    def _chunk_line(self, t_json: bytes, chunk: bytes, items: list | None) -> bytes:
        """The chunk line. When the chunk is the blocks of the lines it completed (their ``event_block``s in some
        form) less the start of the first one that the last chunk line kept, and then the start of the next block
        (a chunk cut mid-block), it is written as a count of those lines, ``skip`` and that start; most chunks of
        most streams are. Anything else is written in base64. The comparison with the chunk is what makes the line
        exact; the rest only decides when to try."""
        kept, self._rest = self._rest, b""  # the start of the first block, as the last chunk line kept it
        if items and self.plain_events:
            first = items[0]
            if len(items) == 1 and type(first) is MessageBatch and not kept and first.blocks == chunk:
                return blocks_chunk_line(t_json, self.chunks, first.count)  # the token stream's case
            if self._form is None:  # the default form
                found = _blocks_of(items)
                if found is not None and (line_ := self._blocks_line(t_json, chunk, kept, *found)):
                    return line_
            else:
                form, crlf = self._form
                if len(items) == 1 and type(first) is Event:  # one event a chunk: the commonest case
                    block = form_block(form, line_ending(crlf), *first)
                    found = None if block is None else (block, 1)
                else:
                    found = _blocks_in_form(items, form, line_ending(crlf))
                if found is not None and (line_ := self._blocks_line(t_json, chunk, kept, *found, form, crlf)):
                    return line_
            current = self._form or (DEFAULT_FORM, False)
            for form, crlf in _forms_of(kept[:4096] + chunk[:4096], items, current[0]):
                if (form, crlf) == current:
                    continue
                found = _blocks_in_form(items, form, line_ending(crlf))
                if found is not None and (line_ := self._blocks_line(t_json, chunk, kept, *found, form, crlf)):
                    if any(type(item) is not Comment for item in items):  # not a keep-alive alone: try it first
                        self._form = None if (form, crlf) == (DEFAULT_FORM, False) else (form, crlf)
                    return line_
        elif items == [] and self.plain_events and len(kept) + len(chunk) <= _KEPT_MAX:
            # A piece of a block that completes nothing (a read cut inside an event): its line is base64, and
            # the block's start goes on growing, so that the chunk that ends the block is a blocks line again.
            self._rest = kept + chunk
        return chunk_line(t_json, self.chunks, chunk)

    def _blocks_line(self, t_json: bytes, chunk: bytes, kept: bytes, blocks: bytes, count: int,
                     form: str = DEFAULT_FORM, crlf: bool = False) -> bytes | None:
        """The ``blocks`` chunk line, if ``chunk`` is ``blocks`` less ``kept`` and then the start of a block."""
        skip = len(kept)
        body = len(blocks) - skip
        blank = line_ending(crlf) * 2  # where the first block ends
        if len(chunk) >= body and chunk.startswith(blocks[skip:] if skip else blocks) \
                and skip < blocks.find(blank) + len(blank):
            # (skip is always less than the first block: the check is so that the reader's holds whatever happens)
            self._rest = chunk[body:]
            return blocks_chunk_line(t_json, self.chunks, count, skip, self._rest, form, crlf)
        return None

    def _add_lines(self, t_json: bytes, items: list, out: list[bytes]) -> None:
        """The lines of parser output, for feed and for the decoder's last bytes at the end."""
        if not self.plain_events:
            out += [self._item_line(t_json, item) for item in items]
            return
        for item in items:
            if type(item) is Event:  # the hot path, inlined
                self.events += 1
                out.append(event_line_json(t_json, item[0], data_json(item[1]), item[2], item[3]))
            elif type(item) is MessageBatch:  # a token stream's chunk of whole events
                self.events += item.count
                out.append(message_lines(t_json, item))
            else:
                out.append(self._item_line(t_json, item))

    def _item_line(self, t_json: bytes, item: Any) -> bytes:
        if type(item) is Event:  # with key redaction; other events take the path in _add_lines
            self.events += 1
            data, redacted = self._redact_data(encode_data(item.data))
            return event_line_json(t_json, item.type, orjson.dumps(data), item.last_event_id, item.retry, redacted)
        if type(item) is Comment:
            self.comments += 1
            return line_at(t_json, {"kind": "comment", "text": item.text})
        if type(item) is NoDispatch:
            record: dict[str, Any] = {"kind": "no_dispatch"}
            if item.id_changed:
                record["id"] = item.last_event_id
            if item.retry is not None:
                record["retry"] = item.retry
            return line_at(t_json, record)
        if type(item) is Oversized:
            self.oversized += 1
            record = {"kind": "oversized", "event": item.type, "size": item.size}
            if item.last_event_id:
                record["id"] = item.last_event_id
            if item.retry is not None:
                record["retry"] = item.retry
            prefix = item.data_prefix
            if self.redactor is not None and self.redactor.json_keys:
                prefix = ""  # a cut-off prefix cannot be parsed, so it cannot be redacted
            record["data_prefix"] = prefix
            return line_at(t_json, record)
        if type(item) is Ignored:
            return line_at(t_json, {"kind": "ignored", "field": item.field, "value": item.value,
                                    "reason": item.reason})
        raise TypeError(f"unexpected parser output {item!r}")

    def _redact_data(self, data: Any) -> tuple[Any, bool]:
        if isinstance(data, str):
            return self.redactor.json_text(data)
        redacted_value, changed = self.redactor.json_value(data)
        return (redacted_value, True) if changed else (data, False)

    # -- failures ---------------------------------------------------------------------------------------

    def _error_line(self, t: float, what: str, message: str, report: bool = True) -> bytes:
        """An error line; its message goes to the end line's ``errors``, and to ``on_error`` when ``report``."""
        self.errors.append(message)
        if report:
            self.on_error(message)
        return line({"t": round(t, 6), "kind": "error", "what": what, "message": message})

    def _stop_if_too_dense(self, t: float, out: list[bytes]) -> None:
        """After a chunk is parsed: stop parsing, with an error line in ``out``, once the stream is too dense."""
        if not too_dense(self.decoded_bytes, self.parser.slow_lines, self.decoded_items, self.chunks):
            return
        message = (f"{self.decoded_items} item(s) (events, runs of data-only events, comments) and "
                   f"{self.parser.slow_lines} line(s) read one by one in {self.decoded_bytes} byte(s) in {self.chunks} "
                   f"chunk(s): parsing them cost over {MAX_DENSITY} times what their bytes would, past the first "
                   f"{FREE_DECODED >> 20} MiB and {CHUNK_ALLOWANCE} bytes' worth a chunk (each such line counted as "
                   f"{LINE_COST} bytes more and each item as {ITEM_COST}), as from a flood of comments, blank lines "
                   "or empty events, which would hold up every stream through the proxy; no longer parsed (the client "
                   "still gets every byte)")
        out.append(self._stop_parsing(t, "parse", message))

    def _stop_parsing(self, t: float, what: str, message: str) -> bytes:
        self.parser = None
        return self._error_line(t, what, message)

    def _append(self, data: bytes) -> bool:
        """Append lines; True when written. A failure is reported once; the lines it lost are counted and said
        in an error line at the start of the next write that succeeds."""
        if self.file is None:
            return True
        if self.lost_lines or self._unwritten_head:
            return self._append_after_loss(data)
        try:
            self.file.append(data)
        except OSError as e:
            self._write_failed(e, data.count(b"\n"))
            return False
        return True

    def _append_after_loss(self, data: bytes) -> bool:
        said = b""
        if self.lost_lines:
            lost = (f"{self.lost_lines} line(s) were lost while the file could not be written "
                    f"(first error: {self.write_error})")
            said = line({"t": round(self.clock() - self.t0, 6), "kind": "error", "what": "write", "message": lost})
        try:
            self.file.append(self._unwritten_head + said + data)
        except OSError as e:
            self._write_failed(e, data.count(b"\n"))
            return False
        self.lost_lines = 0
        self._unwritten_head = b""
        if self.reserve is not None:
            self.reserve.ensure()  # writes work again: take back the space kept for end lines
        return True

    def _write_failed(self, e: OSError, lines: int) -> None:
        self.write_errno = e.errno
        self.lost_lines += lines
        if not self.write_failed:
            self.write_failed = True
            message = self.write_error = f"writing {self.file.path} failed: {e.strerror or e}"
            self.errors.append(message)
            self.on_error(message)

    # -- the end ----------------------------------------------------------------------------------------

    def finish(self, reason: str, message: str | None = None, error: tuple[str, str] | None = None) -> dict:
        """Write the end line and close the file, with an ``error`` line (what, message) before it if given (the
        caller reports that one itself). Idempotent; returns the end record."""
        if self.finished:
            return self._end
        self.finished = True
        t = self.clock() - self.t0
        tail = None
        out = [self._error_line(t, *error, report=False)] if error else []
        parser = self.parser
        if parser is not None:
            try:
                if self.decoder is not None:
                    self.decoder.flush_to(self._parse_pieces(time_json(t), out))
                tail = parser.close()
            except Exception as e:  # noqa: BLE001
                out.append(self._error_line(t, *_failure(e, "flushing the parser")))
        trailing = self.decoder.trailing_bytes if self.decoder is not None else 0
        if trailing:
            out.append(self._error_line(t, "decode", f"{trailing} byte(s) after the end of the gzip data were not "
                                                     "decoded or parsed (ignored, as browsers do; the client got "
                                                     "them unchanged)"))

        def end_line(drop_tail: bool = False) -> dict:
            return self._end_record(t, reason, message, parser, tail, drop_tail)

        lost_before = self.lost_lines
        end = end_line()
        data = b"".join(out) + line(end)
        if not self._append(data):
            end = self._rescue_end(out, end_line, lost_before, len(data))
        self._end = end
        if self.file is not None:
            self.file.close()
            if self._unwritten_head:  # not even the header could be written: an empty file, which no one can read
                with contextlib.suppress(OSError):
                    self.file.remove()
                self.on_error(f"{self.file.path}: nothing could be written, not even the header line; file removed")
        return end

    def _end_record(self, t: float, reason: str, message: str | None, parser: SSEParser | None, tail: str | None,
                    drop_tail: bool) -> dict:
        end: dict[str, Any] = {"t": round(t, 6), "kind": "end", "reason": reason, "message": message}
        if self.write_failed:
            # the stream itself may have ended well; the recording did not
            end["reason"], end["stream_ended"] = "recording_failed", reason
        end.update({
            "events": self.events, "comments": self.comments, "oversized": self.oversized,
            "bytes": self.bytes, "decoded_bytes": self.decoded_bytes, "chunks": self.chunks,
            "tail": tail,
        })
        if tail is not None and self.redactor is not None and self.redactor.json_keys:
            # a cut-off event cannot be parsed, so it cannot be redacted: keep only its size
            end.update(tail=None, tail_redacted=True, tail_size=len(tail))
        elif tail is not None and drop_tail:
            end.update(tail=None, tail_dropped=True, tail_size=len(tail))  # no room for it on disk
        if parser is not None:
            end["tail_truncated"] = parser.tail_truncated
            end["bom"] = parser.bom
            end["line_endings"] = dict(parser.line_endings)
        end["errors"] = self.errors
        return end

    #: an end line (with the lines before it) bigger than this share of the reserve is retried without its
    #: tail, so that one long unterminated event does not use up the space kept for every stream's end line
    _RESERVE_SHARE = 64  # 16 KiB of the 1 MiB

    def _rescue_end(self, lines: list[bytes], end_line: Callable[..., dict], lost_before: int, failed: int) -> dict:
        """The last write (the decoder's last lines, then the end line) failed. Retry, smallest change first:
        all of it; then without the tail text; then the end line alone. On a full disk each retry first frees a
        slice of the reserve; a retry no smaller than a write that failed is made only when space was freed.
        Returns the end record that was written (or, when none could be, the last one tried)."""
        nospace = self.write_errno in NO_SPACE
        body = b"".join(lines)
        dropped = body.count(b"\n")
        end = end_line()  # recording_failed now that a write failed
        attempts = [(body, end)]
        short = end_line(drop_tail=True)
        if "tail_dropped" in short:
            attempts.append((body, short))
        if body:
            attempts.append((b"", short))
        for head, end in attempts:
            data = head + line(end)
            freed = False
            size = len(data) + len(self._unwritten_head)
            if nospace and self.reserve is not None and size <= self.reserve.size // self._RESERVE_SHARE:
                freed = self.reserve.release(size + 1024)  # + the line saying how many lines were lost
            if not freed and len(data) >= failed:
                continue
            self.lost_lines = lost_before + (0 if head else dropped)
            if self._append(data):
                break
            failed = len(data)
        else:
            self.on_error("the end line could not be written either (the disk is still full and the space reserve "
                          "used up): readers will take this recording for one whose proxy died")
        return end

    @property
    def duration(self) -> float:
        return self.clock() - self.t0

    @property
    def idle_for(self) -> float:
        """Seconds since the last chunk (or since the headers)."""
        return self.duration - self.last_chunk_t

