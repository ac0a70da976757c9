"""Incremental Content-Encoding decoders, so a compressed stream can be parsed as it flows.

The client always gets the original bytes; these decoders only feed the parser.
"""

from __future__ import annotations

import zlib

import brotli
import zstandard


class UnsupportedEncoding(ValueError):
    pass


class DecodeError(Exception):
    pass


class _Zlib:
    def __init__(self, wbits: int):
        self._obj = zlib.decompressobj(wbits)

    def decode(self, chunk: bytes) -> bytes:
        try:
            return self._obj.decompress(chunk)
        except zlib.error as e:
            raise DecodeError(str(e)) from None

    def flush(self) -> bytes:
        try:
            return self._obj.flush()
        except zlib.error as e:
            raise DecodeError(str(e)) from None


class _Deflate:
    """``deflate`` is zlib-wrapped by the RFC but raw in practice too; browsers accept both."""

    def __init__(self) -> None:
        self._inner: _Zlib | None = None
        self._head = b""

    def decode(self, chunk: bytes) -> bytes:
        if self._inner is None:
            self._head += chunk
            if len(self._head) < 2:
                return b""
            cmf, flg = self._head[0], self._head[1]
            wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._inner = _Zlib(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            chunk, self._head = self._head, b""
        return self._inner.decode(chunk)

    def flush(self) -> bytes:
        if self._inner is None:
            if self._head:
                raise DecodeError("truncated deflate stream")
            return b""
        return self._inner.flush()


class _Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def decode(self, chunk: bytes) -> bytes:
        try:
            return self._obj.process(chunk)
        except brotli.error as e:
            raise DecodeError(f"brotli: {e}") from None

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def decode(self, chunk: bytes) -> bytes:
        try:
            return self._obj.decompress(chunk)
        except zstandard.ZstdError as e:
            raise DecodeError(f"zstd: {e}") from None

    def flush(self) -> bytes:
        return b""


class Decoder:
    """A chain of decoders, applied in reverse of the order the encodings were listed."""

    def __init__(self, stages: list):
        self._stages = stages

    def decode(self, chunk: bytes) -> bytes:
        for stage in self._stages:
            chunk = stage.decode(chunk)
        return chunk

    def flush(self) -> bytes:
        out = b""
        for i, stage in enumerate(self._stages):
            out = stage.decode(out) if out and i else out
            out += stage.flush()
        return out


_FACTORIES = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "deflate": _Deflate,
    "br": _Brotli,
    "zstd": _Zstd,
}


def make_decoder(content_encoding: str | None) -> Decoder | None:
    if not content_encoding:
        return None
    names = [n.strip().lower() for n in content_encoding.split(",") if n.strip()]
    names = [n for n in names if n != "identity"]
    if not names:
        return None
    stages = []
    for name in reversed(names):
        if name not in _FACTORIES:
            raise UnsupportedEncoding(f"unsupported Content-Encoding {name!r}")
        stages.append(_FACTORIES[name]())
    return Decoder(stages)
