"""mitmproxy script: ``mitmdump -s sse_capture_addon/addon.py`` records every SSE stream.

mitmproxy loads ``-s`` files by path, not as part of a package, so this file uses absolute imports and
makes the checkout importable when the package is not installed.
"""

import os
import sys

try:
    from sse_capture_addon.capture import SSECapture
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from sse_capture_addon.capture import SSECapture

from sse_capture_addon.contentview import SSEContentviewAddon  # noqa: E402
from sse_capture_addon.hangup import ShutdownOnHangup  # noqa: E402
from sse_capture_addon.listening import ListenLocally  # noqa: E402

addons = [SSECapture(), SSEContentviewAddon(), ListenLocally("sse-capture"), ShutdownOnHangup()]
