"""Incremental Content-Encoding decoders: whole, byte-by-byte and randomly chunked input, chains, errors."""

from __future__ import annotations

import gzip
import random
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_capture_addon.decoding import PIECE_SIZE, DecodeError, Decoder, UnsupportedEncoding, make_decoder

PAYLOAD = b"".join(b'data: {"choices":[{"delta":{"content":"tok%d \xc3\xa9"}}]}\n\n' % i for i in range(300))


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def zstd_streamed(data: bytes) -> bytes:
    # a frame without a content size, as a streaming server writes it
    c = zstandard.ZstdCompressor().compressobj()
    return c.compress(data) + c.flush()


COMPRESSORS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd,
}


def run(decoder: Decoder, data: bytes, sizes) -> bytes:
    out, pos = [], 0
    for size in sizes:
        out.append(decoder.decode(data[pos : pos + size]))
        pos += size
        if pos >= len(data):
            break
    out.append(decoder.decode(data[pos:]))
    out.append(decoder.flush())
    return b"".join(out)


def random_sizes(seed: int, n: int = 10_000) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice([1, 2, 3, 7, 64, 1000]) for _ in range(n)]


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
@pytest.mark.parametrize("chunking", ["whole", "1-byte", "random"])
def test_each_encoding(name, chunking):
    data = COMPRESSORS[name](PAYLOAD)
    sizes = {"whole": [len(data)], "1-byte": [1] * len(data), "random": random_sizes(len(name))}[chunking]
    assert run(make_decoder(name), data, sizes) == PAYLOAD


def test_output_is_incremental():
    c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    d = make_decoder("gzip")
    first = c.compress(b"data: one\n\n") + c.flush(zlib.Z_SYNC_FLUSH)
    assert d.decode(first) == b"data: one\n\n"
    rest = c.compress(b"data: two\n\n") + c.flush()
    assert d.decode(rest) + d.flush() == b"data: two\n\n"


@pytest.mark.parametrize("chunking", [[1] * 100_000, [10**9]])
def test_deflate_raw_autodetected(chunking):
    assert run(make_decoder("deflate"), deflate_raw(PAYLOAD), chunking) == PAYLOAD


def test_deflate_zlib_wrapped_detected_from_split_header():
    data = zlib.compress(PAYLOAD)
    d = make_decoder("deflate")
    assert d.decode(data[:1]) == b""
    assert d.decode(data[1:]) + d.flush() == PAYLOAD


def test_deflate_raw_that_looks_zlib_wrapped_falls_back_to_raw():
    # Raw deflate: a stored block (first byte 0x78: BFINAL=0, BTYPE=00, padding bits 01111) of LEN=1, so the
    # first two bytes are 0x78 0x01, a valid zlib header (CM=8, 0x7801 % 31 == 0). Inflating it as zlib fails;
    # then, as in browsers, raw deflate is tried. 0x03 0x00 is an empty final fixed-Huffman block.
    raw = b"\x78\x01\x00\xfe\xffx\x03\x00"
    with pytest.raises(zlib.error):
        zlib.decompress(raw)
    assert zlib.decompress(raw, -zlib.MAX_WBITS) == b"x"
    for sizes in ([len(raw)], [1] * 20, [3, 1, 1, 5]):
        assert run(make_decoder("deflate"), raw, sizes) == b"x"


def test_deflate_short_input():
    d = make_decoder("deflate")
    assert d.decode(b"x") == b"" and d.flush() == b""
    assert make_decoder("deflate").flush() == b""


def test_gzip_multiple_members():
    data = gzip.compress(b"data: a\n\n") + gzip.compress(b"data: b\n\n")
    for sizes in ([len(data)], [1] * len(data), [3] * 30):
        assert run(make_decoder("gzip"), data, sizes) == b"data: a\n\ndata: b\n\n"


def test_zstd_multiple_frames_and_streamed_frames():
    data = zstd(b"data: a\n\n") + zstd_streamed(b"data: b\n\n") + zstd(PAYLOAD)
    for sizes in ([len(data)], [1] * len(data), random_sizes(3)):
        assert run(make_decoder("zstd"), data, sizes) == b"data: a\n\ndata: b\n\n" + PAYLOAD


@pytest.mark.parametrize("name", ["gzip", "deflate", "br", "zstd"])
@pytest.mark.parametrize("size", [65_537, 200_000, 1_000_000])
def test_a_flushed_chunk_is_handed_on_whole_by_its_own_call(name, size):
    """A streaming server flushes each event: everything a chunk decodes to must come out of that chunk's call,
    however many pieces it takes (zstandard's stream_writer kept what did not fit its last piece until the next
    chunk, when that chunk's events were recorded with the next chunk's time)."""
    events = b"".join(b"data: %06d\n\n" % i for i in range(size // 14 + 2))[:size]
    if name == "zstd":
        obj = zstandard.ZstdCompressor().compressobj()
        chunk = obj.compress(events) + obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    elif name == "br":
        obj = brotli.Compressor()
        chunk = obj.process(events) + obj.flush()
    else:
        obj = zlib.compressobj(wbits=31 if name == "gzip" else 15)
        chunk = obj.compress(events) + obj.flush(zlib.Z_SYNC_FLUSH)
    pieces = []
    make_decoder(name).decode_to(chunk, pieces.append)
    assert b"".join(pieces) == events


@pytest.mark.parametrize("value", ["GZIP", "Gzip", " gzip ", "BR", "ZStd", "Deflate", "X-Gzip"])
def test_case_insensitive_and_whitespace(value):
    data = COMPRESSORS[value.strip().lower()](PAYLOAD)
    assert run(make_decoder(value), data, [len(data)]) == PAYLOAD


@pytest.mark.parametrize(
    "header,encoders",
    [
        ("gzip, br", [gzip.compress, brotli.compress]),
        ("br,gzip", [brotli.compress, gzip.compress]),
        ("deflate, zstd, gzip", [zlib.compress, zstd, gzip.compress]),
        ("identity, gzip", [gzip.compress]),
        ("gzip,identity,br", [gzip.compress, brotli.compress]),
        ("gzip, gzip", [gzip.compress, gzip.compress]),
    ],
)
def test_chains_are_decoded_in_reverse(header, encoders):
    data = PAYLOAD
    for encode in encoders:  # applied in the order listed
        data = encode(data)
    for sizes in ([len(data)], [1] * len(data), random_sizes(9)):
        assert run(make_decoder(header), data, sizes) == PAYLOAD


@pytest.mark.parametrize("value", [None, "", "identity", "IDENTITY", " identity ", "identity, identity", ","])
def test_identity_is_none(value):
    assert make_decoder(value) is None


@pytest.mark.parametrize("value", ["compress", "x-compress", "sdch", "gzip, foo", "bz2", "gzip;q=1", "aes128gcm"])
def test_unknown_encoding_is_unsupported(value):
    with pytest.raises(UnsupportedEncoding):
        make_decoder(value)
    assert issubclass(UnsupportedEncoding, ValueError)


@pytest.mark.parametrize("name", ["gzip", "deflate", "br", "zstd"])
def test_corrupt_data_raises_decode_error(name):
    d = make_decoder(name)
    with pytest.raises(DecodeError):
        d.decode(b"this is definitely not compressed data" * 10)
        d.flush()


@pytest.mark.parametrize("name", ["gzip", "br", "zstd", "deflate"])
def test_corruption_in_the_middle_raises_decode_error(name):
    # zstd frames carry a checksum only on request (without one, corrupted literals just decode wrongly)
    compress = (lambda d: zstandard.ZstdCompressor(write_checksum=True).compress(d)) if name == "zstd" else COMPRESSORS[name]
    data = bytearray(compress(PAYLOAD))
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    d = make_decoder(name)
    with pytest.raises(DecodeError):
        run(d, bytes(data), [1] * len(data))


def test_gzip_checksum_mismatch_raises_decode_error():
    data = bytearray(gzip.compress(PAYLOAD))
    data[-8] ^= 0xFF  # CRC32 in the trailer
    with pytest.raises(DecodeError):
        run(make_decoder("gzip"), bytes(data), [len(data)])


def test_deflate_data_after_end_raises_decode_error():
    with pytest.raises(DecodeError):
        run(make_decoder("deflate"), zlib.compress(b"x") + b"junk", [100])


def test_gzip_junk_after_member_is_ignored_like_browsers_do_and_counted():
    junk = b"junk that is not gzip"
    data = gzip.compress(b"data: x\n\n") + junk
    for sizes in ([len(data)], [1] * len(data), [len(data) - len(junk)] + [4] * 10, [len(data) - 3, 1, 1, 1]):
        d = make_decoder("gzip")
        assert run(d, data, sizes) == b"data: x\n\n"
        assert d.trailing_bytes == len(junk)   # every byte after the member, however it was chunked


@pytest.mark.parametrize("junk", [b"\x1f", b"\x1f junk that begins like gzip", b"\x1f\x1f", b"\x1f\x8b"])
def test_gzip_junk_that_begins_like_another_member_is_ignored_and_counted_too(junk):
    data = gzip.compress(b"data: x\n\n") + junk
    for sizes in ([len(data)], [1] * len(data), [len(data) - len(junk)] + [2] * 20, [len(data) - 2, 1, 1]):
        d = make_decoder("gzip")
        assert run(d, data, sizes) == b"data: x\n\n"
        assert d.trailing_bytes == len(junk)


def test_later_gzip_members_are_still_decoded_even_empty_ones():
    data = gzip.compress(b"data: x\n\n") + gzip.compress(b"") + gzip.compress(b"data: y\n\n") + gzip.compress(b"")
    for sizes in ([len(data)], [1] * len(data), random_sizes(3)):
        d = make_decoder("gzip")
        assert run(d, data, sizes) == b"data: x\n\ndata: y\n\n" and d.trailing_bytes == 0


def test_gzip_trailing_bytes_counted_through_a_chain():
    junk = b"\r\n0\r\n\r\n"
    data = gzip.compress(brotli.compress(PAYLOAD)) + junk   # Content-Encoding: br, gzip
    d = make_decoder("br, gzip")
    assert run(d, data, random_sizes(5)) == PAYLOAD and d.trailing_bytes == len(junk)


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_no_trailing_bytes_in_well_formed_streams(name):
    data = COMPRESSORS[name](PAYLOAD) * (2 if "gzip" in name else 1)   # gzip: two members
    d = make_decoder(name)
    run(d, data, random_sizes(7))
    assert d.trailing_bytes == 0


def test_gzip_bad_second_member_raises_decode_error():
    with pytest.raises(DecodeError):
        run(make_decoder("gzip"), gzip.compress(b"x") + b"\x1f\x8bnot really gzip", [100])


@pytest.mark.parametrize("name,wbits", [("gzip", 16 + 15), ("x-gzip", 16 + 15), ("deflate", 15), ("deflate", -15)])
def test_truncated_stream_returns_what_was_decodable(name, wbits):
    # a client that goes away mid-stream is not a decoding error
    c = zlib.compressobj(wbits=wbits)
    partial = c.compress(b"data: a\n\n") + c.flush(zlib.Z_SYNC_FLUSH)
    d = make_decoder(name)
    assert d.decode(partial) + d.flush() == b"data: a\n\n"


def test_truncated_brotli_and_zstd_do_not_raise():
    for name, data in (("br", brotli.compress(PAYLOAD)), ("zstd", zstd_streamed(PAYLOAD))):
        d = make_decoder(name)
        out = d.decode(data[: len(data) // 2]) + d.flush()
        assert PAYLOAD.startswith(out)


def test_empty_input():
    for name in COMPRESSORS:
        d = make_decoder(name)
        assert d.decode(b"") == b"" and d.flush() == b""


def test_all_decoders_are_decoders():
    for name in [*COMPRESSORS, "gzip, br"]:
        assert isinstance(make_decoder(name), Decoder)


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    names=st.lists(st.sampled_from(["gzip", "deflate", "br", "zstd", "identity"]), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
    raw=st.booleans(),
)
def test_random_chains_and_chunkings_round_trip(payload, names, seed, raw):
    data = payload
    for name in names:
        if name == "deflate":
            data = deflate_raw(data) if raw else zlib.compress(data)
        elif name != "identity":
            data = COMPRESSORS[name](data)
    d = make_decoder(", ".join(names))
    if d is None:
        assert set(names) == {"identity"}
        return
    assert run(d, data, random_sizes(seed, 5000)) == payload


# --- however far the data inflates -----------------------------------------------------------------------------

BOMB_SIZE = 64 * 1024 * 1024
MAX_PIECE = PIECE_SIZE * 3 // 2  # brotli's output buffer grows in steps: its pieces can be half as big again


def _zeros(compressor_chunk) -> bytes:
    """What BOMB_SIZE zero bytes compress to, fed 8 MiB at a time."""
    block = b"\0" * (8 * 1024 * 1024)
    return b"".join(compressor_chunk(block) for _ in range(BOMB_SIZE // len(block)))


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    df = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    br = brotli.Compressor(quality=1)
    zs = zstandard.ZstdCompressor(level=1).compressobj()
    out = {"gzip": _zeros(gz.compress) + gz.flush(), "deflate": _zeros(df.compress) + df.flush(),
           "br": _zeros(br.process) + br.finish(), "zstd": _zeros(zs.compress) + zs.flush()}
    out["gzip, gzip"] = gzip.compress(out["gzip"])
    out["br, gzip"] = gzip.compress(out["br"])
    return out


@pytest.mark.parametrize("name", ["gzip", "deflate", "br", "zstd", "gzip, gzip", "br, gzip"])
@pytest.mark.parametrize("chunk_size", [None, 997])
def test_what_a_chunk_decodes_to_comes_in_small_pieces_however_far_it_inflates(bombs, name, chunk_size):
    data = bombs[name]
    assert len(data) * 100 < BOMB_SIZE
    d = make_decoder(name)
    sizes = []
    for i in range(0, len(data), chunk_size or len(data)):
        d.decode_to(data[i:i + (chunk_size or len(data))], lambda piece: sizes.append(len(piece)))
    d.flush_to(lambda piece: sizes.append(len(piece)))
    assert sum(sizes) == BOMB_SIZE and 0 < min(sizes) and max(sizes) <= MAX_PIECE


@pytest.mark.parametrize("name", ["gzip", "deflate", "br", "zstd", "gzip, gzip", "br, gzip"])
def test_an_exception_from_the_sink_stops_the_decoding_there(bombs, name):
    class Enough(Exception):
        pass

    got = []

    def sink(piece):
        got.append(len(piece))
        if sum(got) > 1024 * 1024:
            raise Enough

    with pytest.raises(Enough):
        make_decoder(name).decode_to(bombs[name], sink)
    assert sum(got) <= 1024 * 1024 + MAX_PIECE


def test_decode_is_decode_to_whole():
    data = gzip.compress(PAYLOAD)
    pieces = []
    make_decoder("gzip").decode_to(data, pieces.append)
    assert b"".join(pieces) == make_decoder("gzip").decode(data) == PAYLOAD


def test_brotli_output_still_inside_the_decoder_comes_out_with_its_chunk():
    # can_accept_more_data() says True while output of the input taken in is still to come: decode_to must not stop
    # there, or an event would be recorded with a later chunk (and the next process() call refused)
    plain = b"data: x\n\n" + b"\0" * (3 * 1024 * 1024) + b"\n\ndata: y\n\n"
    data = brotli.compress(plain, quality=5)
    for size in (1, 7, 100, len(data)):
        d = make_decoder("br")
        assert b"".join(d.decode(data[i:i + size]) for i in range(0, len(data), size)) == plain


@pytest.mark.parametrize("window_log,accepted", [(23, True), (24, False)])
def test_a_zstd_frame_may_ask_for_an_8_mib_window_no_more(window_log, accepted):
    # RFC 9659: a zstd content coding's window is at most 8 MB; browsers refuse more, and the decoder would allocate it
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log)
    c = zstandard.ZstdCompressor(compression_params=params).compressobj()
    data = c.compress(PAYLOAD) + c.flush()
    assert zstandard.get_frame_parameters(data).window_size == 1 << window_log
    if accepted:
        assert run(make_decoder("zstd"), data, [100] * 100) == PAYLOAD
    else:
        with pytest.raises(DecodeError, match="zstd"):
            make_decoder("zstd").decode(data)
