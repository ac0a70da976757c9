"""Which recording answers a request. Knows nothing of mitmproxy.

The key is the one mitmproxy's ``server_replay`` uses: method, scheme, host, port, path and query,
with options to ignore the host (and with it the scheme: a recording from an HTTPS staging server answers
``http://localhost``), the port or some query parameters (``*`` for all), and to match on the request body.
Query parameters are compared as a sorted list, so their order does not matter. Parameters
that a recording has redacted (a token in the URL) are left out of every key: the live request carries the
real value. Likewise with the body: the values of JSON keys the recording redacted (its header's
``redacted_keys``) match any live value.

Several recordings with one key are served in recorded order, each once; with ``reuse`` the sequence
starts over when it is used up. A mapping (URL regex -> recording) overrides keys: that recording
answers every request whose URL the regex matches.
"""

from __future__ import annotations

import base64
import functools
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import orjson

from ..decoding import decode_body
from ..recording import DEFAULT_PORTS, Recording, read_recording, url_host_port
from ..redact import DEFAULT_PARAMS, PARAM_SEPARATORS, Redactor


MAX_BODY = 64 * 1024 * 1024  # how far a compressed request body is decoded to be compared (bombs stop there)


@dataclass(frozen=True)
class MatchOptions:
    ignore_host: bool = False
    ignore_port: bool = False
    ignore_scheme: bool = False
    ignore_params: tuple[str, ...] = ()   # query parameter names; "*" ignores the whole query
    match_body: bool = False
    reuse: bool = False


@dataclass(frozen=True)
class RequestInfo:
    method: str
    url: str             # absolute
    body: bytes | None = None  # as sent
    content_encoding: str | None = None  # the body's

    @functools.cached_property
    def decoded_body(self) -> bytes | None:
        """The body as its Content-Encoding decodes, as the capture addon records it (the bytes as they are when
        they do not decode)."""
        if not self.body or self.content_encoding is None:
            return self.body
        return decode_body(self.body, self.content_encoding, MAX_BODY)[0]


@dataclass
class Mapping:
    pattern: re.Pattern
    recording: Recording


def parse_mapping(spec: str) -> tuple[str, str]:
    """``|url-regex|file`` (mitmproxy's map_local style: the first character separates) -> (regex, file)."""
    if len(spec) < 4:
        raise ValueError(f"mapping must look like |url-regex|recording.jsonl, got {spec!r}")
    sep = spec[0]
    parts = spec[1:].split(sep)
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"mapping must look like {sep}url-regex{sep}recording.jsonl "
                         f"(the first character separates the parts), got {spec!r}")
    regex, path = parts
    try:
        re.compile(regex)
    except re.error as e:
        raise ValueError(f"mapping {spec!r}: invalid regex {regex!r}: {e}") from None
    return regex, path


def format_mapping(regex: str, path: str) -> str:
    """The ``|url-regex|file`` spec for a regex and a file, with a separator that occurs in neither."""
    sep = next((c for c in "|#!~^@%" if c not in regex and c not in path), None)
    if sep is None:
        raise ValueError(f"cannot write a mapping for {regex!r} and {path!r}: every separator is used")
    return f"{sep}{regex}{sep}{path}"


def load_mapping(spec: str) -> Mapping:
    regex, path = parse_mapping(spec)
    return Mapping(re.compile(regex), read_recording(path))


@dataclass
class _Entry:
    recording: Recording
    body: bytes | None
    body_truncated: bool
    redactor: Redactor | None = None  # the JSON keys the recording redacted in its body
    used: bool = False


def _canonical_body(body: bytes | None) -> bytes | None:
    """JSON bodies compare by value (key order and whitespace do not matter), others byte for byte."""
    if body is None:
        return None
    try:
        return b"json:" + orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, TypeError):
        return b"raw:" + body


def recorded_body(rec: Recording) -> bytes | None:
    request = rec.header["request"]
    body = request.get("body")
    if body is None:
        return None
    return base64.b64decode(body) if request.get("body_base64") else body.encode("utf-8", "surrogatepass")


@dataclass(eq=False)
class Booking:
    """A request's hold on a recording until its response begins (``answer``). A client that leaves before
    then has seen nothing of it, so ``give_back`` serves it again, to the next matching request."""
    recording: Recording
    entry: _Entry | None  # None: a mapping's recording, which is never used up
    request: RequestInfo
    answered: bool = False
    given_back: bool = False
    on_settle: list[Callable[[], None]] = field(default_factory=list)  # called once answered or given back

    @property
    def settled(self) -> bool:
        return self.answered or self.given_back

    def answer(self) -> None:
        if not self.settled:
            self.answered = True
            self._settle()

    def give_back(self) -> bool:
        if self.settled:
            return False
        self.given_back = True
        if self.entry is not None:
            self.entry.used = False
        self._settle()
        return True

    def _settle(self) -> None:
        callbacks, self.on_settle = self.on_settle, []
        for callback in callbacks:
            callback()


@dataclass
class Matcher:
    recordings: list[Recording]
    options: MatchOptions = MatchOptions()
    mappings: list[Mapping] = field(default_factory=list)

    def __post_init__(self):
        self._by_key: dict[tuple, list[_Entry]] = {}
        self._waiting: list[Booking] = []  # bookings not yet answered, in the order they were made
        self._redacted_params = frozenset(name for rec in self.recordings
                                          for name in rec.header.get("redacted_params") or ())
        self._url_redactor = Redactor(headers=(), params=DEFAULT_PARAMS | self._redacted_params)
        for rec in sorted(self.recordings, key=recorded_order):
            request = rec.header["request"]
            entry = _Entry(rec, recorded_body(rec), bool(request.get("body_truncated")), body_redactor(rec))
            self._by_key.setdefault(self.key(request["method"], request["url"]), []).append(entry)
        self._keys_by_method_path: dict[tuple, list[tuple]] = {}  # for why_unmatched
        for key in self._by_key:
            self._keys_by_method_path.setdefault((key[0], key[4]), []).append(key)

    def key(self, method: str, url: str) -> tuple:
        o = self.options
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        hostname, port = url_host_port(parts)
        query: tuple = ()
        if "*" not in o.ignore_params:
            redacted = self._redacted_params
            # parameters separated as redaction separates them, so that a redacted one is left out of the key
            # wherever it was (after a ";", or a "?" inside another's value)
            pairs = parse_qsl(PARAM_SEPARATORS.sub("&", parts.query), keep_blank_values=True)
            query = tuple(sorted((k, v) for k, v in pairs
                                 if k not in o.ignore_params and not (redacted and k.lower() in redacted)))
        return (
            method.upper(),
            None if o.ignore_scheme or o.ignore_host else scheme,  # another host: likely another scheme too
            None if o.ignore_host else (hostname or "").lower(),
            None if o.ignore_port else (port or DEFAULT_PORTS.get(scheme)),
            parts.path or "/",
            query,
        )

    def has(self, method: str, url: str) -> bool:
        """Whether some recording answers ``method url`` (whatever its body; none is used up)."""
        return any(m.pattern.search(url) for m in self.mappings) or self.key(method, url) in self._by_key

    def match(self, request: RequestInfo) -> Recording | None:
        taken = self._take(request)
        return None if taken is None else taken[0]

    def book(self, request: RequestInfo) -> Booking | None:
        """``match``, held as a ``Booking`` until the response begins. Take ``unsettled`` first: a request
        whose sequence has a booking still waiting for its response waits for it (see ``replay.server.book``)."""
        taken = self._take(request)
        if taken is None:
            return None
        booking = Booking(*taken, request=request)
        if booking.entry is not None:
            self._waiting.append(booking)
        return booking

    def unsettled(self, request: RequestInfo) -> list[Booking]:
        """The bookings of ``request``'s sequence whose response has not begun. One of them may yet be given
        back: an aborted request's abort can reach the proxy after the request that retried it (React's
        StrictMode runs an effect twice, aborting the first fetch at once), and the retry must get the
        recording the aborted one gives back, not the next one, or none."""
        self._waiting = [b for b in self._waiting if not b.settled]
        if not self._waiting or any(m.pattern.search(request.url) for m in self.mappings):
            return []
        candidates = self._candidates(request)
        if self.options.reuse and len(candidates) == 1:
            return []  # the same recording whatever happens: nothing to wait for
        ids = {id(e) for e in candidates}
        return [b for b in self._waiting if id(b.entry) in ids]

    def _candidates(self, request: RequestInfo) -> list[_Entry]:
        candidates = self._by_key.get(self.key(request.method, request.url), [])
        if self.options.match_body:
            candidates = [e for e in candidates if _body_matches(e, request.decoded_body)]
        return candidates

    def _take(self, request: RequestInfo) -> tuple[Recording, _Entry | None] | None:
        for mapping in self.mappings:
            if mapping.pattern.search(request.url):
                return mapping.recording, None
        candidates = self._candidates(request)
        if not candidates:
            return None
        fresh = next((e for e in candidates if not e.used), None)
        if fresh is None:
            if not self.options.reuse:
                return None
            for e in candidates:
                e.used = False
            fresh = candidates[0]
        fresh.used = True
        return fresh.recording, fresh

    def shown_url(self, url: str) -> str:
        """``url`` for replay's output: a live request's credentials are no more to be shown than recorded ones
        (the default credential parameters, and those some recording redacted)."""
        return self._url_redactor.url(url)[0]

    @property
    def count(self) -> int:
        return sum(len(entries) for entries in self._by_key.values())

    def why_unmatched(self, request: RequestInfo) -> str | None:
        """Why ``match`` found nothing for a request to a method and path that has recordings (a query parameter,
        the host, the port or the body differs, or all were served), with the option that would help; None for
        a request to any other method and path. Names no parameter values: they may be credentials."""
        key = self.key(request.method, request.url)
        keys = self._keys_by_method_path.get((key[0], key[4]))
        if not keys:
            return None
        if key in self._by_key:
            entries = self._candidates(request)
            if not entries:  # (only with --match-body: a key in _by_key has entries)
                return "recorded with other request bodies (--match-body)"
            return f"all {len(entries)} recording(s) for it were served: try --reuse"
        return min((_differences(key, other) for other in keys), key=lambda found: found[0])[1]


def _differences(key: tuple, recorded: tuple) -> tuple[int, str]:
    """(how many parts differ, what differs and what to try) between a request's key and a recorded one."""
    _, scheme, host, port, _, query = key
    what, tries = [], []
    if scheme != recorded[1]:
        what.append(f"over {recorded[1]}")
    if host != recorded[2]:
        what.append(f"for another host ({recorded[2]})")
    if scheme != recorded[1] or host != recorded[2]:
        tries.append("--ignore-host")  # (which ignores the scheme too)
    if port != recorded[3]:
        what.append(f"for another port ({recorded[3]})")
        tries.append("--ignore-port")
    if query != recorded[5]:
        differ = Counter(query)
        differ.subtract(Counter(recorded[5]))
        names = sorted({name for (name, _), n in differ.items() if n})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        what.append(f"with other query parameters ({shown})")
        tries += [f"--ignore-param {shlex.quote(name)}" for name in names[:5]]
    text = "recorded " + " and ".join(what)
    return len(what), text + (f": try {' '.join(tries)}" if tries else "")


def body_redactor(rec: Recording) -> Redactor | None:
    keys = rec.header.get("redacted_keys")  # (a list of strings: the reader checks it)
    return Redactor(json_keys=keys) if keys else None


def _redacted_as_recorded(body: bytes, redactor: Redactor) -> bytes:
    """The live body as the capture addon would have stored it: the values of the recording's redacted keys
    become ``[REDACTED]``, so a recorded ``"password":"[REDACTED]"`` matches whatever the live request sends."""
    try:
        return redactor.json_body(body)
    except orjson.JSONDecodeError:
        return body


def _body_matches(entry: _Entry, body: bytes | None) -> bool:
    body = body or b""
    if entry.redactor is not None and body:
        body = _redacted_as_recorded(body, entry.redactor)
    recorded = entry.body or b""
    if entry.body_truncated:
        return body.startswith(recorded)
    return _canonical_body(recorded) == _canonical_body(body)


def recorded_order(rec: Recording) -> tuple:
    return rec.header["started"], rec.path
