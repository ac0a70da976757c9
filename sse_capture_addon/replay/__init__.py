"""Replay recordings: timed plans of byte writes, faults, request matching and a loopback HTTP server.

Nothing in this package knows about mitmproxy; ``sse_capture_addon/replay_addon.py`` is the glue.
"""
