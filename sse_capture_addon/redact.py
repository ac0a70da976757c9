"""Redaction of credentials before anything reaches a recording."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus

import orjson

REDACTED = "[REDACTED]"

#: Deeper than this, a JSON value is replaced whole rather than walked (hostile input only). Below orjson's
#: limit for writing (254 levels), so that what was redacted can always be written.
MAX_DEPTH = 200

DEFAULT_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "x-goog-api-key", "x-amz-security-token", "x-auth-token",  # Gemini's key; AWS's session token
})

#: Query parameters that carry credentials. EventSource cannot send headers, so an SSE endpoint that is not
#: authorised by a cookie usually takes a token in its URL; signed URLs carry their signature there too.
DEFAULT_PARAMS = frozenset({
    "access_token", "id_token", "refresh_token", "token", "auth", "authorization", "jwt", "api_key", "apikey",
    "api-key", "key", "password", "passwd", "secret", "client_secret", "sessionid", "session_id", "sig",
    "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential",
})

#: Headers whose value is a URL, whose query is redacted like the request's.
URL_HEADERS = frozenset({"referer", "location", "content-location"})

# What separates one parameter from the next when looking for credentials: "&"; ";", which some servers also
# take (Rack 2, Go before 1.17, Perl's CGI); "#", which may be sent raw in a request target and starts OAuth's
# implicit-flow parameters in a URL; and "?", of a URL inside a value or of a Host header that holds one.
PARAM_SEPARATORS = re.compile(r"([&;#?])")
QUERY_START = re.compile(r"[?#]")  # the path (";jsessionid=" included) is left as it is


class Redactor:
    def __init__(self, headers: Iterable[str] = DEFAULT_HEADERS, json_keys: Iterable[str] = (),
                 params: Iterable[str] = DEFAULT_PARAMS):
        self.headers = frozenset(h.lower() for h in headers)
        self.json_keys = frozenset(k.lower() for k in json_keys)
        self.params = frozenset(p.lower() for p in params)

    def header_fields(self, fields: Iterable[tuple[bytes, bytes]]) -> tuple[list[list[str]], list[str]]:
        """Raw header fields as ``[name, value]`` strings with credentials replaced; also the names redacted
        (``referer`` when only its query was). Bytes that are not UTF-8 become lone surrogates, as mitmproxy's
        ``Headers`` give them (decoding here rather than through ``Headers.items`` halves the cost, which every
        recorded stream pays)."""
        out, hit = [], []
        for name, value in fields:
            name = name.decode("utf-8", "surrogateescape")
            lower = name.lower()
            if lower in self.headers:
                out.append([name, REDACTED])
                hit.append(lower)
                continue
            text = value.decode("utf-8", "surrogateescape")
            if lower in URL_HEADERS:
                text, params = self.url(text)
                if params:
                    hit.append(lower)
            out.append([name, text])
        return out, sorted(set(hit))

    def url(self, url: str) -> tuple[str, list[str]]:
        """``url`` with the values of credential query parameters replaced (names compared case-insensitively,
        after URL decoding; parameters separated as ``PARAM_SEPARATORS`` says, from the first ``?`` or ``#``
        on); every other byte of it as it was. Also the (lower-case) names redacted."""
        start = QUERY_START.search(url) if self.params else None
        if start is None:
            return url, []
        # the separators are at the odd places; parts[0] is "", as the query starts with one
        parts, hit = PARAM_SEPARATORS.split(url[start.start():]), []
        for i in range(2, len(parts), 2):
            name, _, value = parts[i].partition("=")
            if not value:
                continue
            lower = (unquote_plus(name) if "%" in name or "+" in name else name).lower()
            if lower in self.params:
                parts[i] = f"{name}={REDACTED}"
                hit.append(lower)
        if not hit:
            return url, []
        return url[:start.start()] + "".join(parts), sorted(set(hit))

    def json_value(self, value: Any) -> tuple[Any, bool]:
        """``value`` with the values of the configured keys replaced, at any depth; and whether any was. A part
        nested deeper than MAX_DEPTH is replaced whole: it is not looked into, so it cannot be kept."""
        if not self.json_keys:
            return value, False
        changed = False

        def walk(v: Any, depth: int) -> Any:
            nonlocal changed
            if isinstance(v, dict):
                if depth >= MAX_DEPTH:
                    changed = True
                    return REDACTED
                out = {}
                for k, item in v.items():
                    if isinstance(k, str) and k.lower() in self.json_keys:
                        out[k] = REDACTED
                        changed = True
                    else:
                        out[k] = walk(item, depth + 1)
                return out
            if isinstance(v, list):
                if depth >= MAX_DEPTH:
                    changed = True
                    return REDACTED
                return [walk(item, depth + 1) for item in v]
            return v

        result = walk(value, 0)
        return result, changed

    def json_body(self, body: bytes) -> bytes:
        """A JSON request body with the configured keys' values replaced (re-serialised only when one was), as
        recordings store it; ``orjson.JSONDecodeError`` when it is not JSON. One that could not be written back as
        it was (an integer beyond 64 bits) becomes ``"[REDACTED]"`` whole."""
        value, changed = self.json_value(orjson.loads(body))
        if not changed:
            return body
        return orjson.dumps(REDACTED if _lost_digits(value, body) else value)

    def json_text(self, text: str) -> tuple[Any, bool]:
        """Event data (text) with the configured keys' values replaced, and whether any was: the parsed value,
        redacted, when it is JSON with such a key; otherwise ``text`` unchanged. JSON here is what a browser's
        ``JSON.parse`` takes, whitespace around it included. JSON that orjson cannot hold (a number beyond a
        double, an integer beyond 64 bits, an escaped lone surrogate, nesting deeper than orjson's limit) cannot be
        written back as it was, so it becomes ``[REDACTED]`` whole when a key is in it."""
        if text.lstrip(" \t\n\r")[:1] not in ("{", "["):
            return text, False  # a string, number or literal has no keys (and most data is not JSON at all)
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            try:
                value = json.loads(text)  # what orjson refuses but JSON.parse takes (and NaN, which it does not)
            except ValueError:
                return text, False  # not JSON
            except RecursionError:
                return REDACTED, True
            _, changed = self.json_value(value)
            return (REDACTED, True) if changed else (text, False)
        value, changed = self.json_value(value)
        if not changed:
            return text, False
        return (REDACTED, True) if _lost_digits(value, text) else (value, True)


_INT64_MIN, _INT64_END, _UINT64_END = -(1 << 63), 1 << 63, 1 << 64


def _lost_digits(value: Any, text: str | bytes) -> bool:
    """Whether orjson read an integer of ``text`` as a double (beyond 64 bits), so that writing ``value`` back would
    change it: an integral double that large, unless Python's exact reading has no such integer either (it came
    from ``1e22``)."""
    def big_double(v: Any) -> bool:  # (rounded to a double, -2**63 - 1 reads as -2**63)
        return type(v) is float and v.is_integer() and abs(v) >= _INT64_END

    def big_int(v: Any) -> bool:
        return type(v) is int and not _INT64_MIN <= v < _UINT64_END

    if not _any_number(value, big_double):
        return False
    try:
        return _any_number(json.loads(text), big_int)
    except (ValueError, RecursionError):
        return True


def _any_number(value: Any, test: Callable[[Any], bool]) -> bool:
    """Whether ``test`` holds for some scalar in a parsed JSON value (``value`` itself, or one nested in it)."""
    if isinstance(value, dict):
        return any(_any_number(item, test) for item in value.values())
    if isinstance(value, list):
        return any(_any_number(item, test) for item in value)
    return test(value)
