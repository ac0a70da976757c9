"""``mitmdump -s bench/addon_without_writes.py --set sse_capture_dir=DIR``: the capture addon (this checkout's) with
every write after a recording's header line skipped. Everything else runs as in the addon: parsing, the event
and chunk lines, their bytes. What it saves against the addon is what the writes cost, for the "what would it
take" figures (``bench/ab.py bulk now=. nowrite=bench/addon_without_writes.py``). Not a way to run the addon: its
recordings hold only their header lines.
"""

from sse_capture_addon import writer
from sse_capture_addon.addon import addons

__all__ = ["addons"]  # what mitmdump loads from this script

_append = writer.RecordingFile.append


def _header_only(self: writer.RecordingFile, data: bytes) -> None:
    if self.size:
        self.size += len(data)  # as if written
        return
    _append(self, data)


writer.RecordingFile.append = _header_only
