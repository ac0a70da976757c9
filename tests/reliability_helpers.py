"""Shared machinery for the reliability tests (tests/test_reliability_*.py) and the soak (bench/soak.py).

Everything talks to 127.0.0.1 only and is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import os
import re
import socket
import statistics
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import brotli
import orjson
import zstandard

from harness import LoopbackServer
from sse_capture_addon.recording import read_recording
from sse_capture_addon.sse import DEFAULT_MAX_EVENT_SIZE, Event, SSEParser


# --- the proxy process -----------------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """``/proc/<pid>/status`` memory fields in KiB (VmRSS, VmHWM, ...)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for row in f:
            if row.startswith("Vm"):
                name, value = row.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def reset_hwm(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def log_lines(mitm, pattern: str) -> list[str]:
    return [row for row in mitm.log().splitlines() if re.search(pattern, row)]


# --- hostile bodies --------------------------------------------------------------------------------------

def gzip_of_zeros(prefix: bytes, size: int) -> bytes:
    """A gzip member of ``prefix`` and then ``size`` zero bytes (whole MiB), made in a fraction of a second: the same
    deflate block over and over (1 MiB each, fully flushed, so each compresses alike), then the stream's end."""
    mib, n = b"\0" * (1 << 20), size >> 20
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(n):
        crc = zlib.crc32(mib, crc)
    end = c.flush()[:-8] + struct.pack("<II", crc, (len(prefix) + size) & 0xFFFFFFFF)  # its CRC and size, for all
    return head + block * n + end


def decompression_bomb(encoding: str, size: int) -> bytes:
    """An SSE body in this Content-Encoding ("gzip, gzip", "br" or "zstd") that decodes to one event, ``data:
    first``, and then ``size`` zero bytes (whole MiB)."""
    mib, n, first = b"\0" * (1 << 20), size >> 20, b"data: first\n\n"
    if encoding == "gzip, gzip":
        return gzip.compress(gzip_of_zeros(first, size))
    if encoding == "br":
        c = brotli.Compressor(quality=1)
        return c.process(first) + b"".join(c.process(mib) for _ in range(n)) + c.finish()
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return c.compress(first) + b"".join(c.compress(mib) for _ in range(n)) + c.flush()


def line_flood(line: bytes, size: int) -> bytes:
    """An SSE body in gzip that decodes to one event, ``data: first``, and then ``size`` bytes of ``line`` again
    and again (``:\n``: comments): ~1 KB per MiB."""
    return gzip.compress(b"data: first\n\n" + line * (size // len(line)))


# --- recordings ------------------------------------------------------------------------------------------

def whole_lines(path: Path) -> list[dict]:
    """Every line of a recording parses as a JSON object and the file ends with a newline."""
    rows, torn = whole_lines_but_a_torn_tail(path)
    assert not torn, f"{path}: last line is not whole: {Path(path).read_bytes()[-200:]!r}"
    return rows


def whole_lines_but_a_torn_tail(path: Path) -> tuple[list[dict], bytes]:
    """Every line of a recording whole JSON, except perhaps the last: the start of a line with no newline, what a
    write leaves when the kernel stops it at a page boundary because the proxy was killed. (rows, that start)"""
    raw = Path(path).read_bytes()
    whole, _, torn = raw.rpartition(b"\n")
    assert not torn or b'{"t":'.startswith(torn[:5]), f"{path}: last line is not whole: {raw[-200:]!r}"
    rows = [orjson.loads(row) for row in whole.split(b"\n")]
    assert all(isinstance(r, dict) for r in rows)
    return rows, torn


def recording_for(mitm, needle: str, ended: bool = True, timeout: float = 20.0) -> Path:
    """The single recording whose request URL contains ``needle`` (waits for its end line)."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in mitm.recordings():
            with contextlib.suppress(Exception):
                rec = read_recording(path)
                if needle in rec.header["request"]["url"]:
                    found.append((path, rec))
        if len(found) > 1:
            raise AssertionError(f"more than one recording for {needle!r}: {[p for p, _ in found]}")
        if found and (not ended or found[0][1].end is not None):
            return found[0][0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {'ended ' if ended else ''}recording for {needle!r}; have "
                               f"{mitm.recordings()}\n{mitm.log()[-5000:]}")
        time.sleep(0.05)


def reference_items(stream: bytes, max_event_size: int = DEFAULT_MAX_EVENT_SIZE, chunks: list[bytes] | None = None):
    """What the parser makes of ``stream`` on its own: (events, tail) to compare recordings with."""
    parser = SSEParser(max_event_size=max_event_size)
    items = []
    for chunk in chunks or [stream]:
        items += parser.feed(chunk)
    tail = parser.close()
    return items, tail


def reference_events(stream: bytes, **kw) -> list[tuple[str, str, str | None]]:
    items, _ = reference_items(stream, **kw)
    return [(e.type, e.data, e.last_event_id or None) for e in items if type(e) is Event]


def events_completed_by(received: bytes) -> int:
    """How many events a client has seen whole in ``received`` (same parser, no tail)."""
    return len(reference_events(received))


# --- a raw HTTP/1.1 client through the proxy -------------------------------------------------------------

def raw_proxy_request(proxy_port: int, request_line_target: str, host: str, timeout: float = 20.0,
                      extra: bytes = b"") -> tuple[bytes, bytes]:
    """Send ``GET <target> HTTP/1.1`` (absolute-form) byte for byte through the proxy; return (head, body
    bytes as received on the wire, de-chunked when chunked)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as s:
        s.sendall(b"GET " + request_line_target.encode("latin-1") + b" HTTP/1.1\r\nHost: " + host.encode()
                  + b"\r\nConnection: close\r\n" + extra + b"\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return head, body


def dechunk(body: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2:end + 2 + size])
        pos = end + 2 + size + 2


# --- many concurrent streams (the CI load test and bench/soak.py) ----------------------------------------

def stream_event(slot: int, seq: int, j: int, pad: int) -> bytes:
    return (f'id: {j}\nevent: delta\ndata: {{"slot":{slot},"seq":{seq},"j":{j},"pad":"' + "x" * pad
            + '"}\n\n').encode()


def stream_bytes(slot: int, seq: int, n: int, pad: int) -> bytes:
    return b"".join(stream_event(slot, seq, j, pad) for j in range(n))


@dataclass
class StreamResult:
    slot: int
    seq: int
    events_sent: int = 0
    sha_sent: str = ""
    body: bytes = b""          # what the client received (kept only with keep_bodies=True)
    sha_recv: str = ""         # sha256 of what the client received
    len_recv: int = 0
    error: str | None = None
    status: int = 0


@dataclass
class LoadResult:
    streams: list[StreamResult] = field(default_factory=list)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)   # (seconds since start, KiB)
    cpu_seconds: float = 0.0
    elapsed: float = 0.0

    def rss_early_late(self, duration: float) -> tuple[int, int]:
        """Median VmRSS (KiB) over the second fifth and over the last fifth of the run."""
        early = [kb for t, kb in self.rss_samples if duration * 0.2 <= t <= duration * 0.4]
        late = [kb for t, kb in self.rss_samples if duration * 0.8 <= t <= duration * 0.98]
        return int(statistics.median(early)), int(statistics.median(late))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(proxy_port: int, proxy_pid: int, *, streams: int, duration: float, rate: float,
                   stream_seconds: float | None = None, pad: int = 40, ramp: float = 1.0,
                   progress=None, kill_after: float | None = None, keep_bodies: bool = False) -> LoadResult:
    """``streams`` concurrent slots, each running successive SSE streams of ``stream_seconds`` (default: the
    whole ``duration``) at ``rate`` events/s, one event per chunk, through the proxy at ``proxy_port``, from
    an asyncio upstream and asyncio clients on 127.0.0.1. Samples the proxy's VmRSS every 0.5 s."""
    stream_seconds = stream_seconds or duration
    result = LoadResult()
    per_stream = max(1, int(stream_seconds * rate))
    interval = 1.0 / rate
    sent: dict[tuple[int, int], StreamResult] = {}

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rec = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            _, slot, seq, n = head.split(b" ", 2)[1].decode().rsplit("/", 3)
            slot, seq, n = int(slot), int(seq), int(n)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            rec = sent[(slot, seq)]
            h = hashlib.sha256()
            t0 = time.monotonic()
            for j in range(n):
                ev = stream_event(slot, seq, j, pad)
                h.update(ev)
                writer.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                rec.events_sent += 1
                await writer.drain()
                delay = t0 + (j + 1) * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            rec.sha_sent = h.hexdigest()
        except (OSError, asyncio.IncompleteReadError) as e:
            if rec is not None:
                rec.error = f"upstream: {e!r}"
        finally:
            writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0, backlog=1024)
    up_port = server.sockets[0].getsockname()[1]

    async def client(slot: int, seq: int, n: int) -> None:
        rec = sent[(slot, seq)] = StreamResult(slot, seq)
        body: list[bytes] = []
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port, limit=1 << 20)
            target = f"http://127.0.0.1:{up_port}/s/{slot}/{seq}/{n}"
            writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            rec.status = int(head.split(b" ", 2)[1])
            if b"transfer-encoding: chunked" in head.lower():
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";")[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    try:
                        body.append(await reader.readexactly(size))
                    except asyncio.IncompleteReadError as e:
                        body.append(e.partial)   # what the client did receive
                        raise
                    await reader.readexactly(2)
            else:
                body.append(await reader.read())
            writer.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            rec.error = f"client: {e!r}"
        finally:
            received = b"".join(body)
            rec.sha_recv, rec.len_recv = hashlib.sha256(received).hexdigest(), len(received)
            if keep_bodies:
                rec.body = received

    streams_per_slot = max(1, int(duration // stream_seconds + 1e-9))

    async def slot_loop(slot: int, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        for seq in range(streams_per_slot):
            await client(slot, seq, per_stream)

    async def sampler(t0: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError, KeyError):   # KeyError: a killed (zombie) proxy
                result.rss_samples.append((time.monotonic() - t0, proc_status(proxy_pid)["VmRSS"]))
                if progress:
                    progress(result, time.monotonic() - t0, sent)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    cpu0 = _cpu_seconds(proxy_pid)
    t0 = time.monotonic()
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler(t0, stop))
    if kill_after is not None:   # SIGKILL the proxy mid-load (crash safety under concurrency)
        asyncio.get_running_loop().call_later(kill_after, os.kill, proxy_pid, 9)
    # slots start spread over ``ramp``; each runs duration // stream_seconds streams of stream_seconds
    tasks = [asyncio.create_task(slot_loop(i, t0 + ramp * i / streams)) for i in range(streams)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration * 1.5 + ramp + 60)
    finally:
        stop.set()
        await sampling
        server.close()
    result.elapsed = time.monotonic() - t0
    with contextlib.suppress(OSError, IndexError):
        result.cpu_seconds = _cpu_seconds(proxy_pid) - cpu0
    result.streams = sorted(sent.values(), key=lambda r: (r.slot, r.seq))
    return result


def _recordings_by_stream(record_dir: Path, problems: list[str], lines_whole: bool = False) -> dict:
    """(slot, seq) -> (path, recording) for every valid recording under ``record_dir`` (also checking, with
    ``lines_whole``, that every line is whole JSON but for a last write cut short by a kill, which the reader must
    then leave out); what cannot be read goes to ``problems``."""
    found = {}
    for path in sorted(record_dir.rglob("*.jsonl")):
        try:
            if lines_whole:
                rows, torn = whole_lines_but_a_torn_tail(path)
            rec = read_recording(path)
            if lines_whole:
                assert rec.torn == ((len(rows) + 1, len(torn)) if torn else None), (rec.torn, torn)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{path}: {e}")
            continue
        slot, seq, _ = rec.header["request"]["url"].rsplit("/", 3)[1:]
        found[(int(slot), int(seq))] = (path, rec)
    return found


def check_load(result: LoadResult, record_dir: Path, pad: int = 40) -> dict:
    """Assert nothing was lost: every client got exactly what the server sent, and every recording holds
    every event with the right ids and a ``complete`` end line. Returns counts for the report."""
    problems = []
    total_events = 0
    for r in result.streams:
        expected = hashlib.sha256(stream_bytes(r.slot, r.seq, r.events_sent, pad)).hexdigest()
        if r.error or r.status != 200:
            problems.append(f"stream {r.slot}/{r.seq}: status {r.status} error {r.error}")
        elif not (expected == r.sha_sent == r.sha_recv):
            problems.append(f"stream {r.slot}/{r.seq}: client got {r.len_recv} bytes that differ from what the "
                            f"server sent")
        total_events += r.events_sent
    by_url = _recordings_by_stream(record_dir, problems)
    recorded_events = 0
    for r in result.streams:
        entry = by_url.pop((r.slot, r.seq), None)
        if entry is None:
            problems.append(f"stream {r.slot}/{r.seq}: no recording")
            continue
        path, rec = entry
        ids = [e.get("id") for e in rec.events]
        recorded_events += len(ids)
        if ids != [str(j) for j in range(r.events_sent)]:
            problems.append(f"{path}: {len(ids)} events recorded, {r.events_sent} sent")
        if rec.ending != "complete" or rec.end["events"] != r.events_sent or rec.end["bytes"] != r.len_recv:
            problems.append(f"{path}: end {rec.end}")
    problems += [f"{path}: recording of no stream" for path, _ in by_url.values()]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])
    return {"streams": len(result.streams), "events_sent": total_events, "events_recorded": recorded_events}


def check_after_kill(result: LoadResult, record_dir: Path, pad: int = 40) -> dict:
    """After a SIGKILL under load: every recording is valid with whole lines and no end line ("proxy_died"),
    holds exactly a prefix of its stream's events, and at least every event its client had received."""
    problems = []
    recs = _recordings_by_stream(record_dir, problems, lines_whole=True)
    torn = sum(rec.torn is not None for _, rec in recs.values())
    client_events = recorded_events = 0
    for r in result.streams:
        seen = events_completed_by(r.body)
        client_events += seen
        entry = recs.get((r.slot, r.seq))
        if entry is None:
            if r.body:
                problems.append(f"stream {r.slot}/{r.seq}: client got {len(r.body)} bytes, no recording")
            continue
        path, rec = entry
        ids = [e.get("id") for e in rec.events]
        recorded_events += len(ids)
        if r.body != stream_bytes(r.slot, r.seq, r.events_sent, pad)[:len(r.body)]:
            problems.append(f"stream {r.slot}/{r.seq}: client bytes differ from what the server sent")
        if ids != [str(j) for j in range(len(ids))] or len(ids) < seen:
            problems.append(f"{path}: {len(ids)} events recorded, client had seen {seen}")
        if rec.ending != "proxy_died":
            problems.append(f"{path}: ending {rec.ending}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:30])
    return {"streams": len(result.streams), "recordings": len(recs), "client_events": client_events,
            "recorded_events": recorded_events, "torn": torn}


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill_fs(path: Path) -> Path:
    """Fill the file system under ``path`` to the last byte; return the filler file (delete it to free)."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            block = b"\0" * size
            while True:
                try:
                    if os.write(fd, block) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


# --- a minimal HTTP/2 client that can reset one stream (httpx never sends RST_STREAM) -------------------

class H2ThroughProxy:
    """CONNECT through the proxy (unless not ``connect``: a reverse proxy), TLS with ALPN h2 (trusting ``ca``), then
    raw HTTP/2 via the h2 library."""

    def __init__(self, proxy_port: int, host: str, port: int, ca: str, timeout: float = 20.0, connect: bool = True):
        import ssl

        import h2.config
        import h2.connection

        raw = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
        if connect:
            raw.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                piece = raw.recv(4096)
                if not piece:
                    raise ConnectionError("proxy closed during CONNECT")
                reply += piece
            assert reply.startswith(b"HTTP/1.1 200"), reply
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.authority = f"{host}:{port}"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self._flush()
        self.data: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.reset: set[int] = set()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def get(self, path: str) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":authority", self.authority),
                                     (":path", path), ("accept", "text/event-stream")], end_stream=True)
        self._flush()
        self.data[sid] = bytearray()
        return sid

    def pump(self) -> None:
        import h2.events

        piece = self.sock.recv(65536)
        if not piece:
            raise ConnectionError("proxy closed the connection")
        for ev in self.conn.receive_data(piece):
            if isinstance(ev, h2.events.DataReceived):
                self.data[ev.stream_id] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.reset.add(ev.stream_id)
        self._flush()

    def read_until(self, sid: int, size: int) -> bytes:
        while len(self.data[sid]) < size and sid not in self.ended and sid not in self.reset:
            self.pump()
        return bytes(self.data[sid])

    def cancel(self, sid: int) -> None:
        import h2.errors

        self.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        self._flush()

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self._flush()
        except OSError:
            pass
        self.sock.close()


# --- a raw HTTP/2 upstream that can reset a stream or drop the connection mid-body ----------------------

class H2RawServer(LoopbackServer):
    """TLS + ALPN h2 on 127.0.0.1 with the test upstream certificate. ``respond(path)`` returns steps: bytes
    (a DATA frame), a float (sleep), ``"rst"`` (RST_STREAM INTERNAL_ERROR), ``"goaway"`` (GOAWAY then
    close), ``"close"`` (TCP close without GOAWAY), ``"end"`` (END_STREAM)."""

    scheme = "https"

    def __init__(self, certs, respond):
        import ssl

        self.respond = respond
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(certs.upstream_cert), str(certs.upstream_key))
        self.ctx.set_alpn_protocols(["h2"])
        super().__init__(backlog=16)

    def _serve(self, raw: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.errors
        import h2.events

        try:
            conn_sock = self.ctx.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        with conn_sock:
            h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            h2c.initiate_connection()
            conn_sock.sendall(h2c.data_to_send())
            try:
                while True:
                    data = conn_sock.recv(65536)
                    if not data:
                        return
                    for ev in h2c.receive_data(data):
                        if isinstance(ev, h2.events.RequestReceived):
                            path = dict((k.decode() if isinstance(k, bytes) else k,
                                         v.decode() if isinstance(v, bytes) else v) for k, v in ev.headers)[":path"]
                            h2c.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "text/event-stream")])
                            conn_sock.sendall(h2c.data_to_send())
                            for step in self.respond(path):
                                if isinstance(step, bytes):
                                    h2c.send_data(ev.stream_id, step)
                                elif isinstance(step, (int, float)):
                                    time.sleep(step)
                                    continue
                                elif step == "rst":
                                    h2c.reset_stream(ev.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
                                elif step == "end":
                                    h2c.end_stream(ev.stream_id)
                                elif step == "goaway":
                                    h2c.close_connection(h2.errors.ErrorCodes.INTERNAL_ERROR)
                                    conn_sock.sendall(h2c.data_to_send())
                                    return
                                elif step == "close":
                                    return
                                conn_sock.sendall(h2c.data_to_send())
                    out = h2c.data_to_send()
                    if out:
                        conn_sock.sendall(out)
            except OSError:
                return

