"""The mitmproxy content view for text/event-stream bodies: with mitmproxy's test helpers, and in a real
mitmdump that dumps a stored streamed body."""

from __future__ import annotations

from mitmproxy import contentviews
from mitmproxy.test import taddons, tflow

from harness import Mitmdump, Scenario
from inspect_helpers import anthropic_stream, recording_for, stream_through
from sse_capture_addon.contentview import SSEContentviewAddon, render_events

BODY = (b'event: greeting\nid: 1\ndata: {"text": "hi"}\n\n: keep-alive\ndata: plain\ndata: two lines\n\n'
        b"id: 2\n\nretry: 5\n\nretry: x\ndata: cut")


def test_render_events_shows_each_event_comment_and_the_tail():
    assert render_events(BODY).splitlines() == [
        "#1 greeting  id=1",
        "  {",
        '    "text": "hi"',
        "  }",
        ": keep-alive",
        "#2 message",
        "  plain",
        "  two lines",
        "(no event; sets id='2')",
        "(no event; sets retry=5)",                             # a retry alone: no id to show
        "(ignored retry 'x': retry value is not all ASCII digits)",
        "── 2 event(s), 1 comment(s)",
        "── unterminated last event (clients drop it): 'retry: x\\ndata: cut'",
    ]


def test_chosen_automatically_for_event_streams_only():
    with taddons.context(SSEContentviewAddon()):
        flow = tflow.tflow(resp=True)
        flow.response.headers["content-type"] = "text/event-stream; charset=utf-8"
        flow.response.content = BODY
        result = contentviews.prettify_message(flow.response, flow)
        assert result.view_name == "Server-Sent Events"
        assert result.text.startswith("#1 greeting  id=1\n")

        flow.response.headers["content-type"] = "text/plain"
        assert contentviews.prettify_message(flow.response, flow).view_name != "Server-Sent Events"
        flow.response.headers["content-type"] = "text/plain, text/event-stream"  # the last valid one, as capture
        assert contentviews.prettify_message(flow.response, flow).view_name == "Server-Sent Events"
        flow.response.headers["content-type"] = "text/plain"
        # chosen by name for a body mislabelled as text/plain
        assert contentviews.prettify_message(flow.response, flow, "server-sent events").text.startswith("#1 greeting")


def test_mitmdump_shows_the_parsed_events_of_a_stored_stream(certs, servers, upstream_app, tmp_path,
                                                            scenario_name):
    upstream_app.add(scenario_name, Scenario(anthropic_stream()))
    with Mitmdump(certs, tmp_path, args=["--set", "store_streamed_bodies=true", "--flow-detail", "3"]) as mitm:
        stream_through(mitm, certs, f"{servers['h1'].base}/sse/{scenario_name}")
        recording_for(mitm, scenario_name)
        mitm.stop()
        log = mitm.log()
    assert "#1 message_start" in log and "#8 message_stop" in log
    assert '"text": "Hel"' in log
    assert "── 8 event(s), 0 comment(s)" in log
