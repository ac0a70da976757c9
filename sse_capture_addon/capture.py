"""The capture addon: thin glue between mitmproxy's hooks and ``StreamRecorder``."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import orjson
from mitmproxy import ctx, exceptions, flowfilter, http
from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import url as mitmproxy_url

from .decoding import decode_body
from .deferred_options import apply_deferred
from .recording import FORMAT, FORMAT_VERSION, escape_bytes
from .recorder import StreamRecorder
from .redact import DEFAULT_HEADERS, DEFAULT_PARAMS, QUERY_START, Redactor
from .shown import printable
from .sse import DEFAULT_MAX_EVENT_SIZE
from .writer import RecordingFile, SpaceReserve, make_private_dirs, new_stream_id, recording_name, utc_timestamp

log = logging.getLogger("sse_capture")

RAW_CHUNK_CHOICES = ("auto", "on", "off")
SLOW_FILE_CREATION = 0.002  # seconds; see SSECapture._create_file
SLOW_WRITE_WARNING_EVERY = 60.0  # seconds; see SSECapture._slow_write


def is_sse(response: http.Response | None) -> bool:
    """Whether the response's MIME type is text/event-stream as a browser decides it (Fetch's "extract a MIME
    type": of several Content-Type values, the last valid one counts)."""
    # runs for every response through the proxy
    if response is None:
        return False
    values = _values(response.headers, b"content-type")
    if len(values) == 1 and b"," not in values[0]:  # nearly always
        return values[0].split(b";", 1)[0].strip().lower() == b"text/event-stream"
    essence = None
    for value in _split_list(b",".join(values)):
        mime_type = _essence(value)
        if mime_type is not None and mime_type != b"*/*":
            essence = mime_type
    return essence == b"text/event-stream"


_LIST_PART = re.compile(rb'"(?:[^"\\]|\\.)*"?|[^",]+|,')
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _split_list(value: bytes) -> list[bytes]:
    """A header value split at the commas outside quoted strings (Fetch's "get, decode, and split")."""
    parts, current = [], b""
    for m in _LIST_PART.finditer(value):
        if m.group() == b",":
            parts.append(current)
            current = b""
        else:
            current += m.group()
    parts.append(current)
    return parts


def _essence(value: bytes) -> bytes | None:
    """A MIME type's essence (``type/subtype``, lower case), or None when it does not parse."""
    type_, slash, subtype = value.split(b";", 1)[0].strip(b" \t\r\n").partition(b"/")
    if not slash or not _TOKEN.fullmatch(type_) or not _TOKEN.fullmatch(subtype):
        return None
    return type_.lower() + b"/" + subtype.lower()


def _values(headers: http.Headers, name: bytes) -> list[bytes]:
    """Every value of header ``name`` (in lower case), from the raw fields: a fifth of headers.get's cost."""
    return [value for key, value in headers.fields if key.lower() == name]


def _field(headers: http.Headers, name: bytes) -> bytes | None:
    """``headers.get(name)`` as bytes (see ``_values``)."""
    values = _values(headers, name)
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)  # several are joined, as headers.get does


def _pretty_url(req: http.Request) -> str:
    """``req.pretty_url``, which parses and checks the Host header on every call (~10 us); here that part is
    cached per Host header. Same steps as mitmproxy's, and tests compare the two."""
    host_header = req.host_header
    if not host_header or req.method == "CONNECT":
        return req.pretty_url
    path = req.path
    return _pretty_origin(req.scheme, host_header) + (path if path != "*" else "")


@functools.lru_cache(maxsize=256)
def _pretty_origin(scheme: str, host_header: str) -> str:
    host, port = mitmproxy_url.parse_authority(host_header, check=False)
    return mitmproxy_url.unparse(scheme, host, port or mitmproxy_url.default_port(scheme) or 443, "")


def _query(url: str) -> str:
    """The part of ``url`` whose parameters the redactor looks at (from a ``#`` too)."""
    start = QUERY_START.search(url)
    return url[start.start():] if start else ""


_USERINFO = re.compile(r"(?<=://)[^/?#]*@")


def _without_userinfo(url: str) -> str:
    """``url`` without a user name and password, which ``req.url`` never has but a Host header can."""
    return _USERINFO.sub("", url, count=1) if "@" in url else url


def _str(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "surrogateescape")  # as mitmproxy's headers give it


def _address(addr) -> dict | None:
    if not addr:
        return None
    return {"host": str(addr[0]), "port": int(addr[1])}


def _not_recording(label: str, e: Exception) -> None:
    log.error(f"sse-capture: NOT recording {label}: {type(e).__name__}: {e}")


def _discard_file(created: asyncio.Future) -> None:
    if not created.cancelled() and created.exception() is None:
        try:
            created.result().remove()
        except OSError:
            pass


def _ending_of(flow: http.HTTPFlow, idle_for: float) -> tuple[str, str]:
    """Who ended a stream that mitmproxy reports as an error."""
    msg = flow.error.msg if flow.error else "unknown error"
    timeout = ctx.options.tcp_timeout
    if timeout and idle_for >= timeout - min(0.1, timeout * 0.1):
        # mitmproxy's watchdog closes idle connections and blames the client; on an SSE stream the
        # client never sends, so the silence was the server's. The watchdog's clock starts as the event that
        # brought the last chunk is handled, a little before the recorder's: hence the 0.1 s.
        return "server_error", (f"no data from the server for {idle_for:.1f}s; mitmproxy closed the idle "
                                f"connection (tcp_timeout={timeout}): {msg}")
    if msg.startswith("stream reset by client ("):
        # mitmproxy's HTTP/2 layer says "by client" whichever side sent RST_STREAM; browsers cancel with
        # CANCEL, while servers reset with INTERNAL_ERROR, REFUSED_STREAM and the like.
        if "(CANCEL)" in msg:
            return "client_disconnected", msg
        return "server_error", (f"{msg} (mitmproxy does not say which side reset the stream; clients reset with "
                                f"CANCEL, so this one is taken as the server's)")
    if msg.startswith(("peer closed connection", "HTTP/2 connection closed")):
        # mitmproxy's HTTP/2 layer, for the connection it serves, whichever side that is; by now it has closed the
        # other too (an HTTP/2 browser in front of an HTTP/1.1 dev server that quits). With one side on HTTP/2, it
        # is that side's.
        client_h2, server_h2 = flow.client_conn.alpn == b"h2", flow.server_conn.alpn == b"h2"
        if client_h2 != server_h2:
            return ("client_disconnected" if client_h2 else "server_error"), msg
    client_gone = not flow.client_conn.state & ConnectionState.CAN_READ
    server_gone = not flow.server_conn.state & ConnectionState.CAN_READ
    if client_gone != server_gone:  # HTTP/2 says "peer closed connection" for either side
        return ("client_disconnected" if client_gone else "server_error"), msg
    return ("client_disconnected" if "client" in msg.lower() else "server_error"), msg


def _call_later(delay: float, callback: Callable[[], None]) -> None:
    try:
        asyncio.get_running_loop().call_later(delay, callback)
    except RuntimeError:  # no event loop (hooks driven by hand): the next line or the shutdown says it instead
        pass


# Streams an unloaded instance left open (see SSECapture.done). mitmproxy runs a -s script anew when it reloads it,
# but not this package's modules, so this outlives the instance.
_left_open: dict[str, tuple[StreamRecorder, http.HTTPFlow, str, Callable]] = {}
UNLOAD_GRACE = 1.0  # seconds for a reloaded script's new instance to take them


def _forward_nothing(chunk: bytes) -> list[bytes]:
    return []


class RoutineLines:
    """Routine log lines (a stream recorded as it should be), at most ``per_second`` a second; beyond that they
    are counted and summed up in one line. mitmproxy turns every log record into an ``add_log`` hook through
    all of its addons: ~0.1 ms of CPU a line (measured in mitmdump -q), as much as recording the events of a
    short stream, so a burst of short streams must not become a burst of lines. Warnings and errors are never
    held back."""

    def __init__(self, per_second: int = 10, clock: Callable[[], float] = time.monotonic,
                 call_later: Callable[[float, Callable[[], None]], object] | None = None):
        self.per_second, self.clock = per_second, clock
        self.call_later = call_later  # so that the summary comes at the window's end, not with the next stream
        self.window = clock()
        self.used = self.held = 0

    def admit(self) -> bool:
        """Whether a routine line may be logged now (the caller formats and logs it only then); if not, it is
        counted for the summary line."""
        now = self.clock()
        if now - self.window >= 1.0:
            self.flush(now)
        if self.used < self.per_second:
            self.used += 1
            return True
        self.held += 1
        if self.held == 1 and self.call_later is not None:
            self.call_later(self.window + 1.0 - now, self._flush_when_due)
        return False

    def _flush_when_due(self) -> None:
        left = self.window + 1.0 - self.clock()
        if left > 0:  # a newer window (the timer was late, or early): its own second is not over
            self.call_later(left, self._flush_when_due)
        elif self.held:
            self.flush()

    def flush(self, now: float | None = None) -> None:
        if self.held:
            log.info(f"sse-capture: {self.held} more stream(s) recorded completely, without a line each (over "
                     f"{self.per_second} a second); `sse-capture ls` lists them")
        self.window = self.clock() if now is None else now
        self.used = self.held = 0


class SSECapture:
    def __init__(self) -> None:
        self.filter: flowfilter.TFilter | None = None
        self.redactor = Redactor()
        self.raw_chunks = True
        self.reserve: SpaceReserve | None = None  # room kept for end lines when the disk fills up
        self.routine = RoutineLines(call_later=_call_later)
        # flow id -> (recorder, flow, "METHOD url", the response.stream callable set for it)
        self.active: dict[str, tuple[StreamRecorder, http.HTTPFlow, str, Callable]] = {}
        # option values used per flow, copied here: mitmproxy deep-copies an option on every read
        self.directory = "recordings"
        self.fsync = False
        self.max_event_size = DEFAULT_MAX_EVENT_SIZE
        self.max_body = 1024 * 1024
        self._files_are_slow = False  # the last recording file took long to create (see _create_file)
        self._slow_writes, self._slow_write_warned = 0, -math.inf  # see _slow_write
        self._file_workers: ThreadPoolExecutor | None = None  # then create them in these threads

    def load(self, loader):
        if _left_open:  # the streams of the instance this one replaces (see `done`)
            self.active.update(_left_open)
            _left_open.clear()
            log.info(f"sse-capture: reloaded; {len(self.active)} open stream(s) go on being recorded")
        loader.add_option("sse_capture_dir", str, "recordings",
                          "Directory for SSE recordings (one .jsonl file per stream, in a folder per UTC day).")
        loader.add_option("sse_capture_filter", Optional[str], None,
                          "Only record SSE flows matching this mitmproxy filter expression (e.g. '~u /chat'). "
                          "Other SSE flows are still streamed through unchanged.")
        loader.add_option("sse_capture_raw_chunks", str, "auto",
                          "Also record the raw chunks as they arrived, for byte-exact replay: on, off, or auto "
                          "(on unless sse_capture_redact_keys is set, since raw bytes cannot be redacted).",
                          choices=RAW_CHUNK_CHOICES)
        loader.add_option("sse_capture_fsync", bool, False,
                          "fsync the recording after every chunk (survives power loss; slower).")
        loader.add_option("sse_capture_max_event_size", int, DEFAULT_MAX_EVENT_SIZE,
                          "Largest event (in characters) whose data is recorded (its data, a newline counted after "
                          "each data line, and each of its lines, field name included); larger events are recorded "
                          "as 'oversized' with their size and a prefix, and the stream keeps flowing.")
        loader.add_option("sse_capture_max_body", int, 1024 * 1024,
                          "Largest request body (bytes) stored in a recording's header; longer ones are cut.")
        loader.add_option("sse_capture_redact", bool, True,
                          f"Redact the values of the headers {', '.join(sorted(DEFAULT_HEADERS))}, and of "
                          "credential query parameters in the URL, Referer, Location and Content-Location "
                          f"({', '.join(sorted(DEFAULT_PARAMS))}), in recordings.")
        loader.add_option("sse_capture_redact_headers", Sequence[str], [],
                          "More header names whose values are redacted in recordings.")
        loader.add_option("sse_capture_redact_params", Sequence[str], [],
                          "More query parameter names whose values are redacted in recorded URLs.")
        loader.add_option("sse_capture_redact_keys", Sequence[str], [],
                          "JSON object keys whose values are redacted in request bodies and event data.")
        apply_deferred(loader, "sse-capture", "sse_capture_")

    def configure(self, updated):
        opts = ctx.options
        if "sse_capture_filter" in updated:
            spec = opts.sse_capture_filter
            if spec:
                try:
                    self.filter = flowfilter.parse(spec)
                except ValueError as e:
                    raise exceptions.OptionsError(
                        f"sse_capture_filter: invalid filter expression {spec!r}: {e}") from None
                if body := {"b", "bs"} & _filter_codes(self.filter):
                    raise exceptions.OptionsError(
                        f"sse_capture_filter: {' and '.join(sorted(f'~{c}' for c in body))} cannot choose streams by "
                        f"their response body: {spec!r} is applied when the response headers arrive, before any "
                        "of the body, so it would never see one (~bq is the request body, ~hs the response headers)")
            else:
                self.filter = None
        for name in ("sse_capture_max_event_size", "sse_capture_max_body"):
            if name in updated and getattr(opts, name) <= 0:
                raise exceptions.OptionsError(f"{name} must be a positive number of bytes, "
                                              f"got {getattr(opts, name)}")
        directory = os.path.expanduser(opts.sse_capture_dir)  # as mitmproxy does for its own paths
        if "sse_capture_dir" in updated:
            _check_writable_dir(directory)
            _warn_if_others_can_write(directory)
            self.reserve = SpaceReserve(directory)  # allocated with the first recording
        if updated & {"sse_capture_redact", "sse_capture_redact_headers", "sse_capture_redact_keys",
                      "sse_capture_redact_params"}:
            headers = set(DEFAULT_HEADERS) if opts.sse_capture_redact else set()
            headers.update(_names(opts.sse_capture_redact_headers, "sse_capture_redact_headers"))
            params = set(DEFAULT_PARAMS) if opts.sse_capture_redact else set()
            params.update(_names(opts.sse_capture_redact_params, "sse_capture_redact_params"))
            self.redactor = Redactor(headers, _names(opts.sse_capture_redact_keys, "sse_capture_redact_keys"), params)
        if updated & {"sse_capture_raw_chunks", "sse_capture_redact_keys"}:
            mode = opts.sse_capture_raw_chunks
            if mode not in RAW_CHUNK_CHOICES:
                raise exceptions.OptionsError(f"sse_capture_raw_chunks must be one of {', '.join(RAW_CHUNK_CHOICES)}, "
                                              f"got {mode!r}")
            if mode == "on" and self.redactor.json_keys:
                raise exceptions.OptionsError(
                    "sse_capture_raw_chunks=on would store the unredacted bytes of events that "
                    "sse_capture_redact_keys redacts; use auto or off")
            self.raw_chunks = mode == "on" or (mode == "auto" and not self.redactor.json_keys)
        self.directory, self.fsync = directory, opts.sse_capture_fsync
        self.max_event_size, self.max_body = opts.sse_capture_max_event_size, opts.sse_capture_max_body

    # -- hooks ------------------------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if not is_sse(flow.response):
            return None
        if not flow.response.stream:
            # mitmproxy buffers responses to the end by default, which swallows SSE (its issue #4469).
            flow.response.stream = True
        if self.filter is not None and not self.filter(flow):
            return None
        req = flow.request
        label = printable(escape_bytes(req.method))
        try:
            url, params = self.redactor.url(req.url)
            pretty_url = _without_userinfo(_pretty_url(req))  # (the Host header is the client's)
            if params or _query(pretty_url) != _query(url):  # the same query, and nothing in it to redact: as is
                pretty_url = self.redactor.url(pretty_url)[0]
            label = printable(escape_bytes(f"{req.method} {pretty_url}"))  # for the log (a hostile Host header too)
            header, name = self._header(flow, url, pretty_url, params)
            if self.reserve is not None:
                self.reserve.ensure()  # no system call while it is whole; else (re)allocate it before this file
            if self._files_are_slow:
                # mitmproxy awaits what a hook returns: the file is created in a worker thread meanwhile, so the
                # slow file system holds up this stream's headers only, not every stream the proxy carries
                return self._start_when_created(flow, name, header, label)
            self._start(flow, self._create_file(name), header, label)
        except Exception as e:  # noqa: BLE001 - never break traffic
            _not_recording(label, e)
        return None

    async def _start_when_created(self, flow: http.HTTPFlow, name: str, header: dict, label: str) -> None:
        try:
            self._start(flow, await self._create_file_in_worker(name), header, label)
        except Exception as e:  # noqa: BLE001 - never break traffic
            _not_recording(label, e)

    def _start(self, flow: http.HTTPFlow, file: RecordingFile, header: dict, label: str) -> None:
        recorder = self._recorder(flow, file, header)
        # No "recording started" line (see RoutineLines: what a log record costs); the line at the end names
        # the file, and `sse-capture ls` lists the recordings in progress.
        previous = flow.response.stream
        if callable(previous):  # another addon rewrites the stream: record what the client gets
            def stream(chunk: bytes) -> bytes:
                chunk = previous(chunk)
                return recorder.feed(chunk if isinstance(chunk, bytes) else b"".join(chunk))
        else:
            stream = recorder.feed  # records each chunk, then returns it to be forwarded
        flow.response.stream = stream
        self.active[flow.id] = (recorder, flow, label, stream)

    def response(self, flow: http.HTTPFlow) -> None:
        entry = self.active.get(flow.id)
        note = None
        if entry is not None and entry[0].bytes == 0 and flow.response.raw_content \
                and flow.response.stream is entry[3]:  # (else a later addon took the stream over: "bypassed")
            # mitmproxy sent a body without streaming it (server_replay, a response an addon made, a flow read
            # from a file): the events are in the flow, their times are not
            entry[0].feed(flow.response.raw_content)
            note = ("unstreamed", "mitmproxy sent this body whole, not streamed through sse-capture (a response "
                                  "from server_replay or an addon, or a flow read from a file): its events are "
                                  "recorded at the time it ended, not at the times they were sent")
        self._finish(flow, "complete", None, note)

    def error(self, flow: http.HTTPFlow) -> None:
        entry = self.active.get(flow.id)
        if entry is not None:
            self._finish(flow, *_ending_of(flow, entry[0].idle_for))

    def done(self) -> None:
        if ctx.master.addons.get(type(self).__name__.lower()) is self:  # still loaded: the proxy is shutting down
            for _, flow, _, _ in list(self.active.values()):
                self._finish(flow, "proxy_shutdown", "the proxy shut down mid-stream")
                # mitmproxy may forward more chunks before it stops: none that the file does not hold
                flow.response.stream = _forward_nothing
        elif self.active:
            # Unloaded while its streams go on: mitmproxy reloads a -s script whose file changed (an editor's
            # save, a git pull), calling this before the new instance's `load`, which takes the streams over.
            _left_open.update(self.active)
            self.active.clear()
            _call_later(UNLOAD_GRACE, self._finish_left_open)
        self.routine.flush()
        if self._file_workers is not None:
            self._file_workers.shutdown(wait=False)
            self._file_workers = None

    def _finish_left_open(self) -> None:
        """No new instance took the streams over: the script was removed, or its reload failed."""
        self.active.update(_left_open)
        _left_open.clear()
        for _, flow, _, _ in list(self.active.values()):
            self._finish(flow, "recording_failed", "sse-capture was unloaded mid-stream (its script was removed "
                                                   "from mitmproxy, or reloaded and failed to load): the rest of the "
                                                   "stream is not recorded")

    # -- helpers ----------------------------------------------------------------------------------------

    def _header(self, flow: http.HTTPFlow, url: str, pretty_url: str, params: list[str]) -> tuple[dict, str]:
        """The header line's record, and the recording's file name. ``url`` and ``pretty_url`` are redacted
        already (``params``: the query parameters that were)."""
        started = time.time()
        stream_id = new_stream_id()
        req, resp = flow.request, flow.response
        req_headers, hit_req = self.redactor.header_fields(req.headers.fields)
        resp_headers, hit_resp = self.redactor.header_fields(resp.headers.fields)
        ttfb = None
        if resp.timestamp_start and req.timestamp_start:
            ttfb = round(resp.timestamp_start - req.timestamp_start, 6)
        header = {
            "kind": "header", "format": FORMAT, "version": FORMAT_VERSION, "stream_id": stream_id,
            "started": utc_timestamp(started),
            "started_unix": round(started, 6),
            "client": _address(flow.client_conn.peername),
            "server": _address(flow.server_conn.peername or flow.server_conn.address),
            "mode": flow.client_conn.proxy_mode.full_spec if flow.client_conn.proxy_mode else None,
            "request": {
                "method": req.method, "url": url, "pretty_url": pretty_url,
                "http_version": req.http_version, "headers": req_headers,
                **self._body(req, self.max_body),
            },
            "response": {
                "status": resp.status_code, "reason": resp.reason, "http_version": resp.http_version,
                "headers": resp_headers,
            },
            "ttfb": ttfb,
            "raw_chunks": self.raw_chunks,
            "redacted_headers": sorted({*hit_req, *hit_resp}),
            "redacted_params": params,
            "redacted_keys": sorted(self.redactor.json_keys),
        }
        return header, recording_name(started, req.method, url, stream_id, req.host, req.port)

    def _create_file(self, name: str) -> RecordingFile:
        """Creates the file, and notes whether that was slow. Creating a file usually takes tens of µs, less than
        handing the work to a thread and back; when the file system is slow (a busy disk, network storage) it
        blocks the event loop, and with it every stream, so after a slow one files are made in worker threads
        until one is quick again."""
        start = time.perf_counter()
        file = RecordingFile(self.directory, name, fsync=self.fsync, on_slow_write=self._slow_write)
        self._files_are_slow = time.perf_counter() - start > SLOW_FILE_CREATION
        return file

    def _slow_write(self, file: RecordingFile, seconds: float) -> None:
        """A write that held up every stream the proxy carries: warned at once, then at most once a minute, with
        how many more there were."""
        self._slow_writes += 1
        now = time.monotonic()
        if now - self._slow_write_warned < SLOW_WRITE_WARNING_EVERY:
            return
        more = self._slow_writes - 1
        self._slow_writes, self._slow_write_warned = 0, now
        log.warning(f"sse-capture: writing {file.path} took {seconds:.2f}s, and all the proxy's traffic waited for "
                    f"it (each chunk is written before it is forwarded, so that whatever a client has seen is "
                    f"recorded){f'; {more} more such write(s) since the last warning' if more else ''}: put "
                    f"sse_capture_dir on a faster local disk{' or turn sse_capture_fsync off' if self.fsync else ''}")

    async def _create_file_in_worker(self, name: str) -> RecordingFile:
        if self._file_workers is None:
            self._file_workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sse-capture-files")
        created = asyncio.get_running_loop().run_in_executor(self._file_workers, self._create_file, name)
        try:
            return await asyncio.shield(created)  # a thread cannot be stopped: let it finish, then clean up
        except asyncio.CancelledError:  # the flow is gone (the proxy shutting down): no empty file left behind
            created.add_done_callback(_discard_file)
            raise

    def _recorder(self, flow: http.HTTPFlow, file: RecordingFile, header: dict) -> StreamRecorder:
        path = file.path
        return StreamRecorder(
            file, header,
            content_encoding=_str(_field(flow.response.headers, b"content-encoding")),
            raw_chunks=self.raw_chunks,
            max_event_size=self.max_event_size,
            redactor=self.redactor,
            on_error=lambda message: log.error(f"sse-capture: {path}: {message} (traffic continues)"),
            reserve=self.reserve,
        )

    def _body(self, req: http.Request, cap: int) -> dict:
        if req.raw_content is None:
            return {"body": None, "body_size": None}
        if not req.raw_content:  # most SSE requests (GET); what the steps below give for no body, in their order
            return {"body_size": 0, "body_truncated": False, "body": ""}
        body, whole = decode_body(req.raw_content, _str(_field(req.headers, b"content-encoding")), cap)
        out: dict = {"body_size": len(body) if whole else None}
        if self.redactor.json_keys and not whole:
            return {**out, "body": None, "body_omitted": "compressed, and decoded only as far as sse_capture_max_body, "
                                                          "so sse_capture_redact_keys cannot apply"}
        if self.redactor.json_keys and body:
            # redact the whole body before cutting it; a body that is not JSON cannot be redacted, so it
            # is left out rather than stored in clear
            try:
                body = self.redactor.json_body(body)
            except orjson.JSONDecodeError:
                return {**out, "body": None, "body_omitted": "not JSON, so sse_capture_redact_keys cannot apply"}
        out["body_truncated"] = truncated = len(body) > cap
        body = body[:cap]
        try:
            out["body"] = body.decode("utf-8")
        except UnicodeDecodeError as e:
            if truncated and e.reason == "unexpected end of data":  # the cut fell inside a character
                out["body"] = body[:e.start].decode("utf-8")
            else:
                out["body"] = base64.b64encode(body).decode("ascii")
                out["body_base64"] = True
        return out

    def _finish(self, flow: http.HTTPFlow, reason: str, message: str | None,
                note: tuple[str, str] | None = None) -> None:
        entry = self.active.pop(flow.id, None)
        if entry is None:
            return
        recorder, _, label, stream = entry
        if note is None and flow.response is not None and flow.response.stream is not stream:
            note = ("bypassed", "another addon replaced flow.response.stream after sse-capture had set it, so what "
                                "it forwarded was not recorded; load sse-capture after that addon (a later -s)")
            log.error(f"sse-capture: {label}: {note[1]}")
        elif note is not None:
            log.warning(f"sse-capture: {label}: {note[1]}")
        try:
            end = recorder.finish(reason, message, error=note)
        except Exception as e:  # noqa: BLE001
            log.error(f"sse-capture: {recorder.file.path}: finishing the recording failed: {e}")
            return
        complete = end["reason"] == "complete"
        if complete and not self.routine.admit():
            return  # counted, for the summary line
        text = (f"sse-capture: {end['reason']} {label}: {end['events']} events in {recorder.duration:.3f}s "
                f"-> {recorder.file.path}" + (f" ({printable(escape_bytes(message))})" if message else ""))
        if complete:
            log.info(text)
        else:
            log.warning(text)


def _filter_codes(f) -> set[str]:
    """The codes (``u``, ``bs``...) of the filters a parsed filter expression is made of."""
    if isinstance(f, flowfilter.FAnd | flowfilter.FOr):
        return set().union(*map(_filter_codes, f.lst))
    if isinstance(f, flowfilter.FNot):
        return _filter_codes(f.itm)
    return {getattr(f, "code", "")}


def _names(values: Sequence[str], option: str) -> list[str]:
    """Names given as repeated --set values and/or comma-separated."""
    names = [n.strip() for value in values for n in value.split(",")]
    if any(not n for n in names):
        raise exceptions.OptionsError(f"{option}: empty name in {list(values)!r}")
    return names


def _check_writable_dir(directory: str) -> None:
    if not directory:
        raise exceptions.OptionsError("sse_capture_dir must not be empty")
    try:
        make_private_dirs(directory)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise exceptions.OptionsError(
            f"sse_capture_dir: cannot write recordings to {directory!r}: {e.strerror or e}") from None


def _warn_if_others_can_write(directory: str) -> None:
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "everyone" if mode & stat.S_IWOTH else "its group"
        log.warning(f"sse-capture: the recordings directory {directory!r} can be written by {who} (mode "
                    f"{stat.S_IMODE(mode):04o}): recordings may hold production data, and whoever can write there can "
                    "plant files and symlinks among them (a sticky bit does not stop that); make it owner-only "
                    "(chmod go-w) or choose another")
