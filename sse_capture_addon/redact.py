"""Redaction of credentials before anything reaches a recording."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"

DEFAULT_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
})


class Redactor:
    def __init__(self, headers: Iterable[str] = DEFAULT_HEADERS, json_keys: Iterable[str] = ()):
        self.headers = frozenset(h.lower() for h in headers)
        self.json_keys = frozenset(k.lower() for k in json_keys)

    def header_fields(self, fields: Iterable[tuple[bytes, bytes]]) -> tuple[list[list[str]], list[str]]:
        """Raw header fields as ``[name, value]`` strings with credentials replaced; also the names redacted.
        Bytes that are not UTF-8 become lone surrogates, as mitmproxy's ``Headers`` give them (decoding here
        rather than through ``Headers.items`` halves the cost, which every recorded stream pays)."""
        out, hit = [], []
        for name, value in fields:
            name = name.decode("utf-8", "surrogateescape")
            lower = name.lower()
            if lower in self.headers:
                out.append([name, REDACTED])
                hit.append(lower)
            else:
                out.append([name, value.decode("utf-8", "surrogateescape")])
        return out, sorted(set(hit))

    def json_value(self, value: Any) -> tuple[Any, bool]:
        """``value`` with the values of the configured keys replaced, at any depth; and whether any was."""
        if not self.json_keys:
            return value, False
        changed = False

        def walk(v: Any, depth: int) -> Any:
            nonlocal changed
            if depth > 500:
                return v
            if isinstance(v, dict):
                out = {}
                for k, item in v.items():
                    if isinstance(k, str) and k.lower() in self.json_keys:
                        out[k] = REDACTED
                        changed = True
                    else:
                        out[k] = walk(item, depth + 1)
                return out
            if isinstance(v, list):
                return [walk(item, depth + 1) for item in v]
            return v

        result = walk(value, 0)
        return result, changed
