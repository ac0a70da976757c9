"""Child processes that listen on loopback (the demo, the replay test helper, the tests): a free port, waiting
until something listens on it, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

#: Set by ``testing.ReplayProxy`` to its own process id: ``sse-capture replay`` then stops when that process is gone,
#: however it went (a test run killed with SIGTERM, as CI cancels a job, runs no clean-up of its own).
EXIT_WITH_PARENT = "SSE_REPLAY_EXIT_WITH_PARENT"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None,
                  log: str | os.PathLike | None = None) -> None:
    """Until something listens on 127.0.0.1:``port``: ``proc`` (or a process it started), when given. Fails
    early, with ``log``'s text, if ``proc`` exits, as it does when another program already has the port: that
    one answering must not pass for ``proc`` listening."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = open(log, errors="replace").read() if log else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}:\n{text}")
        with socket.socket() as s:
            s.settimeout(0.2)
            accepted = s.connect_ex(("127.0.0.1", port)) == 0
        if accepted and (proc is None or listens(proc.pid, port) is not False):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def listening_sockets(port: int) -> dict[str, str]:
    """The TCP sockets listening on ``port``, as /proc/net/tcp and tcp6 show them: {inode: local address (in hex, as
    /proc writes it)}; empty where there is no /proc."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    address, _, port_hex = fields[1].rpartition(":")
                    if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                        found[fields[9]] = address
        except (OSError, StopIteration):
            continue
    return found


def listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` or one of its descendants has a listening TCP socket on ``port``; None where
    /proc cannot tell (not Linux, or no listening socket on the port shown at all)."""
    inodes = {f"socket:[{inode}]" for inode in listening_sockets(port)}
    if not inodes:  # no /proc, or one that does not show the socket that just accepted (WSL1's is empty)
        return None
    for p in _with_descendants(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{p}/fd/{fd}") in inodes:
                    return True
            except OSError:
                continue
    return False


def _with_descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])  # (the name may hold spaces and parens)
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT (mitmproxy shuts down cleanly on it), then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
