"""Incremental Content-Encoding decoders: gzip, deflate (zlib-wrapped or raw), br, zstd, and chains of them.

Each Decoder turns compressed chunks into the bytes decodable so far, using the libraries' streaming APIs,
so a long-lived response never has to be buffered whole. It hands them on in pieces of at most about
``PIECE_SIZE`` bytes as they are decoded, so that however far a chunk inflates (a few hundred bytes of
``gzip, gzip`` can make 400 MB) no more than a piece is held at once; an exception from the receiver stops the
decoding there. Sans-IO: what a decoder skipped it only counts (``trailing_bytes``); saying so is the caller's
business.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable

import brotli

try:  # compression.zstd from Python 3.14 on; its backport before (mitmproxy's own dependency)
    from compression import zstd as _zstd
except ImportError:
    from backports import zstd as _zstd


PIECE_SIZE = 64 * 1024  # brotli's pieces can be half as big again (its output buffer grows in steps)

#: RFC 9659: a zstd content coding's Window_Size is at most 8 MB, and browsers refuse a frame that asks for more
#: (a frame of known size asks for all of it); without a limit the decoder would allocate whatever a frame asks
ZSTD_MAX_WINDOW = 8 * 1024 * 1024

Sink = Callable[[bytes], object]


# A compressed stream stops being decoded (the recorder writes an error line) once it has decoded to more than
# MAX_RATIO times its size plus FREE_DECODED: a few hundred bytes of "gzip, gzip" can make 400 MB, whose decoding and
# parsing would take the proxy's only thread for seconds. No gzip or deflate layer can pass 1032:1 (a 258-byte match
# costs at least 2 bits), and a server that streams, flushing each event, stays far below (each flush costs bytes:
# 25:1 for the same OpenAI chunk again and again, in gzip, br and zstd alike); only stacked layers, or br or zstd past
# anything gzip could do, go beyond. Those two do on a body compressed whole: 100,000 identical OpenAI chunks (23 MB)
# make 122,000:1 in br, 10,000:1 in zstd; hence the first 32 MiB free, which take ~0.1 s to decode and parse (as zeros
# or such events).
#
# Parsing costs by the line and by the item as well as by the byte: a line that the parser reads one by one (not by
# its block fast paths, which take the lines of plain events) costs ~0.2-0.75 us, each comment or event that is not
# part of a run of plain ``data:`` events (those come as one batch) ~2-3 us in the recorder, a byte of a large event
# ~5 ns. Counted by the byte alone, 32 KB of gzip (32 MiB, all within the free part) that decode to 16 million ``:``
# comments held the proxy's thread for ~25 s and wrote a 700 MB recording, and 32 MiB of blank lines held it ~7 s.
# So each such line counts as LINE_COST bytes more, and each item the parser gives as ITEM_COST: those 32 KB stop
# after ~130,000 comments (0.3 s) or ~500,000 blank lines (0.15 s), while a streamed (flushed) compressed stream costs
# far below MAX_RATIO: each event and its flush make 8-12 compressed bytes in gzip, br and zstd, the same event again
# and again, so a flushed ``: ping`` costs ~100:1 with its lines and item counted, a plain event less; and 100,000
# identical OpenAI chunks compressed whole (23 MB, a few batches) still fit in the free part.
MAX_RATIO = 1100
FREE_DECODED = 32 * 1024 * 1024
LINE_COST = 128
ITEM_COST = 512


def parse_cost(decoded: int, lines: int, items: int) -> int:
    """What parsing ``decoded`` bytes cost, in bytes of a large event's: the parser read ``lines`` of their lines one by
    one (``SSEParser.slow_lines``) and found ``items`` items (events, batches of them, comments...)."""
    return decoded + lines * LINE_COST + items * ITEM_COST


def too_inflated(compressed: int, decoded: int, lines: int = 0, items: int = 0) -> bool:
    """``compressed`` bytes have decoded to more than a stream's should (``parse_cost``'s arguments)."""
    return parse_cost(decoded, lines, items) > compressed * MAX_RATIO + FREE_DECODED


# Any stream, compressed or not, stops being parsed once parsing it has cost more than MAX_DENSITY times what its
# bytes would (counted as above), past FREE_DECODED and CHUNK_ALLOWANCE per chunk: a flood of comments, blank lines or
# empty events (a heartbeat loop gone wrong) costs the recorder 1-3 us per 2-8 bytes, and at network speed held up
# every other stream through the proxy (32 MiB of ": ping" in 12.7 s, against 0.17 s through plain mitmproxy, another
# stream's events ~90 ms late all that while; now it stops after 90,000 pings, 0.4 s, the whole 32 MiB taking 0.33 s
# to come through). Honest streams stay far below: 1-15 bytes' worth per byte for OpenAI, Anthropic, Vercel AI SDK and
# pretty-printed JSON streams in LF, CRLF or CR, ~35 for a retry on every event. A stream paced one event per chunk never comes near, however small its events: CHUNK_ALLOWANCE
# covers an event's item and lines.
MAX_DENSITY = 48
CHUNK_ALLOWANCE = 4096


def too_dense(decoded: int, lines: int, items: int, chunks: int) -> bool:
    """Parsing ``decoded`` bytes that came in ``chunks`` chunks has cost more than a stream's should
    (``parse_cost``'s arguments)."""
    return parse_cost(decoded, lines, items) > decoded * MAX_DENSITY + chunks * CHUNK_ALLOWANCE + FREE_DECODED


class UnsupportedEncoding(ValueError):
    pass


class DecodeError(Exception):
    """The input is not valid in its encoding. A stream that merely stops early (a client went away mid-member)
    is not an error: flush() returns what was decodable."""


class Decoder:
    #: input bytes after the end of the encoded data that were ignored, not decoded (gzip only: browsers
    #: ignore what follows a gzip member when it is not another member)
    trailing_bytes = 0

    def decode_to(self, chunk: bytes, sink: Sink) -> None:
        """Decode ``chunk``, calling ``sink`` with each piece of what it decodes to (no empty ones)."""
        raise NotImplementedError

    def flush_to(self, sink: Sink) -> None:
        """The input has ended: ``sink`` gets what the decoder still held."""

    def decode(self, chunk: bytes) -> bytes:
        """``decode_to``, whole: for input known to be small."""
        pieces: list[bytes] = []
        self.decode_to(chunk, pieces.append)
        return b"".join(pieces)

    def flush(self) -> bytes:
        pieces: list[bytes] = []
        self.flush_to(pieces.append)
        return b"".join(pieces)


class _Zlib(Decoder):
    """gzip (any number of members, as gzip(1) and browsers accept) or deflate."""

    _REPLAY_LIMIT = 64 * 1024

    def __init__(self, gzip: bool):
        self._name = "gzip" if gzip else "deflate"
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None  # deflate: chosen by its header
        self._start = b""  # deflate: the first bytes, until there are two to look at
        self._replay: bytes | None = None  # zlib-wrapped deflate: input so far while it produced no output
        self._trailing = False  # gzip: junk after a member, ignored from there on as browsers do (and counted)
        self._next_member: int | None = None  # gzip: bytes given to a later member while it has produced nothing
        self._next_head = b""  # ... and its first two, to tell junk from a broken member

    def decode_to(self, chunk: bytes, sink: Sink) -> None:
        if self._trailing:
            self.trailing_bytes += len(chunk)
            return
        if self._obj is None:
            self._start += chunk
            if len(self._start) < 2:
                return
            chunk, self._start = self._start, b""
            # RFC 1950 header: CM = 8 and the 16-bit header is a multiple of 31; otherwise it is raw deflate.
            wrapped = chunk[0] & 0x0F == 8 and (chunk[0] << 8 | chunk[1]) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            self._replay = b"" if wrapped else None
        more = bool(chunk)
        while more:
            try:
                data = self._obj.decompress(chunk, PIECE_SIZE)
            except zlib.error as e:
                if self._next_member is not None and (self._next_head + chunk)[:2] != b"\x1f\x8b":
                    # what followed a member only began like another one (0x1f, not 0x1f 0x8b): junk, as above
                    self._trailing = True
                    self.trailing_bytes += self._next_member + len(chunk)
                    self._next_member = None
                    break
                if self._replay is not None:
                    # Data behind a zlib-looking header that fails to inflate: browsers then try raw deflate.
                    chunk, self._replay = self._replay + chunk, None
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise DecodeError(f"{self._name}: {e}") from None
            if self._replay is not None:
                self._replay = None if data or len(self._replay) > self._REPLAY_LIMIT else self._replay + chunk
            if self._next_member is not None:  # a whole member, even an empty one, is not junk
                self._next_member = None if data or self._obj.eof else self._next_member + len(chunk)
                self._next_head = (self._next_head + chunk)[:2]
            if data:
                sink(data)
            # a full piece can leave input unread, or output still to come from what zlib has read: ask again
            chunk = self._obj.unconsumed_tail
            more = bool(chunk) or (len(data) == PIECE_SIZE and not self._obj.eof)
            if self._obj.eof and self._obj.unused_data:
                if self._name == "deflate":
                    raise DecodeError("deflate: data after the end of the stream")
                chunk = self._obj.unused_data
                if chunk[0] != 0x1F:  # not the next gzip member
                    self._trailing = True
                    self.trailing_bytes += len(chunk)
                    break
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._next_member, self._next_head, more = 0, b"", True

    def flush_to(self, sink: Sink) -> None:
        if self._next_member:  # the stream ended inside what began like another member: nothing came of it
            self.trailing_bytes += self._next_member
            self._next_member = None
        if self._obj is not None and not self._trailing and (data := self._obj.flush()):
            sink(data)  # (little or nothing: decode_to has taken out all that the input gave)


class _Brotli(Decoder):
    def __init__(self):
        self._obj = brotli.Decompressor()

    def decode_to(self, chunk: bytes, sink: Sink) -> None:
        if not chunk:
            return
        while True:
            try:
                data = self._obj.process(chunk, output_buffer_limit=PIECE_SIZE)
            except brotli.error as e:
                raise DecodeError(f"br: {e}") from None
            if not data:
                return
            sink(data)
            # What is left of the input is inside the decoder, and maybe output: only a call that returns nothing
            # says that nothing is (can_accept_more_data() can say True while output is still to come).
            chunk = b""


class _Zstd(Decoder):
    """zstd, across any number of concatenated frames."""

    def __init__(self):
        self._obj = _zstd_decompressor()

    def decode_to(self, chunk: bytes, sink: Sink) -> None:
        data = chunk
        while data or not self._obj.needs_input:  # (output still held from a call that stopped at the limit)
            try:
                piece = self._obj.decompress(data, PIECE_SIZE)
            except _zstd.ZstdError as e:
                raise DecodeError(f"zstd: {e}") from None
            data = b""
            if piece:
                sink(piece)
            if self._obj.eof:  # the next frame, if any, needs a decompressor of its own
                data = self._obj.unused_data
                self._obj = _zstd_decompressor()


def _zstd_decompressor():
    # a frame may ask for a window of 8 MiB, no more (RFC 9659, as browsers): else it says how much memory it takes
    window_log = ZSTD_MAX_WINDOW.bit_length() - 1
    return _zstd.ZstdDecompressor(options={_zstd.DecompressionParameter.window_log_max: window_log})


class _Chain(Decoder):
    def __init__(self, decoders: list[Decoder]):
        self._decoders = decoders  # in decoding order

    @property
    def trailing_bytes(self) -> int:  # each counted in its own layer's input
        return sum(d.trailing_bytes for d in self._decoders)

    def _through(self, first: int, sink: Sink) -> Sink:
        """A sink that decodes its pieces with the decoders from ``first`` on and hands the result to ``sink``."""
        for d in reversed(self._decoders[first:]):
            sink = functools.partial(d.decode_to, sink=sink)
        return sink

    def decode_to(self, chunk: bytes, sink: Sink) -> None:
        self._decoders[0].decode_to(chunk, self._through(1, sink))

    def flush_to(self, sink: Sink) -> None:
        for i, d in enumerate(self._decoders):
            d.flush_to(self._through(i + 1, sink))


_FACTORIES = {
    "gzip": lambda: _Zlib(gzip=True),
    "x-gzip": lambda: _Zlib(gzip=True),
    "deflate": lambda: _Zlib(gzip=False),
    "br": _Brotli,
    "zstd": _Zstd,
}


def make_decoder(content_encoding: str | None) -> Decoder | None:
    """None for no/identity encoding. Handles gzip, x-gzip, deflate (zlib-wrapped AND raw deflate, auto-detected
    as browsers do), br (brotli module), zstd (compression.zstd, or its backport), case-insensitive, and comma-separated chains
    ("gzip, br" = applied in that order, so decode in reverse). Raises UnsupportedEncoding for anything else."""
    if content_encoding is None:
        return None
    names = [n.strip().lower() for n in content_encoding.split(",")]
    decoders = []
    for name in reversed(names):
        if name in ("", "identity"):
            continue
        if name not in _FACTORIES:
            raise UnsupportedEncoding(f"unsupported content-encoding: {name!r}")
        decoders.append(_FACTORIES[name]())
    if not decoders:
        return None
    return decoders[0] if len(decoders) == 1 else _Chain(decoders)


class _Full(Exception):
    pass


def decode_body(raw: bytes, content_encoding: str | None, cap: int) -> tuple[bytes, bool]:
    """A request body as its Content-Encoding decodes (the bytes as they are when it cannot: an unknown encoding,
    or bytes not valid in theirs), and whether that is all of it: decoding stops a little past ``cap`` bytes, as a
    few hundred KB of gzip can make gigabytes."""
    try:
        decoder = make_decoder(content_encoding)
    except UnsupportedEncoding:
        decoder = None
    if decoder is None:  # no Content-Encoding, identity, or one that is not known
        return raw, True
    pieces: list[bytes] = []
    size = 0

    def take(piece: bytes) -> None:
        nonlocal size
        pieces.append(piece)
        size += len(piece)
        if size > cap:
            raise _Full

    try:
        decoder.decode_to(raw, take)
        decoder.flush_to(take)
    except _Full:
        return b"".join(pieces), False
    except DecodeError:
        return raw, True
    return b"".join(pieces), True
