"""Option values given before an addon's options exist (``mitmdump --set sse_capture_dir=... -s addon.py``).

mitmproxy keeps ``--set`` values of options it does not know yet, and parses them when a script registers its
options: after every ``load`` of the script, outside any error handling of its own but the script loader's,
which lets the OptionsError end the loading task silently (mitmproxy 12.3). A value it cannot parse (``--set
sse_capture_max_event_size=abc``, ``--set sse_capture_fsync=maybe``, or two values for one option) then leaves
the script unloaded without a word: the proxy runs, records nothing, and no longer streams SSE responses.
Parsing them from ``load`` instead, where the error can be logged, makes mitmproxy refuse to start, as it does
for a value the addon's ``configure`` refuses. That also meets the values of scripts loaded before this one whose
errors mitmproxy dropped: the message then names their option without blaming this addon.
"""

from __future__ import annotations

import logging

from mitmproxy import exceptions

log = logging.getLogger("sse_capture")


def apply_deferred(loader, who: str, prefix: str) -> None:
    """Call at the end of ``load``, once the options (all named ``prefix...``) are added."""
    try:
        loader.master.options.process_deferred()
    except exceptions.OptionsError as e:
        if prefix in str(e):  # mitmproxy's messages name the option
            log.error(f"{who}: {e}")
        else:  # a script loaded before this one registered that option, and mitmproxy dropped its error
            log.error(f"{e} (a --set value for another script's option: {who} found it when it applied its own)")
