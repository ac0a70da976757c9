"""A proxy that loads sse-capture's addons listens on 127.0.0.1 unless the user asks for more.

Recordings, and what replay serves from them, may hold production data, while mitmproxy's own default is every
interface (``listen_host`` empty). So while ``listen_host`` is empty, ``ListenLocally`` gives every mode a client
connects to by address (regular, upstream, reverse, socks5, dns) that names no address of its own
``@127.0.0.1:PORT``. Asking is explicit: ``--listen-host 0.0.0.0`` (or any address), or ``--mode MODE@HOST:PORT``;
both are kept, with a warning when that is every interface. Modes that exist to take other machines' traffic
(transparent, wireguard, local, tun) are kept as they are, and warned about the same way.

``mitmdump -s`` loads scripts while mitmproxy starts its servers, so a server may already listen on every
interface when the modes change; ``running`` then has mitmproxy restart its servers on the new addresses (about
a millisecond later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from mitmproxy import ctx
from mitmproxy.proxy import mode_specs

log = logging.getLogger("sse_capture")

LOCAL_MODES = frozenset({"regular", "upstream", "reverse", "socks5", "dns"})
EVERYWHERE = ("", "0.0.0.0", "::")


def local_modes(specs: Sequence[str], listen_port: int | None) -> list[str]:
    """``specs`` with each mode in ``LOCAL_MODES`` that has no address of its own bound to 127.0.0.1."""
    out = []
    for spec in specs:
        mode = mode_specs.ProxyMode.parse(spec)
        port = mode.listen_port(listen_port)
        if mode.type_name not in LOCAL_MODES or mode.custom_listen_host is not None or port is None:
            out.append(spec)
        else:  # "reverse:https://x@8081" names a port only: keep it, add the address
            head = spec.rpartition("@")[0] if mode.custom_listen_port is not None else spec
            out.append(f"{head}@127.0.0.1:{port}")
    return out


def listens_everywhere(specs: Sequence[str], listen_host: str) -> bool:
    for spec in specs:
        mode = mode_specs.ProxyMode.parse(spec)
        if mode.listen_port() is not None and mode.listen_host(listen_host) in EVERYWHERE:
            return True
    return False


class ListenLocally:
    def __init__(self, who: str):
        self.who = who
        self.name = f"{who}-listen-locally"  # mitmproxy names addons: one per loaded script
        self._moved = False
        self._restart: asyncio.Task | None = None

    def configure(self, updated: set[str]) -> None:
        if not {"mode", "listen_host", "listen_port"} & updated or ctx.options.listen_host:
            return
        try:
            specs = local_modes(ctx.options.mode, ctx.options.listen_port)
        except ValueError:
            return  # mitmproxy refuses the mode itself, and says why
        if specs != list(ctx.options.mode):
            log.info(f"{self.who}: listening on 127.0.0.1 only, since recordings may hold production data "
                     "(--listen-host 0.0.0.0 to listen on every interface)")
            ctx.options.update(mode=specs)
            self._moved = True

    def running(self) -> None:
        if listens_everywhere(ctx.options.mode, ctx.options.listen_host):
            log.warning(f"{self.who}: the proxy listens on every network interface, as its options ask, and "
                        "recordings may hold production data")
        proxyserver = ctx.master.addons.get("proxyserver")
        if self._moved and proxyserver is not None:
            # its servers may have started before the modes changed: update() restarts only those that differ
            self._restart = asyncio.get_running_loop().create_task(proxyserver.setup_servers())
