"""Shared by the test_inspect_* modules: the inspect commands as a click group, and SSE streams to record
through the real proxy."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from harness import ROOT, Mitmdump, httpx_client, wait_until
from sse_capture_addon.cli import main as CLI


@dataclass
class Result:
    code: int
    out: str
    err: str
    out_bytes: bytes


def run(*args, color: bool = False, env: dict | None = None) -> Result:
    """Run an ``sse-capture`` command in-process (stdout is not a terminal unless ``color``)."""
    r = CliRunner().invoke(CLI, [str(a) for a in args], color=color, env=env, prog_name="sse-capture")
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Result(r.exit_code, r.stdout, r.stderr, r.stdout_bytes)


def cli_process(*args, **kwargs) -> subprocess.Popen:
    """An ``sse-capture`` command in its own process, with real pipes."""
    return subprocess.Popen([sys.executable, "-m", "sse_capture_addon.cli", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def sse(event: str | None, data, id: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    out = f"event: {event}\n" if event else ""
    out += f"id: {id}\n" if id is not None else ""
    return (out + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n").encode()


def anthropic_stream(message_id: str = "msg_1", words=("Hel", "lo"), pause: float = 0.02) -> list:
    def ev(kind, **fields):
        return sse(kind, {"type": kind, **fields})

    steps = [ev("message_start", message={"id": message_id, "role": "assistant", "content": []}), pause,
             ev("content_block_start", index=0, content_block={"type": "text", "text": ""}), pause,
             ev("ping")]
    for word in words:
        steps += [pause, ev("content_block_delta", index=0, delta={"type": "text_delta", "text": word})]
    steps += [pause, ev("content_block_stop", index=0), pause,
              ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 2}), pause,
              ev("message_stop")]
    return steps


def openai_chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    return sse(None, {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
                      "model": "gpt-x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def stream_through(mitm: Mitmdump, certs, url: str, *, stop_after: bytes | None = None,
                   method: str = "POST") -> bytes:
    """Request ``url`` through the proxy and read the body, or only until ``stop_after`` has been seen
    (then the client goes away)."""
    import httpx

    body = b""
    with httpx_client(mitm, certs) as client:
        try:
            with client.stream(method, url, json={"messages": [{"role": "user", "content": "hi"}]}) as r:
                for chunk in r.iter_raw():
                    body += chunk
                    if stop_after is not None and stop_after in body:
                        break
        except httpx.RemoteProtocolError:
            pass  # the upstream reset the stream
    return body


def recording_for(mitm: Mitmdump, name: str, ended: bool = True, timeout: float = 15.0) -> Path:
    """The recording of ``/sse/<name>`` (waiting for its end line unless ``ended`` is false)."""
    from sse_capture_addon.recording import read_recording

    found: list[Path] = []

    def ready() -> bool:
        found[:] = [p for p in mitm.recordings() if f"_sse_{name}_" in p.name]
        return bool(found) and (not ended or read_recording(found[0]).end is not None)

    wait_until(ready, timeout, f"the recording of {name}")
    return found[0]


# --- recordings of good and badly ending streams, made once per test session ---------------------------

TOOLS = [sse("tool_use", {"id": "call_1", "name": "search"}), 0.01,
         sse("tool_result", {"tool_use_id": "call_1", "content": "ok"}), 0.01,
         sse("tool_result", {"tool_use_id": "call_9", "content": "orphan"}), 0.01,
         sse("done", "{}"), 0.01, sse("note", "late")]
# BOM, CRLF and LF mixed, an id with NULL, a non-digit retry, and a last event never terminated
SPEC_PROBLEMS = [b"\xef\xbb\xbfdata: one\r\n\r\n", 0.01, b"id: a\x00b\nretry: 1s\ndata: two\n\n", 0.01,
                 b"event: done\ndata: {}\n\n", 0.01, b"data: cut off"]
OPENAI = [openai_chunk("Hi"), 0.01, openai_chunk(" there"), 0.01, openai_chunk(None, "stop"), 0.01,
          b"data: [DONE]\n\n"]
