"""Replay recordings in tests: a replay proxy on a free loopback port, stopped after the test.

    from sse_capture_addon.testing import ReplayProxy

    with ReplayProxy("tests/recordings/chat.jsonl", speed="max", drop="done") as proxy:
        ...  # point the browser at proxy.url

or, with pytest (``pytest_plugins = ["sse_capture_addon.testing"]`` in ``conftest.py``)::

    def test_chat(sse_replay_proxy):
        proxy = sse_replay_proxy("tests/recordings/chat.jsonl", speed="0.5")

The proxy is ``sse-capture replay`` in a subprocess: its timing does not compete with the test for the
GIL, and a test that hangs cannot take it down with it. Keyword options are ``sse_replay_*`` options
without the prefix (``cut_after=3``, ``ignore_host=True``, ``drop=["done"]``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .processes import EXIT_WITH_PARENT, free_port, stop_process, wait_for_port

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class ReplayProxy:
    def __init__(self, *recordings: str | os.PathLike, speed: str | float = "1", confdir: str | os.PathLike | None = None,
                 port: int | None = None, log_dir: str | os.PathLike | None = None, timeout: float = 30.0,
                 **options):
        self.port = port or free_port()
        cmd = [sys.executable, "-m", "sse_capture_addon.cli", "replay", *map(str, recordings),
               "--listen-port", str(self.port), "--speed", str(speed)]
        if confdir is not None:
            cmd += ["--set", f"confdir={confdir}"]
        for name, value in options.items():
            if value is None:
                continue
            for v in value if isinstance(value, (list, tuple)) else [value]:
                v = str(v).lower() if isinstance(v, bool) else v
                cmd += ["--set", f"sse_replay_{name}={v}"]
        self.cmd = cmd
        # without a log_dir the log is a temporary file, which stop() removes (log() still gives its text)
        self._log_is_temporary = log_dir is None
        self._log_text: str | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="sse-replay-", suffix=".log", dir=log_dir)[1])
        self._log = open(self.log_path, "wb")
        path = os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, EXIT_WITH_PARENT: str(os.getpid())}  # no orphan when the run is killed
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env)
        try:
            wait_for_port(self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as e:
            self.stop()
            raise type(e)(f"the replay proxy did not start: {e}\n{self.log()}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        if self._log_text is not None:
            return self._log_text
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
        if self._log_is_temporary and self._log_text is None:
            self._log_text = self.log()
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ReplayProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


try:
    import pytest
except ImportError:  # the API works without pytest
    pass
else:
    @pytest.fixture
    def sse_replay_proxy(tmp_path):
        """Start replay proxies: ``sse_replay_proxy(*recordings, **options) -> ReplayProxy``; all are stopped
        after the test."""
        started: list[ReplayProxy] = []

        def start(*recordings, **options) -> ReplayProxy:
            proxy = ReplayProxy(*recordings, log_dir=tmp_path, **options)
            started.append(proxy)
            return proxy

        yield start
        for proxy in started:
            proxy.stop()
