"""A mitmproxy content view for ``text/event-stream`` bodies: the parsed events instead of one blob.

mitmproxy only has an SSE body to show when it kept one: a streamed response (which the capture addon
makes every SSE response) is stored only with ``--set store_streamed_bodies=true``.
"""

from __future__ import annotations

import orjson
from mitmproxy import contentviews, http
from mitmproxy.contentviews import Contentview, Metadata

from .capture import is_sse
from .inspect.fmt import event_number
from .inspect.reader import AN_EVENT, tail_loss
from .sse import Comment, Event, Ignored, NoDispatch, Oversized, SSEParser


def _data_lines(data: str) -> list[str]:
    if data[:1] in "{[" and data:
        try:
            pretty = orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
            return pretty.splitlines()
        except orjson.JSONDecodeError:
            pass
    return data.split("\n")


def render_events(body: bytes) -> str:
    parser = SSEParser()
    items = parser.feed(body)
    tail = parser.close()
    out: list[str] = []
    events = comments = 0
    last_id = ""
    for item in items:
        if isinstance(item, (Event, Oversized)):
            head = f"{event_number(events)} {item.type}"
            if item.last_event_id != last_id:
                head += f"  id={item.last_event_id}"
                last_id = item.last_event_id
            if item.retry is not None:
                head += f"  retry={item.retry}"
            out.append(head)
            if isinstance(item, Oversized):
                out.append(f"  [oversized: {item.size} chars] {item.data_prefix[:200]}")
            else:
                out.extend("  " + line for line in _data_lines(item.data))
            events += 1
        elif isinstance(item, Comment):
            comments += 1
            out.append(f":{item.text}")
        elif isinstance(item, NoDispatch):
            last_id = item.last_event_id
            fields = ([f"id={item.last_event_id!r}"] if item.id_changed else []) + \
                ([f"retry={item.retry}"] if item.retry is not None else [])
            out.append(f"(no event; sets {', '.join(fields)})")
        elif isinstance(item, Ignored):
            out.append(f"(ignored {item.field} {item.value!r}: {item.reason})")
    summary = f"── {events} event(s), {comments} comment(s)"
    if parser.bom:
        summary += ", starts with a BOM"
    endings = [k.upper() for k, v in parser.line_endings.items() if v]
    if len(endings) > 1:
        summary += f", mixed line endings ({'/'.join(endings)})"
    out.append(summary)
    lost = tail and tail_loss(tail, parser.last_event_id, parser.reconnection_time, parser.tail_truncated)
    if lost == AN_EVENT:
        out.append(f"── unterminated last event (clients drop it): {tail[:500]!r}")
    elif lost:
        out.append(f"── unterminated last block (clients never set {lost}): {tail[:500]!r}")
    return "\n".join(out)


class SSEContentview(Contentview):
    @property
    def name(self) -> str:
        return "Server-Sent Events"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        return render_events(data)

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        if isinstance(metadata.http_message, http.Response):  # decided as capture decides (several Content-Types)
            return 2.0 if is_sse(metadata.http_message) else 0.0
        return 2.0 if metadata.content_type == "text/event-stream" else 0.0


sse_view = SSEContentview()


class SSEContentviewAddon:
    """Registers the view when mitmproxy loads the addon (mitmweb, mitmproxy and mitmdump's flow dump)."""

    def load(self, loader) -> None:
        contentviews.add(sse_view)
