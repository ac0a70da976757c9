"""Baseline mitmproxy addon: stream text/event-stream responses and do nothing else.

``mitmdump -s bench/plain_stream.py`` is "plain streaming mitmproxy", the ceiling for any SSE addon.
"""

from mitmproxy import http


def responseheaders(flow: http.HTTPFlow) -> None:
    if "text/event-stream" in flow.response.headers.get("content-type", ""):
        flow.response.stream = True
