"""mitmproxy script: ``mitmdump -s scripts/replay.py --set sse_replay=recordings/`` replays SSE recordings.

Options are all ``sse_replay_*`` (``mitmdump -s scripts/replay.py --options`` lists them). mitmproxy loads
``-s`` files by path, not as part of a package, so this file uses absolute imports and makes the checkout
importable when the package is not installed.
"""

import os
import sys

try:
    from sse_capture_addon.replay_addon import SSEReplay
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from sse_capture_addon.replay_addon import SSEReplay

from sse_capture_addon.listening import ListenLocally  # noqa: E402

addons = [SSEReplay(), ListenLocally("sse-replay")]
