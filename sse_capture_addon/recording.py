"""The recording format: one JSON object per line, knows nothing of mitmproxy.

A recording is a header line, then one line per thing that happened on the stream, in order, then an
end line. Every line after the header has ``t``: seconds since the response headers reached the proxy.
See ``recording.schema.json`` for the full description of each kind of line.

Event data is stored so that it stays both grep-friendly and exact: when the data is JSON whose compact
re-serialisation gives back exactly the original text, it is stored as that JSON value (so
``grep '"type":"tool_use"'`` finds it); otherwise it is stored as a string. ``decode_data`` reverses
this byte for byte.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import json
import os
import stat
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import eq
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import SplitResult

import orjson

from .decoding import DecodeError, make_decoder, too_inflated
from .sse import MessageBatch, SSEParser

FORMAT = "sse-capture"
FORMAT_VERSION = 3  # the version written; 2 added chunk lines kept by their events ("blocks"), 3 their "form"
READ_VERSIONS = (1, 2, 3)  # the versions read

#: How a stream ended: the ``reason`` of the end line. ``proxy_died`` is never written; readers report it
#: for a file with no end line whose writer is gone.
END_REASONS = (
    "complete",
    "client_disconnected",
    "server_error",
    "proxy_shutdown",
    "recording_failed",
)
PROXY_DIED = "proxy_died"
IN_PROGRESS = "in_progress"

RECORD_KINDS = ("event", "comment", "no_dispatch", "oversized", "ignored", "chunk", "error", "end")

#: Lines longer than this are refused by the reader (a hostile or corrupt file must not exhaust memory).
DEFAULT_MAX_LINE = 256 * 1024 * 1024


# --- event data ----------------------------------------------------------------------------------------

def data_json(data: str) -> bytes:
    """The JSON text stored under ``data``: the data itself when it is JSON that re-serialises compactly to
    exactly the same text, otherwise the data as a JSON string."""
    if data[:1] in ("{", "[") and data[-1:] in ("}", "]"):
        raw = data.encode("utf-8", "surrogatepass")
        if _exact_container(raw):
            return raw
    return orjson.dumps(data)


def _exact_json(raw: bytes) -> bool:
    try:
        return orjson.dumps(orjson.loads(raw)) == raw
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):  # e.g. integers beyond 64 bits
        return False


def _load_speedups() -> Callable[..., bool] | None:
    """The C scanner that proves most token data exact without building Python objects (``_speedups.c``), when
    it was built and agrees with the orjson installed here on the cases it relies on."""
    try:
        from ._speedups import exact_json
    except ImportError:
        return None
    probes = [b'["\\u001f\\n\\"\\\\\x7f\xc3\xa9",0.1,-0.0,123456789012345678,true,null]', b'{"a":{"b":[]}}',
              b'[1234567.25,0.0001,-5.5]']
    return exact_json if all(exact_json(p) and _exact_json(p) for p in probes) else None


_exact_c = _load_speedups()
_exact_lines_c = None
if _exact_c is not None:  # it scans with exact_json's scanner: only when that passed the check above
    from ._speedups import exact_lines as _exact_lines_c


def _exact_container(raw: bytes) -> bool:
    """``raw`` (an object or array's text) is exact JSON: by the C scanner when it can tell, else by orjson."""
    return (_exact_c is not None and _exact_c(raw)) or _exact_json(raw)


_CONTAINERS = {dict, list}
_OPENERS, _CLOSERS = (b"{", b"["), (b"}", b"]")


def data_json_many(datas: list[bytes]) -> list[bytes]:
    """``data_json`` of each of many data given as UTF-8 bytes. Without the C scanner, when they are all JSON
    objects or arrays (a token stream's chunk), one parse checks them all; with it, each is scanned alone (its
    C scan of the whole run, in message_lines, has already failed) and only what it cannot prove goes to orjson."""
    if _exact_c is None and len(datas) > 1 and datas[0][:1] in _OPENERS and datas[-1][:1] in _OPENERS:
        # The same count is not enough (["[{}", "{}],[]"] parses as two values), so each value is compared
        # with its own text. Not into a list: holding many orjson.dumps results costs ~2.5 us each, because
        # each one keeps the large buffer orjson allocated for it.
        try:
            values = orjson.loads(b"[" + b",".join(datas) + b"]")
            exact = len(values) == len(datas) and set(map(type, values)) <= _CONTAINERS \
                and all(map(eq, map(orjson.dumps, values), datas))
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):  # too deep to re-serialise, ...
            exact = False
        if exact:
            return datas
    # b"%b" % ...: an exact-size copy, for the same reason
    return [d if d[:1] in _OPENERS and d[-1:] in _CLOSERS and _exact_container(d)
            else b"%b" % orjson.dumps(d.decode()) for d in datas]


def encode_data(data: str) -> Any:
    """The value stored under ``data`` (see ``data_json``)."""
    return orjson.loads(data_json(data))


def decode_data(value: Any) -> str:
    """The exact event data text for a stored ``data`` value."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode("utf-8")


# --- recorded URLs -------------------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}


def url_host_port(parts: SplitResult) -> tuple[str | None, int | None]:
    """``(parts.hostname, parts.port)`` of a URL as mitmproxy writes it. For an IPv6 host it leaves out the
    brackets ("http://::1:8080/x"), so no port can be read: the whole netloc is the host then."""
    try:
        return parts.hostname, parts.port
    except ValueError:
        return parts.netloc, None


# --- writing lines -------------------------------------------------------------------------------------

def time_json(seconds: float) -> bytes:
    """``t`` as written: microsecond resolution, always six decimals (the cheapest float formatting)."""
    return b"%.6f" % seconds


def line(record: dict) -> bytes:
    """``record`` as a line. mitmproxy hands over bytes that are not UTF-8 (in a header value, a URL, an error
    message) as lone surrogates, which JSON cannot hold: those bytes are then written as ``\\xNN`` text rather
    than the line being lost."""
    try:
        return orjson.dumps(record) + b"\n"
    except orjson.JSONEncodeError:
        return orjson.dumps(_escape_bytes(record)) + b"\n"


def header_line(header: dict) -> bytes:
    """``line`` for the header, which also says ``"escaped_bytes": true`` when it had to escape."""
    try:
        return orjson.dumps(header) + b"\n"
    except orjson.JSONEncodeError:
        return line({**_escape_bytes(header), "escaped_bytes": True})


def escape_bytes(text: str) -> str:
    """``text`` with the lone surrogates that stand for bytes that are not UTF-8 (mitmproxy's surrogateescape
    decoding) written as ``\\xNN``, so that JSON and logs can hold it."""
    return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _escape_bytes(value: Any) -> Any:
    if isinstance(value, str):
        return escape_bytes(value)
    if isinstance(value, dict):
        return {_escape_bytes(k): _escape_bytes(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape_bytes(v) for v in value]
    return value


def line_at(t_json: bytes, record: dict) -> bytes:
    """``record`` as a line with ``t`` first."""
    try:
        body = orjson.dumps(record)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: a retry field is any run of digits
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    return b'{"t":' + t_json + b"," + body[1:] + b"\n"


def event_line_json(t_json: bytes, event_type: str, data: bytes, last_event_id: str, retry: int | None,
                    redacted: bool = False) -> bytes:
    """An event line from already-encoded ``t`` and ``data`` JSON (the capture hot path: no dict)."""
    if not last_event_id and retry is None and not redacted:  # the commonest lines, in one formatting
        if event_type == "message":
            return b'{"t":%b,"kind":"event","event":"message","data":%b}\n' % (t_json, data)
        return b'{"t":%b,"kind":"event","event":%b,"data":%b}\n' % (t_json, orjson.dumps(event_type), data)
    parts = [b'{"t":', t_json, b',"kind":"event","event":', orjson.dumps(event_type)]
    if last_event_id:
        parts += (b',"id":', orjson.dumps(last_event_id))
    if retry is not None:
        parts += (b',"retry":', b"%d" % retry)
    if redacted:
        parts.append(b',"redacted":true')
    parts += (b',"data":', data, b"}\n")
    return b"".join(parts)


def message_lines(t_json: bytes, batch: MessageBatch) -> bytes:
    """The lines of a ``MessageBatch``'s events, all at ``t``: the lines ``event_line_json`` makes, in a few
    calls for the whole run."""
    head = b'{"t":%b,"kind":"event","event":"message",' % t_json
    if batch.last_event_id:
        head += b'"id":%b,' % orjson.dumps(batch.last_event_id)
    head += b'"data":'
    if _exact_lines_c is not None and (lines := _exact_lines_c(batch.blocks, batch.count, head)) is not None:
        return lines  # every data exact JSON: scanned and copied in C
    return head + (b"}\n" + head).join(data_json_many(batch.datas)) + b"}\n"


#: How the lines of a ``blocks`` chunk are written back, one letter per field, in the order of the fields in each
#: event's block: ``e`` the ``event:`` line (left out for "message"), ``E`` the same but always written, ``i`` the
#: ``id:`` line (when the event line has an id), ``d`` the ``data:`` lines (one per line of the data), ``r`` the
#: ``retry:`` line (when it has a retry; without ``r``, such an event has no block). ``c``: comment lines are
#: blocks too, ``:TEXT`` and a blank line. Every field is ``name: value``; ``crlf`` ends lines with CR LF.
DEFAULT_FORM = "ed"
FORM_LETTERS = frozenset("eEidrc")


def chunk_line(t_json: bytes, n: int, raw: bytes) -> bytes:
    return b'{"t":%b,"kind":"chunk","n":%d,"b64":"%b"}\n' % (t_json, n, b2a_base64(raw, newline=False))


def blocks_chunk_line(t_json: bytes, n: int, count: int, skip: int = 0, rest: bytes = b"",
                      form: str = DEFAULT_FORM, crlf: bool = False) -> bytes:
    """A chunk line for a chunk whose bytes are the ``event_block`` of each of the ``count`` lines after it, in
    ``form`` (less the first ``skip`` bytes, which an earlier chunk carried), then ``rest`` (the start of a block
    that a later chunk ends): the bytes the event lines keep are not written twice (in base64)."""
    line = b'{"t":%b,"kind":"chunk","n":%d,"blocks":%d' % (t_json, n, count)
    if form != DEFAULT_FORM:
        line += b',"form":"%b"' % form.encode("ascii")
    if crlf:
        line += b',"crlf":true'
    if skip:
        line += b',"skip":%d' % skip
    if rest:
        line += b',"rest_b64":"%b"' % b2a_base64(rest, newline=False)
    return line + b"}\n"


def form_error(form: Any) -> str | None:
    """What is wrong with a chunk line's ``form``, or None."""
    if not isinstance(form, str) or not form or not set(form) <= FORM_LETTERS:
        return f"chunk form must be letters from 'eEidrc', got {form!r}"
    if len(set(form)) != len(form) or "d" not in form or ("e" in form and "E" in form):
        return f"chunk form {form!r} must have 'd', each letter at most once and not both 'e' and 'E'"
    return None


def line_ending(crlf: bool) -> bytes:
    """A form's line ending."""
    return b"\r\n" if crlf else b"\n"


def event_block(record: dict, form: str = DEFAULT_FORM, crlf: bool = False) -> bytes | None:
    """The block a line stands for in a ``blocks`` chunk of ``form``; None for a line that has none."""
    kind = record.get("kind")
    if kind == "comment":
        text = record["text"]
        if "c" not in form or "\n" in text or "\r" in text:
            return None
        return comment_block(text, line_ending(crlf))
    if kind != "event" or record.get("redacted"):
        return None
    data, type_, id_ = decode_data(record["data"]), record["event"], record.get("id", "")
    if not type_ or "\r" in data or any(c in text for text in (type_, id_) for c in "\r\n"):
        return None
    return form_block(form, line_ending(crlf), type_, data, id_, record.get("retry"))


def comment_block(text: str, eol: bytes) -> bytes:
    """A comment line's block in a form with ``c``: ``:TEXT`` and a blank line."""
    return b":%b%b%b" % (text.encode("utf-8", "surrogatepass"), eol, eol)


def sse_block(event_type: str, data: str) -> bytes:
    """``event: TYPE`` (not for "message"), ``data: DATA`` and a blank line, in UTF-8 with LF endings: what
    ``form_block`` gives for an event without a retry in the default form, in a third of its time (the writer's
    token-stream path)."""
    block = b"data: %b\n\n" % data.encode("utf-8", "surrogatepass").replace(b"\n", b"\ndata: ")
    return block if event_type == "message" else b"event: %b\n%b" % (event_type.encode("utf-8", "surrogatepass"),
                                                                       block)


def form_block(form: str, eol: bytes, event_type: str, data: str, last_event_id: str,
               retry: int | None) -> bytes | None:
    """An event's block in ``form``; None when the form cannot write it (a retry, and no ``r``)."""
    if retry is not None and "r" not in form:
        return None
    template, fields = _form_template(form, eol, event_type != "message", bool(last_event_id), retry is not None)
    values = []
    for field_ in fields:
        if field_ == "d":
            values.append(data.encode("utf-8", "surrogatepass").replace(b"\n", eol + b"data: ") if "\n" in data
                          else data.encode("utf-8", "surrogatepass"))
        elif field_ == "e":
            values.append(event_type.encode("utf-8", "surrogatepass"))
        elif field_ == "i":
            values.append(last_event_id.encode("utf-8", "surrogatepass"))
        else:
            values.append(retry)
    return template % tuple(values)


@functools.lru_cache(maxsize=256)
def _form_template(form: str, eol: bytes, typed: bool, with_id: bool, with_retry: bool) -> tuple[bytes, str]:
    """The %-template of a block in ``form`` and the fields that fill it, for an event of a type other than
    "message" (``typed``), with an id, with a retry or not."""
    lines, fields = [], ""
    for letter in form:
        if letter == "d":
            lines.append(b"data: %b")
        elif letter == "E" or letter == "e" and typed:
            lines.append(b"event: %b")
        elif letter == "i" and with_id:
            lines.append(b"id: %b")
        elif letter == "r" and with_retry:
            lines.append(b"retry: %d")
        else:
            continue
        fields += letter.lower()
    return eol.join(lines) + eol + eol, fields


def chunk_bytes(records: list[dict], index: int) -> bytes:
    """The raw bytes of the chunk line ``records[index]``."""
    record = records[index]
    if "b64" in record:
        return base64.b64decode(record["b64"])
    # a file cut short (the proxy died) may hold fewer of the lines than the chunk line says
    form, crlf = record.get("form", DEFAULT_FORM), record.get("crlf", False)
    blocks = b"".join(event_block(r, form, crlf) or b"" for r in records[index + 1:index + 1 + record["blocks"]])
    return blocks[record.get("skip", 0):] + base64.b64decode(record.get("rest_b64", ""))


def event_line(t: float, event_type: str, data: Any, last_event_id: str, retry: int | None,
               redacted: bool = False) -> bytes:
    """An event line with ``data`` as a stored value (a string, or a JSON value)."""
    return event_line_json(time_json(t), event_type, orjson.dumps(data), last_event_id, retry, redacted)


# --- reading -------------------------------------------------------------------------------------------

class RecordingError(ValueError):
    """A recording file is not valid; ``str()`` is ``file:line: what is wrong``, or ``file: what is wrong`` for
    ``lineno`` 0 (the file as a whole: it cannot be opened, a directory holds none)."""

    def __init__(self, path: str | os.PathLike, lineno: int, message: str):
        self.path = os.fspath(path)
        self.lineno = lineno
        self.message = message
        super().__init__(f"{self.path}:{lineno}: {message}" if lineno else f"{self.path}: {message}")


_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
               int: "integer", float: "number"}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


_NUMBER = (int, float)
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))

# Required fields per kind, with their allowed types (bool is excluded from numbers below).
_REQUIRED: dict[str, dict[str, tuple]] = {
    "event": {"event": (str,), "data": (str, dict, list)},
    "comment": {"text": (str,)},
    "no_dispatch": {},
    "oversized": {"event": (str,), "size": (int,)},
    "ignored": {"field": (str,), "value": (str,), "reason": (str,)},
    "chunk": {"n": (int,)},
    "error": {"message": (str,)},
    "end": {"reason": (str,), "events": (int,), "bytes": (int,)},
}
_OPTIONAL: dict[str, dict[str, tuple]] = {
    "event": {"id": (str,), "retry": (int,), "redacted": (bool,)},
    "no_dispatch": {"id": (str,), "retry": (int,)},
    "oversized": {"id": (str,), "retry": (int,), "data_prefix": (str,)},
    "chunk": {"b64": (str,), "blocks": (int,), "skip": (int,), "rest_b64": (str,), "form": (str,), "crlf": (bool,)},
    "error": {"what": (str,)},
    "end": {"message": _OPT_STR, "tail": _OPT_STR, "comments": (int,), "chunks": (int,),
            "tail_truncated": (bool,), "bom": (bool,), "line_endings": (dict,), "errors": (list,),
            "decoded_bytes": (int,), "oversized": (int,), "stream_ended": (str,),
            "tail_redacted": (bool,), "tail_dropped": (bool,), "tail_size": (int,)},
}

_HEADER_REQUIRED: dict[str, tuple] = {
    "format": (str,), "version": (int,), "stream_id": (str,), "started": (str,),
    "request": (dict,), "response": (dict,),
}
_HEADER_OPTIONAL: dict[str, tuple] = {
    "started_unix": _NUMBER, "ttfb": (int, float, type(None)), "raw_chunks": (bool,), "mode": _OPT_STR,
    "escaped_bytes": (bool,),
}  # (the redacted_* lists: see validate_header)
_REQUEST_OPTIONAL: dict[str, tuple] = {"pretty_url": (str,), "http_version": (str,), "body": _OPT_STR,
                                       "body_base64": (bool,), "body_size": _OPT_INT, "body_truncated": (bool,)}
_RESPONSE_OPTIONAL: dict[str, tuple] = {"reason": _OPT_STR, "http_version": (str,)}

#: A time beyond any stream (about 31 years): a larger ``t`` or ``ttfb`` is a damaged file, not a recording.
MAX_T = 1e9

# Fields that are one line of the stream (or text that replay writes back as one): a CR or LF in them cannot
# have come from a stream, and written back it would make lines that were never sent.
_ONE_LINE = {"event": ("event", "id"), "no_dispatch": ("id",), "oversized": ("event", "id"),
             "comment": ("text",), "ignored": ("field", "value")}


def _check_fields(path, lineno: int, obj: dict, required: dict, optional: dict, what: str) -> None:
    for name, types in required.items():
        if name not in obj:
            raise RecordingError(path, lineno, f"{what} is missing {name!r}")
        _check_type(path, lineno, obj, name, types, what)
    for name, types in optional.items():
        if name in obj:
            _check_type(path, lineno, obj, name, types, what)


def _check_type(path, lineno, obj, name, types, what) -> None:
    value = obj[name]
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        expected = " or ".join(_TYPE_NAMES[t] for t in types)
        raise RecordingError(path, lineno, f"{what} field {name!r} must be {expected}, got {_type_name(value)}")


def validate_header(path, lineno: int, obj: Any) -> dict:
    if not isinstance(obj, dict):
        raise RecordingError(path, lineno, f"header line must be a JSON object, got {_type_name(obj)}")
    if obj.get("kind") != "header":
        raise RecordingError(path, lineno, "missing header line (the first line must have \"kind\":\"header\")")
    _check_fields(path, lineno, obj, _HEADER_REQUIRED, {}, "header")
    if obj["format"] != FORMAT:
        raise RecordingError(path, lineno, f"not an sse-capture recording (format {obj['format']!r})")
    if obj["version"] not in READ_VERSIONS:
        raise RecordingError(path, lineno, f"unsupported format version {obj['version']} (this sse-capture reads "
                                           f"versions {', '.join(map(str, READ_VERSIONS))})")
    _check_fields(path, lineno, obj, {}, _HEADER_OPTIONAL, "header")
    try:
        datetime.fromisoformat(obj["started"].replace("Z", "+00:00"))
        if "started_unix" in obj:
            datetime.fromtimestamp(obj["started_unix"], timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise RecordingError(path, lineno, f"header.started {obj['started']!r} (or started_unix "
                                           f"{obj.get('started_unix')!r}) is not a time") from None
    ttfb = obj.get("ttfb")
    if ttfb is not None and not 0 <= ttfb <= MAX_T:
        raise RecordingError(path, lineno, f"header.ttfb must be between 0 and {MAX_T:g} seconds, got {ttfb}")
    request, response = obj["request"], obj["response"]
    for name in ("redacted_params", "redacted_headers", "redacted_keys"):
        names = obj.get(name, [])
        if not isinstance(names, list) or not all(isinstance(item, str) for item in names):
            raise RecordingError(path, lineno, f"header.{name} must be a list of strings")
    _check_fields(path, lineno, request, {"method": (str,), "url": (str,), "headers": (list,)}, _REQUEST_OPTIONAL,
                  "header.request")
    _check_fields(path, lineno, response, {"status": (int,), "headers": (list,)}, _RESPONSE_OPTIONAL,
                  "header.response")
    if not 100 <= response["status"] <= 999:
        raise RecordingError(path, lineno, f"header.response.status must be a three-digit HTTP status, "
                                           f"got {response['status']}")
    for part, what in ((request, "request"), (response, "response")):
        for pair in part["headers"]:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise RecordingError(path, lineno, f"header.{what}.headers must be [name, value] string pairs")
    return obj


def validate_record(path, lineno: int, obj: Any, raw: bytes | None = None) -> dict:
    """``obj`` (from the line ``raw``, when given) checked as a record; a ``RecordingError`` says what is wrong."""
    if type(obj) is dict and len(obj) == 4 and obj.get("kind") == "event":
        # The commonest line, {"t","kind","event","data"}, in one test; anything else goes through the checks
        # below, which say what is wrong. Data with fewer brackets than orjson's nesting limit re-serialises.
        t, event, data = obj.get("t"), obj.get("event"), obj.get("data")
        if type(t) is float and 0 <= t <= MAX_T and type(event) is str and "\n" not in event and "\r" not in event \
                and (type(data) is str and "\r" not in data
                     or type(data) in _CONTAINERS and raw is not None and raw.count(b"{") + raw.count(b"[") < 200):
            return obj
    if not isinstance(obj, dict):
        raise RecordingError(path, lineno, f"line must be a JSON object, got {_type_name(obj)}")
    kind = obj.get("kind")
    if kind == "header":
        raise RecordingError(path, lineno, "a second header line")
    if not isinstance(kind, str) or kind not in _REQUIRED:
        raise RecordingError(path, lineno, f"unknown kind {kind!r}")
    t = obj.get("t")
    if not isinstance(t, _NUMBER) or isinstance(t, bool):
        raise RecordingError(path, lineno, f"{kind} line is missing a numeric 't'")
    if not 0 <= t <= MAX_T:
        raise RecordingError(path, lineno, f"negative time t={t}" if t < 0 else f"time t={t} is beyond any stream")
    _check_fields(path, lineno, obj, _REQUIRED[kind], _OPTIONAL.get(kind, {}), kind)
    for name in _ONE_LINE.get(kind, ()):
        value = obj.get(name)
        if value is not None and ("\n" in value or "\r" in value):
            raise RecordingError(path, lineno, f"{kind} field {name!r} holds a line break, which no stream can send "
                                               "there")
    if kind in ("event", "oversized"):
        data = obj["data"] if kind == "event" else obj.get("data_prefix")
        if type(data) is str and "\r" in data:
            raise RecordingError(path, lineno, f"{kind} data holds a CR, which no stream can send in data "
                                               "(a data field ends at CR or LF; several are joined with LF)")
    if kind == "end" and obj["reason"] not in END_REASONS:
        raise RecordingError(path, lineno, f"unknown end reason {obj['reason']!r}")
    if kind == "event" and not isinstance(obj["data"], str):
        try:
            orjson.dumps(obj["data"])
        except (TypeError, orjson.JSONEncodeError):
            raise RecordingError(path, lineno, "event data is nested too deeply to re-serialise") from None
    if kind == "chunk":
        if ("b64" in obj) == ("blocks" in obj):
            raise RecordingError(path, lineno, "chunk needs one of 'b64' and 'blocks'")
        if "blocks" in obj and obj["blocks"] < 1:
            raise RecordingError(path, lineno, f"chunk blocks must be at least 1, got {obj['blocks']}")
        if "b64" in obj and any(name in obj for name in ("skip", "rest_b64", "form", "crlf")):
            raise RecordingError(path, lineno, "chunk 'skip', 'rest_b64', 'form' and 'crlf' go with 'blocks', "
                                               "not 'b64'")
        if "form" in obj and (problem := form_error(obj["form"])):
            raise RecordingError(path, lineno, problem)
        if obj.get("skip", 0) < 0:
            raise RecordingError(path, lineno, f"chunk skip must not be negative, got {obj['skip']}")
        for name in ("b64", "rest_b64"):
            if name in obj:
                try:
                    base64.b64decode(obj[name], validate=True)
                except ValueError:
                    raise RecordingError(path, lineno, f"chunk {name} is not valid base64") from None
    return obj


class BlocksCheck:
    """Checks, line after line, that a ``blocks`` chunk line is followed by as many lines that ``event_block`` can
    write in its form, at the same ``t`` (without them its bytes are not known), and that its ``skip`` leaves
    some of the first one."""

    def __init__(self, path):
        self.path = path
        self.left = 0
        self.chunk: dict = {}
        self.chunk_lineno = 0

    def __call__(self, lineno: int, obj: dict) -> None:
        if self.left:
            chunk = self.chunk
            skip = chunk.get("skip", 0) if self.left == chunk["blocks"] else 0
            block = None
            if obj["t"] == chunk["t"]:
                if not skip and len(obj) == 4 and obj["kind"] == "event" and obj["event"]:
                    block = b""  # {"t","kind","event","data"} has a block in every form: no need to make it
                else:
                    block = event_block(obj, chunk.get("form", DEFAULT_FORM), chunk.get("crlf", False))
            if block is None:
                raise RecordingError(self.path, lineno, f"the chunk on line {self.chunk_lineno} is the next "
                                                        f"{chunk['blocks']} line(s) at t={chunk['t']} written back "
                                                        f"as blocks, but line {lineno} cannot be one")
            if skip and skip >= len(block):
                raise RecordingError(self.path, self.chunk_lineno, f"chunk skip {chunk['skip']} leaves nothing of "
                                                                   f"the block of line {lineno} ({len(block)} bytes)")
            self.left -= 1
        elif obj["kind"] == "chunk" and "blocks" in obj:
            self.left = obj["blocks"]
            self.chunk, self.chunk_lineno = obj, lineno


@dataclass
class Recording:
    """A recording read whole. ``records`` excludes the header and the end line."""

    path: str
    header: dict
    records: list[dict] = field(default_factory=list)
    end: dict | None = None
    writer_alive: bool = False
    #: (line number, bytes) of a last line cut short (see ``iter_lines``), left out of ``records``
    torn: tuple[int, int] | None = None
    #: False for a recording ``scan_recording`` read: ``records`` is left empty, ``kinds`` says what it holds
    records_read: bool = True
    kinds: frozenset[str] = frozenset()

    @property
    def ending(self) -> str:
        """How the stream ended: an end reason, ``proxy_died`` or ``in_progress``."""
        if self.end is not None:
            return self.end["reason"]
        return IN_PROGRESS if self.writer_alive else PROXY_DIED

    @property
    def events(self) -> list[dict]:
        return [r for r in self.records if r["kind"] == "event"]

    @property
    def chunks(self) -> list[tuple[float, bytes]]:
        """``(t, raw bytes)`` of each chunk line."""
        return [(r["t"], chunk_bytes(self.records, i)) for i, r in enumerate(self.records) if r["kind"] == "chunk"]


class DiedTail(NamedTuple):
    tail: str | None      # as SSEParser.close() gives it
    truncated: bool       # the tail is longer than the parser keeps (only its start is here)
    bom: bool             # the stream began with a BOM


def died_tail(rec: Recording) -> DiedTail | None:
    """For a recording without an end line (its proxy died), what the end line would have said of the
    unterminated tail its client had received, from its raw chunks read again. None when the chunks cannot
    say: none were kept, the proxy had stopped parsing, they do not decode."""
    return died_tail_of(rec.header, rec.records)


def died_tail_at(path: str | os.PathLike) -> DiedTail | None:
    """``died_tail`` of the recording at ``path``, read line by line: a dead proxy's recording of an hours-long
    stream is read in bounded memory, where ``read_recording`` holds every line (7-8 times the file's size)."""
    lines = iter_lines(path)
    _, header = next(lines)
    return died_tail_of(header, (record for _, record in lines if record["kind"] != "end"))


class _StoppedParsing(Exception):
    pass


def raw_chunks(records: Iterable[dict], parsed: bool = False) -> Iterator[tuple[float, bytes]]:
    """``(t, raw bytes)`` of each chunk line of ``records`` in one pass (a list, or an iterator read once), holding
    no more than a chunk's lines. With ``parsed``, ``_StoppedParsing`` at an error line saying the proxy stopped
    decoding or parsing."""
    held: list[dict] = []  # the last chunk line, and as many of the lines after it as it is made of
    for r in records:
        kind = r["kind"]
        if kind == "chunk":
            if held:
                yield held[0]["t"], chunk_bytes(held, 0)
            held = [r]
        elif parsed and kind == "error" and r.get("what") in ("decode", "parse"):
            raise _StoppedParsing
        elif held and len(held) <= held[0].get("blocks", 0):
            held.append(r)
    if held:
        yield held[0]["t"], chunk_bytes(held, 0)


def died_tail_of(header: dict, records: Iterable[dict]) -> DiedTail | None:
    """``died_tail`` of a recording given as its header and its records (a list, or an iterator read once)."""
    if not header.get("raw_chunks"):
        return None
    encoding = ", ".join(v for k, v in header["response"]["headers"] if k.lower() == "content-encoding")
    parser = SSEParser(message_batches=True)  # as the recorder's, for the same count of items
    compressed = decoded = items = 0

    def parse(piece: bytes) -> None:
        nonlocal decoded, items
        decoded += len(piece)
        if too_inflated(compressed, decoded, parser.slow_lines, items):  # (the proxy would have stopped: made by hand)
            raise DecodeError("inflated too far")
        items += len(parser.feed(piece))

    try:
        decoder = make_decoder(encoding or None)
        for _, data in raw_chunks(records, parsed=True):
            compressed += len(data)
            if decoder:
                decoder.decode_to(data, parse)
            else:
                parser.feed(data)
    except (DecodeError, ValueError, _StoppedParsing):  # (UnsupportedEncoding is a ValueError)
        return None
    return DiedTail(parser.close(), parser.tail_truncated, parser.bom)


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """``open(path, "rb")`` for a regular file only. A FIFO named ``*.jsonl`` (it can come in a tarball of
    recordings) would block its reader until something writes to it, and a device would never end: those are a
    ``RecordingError``, as is a file that cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # (no effect on a regular file)
    except OSError as e:
        raise RecordingError(os.fspath(path), 0, f"cannot open: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordingError(os.fspath(path), 0, "not a regular file (a FIFO, a device or a socket)")
    return os.fdopen(fd, "rb")


def writer_alive(path: str | os.PathLike) -> bool:
    """True while a proxy still holds the recording open for writing (it keeps an exclusive lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def header_pending(path: str | os.PathLike) -> bool:
    """The proxy writing ``path`` has not finished its header line yet: the file holds no whole line, and a
    proxy holds its lock."""
    try:
        with open_regular(path) as f:
            if f.readline(DEFAULT_MAX_LINE).endswith(b"\n"):
                return False
    except (OSError, RecordingError):
        return False
    return writer_alive(path)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class LineCheck:
    """What every reader checks of a recording's lines in order, whatever its I/O (``iter_lines`` reads a file,
    the follow reader one still being written): the header, then records and their ``blocks`` (``BlocksCheck``),
    nothing after the end line. ``line(raw)`` takes the next line with its newline, or the file's last bytes
    without one, and gives its object, or None when those last bytes are a write cut short (see ``iter_lines``);
    raises ``RecordingError`` for anything else that is wrong."""

    def __init__(self, path, max_line: int = DEFAULT_MAX_LINE):
        self.path = path
        self.max_line = max_line
        self.lineno = 0
        self.ended = False
        self._blocks = BlocksCheck(path)
        self._held: list[tuple[int, dict]] = []  # see ready
        self._held_size = 0

    def line(self, raw: bytes) -> dict | None:
        self.lineno += 1
        path, lineno = self.path, self.lineno
        if len(raw) > self.max_line and not raw.endswith(b"\n"):
            raise RecordingError(path, lineno, f"line longer than {self.max_line} bytes")
        if not raw.strip():
            raise RecordingError(path, lineno, "empty line")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            try:
                # orjson refuses a number beyond a double: a retry of hundreds of digits (not NaN or Infinity)
                obj = json.loads(raw, parse_constant=_not_json)
            except (ValueError, RecursionError):
                if not raw.endswith(b"\n") and lineno > 1 and not self.ended:
                    return None
                what = "truncated line (no newline at end of file)" if not raw.endswith(b"\n") else "invalid JSON"
                raise RecordingError(path, lineno, f"{what}: {e}") from None
        if type(obj) is dict and type(obj.get("retry")) is float:
            obj = json.loads(raw)  # orjson reads an integer beyond 64 bits as a float; the retry's digits are exact
        if lineno == 1:
            return validate_header(path, lineno, obj)
        if self.ended:
            raise RecordingError(path, lineno, "line after the end line")
        obj = validate_record(path, lineno, obj, raw)
        self._blocks(lineno, obj)
        self.ended = obj["kind"] == "end"
        return obj

    def ready(self, obj: dict, size: int) -> list[tuple[int, dict]]:
        """``(lineno, object)`` of the lines a reader may give out now that ``obj`` (the line just checked, ``size``
        bytes) came: none while a ``blocks`` chunk line still waits for some of its lines. That chunk line and its
        lines are one write, which a proxy killed mid-write leaves cut short (then ``cut`` says where): the chunk
        was never forwarded, so none of it counts."""
        self._held.append((self.lineno, obj))
        self._held_size += size
        if self._blocks.left:
            return []
        ready, self._held, self._held_size = self._held, [], 0
        return ready

    def cut(self, torn: int = 0) -> tuple[int, int] | None:
        """The write cut short at the end of the file, as (its first line, its bytes): the lines held back by
        ``ready`` and the ``torn`` bytes of a last line that is not whole JSON; None when there is none."""
        if not self._held and not torn:
            return None
        return (self._held[0][0] if self._held else self.lineno), self._held_size + torn


def iter_lines(path: str | os.PathLike, max_line: int = DEFAULT_MAX_LINE,
               on_torn: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(lineno, object)`` for every line, validated; raises ``RecordingError`` at the first bad one.

    Reads in bounded memory (one line at a time). A last line without a newline is taken as whole when it is
    whole JSON. Otherwise (after the header) it is a write cut short: one the proxy was still making, or one the
    kernel stopped at a page boundary when the proxy was killed. It never reached the client (each chunk is
    forwarded after its write), so reading stops before it and ``on_torn(lineno, its length)`` is told.
    """
    with open_regular(path) as f:
        check = LineCheck(path, max_line)
        while raw := f.readline(max_line + 1):
            obj = check.line(raw)
            if obj is None:
                if on_torn is not None:
                    on_torn(*check.cut(len(raw)))
                return
            yield from check.ready(obj, len(raw))
        if check.lineno == 0:
            raise RecordingError(path, 1, "empty file: missing header line")
        if (torn_write := check.cut()) and on_torn is not None:
            on_torn(*torn_write)


def read_recording(path: str | os.PathLike, max_line: int = DEFAULT_MAX_LINE) -> Recording:
    """Read and validate a whole recording."""
    return _read(path, max_line, keep_records=True)


def scan_recording(path: str | os.PathLike, max_line: int = DEFAULT_MAX_LINE) -> Recording:
    """A recording read and validated as ``read_recording`` reads it, but for its records, which are left out
    (``records_read`` is False): its header, end line and the kinds of its lines, in memory that does not grow with
    the file. ``read_recording`` gives the records when they are needed."""
    return _read(path, max_line, keep_records=False)


def _read(path: str | os.PathLike, max_line: int, keep_records: bool) -> Recording:
    torn: list[tuple[int, int]] = []
    it = iter_lines(path, max_line, on_torn=lambda lineno, size: torn.append((lineno, size)))
    _, header = next(it)
    rec = Recording(path=os.fspath(path), header=header, records_read=keep_records)
    kinds = set()
    for _, obj in it:
        if obj["kind"] == "end":
            rec.end = obj
        elif keep_records:
            rec.records.append(obj)
        else:
            kinds.add(obj["kind"])
    rec.kinds = frozenset(kinds)
    rec.torn = torn[0] if torn else None
    if rec.end is None:
        rec.writer_alive = writer_alive(path)
    return rec


def header_of(path: str | os.PathLike) -> dict:
    """Only the validated header line (cheap: reads one line)."""
    return next(iter_lines(path))[1]


def os_reason(e: OSError) -> str:
    """"no such file or directory", "too many levels of symbolic links", "address already in use", ..."""
    reason = os.strerror(e.errno) if e.errno else str(e)  # (asyncio's strerror has its own words around it)
    return reason[:1].lower() + reason[1:]


def find_recordings(path: str | os.PathLike) -> list[str]:
    """A recording file itself, or every ``*.jsonl`` below a directory, sorted by name (= by time)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = [os.path.join(root, f) for root, _, files in os.walk(path) for f in files if f.endswith(".jsonl")]
        return sorted(found, key=lambda p: os.path.relpath(p, path))
    return [reachable(path)]


def reachable(path: str) -> str:
    """``path``, or ``RecordingError`` saying why it cannot be reached (missing, a symlink loop, no permission)."""
    try:
        os.stat(path)
    except OSError as e:
        raise RecordingError(path, 0, os_reason(e)) from None
    return path
