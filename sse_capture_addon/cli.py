"""The ``sse-capture`` command: thin glue over the library."""

from __future__ import annotations

import os
import shutil
import sys

import click
from click.core import ParameterSource

ADDON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "addon.py")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sse-capture")
def main() -> None:
    """Record Server-Sent Events streams through mitmproxy, then inspect and replay them."""


def find_mitmproxy_tool(name: str) -> str:
    """The mitmdump/mitmproxy/mitmweb next to this Python (the venv's), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(here):
        return here
    found = shutil.which(name)
    if not found:
        raise click.ClickException(f"{name} not found; install mitmproxy 12 (pip install 'mitmproxy>=12,<13')")
    return found


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--tool", type=click.Choice(["mitmdump", "mitmproxy", "mitmweb"]), default="mitmdump",
              show_default=True, help="Which mitmproxy front-end to start.")
@click.option("-d", "--dir", "directory", default="recordings", show_default=True,
              help="Where recordings are written (sse_capture_dir).")
@click.argument("mitm_args", nargs=-1, type=click.UNPROCESSED)
def record(tool: str, directory: str, mitm_args: tuple[str, ...]) -> None:
    """Start mitmproxy with the capture addon. Other arguments go to mitmproxy unchanged, e.g.

    \b
      sse-capture record                       # proxy on 127.0.0.1:8080
      sse-capture record --mode reverse:https://staging.example --listen-port 9000
      sse-capture record --set sse_capture_filter='~u /chat'
    """
    argv = [find_mitmproxy_tool(tool), "-s", ADDON]
    dir_given = click.get_current_context().get_parameter_source("directory") is not ParameterSource.DEFAULT
    if _sets(mitm_args, "sse_capture_dir"):
        if dir_given:
            raise click.UsageError("the recordings directory is given twice: -d and --set sse_capture_dir; "
                                   "give one")
    else:
        argv += ["--set", f"sse_capture_dir={directory}"]
    _check_config_file(mitm_args, {"sse_capture_dir"} if dir_given else set())
    if not _gives(mitm_args, "--listen-host", "listen_host"):
        argv += ["--listen-host", "127.0.0.1"]  # recordings hold production data: stay local unless asked
    quiet_flows = tool == "mitmdump" and not _gives(mitm_args, "--flow-detail", "flow_detail") \
        and not any(a in ("-q", "--quiet", "-v", "--verbose") for a in mitm_args) \
        and not any("flow_detail" in options for _, options in _config_files(mitm_args))
    if quiet_flows:
        # mitmdump's line per flow shows its URL as it is, credentials in the query included; the addon's own
        # line per recorded stream shows it redacted
        argv += ["--flow-detail", "0"]
    argv += mitm_args
    _check_capture_options(argv)
    if quiet_flows:
        click.echo("sse-capture: mitmdump's line per flow is off, as it shows URLs unredacted (--flow-detail 1 "
                   "to have it); each recorded stream is logged, redacted, when it ends", err=True)
    os.execv(argv[0], argv)


def _gives(mitm_args: tuple[str, ...], flag: str, option: str) -> bool:
    """Whether mitmproxy arguments give ``option``, as ``flag VALUE``, ``flag=VALUE`` or ``--set option=VALUE``."""
    return any(a == flag or a.startswith(flag + "=") for a in mitm_args) or _sets(mitm_args, option)


def _check_capture_options(argv: list[str]) -> None:
    """Refuse a bad ``sse_capture_*`` value here, in one line: mitmproxy reports an error in a ``-s`` script's
    ``configure`` under a traceback, once its servers already listen, and only then exits."""
    import asyncio

    from mitmproxy import exceptions, master, options

    from .capture import SSECapture

    specs = [spec for spec in _set_specs(argv) if spec.startswith("sse_capture")]
    loop = asyncio.new_event_loop()
    try:
        checking = master.Master(options.Options(), event_loop=loop)
        checking.addons.add(SSECapture())
        checking.options.set(*specs)
    except exceptions.OptionsError as e:
        raise click.ClickException(str(e)) from None
    finally:
        loop.close()


def _check_config_file(mitm_args: tuple[str, ...], given: set[str]) -> None:
    """Refuse an option set both on the command line (``--set``, or ``given`` by this command's own options) and in
    mitmproxy's config file: mitmproxy applies the file after ``--set``, so the file's value would win without a
    word (its issue #5069), and ``-d`` would not be where the recordings go."""
    names = given | set(_set_values(mitm_args))
    for path, in_file in _config_files(mitm_args):
        if both := sorted(names & set(in_file)):
            raise click.UsageError(f"{', '.join(both)} set both on the command line and in {path}, whose value "
                                   "mitmproxy would take (it applies its config file after --set): set it in one "
                                   "place")


def _config_files(mitm_args: tuple[str, ...]) -> list[tuple[str, dict]]:
    """Each of mitmproxy's config files in the confdir the arguments name (or its default) that mitmproxy would
    take, with the options it sets."""
    from mitmproxy import exceptions, optmanager

    confdir = os.path.expanduser(_set_values(mitm_args).get("confdir", "~/.mitmproxy"))
    found = []
    for name in ("config.yaml", "config.yml"):
        path = os.path.join(confdir, name)
        try:
            with open(path, encoding="utf-8") as f:
                found.append((path, optmanager.parse(f.read())))
        except (OSError, UnicodeDecodeError, exceptions.OptionsError):
            continue  # none there, or one mitmproxy refuses itself
    return found


def _set_specs(args) -> list[str]:
    """The ``option=value`` of each ``--set option=value`` or ``--set=option=value`` in mitmproxy arguments."""
    return [a for i, a in enumerate(args) if i and args[i - 1] == "--set"] + \
        [a.removeprefix("--set=") for a in args if a.startswith("--set=")]


def _set_values(mitm_args: tuple[str, ...]) -> dict[str, str]:
    """The options mitmproxy arguments set, by name."""
    return dict(spec.split("=", 1) for spec in _set_specs(mitm_args) if "=" in spec)


def _sets(mitm_args: tuple[str, ...], option: str) -> bool:
    """Whether mitmproxy arguments set ``option`` (``--set option=...`` or ``--set=option=...``)."""
    return option in _set_values(mitm_args)


@main.command()
@click.option("-d", "--dir", "directory", default="recordings", show_default=True,
              help="Where the demo recording is written.")
def demo(directory: str) -> None:
    """Start a bundled example agent server and the capturing proxy, send one chat through the proxy,
    and show what was recorded. Needs no backend of your own; everything stays on 127.0.0.1."""
    from .demo import run_demo

    path = run_demo(directory, echo=click.echo)
    click.echo(f"\nrecorded {path} (raw chunk lines left out here):")
    with open(path, encoding="utf-8") as f:
        for text in f:
            if '"kind":"chunk"' not in text:
                click.echo("  " + text.rstrip("\n"))
    click.echo(f"\ntry: grep '\"type\":\"tool_use\"' {path}")


def _register_subcommands() -> None:
    from . import inspect_cli, replay_cli

    for module in (inspect_cli, replay_cli):
        for command in module.COMMANDS:
            main.add_command(command)


_register_subcommands()

if __name__ == "__main__":
    main()
