"""Recording files on disk: safe names, owner-only permissions, whole-line appends.

Knows nothing of mitmproxy. Each ``append`` is one ``os.write`` of whole lines (no user-space
buffering), so whatever has been appended survives the process being killed, and a failed write
is rolled back so the file never ends in half a line.

``SpaceReserve`` keeps a little allocated space in the recordings directory, given back when the disk is
full so that a recording's end line still fits.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import math
import os
import stat
import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from .recording import DEFAULT_PORTS, url_host_port

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_monotonic = time.monotonic


def _safe(text: str, limit: int) -> str:
    text = _UNSAFE.sub("_", text).strip("._-")
    return text[:limit] or "_"


def recording_name(started: float, method: str, url: str, stream_id: str, host: str | None = None,
                   port: int | None = None) -> str:
    """``YYYY-MM-DD/HHMMSS.ffffff_METHOD_host_path_id.jsonl`` in UTC: sorts by time, shows the endpoint.

    Every part is reduced to ``[A-Za-z0-9.-_]`` so a hostile URL cannot leave the directory. ``host`` and
    ``port`` are the request's: an IPv6 address is named from them (``ipv6_--1-8080`` for [::1]:8080), since
    the URL mitmproxy writes for it has no brackets and so no telling where the address ends.
    """
    day, clock, _ = _utc_second(int(started))
    return f"{day}/{clock}.{int(started % 1 * 1e6):06d}_{_endpoint(method, url, host, port)}_{stream_id[:8]}.jsonl"


def utc_timestamp(t: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``"""
    return f"{_utc_second(int(t))[2]}.{int(t % 1 * 1e6):06d}Z"


# The two caches below are for the per-stream work of many short streams (the time and the endpoint repeat):
# a hit costs ~0.2 us, against ~2 us per strftime and ~5 us for the endpoint.

@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> tuple[str, str, str]:
    utc = time.gmtime(second)
    return time.strftime("%Y-%m-%d", utc), time.strftime("%H%M%S", utc), time.strftime("%Y-%m-%dT%H:%M:%S", utc)


@functools.lru_cache(maxsize=256)
def _endpoint(method: str, url: str, host: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    if host and ":" in host:
        hostname, port = "ipv6_" + host.replace(":", "-"), None if port == DEFAULT_PORTS.get(parts.scheme) else port
    else:
        hostname, port = url_host_port(parts)
    host = _safe(hostname or "unknown", 60)
    if port:
        host += f"-{port}"
    return f"{_safe(method, 12)}_{host}_{_safe(parts.path, 80)}"


def new_stream_id() -> str:
    """A random (version 4) UUID's 32 hex digits, as ``uuid.uuid4().hex`` gives, in a third of its time."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40  # version 4
    b[8] = b[8] & 0x3F | 0x80  # RFC 4122 variant
    return b.hex()


def make_private_dirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, with every directory it creates owner-only: ``makedirs`` gives its
    mode to the last one only, and recordings hold production data."""
    try:
        _made_or_there(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.normpath(path))
        if parent == path:
            raise
        make_private_dirs(parent)
        _made_or_there(path)


def _made_or_there(path: str) -> None:
    """``os.mkdir(path, 0o700)``, unless another thread or proxy has just made it."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


#: seconds: a write that took longer held up the proxy (RecordingFile's ``on_slow_write``)
SLOW_WRITE = 0.1
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_folder(path: str) -> int:
    """A folder of ``make_private_dirs``'s, opened for ``dir_fd``: never a symlink, which anyone who can write the
    directory above could have planted to send the recordings elsewhere."""
    try:
        return os.open(path, _FOLDER_FLAGS)
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP) and os.path.islink(path):
            raise OSError(errno.ELOOP, f"{path} is a symbolic link; refused, as it could send recordings anywhere "
                                       "(the recordings directory itself may be one)") from None
        raise


class RecordingFile:
    """An open recording: created owner-only, exclusively locked while open (readers use the lock to
    tell a stream still being written from one whose proxy died). ``name`` is ``FILE`` or ``FOLDER/FILE``;
    ``directory`` may be a symlink (the user's choice), ``FOLDER`` may not. ``on_slow_write(file, seconds)`` is
    called after an append that took over ``SLOW_WRITE`` seconds."""

    def __init__(self, directory: str, name: str, fsync: bool = False,
                 on_slow_write: Callable[[RecordingFile, float], None] | None = None):
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"recording name escapes the directory: {name!r}")
        if len(parts) > 2:
            raise ValueError(f"recording name has more than one folder: {name!r}")
        self.path = os.path.join(directory, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        if len(parts) == 1:
            self.fd = os.open(self.path, flags, 0o600)
        else:
            folder = os.path.dirname(self.path)
            try:
                folder_fd = _open_folder(folder)
            except FileNotFoundError:  # the first stream of a new day: make its folder
                make_private_dirs(folder)
                folder_fd = _open_folder(folder)
            try:
                self.fd = os.open(parts[1], flags, 0o600, dir_fd=folder_fd)
            finally:
                os.close(folder_fd)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.fsync = fsync
        self.on_slow_write = on_slow_write
        self.size = 0

    def append(self, data: bytes) -> None:
        """Write whole lines; on failure truncate back to the last whole line and re-raise."""
        start = _monotonic()
        try:
            n = os.write(self.fd, data)
            if n < len(data):  # rare: a signal, or the disk filling up mid-write
                view = memoryview(data)[n:]
                while view:
                    view = view[os.write(self.fd, view):]
            if self.fsync:
                os.fsync(self.fd)
        except OSError:
            try:
                os.ftruncate(self.fd, self.size)
            except OSError:
                pass
            raise
        self.size += len(data)
        if (took := _monotonic() - start) > SLOW_WRITE and self.on_slow_write is not None:
            self.on_slow_write(self, took)

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)  # also releases the lock
            finally:
                self.fd = -1

    def remove(self) -> None:
        """Delete the file, then close it (still locked while it has a name, so no reader takes it for a bad one)."""
        try:
            os.unlink(self.path)
        finally:
            self.close()


#: Errors that giving space back can cure (a full disk, a full quota); EFBIG (RLIMIT_FSIZE) is not one.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class SpaceReserve:
    """A small hidden file of allocated blocks in the recordings directory, so that when the disk fills up a
    recording's end line can still be written: the end line is what tells readers the stream ended (and how)
    rather than the proxy dying.

    ``release(need)`` frees a slice of it just before retrying a failed end line, so one reserve serves several
    streams ending on a full disk; ``ensure()`` takes the space back when writes work again. Recording
    listings only look at ``*.jsonl``, so the file (``.sse-capture-reserve``, safe to delete) is not mistaken
    for a recording. Several proxies writing to one directory share it. Nothing here runs per chunk.
    """

    NAME = ".sse-capture-reserve"
    SIZE = 1024 * 1024  # an end line frees two blocks or more: ~128 streams ending at once on a full disk
    #: seconds between looks at a whole reserve, which someone may have deleted (with its directory or alone)
    CHECK_EVERY = 1.0

    def __init__(self, directory: str, size: int = SIZE, clock: Callable[[], float] = time.monotonic):
        self.path = os.path.join(directory, self.NAME)
        self.size = size
        self.clock = clock
        self.full = False  # as far as this process knows, the reserve holds all of ``size``
        self._looked = -math.inf

    def _open(self, flags: int) -> int:
        fd = os.open(self.path, flags | os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
        return fd

    def ensure(self) -> bool:
        """Allocate the reserve unless it is already whole (then no system call, but one look a second that the
        file is still there). False when there is not room for all of it yet; what could be allocated is kept,
        and the next call tries again."""
        if self.full:
            now = self.clock()
            if now - self._looked < self.CHECK_EVERY:
                return True
            self._looked = now
            try:
                if os.stat(self.path).st_size >= self.size:
                    return True
            except OSError:
                pass
            self.full = False
        try:
            fd = self._open(os.O_CREAT)
        except OSError:
            return False  # no directory (yet), no room for even an inode, ...
        try:
            _allocate(fd, self.size)
            self.full, self._looked = True, self.clock()
        except OSError:
            pass
        finally:
            os.close(fd)
        return self.full

    def release(self, need: int) -> bool:
        """Free enough of the reserve for a write of ``need`` bytes (whole blocks, plus one for file system
        overhead), or all that is left of it. False when there was nothing left to free."""
        try:
            fd = self._open(0)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if st.st_size == 0:
                return False
            block = st.st_blksize or 4096
            os.ftruncate(fd, max(0, st.st_size - (-(-need // block) + 1) * block))
            self.full = False
            return True
        except OSError:
            return False
        finally:
            os.close(fd)


def _allocate(fd: int, size: int) -> None:
    """Make sure ``size`` bytes of the file are real, allocated blocks (not a sparse hole)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    have = os.fstat(fd).st_size
    if have < size:
        os.lseek(fd, have, os.SEEK_SET)
        block = b"\xff" * (size - have)  # not zeros, which a compressing file system would store as nothing
        while block:
            block = block[os.write(fd, block):]
