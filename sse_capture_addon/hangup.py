"""A hangup shuts the proxy down cleanly, as SIGTERM does.

mitmproxy handles SIGINT and SIGTERM only, so SIGHUP (the terminal mitmdump runs in is closed, an SSH session
drops, ``tmux kill-session``) ends the process at once: every open recording is left without its end line and
reads as "proxy died". ``ShutdownOnHangup`` makes SIGHUP ask mitmproxy to shut down, so open streams end as
``proxy_shutdown`` with their tails. A SIGHUP that is ignored (``nohup``) or already handled is left as it is.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from mitmproxy import ctx

log = logging.getLogger("sse_capture")


class ShutdownOnHangup:
    def running(self) -> None:
        if not hasattr(signal, "SIGHUP") or signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL:
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _hangup)
        except (NotImplementedError, RuntimeError, ValueError):  # no Unix signals here, or not the main thread
            pass


def _hangup() -> None:
    log.info("sse-capture: hangup (SIGHUP): shutting down as on SIGTERM, ending open recordings")
    ctx.master.shutdown()
