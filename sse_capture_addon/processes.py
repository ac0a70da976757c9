"""Child processes that listen on loopback (the demo, the replay test helper, the tests): a free port, waiting
until something listens on it, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None,
                  log: str | os.PathLike | None = None) -> None:
    """Until something listens on 127.0.0.1:``port``; fails early, with ``log``'s text, if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = open(log, errors="replace").read() if log else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}:\n{text}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT (mitmproxy shuts down cleanly on it), then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
