"""``sse-capture replay`` (the replay proxy) and ``sse-capture serve`` (the same engine, no proxy)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import signal
from urllib.parse import urlsplit

import click

from .recording import RecordingError, os_reason, read_recording
from .replay.matching import Mapping, Matcher, MatchOptions, RequestInfo, format_mapping
from .replay.server import LOOPBACK, Playback, ReplayServer, Request, book_in_turn
from .replay.settings import (
    EXTRA_CHOICES, OptionValueError, Plans, check_found, check_recordings, load_recordings, parse_settings,
)
from .processes import EXIT_WITH_PARENT
from .shown import printable, shown_path

PORT = click.IntRange(0, 65535)


def _need_recordings(recordings: tuple[str, ...], mappings: tuple, settings: tuple[str, ...] = ()) -> None:
    named = {s.partition("=")[0].strip() for s in settings}
    if not recordings and not mappings and not named & {"sse_replay", "sse_replay_map"}:
        raise click.UsageError("Missing argument 'RECORDING_OR_DIR...' (or --map URL_REGEX RECORDING)")


def replay_options(func):
    """Options shared by ``replay`` and ``serve``: timing, byte-exact, matching, faults."""
    options = [
        click.argument("recordings", nargs=-1, metavar="RECORDING_OR_DIR..."),  # or --map alone
        click.option("--speed", default="1", show_default=True,
                     help="A number > 0 (0.5 = half speed, 2 = twice as fast) or 'max'."),
        click.option("--max-pause", metavar="SECONDS",
                     help="Shorten recorded pauses longer than this."),
        click.option("--bytes", "byte_exact", is_flag=True,
                     help="Byte-exact: send the recorded raw chunks with their boundaries and timing."),
        click.option("--reuse", is_flag=True, help="Start over when every recording for a request was served."),
        click.option("--ignore-param", "ignore_params", multiple=True, metavar="NAME",
                     help="Query parameter ignored when matching ('*': the whole query). Repeatable."),
        click.option("--match-body", is_flag=True, help="Also match on the request body."),
        click.option("--map", "mappings", nargs=2, multiple=True, metavar="URL_REGEX RECORDING",
                     help="Serve RECORDING for every request whose URL matches URL_REGEX. Repeatable."),
        click.option("--cut-after", type=int, metavar="N", help="Fault: reset the connection after event N."),
        click.option("--stall-after", type=int, metavar="N", help="Fault: send nothing more after event N."),
        click.option("--drop", multiple=True, metavar="TYPE|#N",
                     help="Fault: leave out events of TYPE, or event N as show numbers it. Repeatable."),
        click.option("--stop-mid-event", type=int, metavar="N", help="Fault: send half of event N, then end."),
        click.option("--rechunk", type=int, metavar="N", help="Fault: re-chunk the bytes into N-byte chunks."),
        click.option("--swap", metavar="A,B", help="Fault: events A and B trade places."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@replay_options
@click.option("--extra", type=click.Choice(EXTRA_CHOICES), default="forward", show_default=True,
              help="Requests with no recording: forward, kill, or answer with this status.")
@click.option("--ignore-host", is_flag=True, help="Ignore the host when matching.")
@click.option("--ignore-port", is_flag=True, help="Ignore the port when matching.")
@click.option("--listen-host", default=LOOPBACK, show_default=True, help="Proxy address.")
@click.option("-p", "--listen-port", type=PORT, default=8080, show_default=True, help="Proxy port.")
@click.option("--set", "settings", multiple=True, metavar="OPTION=VALUE",
              help="Any mitmproxy or sse_replay_* option, e.g. --set confdir=~/.mitmproxy. Repeatable.")
def replay(recordings, speed, max_pause, byte_exact, reuse, ignore_params, match_body, mappings, cut_after,
           stall_after, drop, stop_mid_event, rechunk, swap, extra, ignore_host, ignore_port, listen_host,
           listen_port, settings) -> None:
    """Replay recordings through a proxy (mitmproxy) to the browser under test.

    \b
      sse-capture replay recordings/2026-11-25/ --speed 0.5      # proxy on 127.0.0.1:8080
      chromium --proxy-server=http://127.0.0.1:8080 --ignore-certificate-errors ...

    Matching requests receive the recorded stream (status, headers, events) with the recorded timing,
    even with the real backend offline; other requests go to the real server (see --extra).
    """
    _need_recordings(recordings, mappings, settings)
    options = {
        "sse_replay": list(recordings), "sse_replay_speed": speed,
        "sse_replay_max_pause": max_pause, "sse_replay_bytes": byte_exact,
        "sse_replay_reuse": reuse, "sse_replay_ignore_params": list(ignore_params),
        "sse_replay_match_body": match_body, "sse_replay_extra": extra, "sse_replay_ignore_host": ignore_host,
        "sse_replay_ignore_port": ignore_port, "sse_replay_cut_after": cut_after,
        "sse_replay_stall_after": stall_after, "sse_replay_drop": list(drop),
        "sse_replay_stop_mid_event": stop_mid_event, "sse_replay_rechunk": rechunk, "sse_replay_swap": swap,
    }
    try:
        options["sse_replay_map"] = [format_mapping(regex, path) for regex, path in mappings]
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--map") from None
    asyncio.run(_run_proxy(listen_host, listen_port, options, settings))


async def _run_proxy(host: str, port: int, options: dict, settings: tuple[str, ...]) -> None:
    from mitmproxy import exceptions
    from mitmproxy import options as mitm_options
    from mitmproxy.tools.dump import DumpMaster

    from .listening import ListenLocally
    from .replay_addon import SSEReplay

    logging.getLogger().setLevel(logging.INFO)  # as mitmdump does; the termlog shows progress per stream
    logging.getLogger("hpack").setLevel(logging.WARNING)
    master = DumpMaster(mitm_options.Options(listen_host=host, listen_port=port), with_termlog=True,
                        with_dumper=False)
    master.addons.add(SSEReplay(), ListenLocally("sse-replay"))  # the latter warns on --listen-host 0.0.0.0
    try:
        master.options.update(**options)
        master.options.set(*settings)
    except exceptions.OptionsError as e:
        raise click.ClickException(str(e)) from None
    except KeyError as e:  # an unknown option name in --set
        raise click.ClickException(e.args[0]) from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, master.shutdown)
    parent = os.environ.get(EXIT_WITH_PARENT)
    watch = asyncio.create_task(_shut_down_when_orphaned(int(parent), master)) if parent else None
    await master.run()
    if watch is not None:
        watch.cancel()


async def _shut_down_when_orphaned(parent: int, master) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    logging.getLogger("sse_replay").warning("sse-replay: the process that started this proxy is gone; stopping")
    master.shutdown()


def allowed_origin(origin: str, allowed: tuple[str, ...] = ()) -> bool:
    """Whether ``serve --cors`` lets a page of this Origin read its answers: a loopback one (a dev frontend on another
    port of this machine), or one the user named; not any site's (nor ``null``: sandboxed frames, files)."""
    if origin.rstrip("/").lower() in (a.rstrip("/").lower() for a in allowed):
        return True
    try:
        parts = urlsplit(origin)
        host = parts.hostname or ""
        parts.port  # (a bad port raises)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and _loopback_name(f"[{host}]" if ":" in host else host)


def _loopback_name(name: str) -> bool:
    """``localhost``, ``*.localhost``, ``127.x`` or ``[::1]`` (any case, a trailing dot allowed)."""
    name = name.lower().rstrip(".")
    return name in ("localhost", "[::1]") or name.endswith(".localhost") or (
        name.startswith("127.") and name.replace(".", "").isdigit())


def refused_host(host: str, allowed: tuple[str, ...] = ()) -> str | None:
    """Why ``serve`` does not answer a request with this Host header, or None. A page on any site can have
    its own name resolve to 127.0.0.1 (DNS rebinding) and then read what a loopback server answers; only
    a loopback name, or one the user allowed, says the request was meant for this server."""
    if host.startswith("["):  # [IPv6]:port
        name = host.partition("]")[0] + "]"
    else:
        name = host.rpartition(":")[0] if ":" in host else host
    name = name.lower().rstrip(".")
    if _loopback_name(name) or name in (h.lower() for h in allowed):
        return None
    shown = printable(host) if host else "(none)"
    return (f"sse-capture serve answers requests for loopback names only, not Host {shown}: a web page could "
            f"otherwise read the recordings through DNS rebinding. Allow it with --allow-host {printable(name)}")


@click.command()
@replay_options
@click.option("-p", "--port", type=PORT, default=8000, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--cors", is_flag=True, help="Let pages on other origins read the answers (a dev frontend on another "
                                           "port): loopback origins (localhost, 127.x, [::1]) and --allow-origin ones.")
@click.option("--allow-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="With --cors, also let pages of this origin read the answers (e.g. https://app.example:8443; "
                   "repeatable). Any other site's page could otherwise read the recordings.")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this host name (the Host header without its port; repeatable). "
                   "By default only 127.0.0.1, [::1], localhost and *.localhost are answered, so that no web "
                   "page can read the recordings through DNS rebinding.")
def serve(recordings, speed, max_pause, byte_exact, reuse, ignore_params, match_body, mappings, cut_after,
          stall_after, drop, stop_mid_event, rechunk, swap, port, cors, allowed_origins, allowed_hosts) -> None:
    """Serve recordings as a plain HTTP server on 127.0.0.1, no proxy.

    Point a local dev frontend straight at it: a request for a recorded path (and query, method, ...)
    gets the recorded stream; host, port and scheme are not compared.
    """
    _need_recordings(recordings, mappings)
    try:
        settings = parse_settings(speed=speed, max_pause=max_pause, byte_exact=byte_exact, cut_after=cut_after,
                                  stall_after=stall_after, drop=drop, stop_mid_event=stop_mid_event,
                                  rechunk=rechunk, swap=swap)
        loaded = load_recordings(recordings, warn=lambda message: click.echo(message, err=True))
        mapped = [Mapping(re.compile(regex), read_recording(path)) for regex, path in mappings]
        check_found(recordings, loaded, mapped)
        check_recordings(settings, loaded + [m.recording for m in mapped])
    except OptionValueError as e:
        raise _usage_error(e) from None
    except re.error as e:
        raise click.BadParameter(f"invalid regex: {e}", param_hint="--map") from None
    except RecordingError as e:
        raise click.ClickException(str(e)) from None
    matcher = Matcher(loaded, MatchOptions(ignore_host=True, ignore_port=True, ignore_scheme=True,
                                           ignore_params=ignore_params, match_body=match_body, reuse=reuse), mapped)
    plans = Plans(settings)

    def label(request: Request) -> str:
        return f"{request.method} {matcher.shown_url(request.target)}"

    async def resolve(request: Request) -> Playback | None:
        info = RequestInfo(request.method, f"http://{LOOPBACK}{request.target}", request.body,
                           request.header("content-encoding"))
        booking = await book_in_turn(matcher, info)
        if booking is None:
            why = matcher.why_unmatched(info)
            click.echo(f"no recording for {printable(label(request))}: 404" + (f"; {printable(why)}" if why else ""),
                       err=True)
            return None
        plan = await plans.booked(booking)
        for warning in plan.warnings:
            click.echo(f"{shown_path(booking.recording.path)}: {printable(warning)}", err=True)
        return Playback(plan, label=label(request), booking=booking)

    async def main() -> None:
        server = ReplayServer(resolve, port=port, cors=cors, on_start=lambda p: click.echo(p.start_line()),
                              on_end=lambda p: click.echo(p.end_line()),
                              refuse_host=functools.partial(refused_host, allowed=allowed_hosts),
                              origin_allowed=functools.partial(allowed_origin, allowed=allowed_origins))
        try:
            await server.start()
        except OSError as e:
            raise click.ClickException(f"cannot listen on {LOOPBACK}:{port}: {os_reason(e)}") from None
        maps = f" and {len(mapped)} mapping(s)" if mapped else ""
        click.echo(f"serving {len(loaded)} recording(s){maps} on {server.url} (Ctrl-C to stop)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.close()

    asyncio.run(main())


#: The command-line option of each option that ``parse_settings`` names.
_CLI_OPTION = {"sse_replay_speed": "--speed", "sse_replay_max_pause": "--max-pause", "sse_replay_swap": "--swap",
               "sse_replay_bytes": "--bytes", "sse_replay_cut_after": "--cut-after",
               "sse_replay_stall_after": "--stall-after", "sse_replay_stop_mid_event": "--stop-mid-event",
               "sse_replay_rechunk": "--rechunk", "sse_replay_drop": "--drop"}


def _usage_error(e: OptionValueError) -> click.ClickException:
    if e.option == "sse_replay":  # nothing to serve: refused as `replay` refuses it
        return click.ClickException(str(e))
    hint = _CLI_OPTION.get(e.option)
    return click.BadParameter(str(e), param_hint=hint) if hint else click.UsageError(str(e))


COMMANDS = [replay, serve]
