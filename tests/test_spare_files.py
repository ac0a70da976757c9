"""Recording files made ahead (writer.SpareFiles): unnamed files a worker thread makes, named at a stream's start.

In-process, and in a real proxy (the last test).
"""

import asyncio
import errno
import fcntl
import os
import signal
import stat
import time

import pytest

from harness import Mitmdump, wait_until
from reliability_helpers import check_load, run_load
from sse_capture_addon.writer import RecordingFile, SpaceReserve, SpareFiles


def _wait_ready(spares: SpareFiles, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while spares.ready < n:
        assert time.monotonic() < deadline, f"{spares.ready} spare files ready, waited for {n}"
        time.sleep(0.005)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def spares(tmp_path):
    made = SpareFiles(str(tmp_path), size=4)
    made.start()
    _wait_ready(made, 4)
    yield made
    made.close()


def test_a_spare_is_named_owner_only_and_locked_and_keeps_what_is_appended(tmp_path, monkeypatch):
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        spares = SpareFiles(str(tmp_path), size=4)
        spares.start()
        _wait_ready(spares, 4)
    finally:
        os.umask(old_umask)
    assert not os.listdir(tmp_path)  # unnamed until a stream takes one
    file = RecordingFile(str(tmp_path), "2026-11-26/a.jsonl", spares=spares)
    path = tmp_path / "2026-11-26" / "a.jsonl"
    assert os.fstat(file.fd).st_ino == os.stat(path).st_ino  # the spare, not a file made by name
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700  # the day's folder, made for it
    with open(path, "rb") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked: a live recording to readers
    file.append(b'{"kind":"header"}\n')
    file.append(b'{"kind":"end"}\n')
    file.close()
    assert path.read_bytes() == b'{"kind":"header"}\n{"kind":"end"}\n'
    with open(path, "rb") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # closed: the lock is gone
    _wait_ready(spares, 4)  # the one taken is made again
    spares.close()
    assert [p.name for p in tmp_path.rglob("*")] == ["2026-11-26", "a.jsonl"]


def test_a_name_that_exists_is_refused_and_its_spare_closed(tmp_path, spares):
    (tmp_path / "taken.jsonl").write_bytes(b"someone else's\n")
    before = _open_fds()
    with pytest.raises(FileExistsError):
        RecordingFile(str(tmp_path), "taken.jsonl", spares=spares)
    assert (tmp_path / "taken.jsonl").read_bytes() == b"someone else's\n"
    _wait_ready(spares, 4)
    assert _open_fds() == before  # the spare it took was closed, and one made in its place


def test_when_none_is_ready_the_file_is_made_by_name(tmp_path):
    spares = SpareFiles(str(tmp_path), size=2)  # not started: take() starts it, and finds nothing yet
    try:
        file = RecordingFile(str(tmp_path), "first.jsonl", spares=spares)
        file.append(b"x\n")
        file.close()
        assert (tmp_path / "first.jsonl").read_bytes() == b"x\n"
        _wait_ready(spares, 2)  # and asked for them
    finally:
        spares.close()


def test_close_closes_every_spare(tmp_path):
    before = _open_fds()
    spares = SpareFiles(str(tmp_path), size=8)
    spares.start()
    _wait_ready(spares, 8)
    assert len(_open_fds() - before) >= 8
    spares.close()
    deadline = time.monotonic() + 5
    while _open_fds() - before:
        assert time.monotonic() < deadline, _open_fds() - before
        time.sleep(0.01)
    assert spares.take() is None


def test_where_unnamed_files_cannot_be_made_files_are_made_by_name(tmp_path, monkeypatch):
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kw):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", path)  # NFS, some FUSE file systems
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", no_tmpfile)
    spares = SpareFiles(str(tmp_path))
    spares.start()
    deadline = time.monotonic() + 5
    while spares.working:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    file = RecordingFile(str(tmp_path), "a.jsonl", spares=spares)
    file.append(b"kept\n")
    file.close()
    assert (tmp_path / "a.jsonl").read_bytes() == b"kept\n"


@pytest.mark.parametrize("code,still_working", [
    (errno.EXDEV, False),    # another file system mounted inside the directory
    (errno.EPERM, False),    # no hard links here
    (errno.EACCES, True),    # the directory made read-only for a while: a file made by name meets it too
    (errno.ENOSPC, True),    # a full disk, likewise
])
def test_a_spare_that_cannot_be_linked_is_closed_and_the_file_made_by_name(tmp_path, spares, monkeypatch, code,
                                                                          still_working):
    def refuse(*args, **kw):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)
    before = _open_fds()
    file = RecordingFile(str(tmp_path), "a.jsonl", spares=spares)  # made by name: open() itself works here
    file.append(b"kept\n")
    file.close()
    assert (tmp_path / "a.jsonl").read_bytes() == b"kept\n"
    assert spares.working is still_working
    if still_working:
        _wait_ready(spares, 4)
        assert _open_fds() == before
    else:
        assert spares.take() is None
        deadline = time.monotonic() + 5
        while len(_open_fds()) != len(before) - 4:  # the spare taken and the three others, all closed
            assert time.monotonic() < deadline, (before, _open_fds())
            time.sleep(0.01)


def _unnamed_files(pid: int, directory) -> set[int]:
    """The inodes of the files the process ``pid`` holds open that were made unnamed in ``directory``."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(f"{directory}/#") and target.endswith(" (deleted)"):
                found.add(os.stat(f"/proc/{pid}/fd/{fd}").st_ino)
        except FileNotFoundError:  # closed meanwhile
            pass
    return found


def test_a_live_proxy_records_a_burst_of_starts_in_files_made_ahead_and_leaves_none_when_killed(certs, tmp_path):
    streams = SpareFiles.SIZE + 8  # more starts at once than files made ahead: the rest are made by name
    with Mitmdump(certs, tmp_path) as mitm:
        record_dir = os.path.realpath(mitm.record_dir)
        wait_until(lambda: len(_unnamed_files(mitm.proc.pid, record_dir)) == SpareFiles.SIZE,
                   what=f"{SpareFiles.SIZE} files made ahead, from the proxy's start")
        made_ahead = _unnamed_files(mitm.proc.pid, record_dir)
        assert not os.listdir(record_dir)  # unnamed: nothing shows in the directory
        result = asyncio.run(run_load(mitm.port, mitm.proc.pid, streams=streams, duration=1.0, rate=20.0, ramp=0.0))
        counts = check_load(result, mitm.record_dir)  # every event recorded, every stream complete
        assert counts["streams"] == streams
        recorded = {os.stat(path).st_ino for path in mitm.recordings()}
        assert made_ahead <= recorded  # the first starts took the files made ahead
        wait_until(lambda: len(_unnamed_files(mitm.proc.pid, record_dir)) == SpareFiles.SIZE,
                   what="the files taken made again")
        mitm.kill(signal.SIGKILL)
        assert "Traceback" not in mitm.log()
    left = {p.name for p in mitm.record_dir.rglob("*") if p.is_file()}
    assert left == {p.name for p in mitm.recordings()} | {SpaceReserve.NAME}
    assert len(left) == streams + 1
