"""The inspect subcommands of ``sse-capture`` (ls, show, stats, lint, diff, cat, timeline): thin click
glue over ``sse_capture_addon.inspect``. Colour on a terminal, plain when piped or with NO_COLOR set;
exit status 2 for bad input (one line naming the file and line), 1 where a check fails."""

from __future__ import annotations

import functools
import os
import sys

import click
from click.core import ParameterSource

from .inspect import fmt
from .inspect.diff import COMMON_IGNORES, DiffOptions, diff as diff_recordings, ending_text, ids_differ
from .inspect.events import Selector, data_text, parse_path
from .inspect.lint import DEFAULT_MAX_STALL, ERROR, LintOptions, lint_paths
from .inspect.listing import Filters, list_recordings, parse_since
from .inspect.protocols import PRESET_CHOICES, Protocol, load_rules, parse_rule
from .inspect.reader import HeaderPending, RecordingStream, each_readable, header_pending
from .inspect.show import ShowOptions, ShowRenderer, header_lines, json_lines
from .inspect.stats import collect
from .recording import IN_PROGRESS, RecordingError, find_recordings, os_reason, reachable
from .replay.schedule import parse_speed

BAD_INPUT = 2


class Seconds(click.FloatRange):
    """A number of seconds >= 0 (``inf``: never): click's FloatRange lets NaN through, as every comparison with it
    is false, and then every gap is a stall."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(0)

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if value != value:
            self.fail(f"{value} is not a number of seconds", param, ctx)
        return value


SECONDS = Seconds()


def echo(text: str = "", err: bool = False) -> None:
    click.echo(text, err=err, color=False if os.environ.get("NO_COLOR") else None)


def echo_json(value) -> None:
    click.echo(fmt.pretty_json(value))


def problem(e: RecordingError) -> str:
    where = f"{fmt.shown_path(e.path)}:{e.lineno}" if e.lineno else fmt.shown_path(e.path)
    return f"sse-capture: {where}: {fmt.printable(e.message)}"


def report_bad_files(errors: list[RecordingError]) -> None:
    """Unreadable recordings met while going through a directory: one line each, then exit status 2. A file a
    proxy has only just created is not bad: it gets a note."""
    for e in errors:
        echo(fmt.dim(problem(e)) if isinstance(e, HeaderPending) else fmt.bad(problem(e)), err=True)
    if any(not isinstance(e, HeaderPending) for e in errors):
        sys.exit(BAD_INPUT)


def recordings_in(path: str) -> list[str]:
    found = find_recordings(path)  # (says why a path cannot be reached)
    if not found:
        raise RecordingError(path, 0, "no recordings (*.jsonl) here")
    return found


def recording_file(path: str) -> str:
    if os.path.isdir(reachable(path)):
        raise RecordingError(path, 0, "is a directory; expected a recording file")
    return path


def friendly_errors(command):
    """Bad input is one clear line and exit status 2, never a traceback; a closed pipe is not an error."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RecordingError as e:
            echo(fmt.bad(problem(e)), err=True)
            sys.exit(BAD_INPUT)
        except BrokenPipeError:
            sys.stderr.close()  # e.g. `sse-capture cat x | head`: stop quietly
            sys.exit(0)
        except KeyboardInterrupt:
            sys.exit(130)
    return wrapper


def parsed(convert):
    """A click callback turning a string option into a value, with a usage error when it is malformed."""
    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return [convert(v) for v in value] if isinstance(value, tuple) else convert(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return callback


# --- ls ------------------------------------------------------------------------------------------------------

@click.command("ls", short_help="List recordings and how each stream ended.")
@click.argument("directory", default="recordings", type=click.Path())
@click.option("-e", "--endpoint", metavar="TEXT", help="Only URLs containing TEXT (a glob if it has *, ? or [).")
@click.option("--bad", "bad_only", is_flag=True,
              help="Only streams that ended badly (not complete, not still running).")
@click.option("--since", metavar="WHEN", callback=parsed(parse_since),
              help="Only streams started since WHEN: 30m, 2h, 1d ago or an ISO time (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@friendly_errors
def ls_command(directory, endpoint, bad_only, since, as_json):
    """List recordings, oldest first: start time (UTC), method, status, events, duration, how each ended
    (complete / client disconnected / server error / proxy died / still being written), URL and file.

    \b
      sse-capture ls                        # ./recordings
      sse-capture ls /var/rec --bad --since 2h -e /v1/messages
    """
    recordings_in(directory)
    errors: list[RecordingError] = []
    found = list_recordings(directory, Filters(endpoint, bad_only, since), errors)
    if as_json:
        echo_json([s.to_json() for s in found])
    else:
        base = directory if os.path.isdir(directory) else os.path.dirname(directory)
        rows = [[fmt.printable(fmt.utc(s.started)), fmt.printable(s.method), str(s.status), str(s.events),
                 fmt.duration(s.duration), fmt.style_ending(s.ending), fmt.printable(s.url),
                 fmt.dim(fmt.shown_path(os.path.relpath(s.path, base or ".")))] for s in found]
        if found:
            for line in fmt.table(rows, ["STARTED (UTC)", "METHOD", "STATUS", "EVENTS", "DURATION", "ENDED", "URL",
                                         "FILE"], right={2, 3, 4}):
                echo(line)
        elif not errors:
            echo(fmt.dim("(no recordings match)"), err=True)
    report_bad_files(errors)


# --- show ----------------------------------------------------------------------------------------------------

@click.command("show", short_help="Show a recording's events; --follow a live one.")
@click.argument("file", type=click.Path())
@click.option("-p", "--pretty", is_flag=True, help="Pretty-print JSON data below each event.")
@click.option("--full", is_flag=True, help="Never shorten long data.")
@click.option("-w", "--width", type=click.IntRange(20), default=160, show_default=True,
              help="Shorten data to this many characters.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new events while the proxy is still writing the recording, like tail -f; "
                   "stops at its end (or when the proxy dies).")
@click.option("--poll", type=click.FloatRange(0.01), default=0.2, show_default=True, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (data as exact text), then the ending.")
@friendly_errors
def show_command(file, pretty, full, width, follow, poll, as_json):
    """Show a recording's events in order: number (#1 is the first, as replay's --cut-after/--swap count),
    time, gap since the previous event, type, id (when it changes) and data; comments dimmed; then how the
    stream ended and any unterminated last event (--json: index counts from 0).

    \b
      sse-capture show rec.jsonl -p           # pretty JSON
      sse-capture show -f rec.jsonl           # watch a stream that is still going
    """
    try:
        stream = RecordingStream(recording_file(file), follow=follow, poll=poll)
    except RecordingError:
        if follow or not header_pending(file):
            raise
        if as_json:
            click.echo(fmt.json_text({"kind": "end", "ending": IN_PROGRESS,
                                      "ending_label": fmt.ending_label(IN_PROGRESS)}))
        else:
            echo(fmt.dim("(a proxy is still writing this recording and has not written its header line yet; "
                         "use --follow to watch it)"))
        return
    if as_json:
        for item in json_lines(stream):
            click.echo(fmt.json_text(item))
        return
    renderer = ShowRenderer(ShowOptions(pretty=pretty, width=None if full else width))
    for line in header_lines(stream.header):
        echo(line)
    for record in stream:
        for line in renderer.lines(record):
            echo(line)
    for line in renderer.ending_lines(stream):
        echo(line)


# --- stats ---------------------------------------------------------------------------------------------------

def _stats_lines(s) -> list[str]:
    j = s.to_json()
    lines = [fmt.bold(fmt.shown_path(s.path)) + f"  {fmt.printable(s.url)}",
             f"  ended                {fmt.style_ending(s.ending)} after {fmt.duration(s.duration)}",
             f"  time to first event  {fmt.duration(s.first_event)}"
             + (f" (response headers after {fmt.duration(s.ttfb)})" if s.ttfb is not None else ""),
             f"  events               {s.events}"
             + (f"  ({j['events_per_second']:.1f}/s)" if j["events_per_second"] is not None else "")
             + (fmt.warn(f", of {s.events_passed} that passed through the proxy (lines were not written)")
                if s.events_passed is not None and s.events_passed > s.events else "")
             + (f", {s.comments} comments" if s.comments else ""),
             f"  gaps                 p50 {fmt.duration(j['gap_p50'])}  p99 {fmt.duration(j['gap_p99'])}  "
             f"max {fmt.duration(j['gap_max'])}"]
    if s.stall:
        lines.append(f"  longest stall        {fmt.warn(fmt.duration(s.stall.seconds))} "
                     f"{fmt.printable(s.stall.where())}")
    lines += [f"  {fmt.style_type(t)} {n}" for t, n in s.types.most_common()]
    return lines


@click.command("stats", short_help="Timing, gaps, stalls and counts of recordings.")
@click.argument("path", type=click.Path())
@click.option("--totals", "totals_only", is_flag=True, help="Only the totals over all recordings.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {recordings: [...], totals: {...}}.")
@friendly_errors
def stats_command(path, totals_only, as_json):
    """Timing and counts: time to first event, duration, events per type, inter-event gap p50/p99/max,
    events per second, and the longest stall (including before the first and after the last event) with
    where it happened. For a directory, each recording and the totals. Streams the files, so it runs in
    bounded memory however large the directory."""
    recordings_in(path)
    errors: list[RecordingError] = []
    streams, totals = collect(path, errors, keep_streams=not totals_only)
    if as_json:
        echo_json({"recordings": [s.to_json() for s in streams], "totals": totals.to_json()})
    else:
        for s in streams:
            for line in _stats_lines(s):
                echo(line)
        if totals.recordings > 1 or totals_only:
            t = totals.to_json()
            echo(fmt.bold(f"totals over {t['recordings']} recordings") + f": {t['events']} events, "
                 + ", ".join(f"{n} {fmt.ending_label(e)}" for e, n in totals.endings.items()))
            echo(f"  time to first event  p50 {fmt.duration(t['time_to_first_event_p50'])}  "
                 f"max {fmt.duration(t['time_to_first_event_max'])}")
            echo(f"  gaps                 p50 {fmt.duration(t['gap_p50'])}  p99 {fmt.duration(t['gap_p99'])}  "
                 f"max {fmt.duration(t['gap_max'])}")
            if totals.stall:
                echo(f"  longest stall        {fmt.warn(fmt.duration(totals.stall.seconds))} in "
                     f"{fmt.shown_path(totals.stall.path)} {fmt.printable(totals.stall.where())}")
    report_bad_files(errors)


# --- lint ----------------------------------------------------------------------------------------------------

@click.command("lint", short_help="Check recordings for spec and protocol problems.")
@click.argument("path", type=click.Path())
@click.option("--preset", type=click.Choice(PRESET_CHOICES), default="auto", show_default=True,
              help="Protocol rules: openai (chat completions), openai-responses (Responses API), anthropic "
                   "(Messages), ai-sdk (Vercel AI SDK UI stream), none, or auto-detect from the response "
                   "headers, the first event or the URL.")
@click.option("--rules", "rules_file", type=click.Path(), help="A TOML/JSON file of terminal events and rules "
                                                               "(see docs/inspect.md).")
@click.option("--rule", "rules", multiple=True, callback=parsed(parse_rule), metavar="RULE",
              help="'EVENT after PREVIOUS [by KEY[=PREVIOUS_KEY]]', e.g. "
                   "'tool_result after tool_use by data.tool_use_id=data.id'. Repeatable.")
@click.option("--terminal", multiple=True, metavar="SELECTOR",
              help="An event that ends the stream, e.g. done or 'data=[DONE]'. Repeatable.")
@click.option("--max-stall", type=SECONDS, default=DEFAULT_MAX_STALL, show_default=True,
              help="Report silences longer than this many seconds.")
@click.option("--strict", is_flag=True, help="Fail on warnings too (BOM, mixed line endings, unknown types).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@friendly_errors
def lint_command(path, preset, rules_file, rules, terminal, max_stall, strict, as_json):
    """Check recordings for spec and protocol problems, each with its event number (#1 is the first) and
    time: mixed line endings, BOM, an unterminated last event, id with NULL, non-digit retry, events after
    the terminal event, no terminal event, stalls, and pairing rules. Exit status 1 when there are errors
    (or, with --strict, warnings).

    \b
      sse-capture lint recordings/ --preset anthropic
      sse-capture lint rec.jsonl --terminal done --rule 'tool_result after tool_use by data.id'
    """
    try:
        extra = load_rules(rules_file) if rules_file else Protocol("rules")
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--rules") from None
    if extra.preset is not None:  # the file's preset is the base, instead of the one detected
        given = click.get_current_context().get_parameter_source("preset") is not ParameterSource.DEFAULT
        if given and preset != extra.preset:
            raise click.UsageError(f"two presets: --preset {preset} and preset = \"{extra.preset}\" in "
                                   f"{rules_file}; give one")
        preset = extra.preset
    extra = extra.extended(Protocol("custom", [Selector.parse(s) for s in terminal], list(rules)))
    recordings_in(path)
    options = LintOptions(preset=preset, extra=None if extra.empty else extra, max_stall=max_stall)
    errors: list[RecordingError] = []
    failing = total = files = bad_files = 0
    out = []
    for file, findings, protocol, ending in lint_paths(path, options, errors):
        files += 1
        bad_files += bool(findings)
        total += len(findings)
        failing += sum(f.severity == ERROR or strict for f in findings)
        if as_json:
            out.append({"path": fmt.path_text(file), "protocol": protocol, "ending": ending,
                        "findings": [f.to_json() for f in findings]})
            continue
        if findings:
            echo(fmt.bold(fmt.shown_path(file)) + fmt.dim(f"  ({protocol}, {fmt.ending_label(ending)})"))
        for f in findings:
            where = fmt.event_number(f.index) if f.index is not None else "stream"
            when = fmt.seconds(f.t) if f.t is not None else ""
            sev = fmt.bad("error") if f.severity == ERROR else fmt.warn("warning")
            echo(f"  {where:>7} {when:>10}  {sev} {f.code}: {fmt.printable(f.message)}")
    if as_json:
        echo_json({"recordings": out, "problems": total, "failing": failing})
    else:
        summary = f"{total} problem(s) in {bad_files} of {files} recording(s)"
        echo(fmt.bad(summary) if failing else fmt.warn(summary) if total else click.style(summary, fg="green"))
    report_bad_files(errors)
    sys.exit(1 if failing else 0)


# --- diff ----------------------------------------------------------------------------------------------------

def _event_row(index: int, record: dict | None, show_id: bool = False, width: int = 110) -> str:
    """An event in diff's listing; with ``show_id`` its last event ID, for a pair whose ids differ."""
    if record is None:
        return f"{fmt.event_number(index):<5} (nothing)"
    event_id = f"id={fmt.printable(repr(record.get('id', '')))}  " if show_id else ""
    oversized = f"[oversized: {record['size']} chars, data not kept] " if record["kind"] == "oversized" else ""
    return f"{fmt.event_number(index):<5} {fmt.seconds(record['t']):>9}  {fmt.style_type(record['event'])}  " \
           f"{event_id}{oversized}{fmt.shorten(data_text(record), width)}"


@click.command("diff", short_help="Compare two recordings event by event.")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("-i", "--ignore", multiple=True, callback=parsed(parse_path), metavar="PATH",
              help="Leave out of the comparison: id, event, data, or a path into the data's JSON with * and ** "
                   "(e.g. data.message.id, data.**.created). Repeatable.")
@click.option("--ignore-common", is_flag=True,
              help=f"Ignore the usual per-response noise: {', '.join(COMMON_IGNORES)}.")
@click.option("--timing", type=SECONDS, metavar="SECONDS",
              help="Also compare event times, allowing this much difference.")
@click.option("--no-ending", is_flag=True, help="Do not compare how the streams ended.")
@click.option("-C", "--context", type=click.IntRange(0), default=3, show_default=True,
              help="Equal events shown before the first difference (and events shown after it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly_errors
def diff_command(a, b, ignore, ignore_common, timing, no_ending, context, as_json):
    """Compare two recordings as event sequences: type, id and data (JSON compared as JSON, minus ignored
    paths), optionally timing, and how each ended. Shows the first difference in context. Exit status 1
    when they differ, 0 when they are the same: a recording becomes a regression check.

    \b
      sse-capture diff golden.jsonl new.jsonl --ignore-common
      sse-capture diff a.jsonl b.jsonl -i data.message.id --timing 0.5
    """
    ignores = list(ignore) + ([parse_path(p) for p in COMMON_IGNORES] if ignore_common else [])
    options = DiffOptions(ignore=ignores, timing=timing, compare_ending=not no_ending, context=context)
    result = diff_recordings(recording_file(a), recording_file(b), options)
    d = result.divergence
    if as_json:
        echo_json({"same": result.same, "a": fmt.path_text(a), "b": fmt.path_text(b),
                   "events_a": result.events_a, "events_b": result.events_b,
                   "ending_a": result.ending_a, "ending_b": result.ending_b,
                   "divergence": None if d is None else {"index": d.index, "what": d.what, "detail": d.detail,
                                                         "a": d.a, "b": d.b}})
        sys.exit(0 if result.same else 1)
    echo(fmt.dim(f"A {fmt.shown_path(a)}: {result.events_a} events, {fmt.printable(ending_text(result.ending_a))}"))
    echo(fmt.dim(f"B {fmt.shown_path(b)}: {result.events_b} events, {fmt.printable(ending_text(result.ending_b))}"))
    if d is None:
        echo(click.style("same events" + ("" if no_ending else " and ending"), fg="green"))
        return
    where = "at the end" if d.index is None else f"at event {fmt.event_number(d.index)}"
    echo(fmt.bad(f"first difference {where} ({d.what}): ") + fmt.printable(d.detail))
    for index, record in result.before:
        echo("    " + _event_row(index, record))
    if d.index is not None:
        show_id = ids_differ(d.a, d.b, options)
        echo(click.style("  - A " + _event_row(d.index, d.a, show_id), fg="red"))
        echo(click.style("  + B " + _event_row(d.index, d.b, show_id), fg="green"))
        for n, (ra, rb) in enumerate(result.after, start=d.index + 1):
            show_id = ids_differ(ra, rb, options)
            echo(fmt.dim("    A " + _event_row(n, ra, show_id)))
            echo(fmt.dim("    B " + _event_row(n, rb, show_id)))
    sys.exit(1)


# --- cat -----------------------------------------------------------------------------------------------------


@click.command("cat", short_help="Write a recording as SSE text at its timing.")
@click.argument("file", type=click.Path())
@click.option("-s", "--speed", default="1", show_default=True, callback=parsed(parse_speed),
              help="Playback speed: 2 (twice as fast), 0.5, or max (no waiting).")
@click.option("--max-pause", type=SECONDS, metavar="SECONDS", help="Shorten longer pauses to this.")
@click.option("--raw", is_flag=True, help="The raw chunks exactly as the client got them (still content-encoded; "
                                          "needs a recording with raw chunks).")
@friendly_errors
def cat_command(file, speed, max_pause, raw):
    """Write the stream to stdout as SSE text at the recorded timing, for piping into other tools:
    every event, comment and id/retry block re-serialised, then any unterminated last event.

    \b
      sse-capture cat rec.jsonl --speed max | grep '^data:'
      sse-capture cat rec.jsonl | my-sse-client --stdin
    """
    from .inspect.cat import Stream, play

    stream = Stream(recording_file(file), raw=raw)
    try:
        play(stream, sys.stdout.buffer, speed=speed, max_pause=max_pause)
    finally:  # (some are known only once the file is read through)
        for warning in stream.warnings:
            echo(fmt.warn(f"sse-capture: {fmt.printable(warning)}"), err=True)


# --- timeline ------------------------------------------------------------------------------------------------

def writable_output(ctx, param, path: str) -> str:
    """Checked before reading any recording: a typo in ``-o`` should not cost the time it takes to read them."""
    if os.path.isdir(path):
        raise click.BadParameter(f"{fmt.shown_path(path)} is a directory; give a file name")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise click.BadParameter(f"cannot write {fmt.shown_path(path)}: no such directory {fmt.shown_path(folder)}")
    return path


def write_page(output: str, page: str) -> None:
    try:
        # owner-only, as the recordings whose data it holds
        with open(output, "w", encoding="utf-8", opener=lambda path, flags: os.open(path, flags, 0o600)) as f:
            os.fchmod(f.fileno(), 0o600)  # a file that was there keeps its mode otherwise
            f.write(page)
    except OSError as e:
        raise click.BadParameter(f"cannot write {fmt.shown_path(output)}: {os_reason(e)}",
                                 param_hint="'-o' / '--output'") from None


@click.command("timeline", short_help="Draw recordings on a time axis in an HTML page.")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", default="timeline.html", show_default=True, type=click.Path(),
              callback=writable_output, help="Where to write the HTML page.")
@click.option("--stall", type=SECONDS, default=5.0, show_default=True,
              help="Shade silences longer than this many seconds.")
@click.option("--title", default="SSE timeline", show_default=True)
@friendly_errors
def timeline_command(paths, output, stall, title):
    """Draw recordings on one time axis in a self-contained HTML page (no network needed to view it):
    events coloured by type, stalls shaded, the ending flagged, data on hover. Give several files (or a
    directory) to compare them side by side.

    \b
      sse-capture timeline good.jsonl bad.jsonl -o compare.html
    """
    from .inspect.timeline import read_lane, render

    errors: list[RecordingError] = []
    lanes = []
    for path in paths:
        try:
            recordings_in(path)
        except RecordingError as e:
            errors.append(e)
            continue
        lanes += each_readable(path, lambda file: read_lane(file, stall), errors)
    if lanes:
        write_page(output, render(lanes, title))
        echo(f"wrote {fmt.shown_path(output)} ({len(lanes)} recording(s))")
    report_bad_files(errors)


COMMANDS = [ls_command, show_command, stats_command, lint_command, diff_command, cat_command, timeline_command]
