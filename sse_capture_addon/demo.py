"""A bundled example agent backend and the one-command demo (``sse-capture demo``).

The example server speaks just enough HTTP/1.1 to stream a chat turn the way agent UIs receive it:
``POST /api/chat`` answers with ``text/event-stream``: a message start, text deltas, a tool call and its
result, more text, then ``done``. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

AGENT_SCRIPT: list[tuple[float, str, dict]] = [
    (0.05, "message_start", {"type": "message_start", "id": "msg_1", "model": "demo-agent"}),
    (0.08, "delta", {"type": "text", "text": "Let me check "}),
    (0.06, "delta", {"type": "text", "text": "the weather."}),
    (0.10, "tool_use", {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}),
    (0.25, "tool_result", {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C, light rain"}),
    (0.07, "delta", {"type": "text", "text": "It is 18°C "}),
    (0.05, "delta", {"type": "text", "text": "with light rain in Paris."}),
    (0.05, "done", {"type": "done", "stop_reason": "end_turn"}),
]


def agent_stream(speed: float = 1.0):
    """Yield (delay, bytes) for one chat turn, with a keep-alive comment and event ids."""
    yield 0.0, b": connected\n\n"
    for n, (delay, event, payload) in enumerate(AGENT_SCRIPT, 1):
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        yield delay / speed, f"id: {n}\nevent: {event}\ndata: {body}\n\n".encode()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        length = 0
        for header in lines:
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        if path.split("?")[0] != "/api/chat":
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                     b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        for delay, data in agent_stream():
            await asyncio.sleep(delay)
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def serve_agent(port: int, ready=None) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port)
    if ready is not None:
        ready()
    async with server:
        await server.serve_forever()


def run_demo(directory: str, echo=print) -> str:
    """Start the example agent and the capturing proxy, send one chat through it, return the recording."""
    import httpx

    from .cli import ADDON, find_mitmproxy_tool
    from .processes import free_port, wait_for_port
    from .recording import find_recordings

    agent_port, proxy_port = free_port(), free_port()
    python = sys.executable
    agent = subprocess.Popen([python, "-m", "sse_capture_addon.demo", "serve", str(agent_port)],
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    confdir = tempfile.mkdtemp(prefix="sse-capture-demo-")
    proxy = subprocess.Popen([find_mitmproxy_tool("mitmdump"), "-q", "-s", ADDON, "--listen-host", "127.0.0.1",
                              "--listen-port", str(proxy_port), "--set", f"confdir={confdir}",
                              "--set", f"sse_capture_dir={directory}"])
    try:
        wait_for_port(agent_port, 30, agent)
        wait_for_port(proxy_port, 30, proxy)
        before = set(find_recordings(directory)) if os.path.isdir(directory) else set()
        echo(f"example agent on 127.0.0.1:{agent_port}, capturing proxy on 127.0.0.1:{proxy_port}")
        echo("POST /api/chat through the proxy; the client sees:")
        with httpx.Client(proxy=f"http://127.0.0.1:{proxy_port}", timeout=30) as client:
            with client.stream("POST", f"http://127.0.0.1:{agent_port}/api/chat",
                               json={"messages": [{"role": "user", "content": "Weather in Paris?"}]}) as r:
                for text in r.iter_text():
                    for block in text.strip("\n").split("\n\n"):
                        if block:
                            echo("  " + block.replace("\n", " | "))
        proxy.send_signal(signal.SIGINT)
        proxy.wait(15)
        new = [p for p in find_recordings(directory) if p not in before]
        if not new:
            raise RuntimeError("the proxy wrote no recording")
        return new[-1]
    finally:
        for p in (proxy, agent):
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        shutil.rmtree(confdir, ignore_errors=True)  # its CA's private key


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            asyncio.run(serve_agent(int(sys.argv[2])))
        except KeyboardInterrupt:
            pass
    else:
        sys.exit("usage: python -m sse_capture_addon.demo serve PORT")
