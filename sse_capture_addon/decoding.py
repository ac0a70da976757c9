"""Incremental Content-Encoding decoders: gzip, deflate (zlib-wrapped or raw), br, zstd, and chains of them.

Each Decoder turns compressed chunks into the bytes decodable so far, using the libraries' streaming APIs,
so a long-lived response never has to be buffered whole. Sans-IO: what a decoder skipped it only counts
(``trailing_bytes``); saying so is the caller's business.
"""

from __future__ import annotations

import zlib

import brotli
import zstandard


class UnsupportedEncoding(ValueError):
    pass


class DecodeError(Exception):
    """The input is not valid in its encoding. A stream that merely stops early (a client went away mid-member)
    is not an error: flush() returns what was decodable."""


class Decoder:
    #: input bytes after the end of the encoded data that were ignored, not decoded (gzip only: browsers
    #: ignore what follows a gzip member when it is not another member)
    trailing_bytes = 0

    def decode(self, chunk: bytes) -> bytes:
        raise NotImplementedError

    def flush(self) -> bytes:
        return b""


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

    def decode(self, chunk: bytes) -> bytes:
        if self._trailing:
            self.trailing_bytes += len(chunk)
            return b""
        if self._obj is None:
            self._start += chunk
            if len(self._start) < 2:
                return b""
            chunk, self._start = self._start, b""
            # RFC 1950 header: CM = 8 and the 16-bit header is a multiple of 31; otherwise it is raw deflate.
            wrapped = chunk[0] & 0x0F == 8 and (chunk[0] << 8 | chunk[1]) % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            self._replay = b"" if wrapped else None
        out = []
        while chunk:
            try:
                data = self._obj.decompress(chunk)
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
            out.append(data)
            chunk = b""
            if self._obj.eof and self._obj.unused_data:
                if self._name == "deflate":
                    raise DecodeError("deflate: data after the end of the stream")
                chunk = self._obj.unused_data
                if chunk[0] != 0x1F:  # not the next gzip member
                    self._trailing = True
                    self.trailing_bytes += len(chunk)
                    break
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._next_member, self._next_head = 0, b""
        return b"".join(out)

    def flush(self) -> bytes:
        if self._next_member:  # the stream ended inside what began like another member: nothing came of it
            self.trailing_bytes += self._next_member
            self._next_member = None
        return b"" if self._obj is None or self._trailing else self._obj.flush()


class _Brotli(Decoder):
    def __init__(self):
        self._obj = brotli.Decompressor()

    def decode(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        try:
            return self._obj.process(chunk)
        except brotli.error as e:
            raise DecodeError(f"br: {e}") from None


class _Zstd(Decoder):
    """zstd, across any number of concatenated frames."""

    def __init__(self):
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()

    def decode(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            try:
                out.append(self._obj.decompress(chunk))
            except zstandard.ZstdError as e:
                raise DecodeError(f"zstd: {e}") from None
            chunk = b""
            if self._obj.eof:  # the next frame, if any, needs a fresh decompressobj
                chunk = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
        return b"".join(out)


class _Chain(Decoder):
    def __init__(self, decoders: list[Decoder]):
        self._decoders = decoders  # in decoding order

    @property
    def trailing_bytes(self) -> int:  # each counted in its own layer's input
        return sum(d.trailing_bytes for d in self._decoders)

    def decode(self, chunk: bytes) -> bytes:
        for d in self._decoders:
            chunk = d.decode(chunk)
        return chunk

    def flush(self) -> bytes:
        data = b""
        for d in self._decoders:
            data = d.decode(data) + d.flush()
        return data


_FACTORIES = {
    "gzip": lambda: _Zlib(gzip=True),
    "x-gzip": lambda: _Zlib(gzip=True),
    "deflate": lambda: _Zlib(gzip=False),
    "br": _Brotli,
    "zstd": _Zstd,
}


def make_decoder(content_encoding: str | None) -> Decoder | None:
    """None for no/identity encoding. Handles gzip, x-gzip, deflate (zlib-wrapped AND raw deflate, auto-detected
    as browsers do), br (brotli module), zstd (zstandard module), case-insensitive, and comma-separated chains
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
