"""The per-stream shortcuts of the capture addon (cached, or from raw header fields) give exactly what the
mitmproxy or standard-library call they stand for gives."""

import gzip
import time
import tracemalloc
import uuid
import zlib

import brotli
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy.test import taddons, tflow, tutils

from reliability_helpers import decompression_bomb
from sse_capture_addon.capture import SSECapture, _field, _pretty_url, _str
from sse_capture_addon.redact import DEFAULT_HEADERS, Redactor
from sse_capture_addon.writer import new_stream_id, recording_name, utc_timestamp

HOSTS = ["example.com", "Example.COM", "example.com:80", "example.com:443", "example.com:8080", "127.0.0.1:43210",
         "[::1]", "[::1]:8080", "::1", "a:b:c", "bad host!", "example.com:", "example.com:99999", "xn--bcher-kva.ch",
         "bücher.ch", "caf\udce9.example", "", None]


def _request(url, host, http_version="HTTP/1.1", authority=None, method="GET", path=None):
    f = tflow.tflow()
    req = f.request
    req.url = url
    req.method = method
    req.http_version = http_version
    req.headers.clear()
    if host is not None:
        req.headers["host"] = host
    if authority is not None:
        req.authority = authority
    if path is not None:
        req.path = path
    return req


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("url", ["http://example.com/sse?a=1", "https://example.com/sse", "http://h:8080/x"])
@pytest.mark.parametrize("http_version", ["HTTP/1.1", "HTTP/2.0"])
def test_pretty_url_is_mitmproxys(url, host, http_version):
    req = _request(url, host, http_version)
    assert _pretty_url(req) == req.pretty_url
    if http_version == "HTTP/2.0":
        req.authority = host or ""
        assert _pretty_url(req) == req.pretty_url


@pytest.mark.parametrize("method,path", [("CONNECT", None), ("OPTIONS", b"*"), ("GET", b"/caf\xe9?q=\xff#f")])
def test_pretty_url_is_mitmproxys_for_other_request_forms(method, path):
    req = _request("http://example.com/", "other.example:81", method=method, path=path)
    assert _pretty_url(req) == req.pretty_url


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(host=st.text(max_size=30), scheme=st.sampled_from(["http", "https"]), port=st.integers(1, 65535))
def test_pretty_url_is_mitmproxys_for_any_host_header(host, scheme, port):
    req = _request(f"{scheme}://example.com:{port}/p", None)
    req.headers["host"] = host
    assert _pretty_url(req) == req.pretty_url


def test_stream_ids_are_version_4_uuids():
    ids = {new_stream_id() for _ in range(1000)}
    assert len(ids) == 1000
    for i in ids:
        u = uuid.UUID(hex=i)
        assert u.hex == i and u.version == 4 and u.variant == uuid.RFC_4122


@settings(max_examples=500, deadline=None)
@given(started=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_times_in_names_and_headers_are_strftimes(started):
    utc = time.gmtime(started)
    assert utc_timestamp(started) == time.strftime("%Y-%m-%dT%H:%M:%S", utc) + f".{int(started % 1 * 1e6):06d}Z"
    name = recording_name(started, "GET", "http://example.com/p", "0123456789abcdef")
    assert name.startswith(time.strftime("%Y-%m-%d/%H%M%S", utc) + f".{int(started % 1 * 1e6):06d}_GET_")


def test_names_across_a_day_boundary_and_within_a_second():
    midnight = 1700006400.0  # 2023-11-15T00:00:00Z
    names = [recording_name(t, "GET", "http://example.com:8080/a/b?q=1", "0123456789abcdef")
             for t in (midnight - 0.25, midnight - 0.75, midnight, midnight + 0.5)]
    assert names == ["2023-11-14/235959.750000_GET_example.com-8080_a_b_01234567.jsonl",
                     "2023-11-14/235959.250000_GET_example.com-8080_a_b_01234567.jsonl",
                     "2023-11-15/000000.000000_GET_example.com-8080_a_b_01234567.jsonl",
                     "2023-11-15/000000.500000_GET_example.com-8080_a_b_01234567.jsonl"]


@pytest.mark.parametrize("fields", [
    [], [(b"content-encoding", b"gzip")], [(b"Content-Encoding", b"gzip"), (b"CONTENT-ENCODING", b"br")],
    [(b"content-encoding", b"caf\xe9")], [(b"content-encoding", b"")], [(b"x-content-encoding", b"gzip")],
])
def test_header_values_from_the_raw_fields_are_headers_get(fields):
    headers = tutils.tresp(headers=fields).headers
    assert _str(_field(headers, b"content-encoding")) == headers.get("content-encoding")


@pytest.mark.parametrize("encoding", [None, "gzip", "br", "deflate", "zstd", "identity", "utf8", "bogus"])
def test_an_empty_request_body_is_recorded_as_the_general_path_records_it(encoding):
    addon = SSECapture()
    with taddons.context(addon):
        req = tflow.tflow().request
        if encoding:
            req.headers["content-encoding"] = encoding
        req.raw_content = b"x"
        general = addon._body(req, 10)
        req.raw_content = b""
        empty = addon._body(req, 10)
    assert list(empty) == list(general)  # the same keys in the same order: the header line keeps it
    assert empty == {"body_size": 0, "body_truncated": False, "body": ""}


@pytest.mark.parametrize("body, cap, expected", [
    ("aé€".encode(), 2, {"body": "a"}),                       # cut inside é: text up to the character
    ("aé€".encode(), 5, {"body": "aé"}),                      # cut inside €
    ("aé€".encode(), 6, {"body": "aé€"}),
    (b"\xff\xfeab", 3, {"body": "//5h", "body_base64": True}),  # not UTF-8 at all: base64, as before
])
def test_a_request_body_cut_at_max_body_stays_text_when_it_was_text(body, cap, expected):
    addon = SSECapture()
    with taddons.context(addon):
        req = tflow.tflow().request
        req.raw_content = body
        out = addon._body(req, cap)
    assert out == {"body_size": len(body), "body_truncated": len(body) > cap, **expected}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "identity"])
def test_a_compressed_request_body_is_recorded_as_mitmproxy_decodes_it(encoding):
    plain = b'{"prompt":"' + "h\u00e9llo ".encode() * 50 + b'"}'
    compress = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress,
                "zstd": zstandard.ZstdCompressor().compress, "identity": bytes}[encoding]
    addon = SSECapture()
    with taddons.context(addon):
        req = tflow.tflow().request
        req.headers["content-encoding"] = encoding
        req.raw_content = compress(plain)
        out = addon._body(req, 1 << 20)
        assert req.get_content(strict=True) == plain
    assert out == {"body_size": len(plain), "body_truncated": False, "body": plain.decode()}


@pytest.mark.parametrize("encoding", ["gzip, gzip", "br", "zstd"])
def test_a_compressed_request_body_is_decoded_no_further_than_max_body(encoding):
    """A few KB can decode to gigabytes: decoding stops a piece past the cap, so the size is not known."""
    body = decompression_bomb(encoding, 64 * 1024 * 1024)
    addon = SSECapture()
    with taddons.context(addon):
        req = tflow.tflow().request
        req.headers["content-encoding"] = encoding
        req.raw_content = body
        tracemalloc.start()
        try:
            out = addon._body(req, 1000)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert out == {"body_size": None, "body_truncated": True, "body": "data: first\n\n" + "\0" * 987}
    assert peak < 2 * 1024 * 1024


def test_a_compressed_request_body_that_cannot_be_redacted_whole_is_left_out(tmp_path):
    body = gzip.compress(b'{"password":"pw-SECRET","padding":"' + b"p" * 5000 + b'"}')
    addon = SSECapture()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, sse_capture_dir=str(tmp_path), sse_capture_redact_keys=["password"])
        req = tflow.tflow().request
        req.headers["content-encoding"] = "gzip"
        req.raw_content = body
        out = addon._body(req, 1000)
        assert addon._body(req, 10_000)["body"] == '{"password":"[REDACTED]","padding":"' + "p" * 5000 + '"}'
    assert out["body"] is None and out["body_size"] is None and "sse_capture_redact_keys" in out["body_omitted"]


@pytest.mark.parametrize("encoding", ["gzip", "x-snappy"])
def test_a_request_body_that_is_not_what_its_content_encoding_says_is_recorded_as_it_is(encoding):
    addon = SSECapture()
    with taddons.context(addon):
        req = tflow.tflow().request
        req.headers["content-encoding"] = encoding
        req.raw_content = b"not gzip at all, whatever the header says"
        out = addon._body(req, 1000)
    assert out == {"body_size": 41, "body_truncated": False, "body": "not gzip at all, whatever the header says"}


def test_header_fields_are_the_headers_mitmproxy_gives_with_credentials_redacted():
    headers = tutils.tresp(headers=[(b"Authorization", b"Bearer x"), (b"x-name", b"caf\xe9"), (b"COOKIE", b"a=b"),
                                    (b"caf\xe9", b"v"), (b"X-Api-Key", b"\xff"), (b"cookie", b"c=d")]).headers
    out, hit = Redactor().header_fields(headers.fields)
    assert out == [[k, "[REDACTED]" if k.lower() in DEFAULT_HEADERS else v] for k, v in headers.items(multi=True)]
    assert out[1] == ["x-name", "caf\udce9"] and out[3] == ["caf\udce9", "v"]
    assert hit == ["authorization", "cookie", "x-api-key"]
    assert Redactor(()).header_fields(headers.fields) == ([list(kv) for kv in headers.items(multi=True)], [])
