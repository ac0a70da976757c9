"""Text from recordings and requests made safe to print: a stream, a file name or a URL must not drive the
terminal that shows it. Used by the inspect commands and by replay's output."""

from __future__ import annotations

import os
import re

# C0 and C1 controls and DEL, lone surrogates (which no terminal encoding can carry), and the bidirectional
# controls (marks, embeddings, overrides, isolates), which would show the text after them reordered
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    c = m.group()
    return _SHORT_ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str) -> str:
    """Recorded text made safe to print, on one line: control characters written as ``\\n``, ``\\x1b``,
    ``\\u202e``, ... Raw, an ESC or BEL from a stream would drive the terminal (colours, its title, erasing what
    is shown), a right-to-left override would show the rest of the line reversed, and when piped click strips
    escape sequences, silently changing the data shown."""
    return text if text.isprintable() else _UNPRINTABLE.sub(_escape, text)  # (nothing it matches is printable)


def path_text(path: str) -> str:
    """A file name as text that can be written anywhere (JSON, HTML, a terminal): bytes that are not UTF-8
    (surrogate-escaped by Python) as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def shown_path(path: str) -> str:
    """A file name for a person to read."""
    return printable(path_text(path))
