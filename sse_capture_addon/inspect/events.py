"""Looking into events: their data text and JSON, paths such as ``data.choices[0].delta``, and selectors
such as ``content_block_start&data.content_block.type=tool_use`` used by lint rules and diff.

A path starts at an event's ``event`` (type), ``id`` (last event ID), ``retry`` or ``data``; below ``data``
it walks the data's JSON: ``.key``, ``[index]``, ``*`` (any one key or index) and ``**`` (any depth).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..recording import decode_data
from .fmt import json_text

MISSING = object()
ROOTS = ("event", "id", "retry", "data")


def data_text(record: dict) -> str:
    """The event's data exactly as sent (for an oversized event, the prefix that was kept)."""
    if record["kind"] == "oversized":
        return record.get("data_prefix", "")
    return decode_data(record["data"])


def data_json(record: dict) -> Any:
    """The event's data as JSON, or ``MISSING`` when it is not JSON."""
    if record["kind"] != "event":
        return MISSING
    value = record["data"]
    if not isinstance(value, str):
        return value
    if value[:1] not in "{[" or not value:
        return MISSING
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return MISSING


_SEGMENT = re.compile(r"\.?([^.\[\]]+)|\[(\d+|\*)\]")


def parse_path(text: str) -> tuple:
    """``data.choices[0].delta`` -> ``("data", "choices", 0, "delta")``; raises ValueError when malformed."""
    segments: list = []
    pos = 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m or (pos == 0 and text.startswith(".")):
            raise ValueError(f"bad path {text!r} at {text[pos:]!r}")
        name, index = m.groups()
        if index is not None:
            segments.append("*" if index == "*" else int(index))
        else:
            segments.append(name)
        pos = m.end()
    if not segments or segments[0] not in ROOTS:
        raise ValueError(f"bad path {text!r}: it must start with one of {', '.join(ROOTS)}")
    return tuple(segments)


def format_path(segments: tuple) -> str:
    out = ""
    for s in segments:
        out += f"[{s}]" if isinstance(s, int) else (f".{s}" if out else s)
    return out


def lookup(record: dict, path: tuple) -> Any:
    """The value at ``path`` in an event (no wildcards), or ``MISSING``."""
    root, rest = path[0], path[1:]
    if root == "event":
        value = record.get("event", MISSING)
    elif root in ("id", "retry"):
        value = record.get(root, "" if root == "id" else MISSING)
    else:
        value = data_json(record)
        if value is MISSING:
            value = data_text(record) if not rest else MISSING
    for key in rest:
        if isinstance(key, int) and isinstance(value, list) and -len(value) <= key < len(value):
            value = value[key]
        elif isinstance(key, str) and isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return MISSING
    return value


def value_text(value: Any) -> str:
    """A looked-up value as text, for matching and messages (strings unquoted, JSON otherwise)."""
    if isinstance(value, str):
        return value
    return json_text(value)


@dataclass(frozen=True)
class Selector:
    """Which events a rule is about: an event type (``*`` for any) and/or ``path=value`` conditions,
    joined with ``&``: ``tool_use``, ``data=[DONE]``, ``message&data.object=chat.completion.chunk``."""

    text: str
    event_type: str | None
    conditions: tuple[tuple[tuple, str], ...]

    @classmethod
    def parse(cls, text: str) -> "Selector":
        event_type = None
        conditions = []
        for part in text.split("&"):
            part = part.strip()
            path, eq, value = part.partition("=")
            if eq and path.split(".")[0].split("[")[0] in ROOTS:
                conditions.append((parse_path(path), value))
            elif part and event_type is None:
                event_type = None if part == "*" else part
            else:
                raise ValueError(f"bad selector {text!r}: expected TYPE and/or PATH=VALUE joined by &")
        return cls(text, event_type, tuple(conditions))

    def matches(self, record: dict) -> bool:
        if record["kind"] not in ("event", "oversized"):
            return False
        if self.event_type is not None and record["event"] != self.event_type:
            return False
        for path, expected in self.conditions:
            value = lookup(record, path)
            if value is MISSING or value_text(value) != expected:
                return False
        return True

    def __str__(self) -> str:
        return self.text
