"""An asyncio HTTP/1.1 server on loopback that plays plans. Knows nothing of mitmproxy.

Each connection carries one request and one response (``connection: close``). ``resolve`` picks what to
play for a request; the response is chunked, so a proper end (the last chunk), a reset (TCP RST) and
a close mid-body (FIN) are three different things on the wire, and a proxy in front of this server
passes each on to its client as such.

Writes are due at ``start + at``, never a gap after the previous write, so a late write never delays
the ones after it. One ``Timeline`` per server plays the writes of every stream: a heap of each
stream's next write, one timer for the earliest, and everything due written in one pass, so a write
costs a heap push and a ``transport.write`` instead of a timer, a future and a task wake-up.

The timer is set ``TIMER_SLACK`` early and the last stretch is spun on the event loop's ready queue:
asyncio's epoll waits whole milliseconds, rounded up, so a timer set for the due time itself fires up to
1 ms late — half the lateness budget through a proxy. Spinning with ``call_soon`` keeps serving I/O.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11

from ..redact import Redactor
from ..shown import printable, shown_path
from .matching import Booking, Matcher, RequestInfo
from .schedule import CLOSE, COMPLETE, HOLD, RESET, Plan, Write

log = logging.getLogger("sse_replay")

LOOPBACK = "127.0.0.1"
MAX_REQUEST_BODY = 64 * 1024 * 1024
RESET_GRACE = 0.1  # seconds between the last byte and a TCP reset
TIMER_SLACK = 0.0011  # epoll's timeout granularity (1 ms, rounded up), plus a margin

#: How a playback ended besides the plan's own ending.
CLIENT_GONE = "client went away"


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass
class Playback:
    """One replayed stream, for progress reports."""
    plan: Plan
    label: str = ""
    events_sent: int = 0
    outcome: str = ""                 # the plan's ending once reached, or CLIENT_GONE
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    booking: Booking | None = None    # the matcher's hold on the recording, answered when the head goes out

    def unanswered(self) -> None:
        """The response never began (the client left: an aborted fetch, React's StrictMode double effect): the
        client has seen nothing of the recording, so the next matching request gets it."""
        if self.booking is not None:
            self.booking.give_back()  # (nothing once answered)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def start_line(self) -> str:
        plan = self.plan
        return (f"> {printable(self.label)} <- {shown_path(plan.source)} "
                f"({plan.events} events over {plan.end_at:.2f}s, ends: {plan.ending})")

    def end_line(self) -> str:
        line = (f"= {printable(self.label)}: {self.events_sent}/{self.plan.events} events in {self.elapsed:.2f}s, "
                f"{self.outcome}")
        given_back = self.booking is not None and self.booking.given_back
        return line + " before the response began: served again next time" if given_back else line


Resolver = Callable[[Request], Playback | None | Awaitable[Playback | None]]
Observer = Callable[[Playback], None]


def _ignore(playback: Playback) -> None:
    pass


def cors_headers(header: Callable[[str], str | None], preflight: bool = False) -> list[tuple[str, str]]:
    """What lets a page on another origin read a response (``header(name)``: the request's header, or None):
    any origin, with credentials; for a preflight, the method and headers it asks for."""
    origin = header("origin")
    if not origin:
        return []
    headers = [("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"),
               ("vary", "origin")]
    if preflight:
        headers += [("access-control-allow-methods", header("access-control-request-method") or "GET"),
                    ("access-control-allow-headers", header("access-control-request-headers") or ""),
                    ("access-control-max-age", "600")]
    return headers


class _Stream:
    """The writes of one response still to be sent, from ``writes[next]`` on."""
    __slots__ = ("start", "writes", "next", "transport", "chunked", "playback", "done", "loop", "spacing",
                 "not_before")

    def __init__(self, start: float, writes: list[Write], transport: asyncio.WriteTransport, chunked: bool,
                 playback: Playback, loop: asyncio.AbstractEventLoop):
        self.start, self.writes, self.next = start, writes, 0
        self.transport, self.chunked, self.playback = transport, chunked, playback
        self.done, self.loop = loop.create_future(), loop
        self.spacing = playback.plan.spacing
        self.not_before = 0.0

    @property
    def due(self) -> float:
        due = self.start + self.writes[self.next].at
        return due if due >= self.not_before else self.not_before

    def write_due(self, now: float) -> bool:
        """Sends every write due by ``now`` (in one ``transport.write``, each still its own HTTP chunk), or,
        for a plan with ``spacing``, only the first of them, so that pieces which must reach the client
        separately are not joined when the stream is behind. False when the stream has nothing left to send."""
        if self.done.done():  # cancelled: the client went away or the server is closing
            return False
        if self.transport.is_closing():
            self.done.set_exception(ConnectionResetError("the client went away"))
            return False
        writes, i = self.writes, self.next
        out = []
        while i < len(writes) and self.start + writes[i].at <= now:
            data = writes[i].data
            if data:
                out.append(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)
            self.playback.events_sent += writes[i].events
            i += 1
            if self.spacing:
                break
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            if self.spacing:  # from the write itself: ``now`` is when the timer's pass over every stream began
                self.not_before = self.loop.time() + self.spacing
        self.next = i
        if i == len(writes):
            self.done.set_result(None)
            return False
        return True


class Timeline:
    """Plays the writes of every stream of one event loop on a single timer (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._heap: list[tuple[float, int, _Stream]] = []
        self._order = itertools.count()  # streams due at the same time write in the order they were queued
        self._wakeup: asyncio.Handle | None = None
        self._wakeup_at = 0.0  # the due time the wake-up serves

    def play(self, start: float, writes: list[Write], transport: asyncio.WriteTransport, chunked: bool,
             playback: Playback) -> asyncio.Future:
        """Each write at ``start + write.at``; the future is done after the last one, or fails with
        ``ConnectionResetError`` when the transport closed first. Cancel it to stop."""
        stream = _Stream(start, writes, transport, chunked, playback, self.loop)
        if not writes:
            stream.done.set_result(None)
        elif stream.write_due(self.loop.time()):
            self._queue(stream)
        return stream.done

    def close(self) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        self._heap.clear()

    def _queue(self, stream: _Stream) -> None:
        due = stream.due
        heapq.heappush(self._heap, (due, next(self._order), stream))
        if self._wakeup is None or due < self._wakeup_at:
            if self._wakeup is not None:
                self._wakeup.cancel()
            self._wake_for(due)

    def _wake_for(self, due: float) -> None:
        self._wakeup_at = due
        if due - self.loop.time() > TIMER_SLACK:
            self._wakeup = self.loop.call_at(due - TIMER_SLACK, self._run)
        else:
            self._wakeup = self.loop.call_soon(self._run)

    def _run(self) -> None:
        self._wakeup = None
        heap, now = self._heap, self.loop.time()
        while heap and heap[0][0] <= now:
            stream = heapq.heappop(heap)[2]
            if stream.write_due(now):
                heapq.heappush(heap, (stream.due, next(self._order), stream))
        if heap:
            self._wake_for(heap[0][0])


#: How long a request waits for the bookings of its endpoint that are still waiting for their first byte (see
#: book_in_turn). An aborted request's abort reaches the proxy within milliseconds of its retry (2-8 ms measured
#: with Chromium); requests that merely run at once (two tabs, a page's parallel streams) are held no longer.
ABORT_GRACE = 0.25


async def book_in_turn(matcher: Matcher, request: RequestInfo, limit: float = ABORT_GRACE) -> Booking | None:
    """``matcher.book(request)`` once every booking of its sequence still waiting for its response has begun
    it or been given back (``Matcher.unsettled``), or after ``limit`` seconds, so that recordings are served in
    order even when an aborted request's abort arrives after its retry."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while earlier := matcher.unsettled(request):
        turn = loop.create_future()

        def wake(turn=turn) -> None:
            if not turn.done():
                turn.set_result(None)

        for booking in earlier:
            booking.on_settle.append(wake)
        try:
            await asyncio.wait_for(turn, deadline - loop.time())
        except TimeoutError:
            break
    return matcher.book(request)


class ReplayServer:
    """``await start()`` listens on 127.0.0.1 (``port`` 0: any free port); ``await close()`` stops it and
    every stream still playing."""

    def __init__(self, resolve: Resolver, *, port: int = 0, on_start: Observer = _ignore,
                 on_end: Observer = _ignore, cors: bool = False, refuse_host: Callable[[str], str | None] = None,
                 origin_allowed: Callable[[str], bool] | None = None):
        self.resolve = resolve
        self.refuse_host = refuse_host  # the reason to refuse a request for this Host header, or None
        self.port = port
        self.on_start = on_start
        self.on_end = on_end
        self.cors = cors
        # serve's: the page origins that may read what it answers (cors), and no recorded access-control-* header
        # (a recorded "*" would let any page read the recordings); None for the replay proxy's own server
        self.origin_allowed = origin_allowed
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._timeline: Timeline | None = None

    async def start(self) -> int:
        self._timeline = Timeline(asyncio.get_running_loop())
        self._server = await asyncio.start_server(self._connection, LOOPBACK, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._timeline is not None:
            self._timeline.close()
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # -- one connection ---------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER)
        try:
            request = await _read_request(conn, reader)
            if request is None:
                return
            if self.refuse_host is not None and (reason := self.refuse_host(request.header("host") or "")):
                await self._respond_text(writer, conn, request, 403, reason + "\n")
                return
            if self.cors and request.method == "OPTIONS":
                await _respond(writer, conn, 204, self._cors_headers(request, preflight=True))
                return
            try:
                playback = self.resolve(request)
                if inspect.isawaitable(playback):
                    playback = await playback
            except Exception as e:  # a recording the plan builder cannot handle: one failed request, not the server
                log.error(f"sse-replay: {printable(request.method)} {printable(Redactor().url(request.target)[0])} "
                          f"failed: {printable(repr(e))}")
                await self._respond_text(writer, conn, request, 500, f"replay failed: {e!r}\n")
                return
            if playback is None:
                await self._respond_text(writer, conn, request, 404,
                                         f"no recording for {request.method} {request.target}\n")
                return
            await self._play(playback, request, conn, reader, writer)
        except (h11.ProtocolError, ConnectionError, asyncio.IncompleteReadError) as e:
            log.debug(f"sse-replay: connection dropped: {e!r}")
        except asyncio.CancelledError:
            pass  # close(); returning normally, as Python 3.12.1's asyncio.streams mishandles a cancelled handler
        finally:
            if not writer.is_closing():
                writer.close()
            self._tasks.discard(task)

    async def _respond_text(self, writer: asyncio.StreamWriter, conn: h11.Connection, request: Request,
                            status: int, text: str) -> None:
        headers = [("content-type", "text/plain; charset=utf-8")]
        if self.cors:  # a browser hides even an error from the page unless it is allowed to read it
            headers += self._cors_headers(request)
        await _respond(writer, conn, status, headers, text.encode("utf-8", "surrogateescape"))

    def _cors_headers(self, request: Request, preflight: bool = False) -> list[tuple[str, str]]:
        if self.origin_allowed is not None and not self.origin_allowed(request.header("origin") or ""):
            return []
        return cors_headers(request.header, preflight)

    async def _play(self, playback: Playback, request: Request, conn: h11.Connection,
                    reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sending = asyncio.ensure_future(self._send(playback, request, conn, writer))
        gone = asyncio.ensure_future(_wait_for_eof(reader))
        try:
            await asyncio.wait({sending, gone}, return_when=asyncio.FIRST_COMPLETED)
            failed = sending.exception() if sending.done() else None
            if sending.done() and failed is None:
                playback.outcome = playback.plan.ending
            elif failed is None or isinstance(failed, ConnectionError):
                playback.outcome = CLIENT_GONE
            else:
                log.error(f"sse-replay: playing {shown_path(playback.plan.source)} failed: {printable(repr(failed))}")
                playback.outcome = f"failed: {failed!r}"
        finally:
            for task in (sending, gone):
                task.cancel()
            await asyncio.gather(sending, gone, return_exceptions=True)
            playback.finished = time.monotonic()
            playback.unanswered()  # whatever ended it, a response that never began served nothing
            if playback.outcome:  # not when the server is closing
                self.on_end(playback)

    async def _send(self, playback: Playback, request: Request, conn: h11.Connection,
                    writer: asyncio.StreamWriter) -> None:
        plan = playback.plan
        loop = asyncio.get_running_loop()
        if plan.head_delay > 0:
            await asyncio.sleep(plan.head_delay)
        headers = list(plan.headers)
        if self.cors or self.origin_allowed is not None:
            headers = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
        if self.cors:
            headers += self._cors_headers(request)
        headers.append(("connection", "close"))
        writer.write(conn.send(h11.Response(status_code=plan.status, reason=plan.reason.encode("latin-1", "replace"),
                                            headers=[_encode(h) for h in headers])))
        start = loop.time()
        playback.started = time.monotonic()
        if playback.booking is not None:
            playback.booking.answer()
        self.on_start(playback)
        if request.method == "HEAD" or plan.status in (204, 304):
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            return
        # h11 framed the head: chunked for an HTTP/1.1 client, else the body ends with the connection
        chunked = conn.their_http_version >= b"1.1"
        await self._timeline.play(start, plan.writes, writer.transport, chunked, playback)
        delay = start + plan.end_at - loop.time()
        if delay > 0 and plan.ending != HOLD:
            await asyncio.sleep(delay)
        if plan.ending == COMPLETE:
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        elif plan.ending == CLOSE:
            writer.close()  # flushes what was written, then FIN without the last chunk
            await writer.wait_closed()
        elif plan.ending == RESET:
            await _flushed(writer)
            # a reset makes the peer drop what it has not read yet: give the bytes already sent time to get
            # through the proxy, so the client sees every event before the connection dies
            await asyncio.sleep(RESET_GRACE)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:  # HOLD: the stream stays open until the client goes away
            await loop.create_future()


def _encode(header: tuple[str, str]) -> tuple[bytes, bytes]:
    # mitmproxy's fields_str decodes with surrogateescape; this gives back the original bytes
    return header[0].encode("utf-8", "surrogateescape"), header[1].encode("utf-8", "surrogateescape")


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
    request: Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request):
            request = Request(event.method.decode("ascii"), event.target.decode("utf-8", "surrogateescape"),
                              [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers], b"")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REQUEST_BODY:
                raise h11.RemoteProtocolError("request body too large")
        elif isinstance(event, h11.EndOfMessage):
            request.body = bytes(body)
            return request
        else:  # ConnectionClosed
            return None


async def _respond(writer: asyncio.StreamWriter, conn: h11.Connection, status: int,
                   headers: list[tuple[str, str]], body: bytes = b"") -> None:
    headers = headers + [("content-length", str(len(body))), ("connection", "close")]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    if body:
        writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


async def _wait_for_eof(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


async def _flushed(writer: asyncio.StreamWriter) -> None:
    """Until the transport has handed everything written to the kernel (a reset discards the rest)."""
    while writer.transport.get_write_buffer_size():
        await asyncio.sleep(0.001)
