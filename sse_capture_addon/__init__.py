"""sse-capture: record Server-Sent Events streams through mitmproxy, then inspect and replay them.

The library API (none of it needs mitmproxy): ``SSEParser`` parses a stream, ``read_recording`` /
``iter_lines`` read and validate recordings (raising ``RecordingError`` as ``file:line: what is wrong``),
``decode_data`` gives an event's exact data text.
"""

from .recording import (
    FORMAT_VERSION,
    Recording,
    RecordingError,
    decode_data,
    encode_data,
    find_recordings,
    iter_lines,
    read_recording,
)
from .sse import Comment, Event, Ignored, MessageBatch, NoDispatch, Oversized, SSEParser

__all__ = [
    "FORMAT_VERSION", "Recording", "RecordingError", "decode_data", "encode_data", "find_recordings",
    "iter_lines", "read_recording", "SSEParser", "Event", "Comment", "NoDispatch", "Oversized", "Ignored",
    "MessageBatch",
]
