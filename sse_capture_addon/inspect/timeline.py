"""``timeline``: a self-contained HTML page drawing recordings on one time axis (no network needed).

Each recording is a lane: events as coloured ticks (one colour per event type, the same in every lane),
comments as small grey ticks, silences longer than the stall threshold shaded with their length, and the
ending as a flag coloured by how the stream ended. Hovering an event shows its data. The SVG is drawn
here; the page's only script shows the hover box.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field

import orjson

from .events import MISSING, data_json, data_text
from .fmt import duration, ended_badly, event_number, ending_label, path_text, pretty_json, utc
from .reader import AN_EVENT, EVENT_KINDS, RecordingStream, Tail, unterminated_tail
from .stalls import Silences
from ..recording import IN_PROGRESS

MAX_MARKS = 20_000        # events drawn per lane; the rest are counted, not drawn
HOVER_CHARS = 2_000       # data shown on hover
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5")


@dataclass
class Lane:
    path: str
    title: str
    subtitle: str
    ending: str
    end_t: float
    events: list[tuple[float, str, str]] = field(default_factory=list)   # t, type, hover text
    comments: list[float] = field(default_factory=list)
    stalls: list[tuple[float, float]] = field(default_factory=list)      # start, length
    total_events: int = 0
    tail: Tail | None = None


def _hover(record: dict, index: int, gap: float) -> str:
    head = f"{event_number(index)} {record['event']}  t={record['t']:.3f}s  +{gap:.3f}s"
    if record.get("id"):
        head += f"  id={record['id']}"
    if record["kind"] == "oversized":
        body = f"[oversized: {record['size']} chars, data not kept]\n{record.get('data_prefix', '')}"
    else:
        value = data_json(record)
        body = pretty_json(value) if value is not MISSING else data_text(record)
    if len(body) > HOVER_CHARS:
        body = body[:HOVER_CHARS] + f"\n… (+{len(body) - HOVER_CHARS} chars)"
    return f"{head}\n{body}"


def read_lane(path: str, stall: float) -> Lane:
    stream = RecordingStream(path)
    request = stream.header["request"]
    lane = Lane(path=path, title=f"{request['method']} {request.get('pretty_url') or request['url']}",
                subtitle="", ending="", end_t=0.0)
    silences = Silences(path)  # the stalls stats and lint count
    last_t = 0.0
    for record in stream:
        last_t = record["t"]
        if record["kind"] == "comment":
            if len(lane.comments) < MAX_MARKS:
                lane.comments.append(record["t"])
        elif record["kind"] == "error":
            silences.error(record)
        if record["kind"] not in EVENT_KINDS:
            continue
        silence = silences.event(record["t"], record["event"])
        if silence.seconds > stall and not silence.unknown:
            lane.stalls.append((silence.start, silence.seconds))
        if len(lane.events) < MAX_MARKS:
            lane.events.append((record["t"], record["event"], _hover(record, lane.total_events, silence.seconds)))
        lane.total_events += 1
    lane.ending = stream.ending
    lane.end_t = stream.end["t"] if stream.end else last_t
    silence = silences.until_end(lane.end_t)
    if silence.seconds > stall and not silence.unknown:
        lane.stalls.append((silence.start, silence.seconds))
    lane.tail = unterminated_tail(stream)
    lane.subtitle = (f"{path_text(os.path.basename(path))} · started {utc(stream.header['started'])} UTC · "
                     f"status {stream.header['response']['status']} · {lane.total_events} events in "
                     f"{duration(lane.end_t)} · {ending_label(lane.ending)}")
    return lane


# --- drawing -------------------------------------------------------------------------------------------------

LEFT, RIGHT, WIDTH = 20, 30, 1200
LANE_H, LABEL_H, AXIS_H = 44, 34, 28


def _tick_step(span: float, target: int = 10) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def _fmt_tick(t: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{t:.{decimals}f}s"


def render(lanes: list[Lane], title: str = "SSE timeline") -> str:
    span = max([lane.end_t for lane in lanes] + [0.001])
    plot_w = WIDTH - LEFT - RIGHT
    x = lambda t: LEFT + t / span * plot_w  # noqa: E731

    colours: dict[str, str] = {}
    counts: dict[str, int] = {}
    for lane in lanes:
        for _, event_type, _ in lane.events:
            colours.setdefault(event_type, PALETTE[len(colours) % len(PALETTE)])
            counts[event_type] = counts.get(event_type, 0) + 1

    svg: list[str] = []
    hover: list[str] = []
    step = _tick_step(span)
    height = AXIS_H + len(lanes) * (LANE_H + LABEL_H) + 10
    ticks = int(span / step) + 1
    for i in range(ticks):
        t = i * step
        svg.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{AXIS_H - 6}" y2="{height}"/>'
                   f'<text class="tick" x="{x(t):.1f}" y="{AXIS_H - 10}">{_fmt_tick(t, step)}</text>')
    y = AXIS_H
    for n, lane in enumerate(lanes):
        bad = ended_badly(lane.ending)
        svg.append(f'<g class="lane" data-lane="{n}" data-ending="{lane.ending}">')
        svg.append(f'<text class="lane-title" x="{LEFT}" y="{y + 14}">{html.escape(lane.title)}</text>'
                   f'<text class="lane-sub{" bad" if bad else ""}" x="{LEFT}" y="{y + 28}">'
                   f'{html.escape(lane.subtitle)}</text>')
        top = y + LABEL_H
        track_h = LANE_H - 8
        svg.append(f'<rect class="track" x="{LEFT}" y="{top}" width="{x(lane.end_t) - LEFT:.1f}" height="{track_h}"/>')
        for start, length in lane.stalls:
            x0, width = x(start), max(x(start + length) - x(start), 1)
            svg.append(f'<rect class="stall" x="{x0:.1f}" y="{top}" width="{width:.1f}" height="{track_h}">'
                       f'<title>stall: no event for {length:.3f}s</title></rect>'
                       f'<text class="stall-label" x="{x0 + width / 2:.1f}" y="{top + LANE_H / 2}">'
                       f'stall {duration(length)}</text>')
        for t in lane.comments:
            svg.append(f'<line class="comment" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top + track_h - 6}" '
                       f'y2="{top + track_h}"/>')
        for t, event_type, text in lane.events:
            svg.append(f'<rect class="ev" x="{x(t) - 1:.1f}" y="{top + 3}" width="3" height="{track_h - 6}" '
                       f'fill="{colours[event_type]}" data-h="{len(hover)}"/>')
            hover.append(text)
        end_x = x(lane.end_t)
        flag = "flag-ok" if lane.ending == "complete" else "flag-live" if lane.ending == IN_PROGRESS else "flag-bad"
        label = ending_label(lane.ending)
        if lane.tail:
            label += " · unterminated " + ("event" if lane.tail.lost == AN_EVENT else "block")
        anchor, label_x = ("end", end_x - 4) if end_x > WIDTH - 200 else ("start", end_x + 4)
        svg.append(f'<line class="{flag}" x1="{end_x:.1f}" x2="{end_x:.1f}" y1="{top - 4}" y2="{top + LANE_H - 4}"/>'
                   f'<text class="end-label {flag}" text-anchor="{anchor}" x="{label_x:.1f}" '
                   f'y="{top + LANE_H - 6}">{html.escape(label)}</text>')
        if lane.total_events > len(lane.events):
            svg.append(f'<text class="note" x="{LEFT}" y="{top + LANE_H + 4}">drew the first {len(lane.events)} '
                       f'of {lane.total_events} events</text>')
        svg.append("</g>")
        y += LANE_H + LABEL_H

    legend = "".join(f'<span class="key"><i style="background:{c}"></i>{html.escape(t)} <b>{counts[t]}</b></span>'
                     for t, c in colours.items())
    hover_json = orjson.dumps(hover).decode().replace("<", "\\u003c")
    return _PAGE.format(title=html.escape(title), legend=legend, width=WIDTH, height=height, svg="".join(svg),
                        hover=hover_json, lanes=len(lanes))


def timeline(paths: list[str], stall: float = 5.0, title: str = "SSE timeline") -> str:
    return render([read_lane(p, stall) for p in paths], title)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }}
h1 {{ font-size: 16px; margin: 0 0 8px; }}
.legend {{ margin: 0 0 10px; }}
.key {{ display: inline-block; margin: 0 14px 4px 0; }}
.key i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }}
.key b {{ font-weight: normal; color: #888; }}
.help {{ color: #777; margin-bottom: 6px; }}
.wrap {{ overflow-x: auto; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #333; }}
.tick {{ text-anchor: middle; fill: #777; }}
.grid {{ stroke: #eee; }}
.lane-title {{ font-weight: bold; font-size: 12px; }}
.lane-sub {{ fill: #666; }}
.lane-sub.bad {{ fill: #c62828; }}
.track {{ fill: #f6f7f9; }}
.stall {{ fill: rgba(229, 57, 53, 0.18); stroke: rgba(229, 57, 53, 0.5); stroke-dasharray: 3 2; }}
.stall-label {{ fill: #c62828; text-anchor: middle; font-weight: bold; }}
.comment {{ stroke: #aaa; }}
.ev:hover {{ stroke: #000; stroke-width: 1; }}
line.flag-ok {{ stroke: #2e7d32; stroke-width: 3; }}  line.flag-bad {{ stroke: #c62828; stroke-width: 3; }}
line.flag-live {{ stroke: #ef6c00; stroke-width: 3; stroke-dasharray: 4 3; }}
text.flag-ok {{ fill: #2e7d32; font-weight: bold; }}  text.flag-bad {{ fill: #c62828; font-weight: bold; }}
text.flag-live {{ fill: #ef6c00; font-weight: bold; }}
.note {{ fill: #999; }}
#tip {{ position: fixed; display: none; max-width: 560px; max-height: 60vh; overflow: hidden; margin: 0;
        padding: 6px 8px; background: #fffff2; border: 1px solid #999; box-shadow: 0 2px 6px rgba(0,0,0,.2);
        font: 11px ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; pointer-events: none; }}
</style></head><body>
<h1>{title}</h1>
<div class="legend">{legend}</div>
<div class="help">{lanes} recording(s) on one time axis · hover an event to see its data · shaded: stalls · flag: how the stream ended</div>
<div class="wrap"><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">{svg}</svg></div>
<pre id="tip"></pre>
<script type="application/json" id="hover-data">{hover}</script>
<script>
(() => {{
  const data = JSON.parse(document.getElementById("hover-data").textContent);
  const tip = document.getElementById("tip");
  document.querySelector("svg").addEventListener("mousemove", (e) => {{
    const h = e.target.dataset ? e.target.dataset.h : undefined;
    if (h === undefined) {{ tip.style.display = "none"; return; }}
    tip.textContent = data[+h];
    tip.style.display = "block";
    const x = Math.min(e.clientX + 12, window.innerWidth - tip.offsetWidth - 8);
    const y = Math.min(e.clientY + 12, window.innerHeight - tip.offsetHeight - 8);
    tip.style.left = Math.max(0, x) + "px"; tip.style.top = Math.max(0, y) + "px";
  }});
  document.querySelector("svg").addEventListener("mouseleave", () => {{ tip.style.display = "none"; }});
}})();
</script>
</body></html>
"""
