"""Recording files on disk: safe names, owner-only permissions, whole-line appends.

Knows nothing of mitmproxy. Each ``append`` is one ``os.write`` of whole lines (no user-space
buffering), so whatever has been appended survives the process being killed, and a failed write
is rolled back so the file never ends in half a line.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
import uuid
from urllib.parse import urlsplit

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def _safe(text: str, limit: int) -> str:
    text = _UNSAFE.sub("_", text).strip("._-")
    return text[:limit] or "_"


def recording_name(started: float, method: str, url: str, stream_id: str) -> str:
    """``YYYY-MM-DD/HHMMSS.ffffff_METHOD_host_path_id.jsonl`` in UTC: sorts by time, shows the endpoint.

    Every part is reduced to ``[A-Za-z0-9.-_]`` so a hostile URL cannot leave the directory.
    """
    parts = urlsplit(url)
    day = time.strftime("%Y-%m-%d", time.gmtime(started))
    clock = time.strftime("%H%M%S", time.gmtime(started)) + f".{int(started % 1 * 1e6):06d}"
    host = _safe(parts.hostname or "unknown", 60)
    if parts.port:
        host += f"-{parts.port}"
    path = _safe(parts.path, 80)
    return f"{day}/{clock}_{_safe(method, 12)}_{host}_{path}_{stream_id[:8]}.jsonl"


def new_stream_id() -> str:
    return uuid.uuid4().hex


class RecordingFile:
    """An open recording: created owner-only, exclusively locked while open (readers use the lock to
    tell a stream still being written from one whose proxy died)."""

    def __init__(self, directory: str, name: str, fsync: bool = False):
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"recording name escapes the directory: {name!r}")
        self.path = os.path.join(directory, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:  # the first stream of a new day: make its folder
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self.fd = os.open(self.path, flags, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.fsync = fsync
        self.size = 0

    def append(self, data: bytes) -> None:
        """Write whole lines; on failure truncate back to the last whole line and re-raise."""
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self.fd)
        except OSError:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise
        self.size += len(data)

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)  # also releases the lock
            finally:
                self.fd = -1
