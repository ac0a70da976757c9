"""Fast loopback SSE upstream for the benchmarks (raw asyncio HTTP/1.1, one request per connection).

Run ``python bench/sse_server.py --port 0``; it prints ``READY <port>`` once listening.
Every GET is answered with a ``text/event-stream`` body shaped by query parameters:

  n=1000         number of events
  size=64        approximate bytes per event on the wire (OpenAI-style JSON ``data:`` line, padded)
  per_chunk=1    events per write (one HTTP chunk per write in chunked mode)
  rate=0         events per second for this stream (0 = as fast as the socket takes them)
  ts=0           1 = embed ``"t":<time.time_ns()>`` taken at send time in every event (for latency)
  enc=chunked    ``chunked`` or ``close`` (close-delimited body)

Event i looks like ``data: {"t":T,"i":I,"choices":[{"delta":{"content":"xx..."}}]}\\n\\n``.
When ts=0 and rate=0 a chunk is built once and reused, so the server costs one write per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from urllib.parse import parse_qsl, urlsplit

_TEMPLATE = b'data: {"t":%d,"i":%d,"choices":[{"delta":{"content":"%s"}}]}\n\n'


def event_bytes(i: int, size: int, t: int = 0) -> bytes:
    """One event of about ``size`` bytes (never less than the bare template)."""
    bare = len(_TEMPLATE % (t, i, b""))
    return _TEMPLATE % (t, i, b"x" * max(0, size - bare))


def _params(target: bytes) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(target.decode("latin-1")).query))


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    parts = head.split(b" ", 2)
    p = _params(parts[1] if len(parts) > 1 else b"/")
    n = int(p.get("n", 1000))
    size = int(p.get("size", 64))
    per_chunk = max(1, int(p.get("per_chunk", 1)))
    rate = float(p.get("rate", 0))
    ts = p.get("ts", "0") == "1"
    chunked = p.get("enc", "chunked") == "chunked"

    headers = [b"HTTP/1.1 200 OK", b"Content-Type: text/event-stream", b"Cache-Control: no-cache",
               b"Connection: close"]
    if chunked:
        headers.append(b"Transfer-Encoding: chunked")
    writer.write(b"\r\n".join(headers) + b"\r\n\r\n")

    def frame(body: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(body), body) if chunked else body

    try:
        start = time.monotonic()
        fixed = None if (ts or rate) else frame(b"".join(event_bytes(i, size) for i in range(per_chunk)))
        sent = 0
        while sent < n:
            k = min(per_chunk, n - sent)
            if fixed is not None and k == per_chunk:
                writer.write(fixed)
            else:
                now = time.time_ns() if ts else 0
                writer.write(frame(b"".join(event_bytes(sent + j, size, now) for j in range(k))))
            sent += k
            if rate:
                delay = start + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await writer.drain()
            elif writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_handle, host, port, backlog=1024, limit=1 << 16)
    print("READY", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.host != "127.0.0.1":
        sys.exit("loopback only")
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
