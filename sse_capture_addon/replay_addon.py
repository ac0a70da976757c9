"""The replay addon: thin glue between mitmproxy's hooks and the ``replay`` package.

mitmproxy sends a response that an addon makes itself whole, which is useless for a stream. So the
addon runs a loopback ``ReplayServer`` and, in the ``request`` hook, points each matched request at it
with a one-time token; mitmproxy then streams that server's response to the client like any other.
The request is pointed back at its original URL once the response headers are in, so logs and the UI
show what the client asked for.

With mitmproxy's default ``connection_strategy=eager`` an HTTPS request to an offline backend fails
before the ``request`` hook runs, so the addon switches to ``lazy`` while it has recordings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import Optional

from mitmproxy import connection, ctx, exceptions, http

from .capture import is_sse
from .deferred_options import apply_deferred
from .recording import Recording, RecordingError
from .replay.matching import Matcher, MatchOptions, RequestInfo, load_mapping
from .replay.server import CLIENT_GONE, LOOPBACK, Playback, ReplayServer, Request, book_in_turn, cors_headers
from .replay.settings import (
    EXTRA_CHOICES, OptionValueError, Plans, ReplaySettings, check_found, check_recordings, load_recordings,
    option_value, parse_extra, parse_settings,
)
from .shown import printable, shown_path

log = logging.getLogger("sse_replay")

TOKEN_HEADER = "x-sse-replay-token"
MATCH_OPTIONS = ("sse_replay", "sse_replay_map", "sse_replay_reuse", "sse_replay_ignore_host",
                 "sse_replay_ignore_port", "sse_replay_ignore_params", "sse_replay_match_body")


class SSEReplay:
    def __init__(self) -> None:
        self.matcher: Matcher | None = None
        self.settings = ReplaySettings()
        self.plans = Plans(self.settings)
        self.server: ReplayServer | None = None
        self.server_ready = asyncio.Event()
        self.expected: dict[str, Playback] = {}
        self.awaiting_head: dict[str, Playback] = {}  # token -> playback whose response head has not come
        self.loaded: dict[str, tuple[list[str], list]] = {}  # option -> (its value, what was read for it)

    def load(self, loader):
        loader.add_option("sse_replay", Sequence[str], [],
                          "Recordings to replay: .jsonl files, or directories (every *.jsonl below them).")
        loader.add_option("sse_replay_speed", str, "1",
                          "Replay speed: a number > 0 (0.5 = half speed, 2 = twice as fast) or 'max' (no waiting).")
        loader.add_option("sse_replay_max_pause", Optional[str], None,
                          "Shorten recorded pauses longer than this many seconds to it (before the speed applies).")
        loader.add_option("sse_replay_bytes", bool, False,
                          "Byte-exact replay: send the recorded raw chunks (still content-encoded) with their "
                          "boundaries and timing, instead of re-serialising the recorded events.")
        loader.add_option("sse_replay_extra", str, "forward",
                          "Requests with no recording: forward them to the real server, kill them, or answer with "
                          "an empty response of that status (as server_replay_extra).", choices=EXTRA_CHOICES)
        loader.add_option("sse_replay_reuse", bool, False,
                          "When every recording for a request has been served (in recorded order), start over "
                          "instead of treating further requests as having no recording.")
        loader.add_option("sse_replay_ignore_host", bool, False, "Ignore the host when matching requests.")
        loader.add_option("sse_replay_ignore_port", bool, False, "Ignore the port when matching requests.")
        loader.add_option("sse_replay_ignore_params", Sequence[str], [],
                          "Query parameters ignored when matching requests ('*' ignores the whole query).")
        loader.add_option("sse_replay_match_body", bool, False,
                          "Also match on the request body (JSON bodies compare by value).")
        loader.add_option("sse_replay_map", Sequence[str], [],
                          "Serve one recording for every request whose URL matches a regex: |url-regex|file.jsonl "
                          "(the first character separates the parts).")
        loader.add_option("sse_replay_cut_after", Optional[int], None,
                          "Fault: reset the connection right after event N (0: right after the response head).")
        loader.add_option("sse_replay_stall_after", Optional[int], None,
                          "Fault: after event N send nothing more and keep the stream open.")
        loader.add_option("sse_replay_drop", Sequence[str], [],
                          "Fault: leave out events of this type, or (#N) event N as show numbers it.")
        loader.add_option("sse_replay_stop_mid_event", Optional[int], None,
                          "Fault: send the first half of event N, then end the response.")
        loader.add_option("sse_replay_rechunk", Optional[int], None,
                          "Fault: re-chunk the bytes into chunks of N bytes (1: a byte at a time).")
        loader.add_option("sse_replay_swap", Optional[str], None,
                          "Fault: events A and B trade places, e.g. 3,4.")
        apply_deferred(loader, "sse-replay", "sse_replay")

    def configure(self, updated):
        opts = ctx.options
        if not any(name.startswith("sse_replay") for name in updated):
            return
        with _refusing():
            parse_extra(opts.sse_replay_extra)
            self.settings = parse_settings(
                speed=opts.sse_replay_speed, max_pause=opts.sse_replay_max_pause, byte_exact=opts.sse_replay_bytes,
                cut_after=opts.sse_replay_cut_after, stall_after=opts.sse_replay_stall_after,
                drop=opts.sse_replay_drop, stop_mid_event=opts.sse_replay_stop_mid_event,
                rechunk=opts.sse_replay_rechunk, swap=opts.sse_replay_swap)
            self.plans = Plans(self.settings)
            if updated & set(MATCH_OPTIONS):
                self.matcher = self._load_matcher(opts)
            if self.matcher is not None:
                check_recordings(self.settings, self._all_recordings())
        if self.matcher is not None and opts.connection_strategy == "eager":
            log.info("sse-replay: connection_strategy=lazy, so replay works while the real server is offline")
            opts.update(connection_strategy="lazy")

    def _load_matcher(self, opts) -> Matcher | None:
        """The matcher for the options. Files are read again only when ``sse_replay`` or ``sse_replay_map``
        changes value: ``sse-capture replay`` sets its command-line options, then each ``--set``, so a matching
        option in ``--set`` would read every recording twice."""
        read = []

        def current(option: str, load) -> list:
            value = list(getattr(opts, option))
            if self.loaded.get(option, (None,))[0] != value:
                self.loaded[option] = (value, load(value))
                read.append(option)
            return self.loaded[option][1]

        if not opts.sse_replay and not opts.sse_replay_map:
            return None
        recordings = current("sse_replay", lambda value: load_recordings(
            value, warn=lambda message: log.warning(f"sse-replay: {message}")))
        with option_value("sse_replay_map"):
            mappings = current("sse_replay_map", lambda value: [load_mapping(spec) for spec in value])
        check_found(opts.sse_replay, recordings, mappings)
        options = MatchOptions(ignore_host=opts.sse_replay_ignore_host, ignore_port=opts.sse_replay_ignore_port,
                               ignore_params=tuple(opts.sse_replay_ignore_params),
                               match_body=opts.sse_replay_match_body, reuse=opts.sse_replay_reuse)
        if read:
            counts = [f"{len(recordings)} recording(s)"] if "sse_replay" in read else []
            counts += [f"{len(mappings)} mapping(s)"] if mappings and "sse_replay_map" in read else []
            log.info(f"sse-replay: {', '.join(counts) or '0 recording(s)'}")
        return Matcher(recordings, options, mappings)

    def _all_recordings(self) -> list[Recording]:
        return self.matcher.recordings + [m.recording for m in self.matcher.mappings]

    async def running(self):
        if self.server is None:
            self.server = ReplayServer(self._resolve, on_start=self._started, on_end=self._ended)
            await self.server.start()
            self.server_ready.set()
            log.debug(f"sse-replay: replay server on {self.server.url}")

    async def done(self):
        if self.server is not None:
            await self.server.close()
            self.server = None

    # -- hooks ------------------------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if self.matcher is None or flow.response or flow.error:
            return
        # the proxy may accept a request before `running` has the replay server listening
        await self.server_ready.wait()
        if self.server is None:  # shutting down
            return
        req = flow.request
        asked = req.headers.get("access-control-request-method")
        if req.method == "OPTIONS" and asked and "origin" in req.headers and self.matcher.has(asked, req.url):
            # a page on another origin asks first whether it may make the recorded request; the real server,
            # which would say yes, may be offline
            headers = [(k.encode(), v.encode("utf-8", "surrogateescape"))
                       for k, v in cors_headers(req.headers.get, preflight=True)]
            flow.response = http.Response.make(204, b"", headers)
            return
        info = RequestInfo(req.method, req.url, req.raw_content, req.headers.get("content-encoding"))
        booking = await book_in_turn(self.matcher, info)
        if booking is not None and (self.server is None or flow.error):  # shut down, or the client left, meanwhile
            booking.give_back()
            return
        if booking is None:
            self._extra(flow, info)
            return
        rec = booking.recording
        plan = await self.plans.booked(booking)
        for warning in plan.warnings:
            log.warning(f"sse-replay: {shown_path(rec.path)}: {printable(warning)}")
        token = secrets.token_urlsafe(16)
        self.expected[token] = self.awaiting_head[token] = Playback(plan, label=self._label(req), booking=booking)
        flow.metadata["sse_replay"] = {"recording": rec.path, "token": token,
                                       "url": (req.scheme, req.host, req.port, req.host_header)}
        req.scheme, req.host, req.port = "http", LOOPBACK, self.server.port
        req.headers[TOKEN_HEADER] = token
        if flow.server_conn.via is not None:
            # upstream mode: the replay server is this proxy's own, not one behind the upstream proxy. (A new
            # Server: the one the flow has is its client connection's, which that connection's other requests share.)
            flow.server_conn = connection.Server(address=(LOOPBACK, self.server.port))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("sse_replay")
        if meta is None:
            if is_sse(flow.response) and not flow.response.stream:
                flow.response.stream = True  # a forwarded live stream: mitmproxy would buffer it to the end
            return
        self.awaiting_head.pop(meta["token"], None)
        flow.response.stream = True
        resp = flow.response
        resp.headers.pop("connection", None)  # the replay server closes its side: not the recording's
        req = flow.request
        origin, allowed = req.headers.get("origin"), resp.headers.get("access-control-allow-origin")
        if origin and allowed and allowed not in ("*", origin):
            # recorded from another origin (staging's frontend, another dev port): the server allowed the page
            # it served then, and the proxy stands in for it now (its preflight answer allowed this origin)
            resp.headers["access-control-allow-origin"] = origin
        req.headers.pop(TOKEN_HEADER, None)
        req.scheme, req.host, req.port = meta["url"][:3]
        req.host_header = meta["url"][3]

    def response(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("sse_replay")
        if meta is not None and (playback := self.awaiting_head.pop(meta["token"], None)) is not None:
            # answered without the replay server's head: by a later addon (map_local, server_replay)
            self.expected.pop(meta["token"], None)
            playback.unanswered()

    def error(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get("sse_replay")
        if meta is None:
            return
        playback = self.awaiting_head.pop(meta["token"], None)
        if playback is not None:
            # The client left before the response began. Given back here, not when the replay server sees the
            # proxy close its connection, which may come after the client's next request.
            playback.unanswered()
        if self.expected.pop(meta["token"], None) is not None:  # the replay server never had the request
            message = flow.error.msg if flow.error else ""
            # mitmproxy's words for a client that left: "Client disconnected.", "stream reset by client (...)"
            playback.outcome = CLIENT_GONE if "client" in message.lower() else f"not delivered ({message})"
            self._ended(playback)

    # -- helpers ----------------------------------------------------------------------------------------

    async def _resolve(self, request: Request) -> Playback | None:
        return self.expected.pop(request.header(TOKEN_HEADER) or "", None)

    def _label(self, req: http.Request) -> str:
        return f"{req.method} {self.matcher.shown_url(req.pretty_url)}"

    def _started(self, playback: Playback) -> None:
        log.info(f"sse-replay: {playback.start_line()}")

    def _ended(self, playback: Playback) -> None:
        log.info(f"sse-replay: {playback.end_line()}")

    def _extra(self, flow: http.HTTPFlow, info: RequestInfo) -> None:
        extra = ctx.options.sse_replay_extra
        req = flow.request
        why = self.matcher.why_unmatched(info)
        if extra == "forward":
            if why:  # else a request the recordings have nothing to do with: the rest of the app
                log.info(f"sse-replay: no recording for {printable(self._label(req))}: {printable(why)}")
            return
        log.warning(f"sse-replay: no recording for {printable(self._label(req))}: {extra}"
                    + (f"; {printable(why)}" if why else ""))
        if extra == "kill":
            flow.kill()
        else:
            flow.response = http.Response.make(int(extra))


@contextlib.contextmanager
def _refusing():
    """A bad value stops start-up: ``file:line: what is wrong`` for a recording, else the option's name."""
    try:
        yield
    except RecordingError as e:
        raise exceptions.OptionsError(str(e)) from None
    except OptionValueError as e:
        raise exceptions.OptionsError(f"{e.option}: {e}") from None
