"""Protocol rules for ``lint``: which events end a stream, and declarative rules over the event sequence,
with built-in presets for OpenAI chat-completions, the OpenAI Responses API, Anthropic Messages streaming and
the Vercel AI SDK's UI message stream.

A rules file (TOML, or JSON when it ends in ``.json``) looks like::

    preset = "anthropic"                 # optional: check on this preset, not the detected one (or none, auto)
    terminal = ["done", "data=[DONE]"]   # selectors of events after which nothing may follow

    [[rules]]                            # every tool_result must follow the tool_use with the same id
    kind = "follows"
    event = "tool_result"
    after = "tool_use"
    event_key = "data.tool_use_id"       # or key = "data.id" for the same path on both sides
    after_key = "data.id"

Rule kinds: ``follows`` (above), ``first`` (the first event, ignoring ``ignore``, must match ``event``),
``block`` (``open``/``close`` pairs with the same ``key``, ``inside`` events only within an open one),
``json`` (``event`` data must be JSON having the paths in ``has``; ``type_path`` must equal the event type),
``types`` (event types outside ``known``, and outside the preset's and other types rules' lists, are reported
as warnings), ``increasing`` (the whole number at ``key``
grows from one ``event`` to the next; with ``contiguous = true`` by exactly one, so that a gap shows lost events).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .events import MISSING, Selector, format_path, lookup, parse_path, value_text
from .fmt import event_number

#: emit(code, severity, message) for the event being checked (or the end of the stream)
Emit = Callable[[str, str, str], None]


def describe(record: dict) -> str:
    """An event for a message: its type, and for the unnamed events of protocols that type their data
    (``{"type": "text-delta", ...}``) that type too."""
    data = record.get("data")
    if record["event"] == "message" and isinstance(data, dict) and isinstance(data.get("type"), str):
        return f"message {data['type']}"
    return record["event"]


def _key(record: dict, path: tuple | None) -> str | None:
    if path is None:
        return ""
    value = lookup(record, path)
    return None if value is MISSING else value_text(value)


class Rule:
    def check(self, record: dict, index: int, emit: Emit) -> None: ...

    def finish(self, emit: Emit) -> None: ...

    def fresh(self) -> "Rule":
        """A copy without state, for the next recording."""
        return type(self)(**{k: v for k, v in self.__dict__.items() if not k.startswith("_")})


@dataclass
class Follows(Rule):
    event: Selector
    after: Selector
    event_key: tuple | None = None
    after_key: tuple | None = None
    _seen: set = field(default_factory=set)

    def check(self, record, index, emit):
        if self.after.matches(record):
            key = _key(record, self.after_key)
            if key is not None:
                self._seen.add(key)
        if self.event.matches(record):
            key = _key(record, self.event_key)
            what = "" if self.event_key is None else f" with {format_path(self.after_key)} = {key!r}"
            if key is None:
                emit("rule-follows", "error", f"{self.event} has no {format_path(self.event_key)}")
            elif key not in self._seen:
                emit("rule-follows", "error", f"{describe(record)} without an earlier {self.after}{what}")


@dataclass
class First(Rule):
    event: Selector
    ignore: list[Selector] = field(default_factory=list)
    _done: bool = False

    def check(self, record, index, emit):
        if self._done or any(s.matches(record) for s in self.ignore):
            return
        self._done = True
        if not self.event.matches(record):
            emit("rule-first", "error", f"stream starts with {record['event']}, expected {self.event}")


@dataclass
class Block(Rule):
    open: Selector
    close: Selector
    key: tuple
    inside: list[Selector] = field(default_factory=list)
    _open: dict = field(default_factory=dict)   # key -> index of the opening event

    def check(self, record, index, emit):
        key = _key(record, self.key)
        shown = f"{format_path(self.key)} = {key!r}"
        if self.open.matches(record):
            if key in self._open:
                since = event_number(self._open[key])
                emit("rule-block", "error", f"{self.open} {shown} again while still open (since {since})")
            self._open[key] = index
        elif self.close.matches(record):
            if self._open.pop(key, None) is None:
                emit("rule-block", "error", f"{self.close} {shown} without an open {self.open}")
        elif any(s.matches(record) for s in self.inside) and key not in self._open:
            emit("rule-block", "error", f"{describe(record)} {shown} outside an open {self.open}")

    def finish(self, emit):
        for key, index in self._open.items():
            emit("rule-block", "error", f"{self.open} {event_number(index)} ({format_path(self.key)} = {key!r}) "
                                        f"never closed by {self.close}")


@dataclass
class Json(Rule):
    event: Selector
    has: list[tuple] = field(default_factory=list)
    type_path: tuple | None = None
    unless: list[Selector] = field(default_factory=list)

    def check(self, record, index, emit):
        if record["kind"] != "event" or not self.event.matches(record) or any(s.matches(record) for s in self.unless):
            return
        if lookup(record, ("data",)) is MISSING or not isinstance(lookup(record, ("data",)), (dict, list)):
            emit("rule-json", "error", f"{record['event']} data is not JSON")
            return
        for path in self.has:
            if lookup(record, path) is MISSING:
                emit("rule-json", "error", f"{record['event']} data has no {format_path(path)}")
        if self.type_path is not None:
            value = lookup(record, self.type_path)
            if value != record["event"]:
                shown = "missing" if value is MISSING else repr(value_text(value))
                emit("rule-json", "error", f"{format_path(self.type_path)} is {shown}, but the event type is "
                                           f"{record['event']!r}")


@dataclass
class KnownTypes(Rule):
    known: list[str]
    _reported: set = field(default_factory=set)

    def check(self, record, index, emit):
        event_type = record["event"]
        if event_type not in self.known and event_type not in self._reported:
            self._reported.add(event_type)
            emit("unknown-type", "warning", f"event type {event_type!r} is not one of {', '.join(self.known)}")


@dataclass
class Increasing(Rule):
    event: Selector
    key: tuple
    contiguous: bool = False
    _last: tuple | None = None   # (the highest value so far, the index of its event)

    def check(self, record, index, emit):
        if not self.event.matches(record):
            return
        value = lookup(record, self.key)
        if isinstance(value, bool) or not isinstance(value, int):
            emit("rule-increasing", "error", f"{describe(record)} has no whole number at {format_path(self.key)}")
            return
        if self._last is not None:
            last, at = self._last
            if value <= last:
                emit("rule-increasing", "error", f"{format_path(self.key)} {value} after {last} ({event_number(at)}): "
                                                 f"{'repeated' if value == last else 'out of order'}")
                return
            if self.contiguous and value != last + 1:
                emit("rule-increasing", "error", f"{format_path(self.key)} {value} after {last} ({event_number(at)}): "
                                                 f"{value - last - 1} missing")
        self._last = (value, index)


@dataclass
class Protocol:
    name: str
    terminal: list[Selector] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    preset: str | None = None   # a rules file's ``preset``: the base it is checked on, instead of auto-detection
    #: terminal events that report an error (Anthropic's ``error``): the stream ends where the error struck, so
    #: the blocks it leaves open are not reported as never closed
    errors: list[Selector] = field(default_factory=list)

    def fresh(self) -> "Protocol":
        return Protocol(self.name, list(self.terminal), [r.fresh() for r in self.rules], self.preset,
                        list(self.errors))

    @property
    def empty(self) -> bool:
        return not self.rules and not self.terminal

    def extended(self, other: "Protocol") -> "Protocol":
        """This protocol plus ``other``'s terminal events and rules."""
        if other.empty:
            return self
        return Protocol(other.name if self.empty else f"{self.name}+{other.name}", self.terminal + other.terminal,
                        _types_added_up(self.rules + other.rules), self.preset or other.preset,
                        self.errors + other.errors)


def _types_added_up(rules: list[Rule]) -> list[Rule]:
    """The rules with every ``types`` rule made one, in the first one's place, knowing the types of all: a rule
    naming an agent's own event types widens a preset's list instead of warning about the preset's types."""
    out, known = [], None
    for rule in rules:
        if isinstance(rule, KnownTypes):
            if known is not None:
                known.known.extend(t for t in rule.known if t not in known.known)
                continue
            rule = known = KnownTypes(list(rule.known))
        out.append(rule)
    return out


S = Selector.parse
P = parse_path

ANTHROPIC_TYPES = ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                   "message_delta", "message_stop", "ping", "error"]


def anthropic() -> Protocol:
    """Anthropic Messages streaming: message_start, content blocks opened/delta'd/closed by index,
    message_delta, message_stop; ping anywhere; an error event ends the stream."""
    return Protocol("anthropic", [S("message_stop"), S("error")], [
        KnownTypes(ANTHROPIC_TYPES),
        First(S("message_start"), [S("ping"), S("error")]),
        Json(S("*"), type_path=P("data.type")),
        Json(S("message_start"), has=[P("data.message")]),
        Json(S("content_block_start"), has=[P("data.index"), P("data.content_block")]),
        Json(S("content_block_delta"), has=[P("data.index"), P("data.delta")]),
        Block(S("content_block_start"), S("content_block_stop"), P("data.index"), [S("content_block_delta")]),
        Follows(S("message_stop"), S("message_delta")),
    ], errors=[S("error")])


def openai() -> Protocol:
    """OpenAI chat-completions streaming: unnamed events whose data is a chat.completion.chunk object with
    ``choices``, ended by ``data: [DONE]``."""
    done = S("data=[DONE]")
    return Protocol("openai", [done], [
        KnownTypes(["message"]),
        Json(S("message"), has=[P("data.choices")], unless=[done]),
    ])


def openai_responses() -> Protocol:
    """The OpenAI Responses API's streaming: events named by their data's ``type``, numbered by
    ``sequence_number`` without gaps, from ``response.created`` to ``response.completed`` (or ``failed``,
    ``incomplete``, ``error``); each output item's events between its ``added`` and ``done``."""
    item_events = ["response.content_part.added", "response.content_part.done", "response.output_text.delta",
                   "response.output_text.done", "response.refusal.delta", "response.refusal.done",
                   "response.function_call_arguments.delta", "response.function_call_arguments.done",
                   "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done"]
    return Protocol("openai-responses", [S("response.completed"), S("response.failed"), S("response.incomplete"),
                                         S("error")], [
        First(S("response.created")),
        Json(S("*"), type_path=P("data.type")),
        Increasing(S("*"), P("data.sequence_number"), contiguous=True),
        Block(S("response.output_item.added"), S("response.output_item.done"), P("data.output_index"),
              [S(t) for t in item_events]),
    ], errors=[S("error")])


def ai_sdk() -> Protocol:
    """The Vercel AI SDK's UI message stream (``x-vercel-ai-ui-message-stream: v1``, what ``useChat`` reads):
    unnamed events whose data is a part with a ``type``, ended by ``data: [DONE]``; text and reasoning deltas
    between their ``-start`` and ``-end`` by id; a tool's input deltas after its ``tool-input-start``, and its
    output (or error) after its ``tool-input-available``, by ``toolCallId``."""
    done = S("data=[DONE]")

    def part(kind: str) -> Selector:
        return S(f"message&data.type={kind}")

    call = P("data.toolCallId")
    return Protocol("ai-sdk", [done], [
        KnownTypes(["message"]),
        Json(S("message"), has=[P("data.type")], unless=[done]),
        Block(part("text-start"), part("text-end"), P("data.id"), [part("text-delta")]),
        Block(part("reasoning-start"), part("reasoning-end"), P("data.id"), [part("reasoning-delta")]),
        Follows(part("tool-input-delta"), part("tool-input-start"), call, call),
        Follows(part("tool-output-available"), part("tool-input-available"), call, call),
        Follows(part("tool-output-error"), part("tool-input-available"), call, call),
    ])


PRESETS: dict[str, Callable[[], Protocol]] = {"anthropic": anthropic, "openai": openai,
                                              "openai-responses": openai_responses, "ai-sdk": ai_sdk}
#: What ``--preset`` and a rules file's ``preset`` take: ``auto`` detects one per recording, ``none`` is spec
#: checks only.
PRESET_CHOICES = ("auto", "none", *PRESETS)

#: The response header the AI SDK's UI message stream carries
AI_SDK_HEADER = "x-vercel-ai-ui-message-stream"


def detect(first_event: dict | None, url: str, headers: list | None = None) -> str | None:
    """Which preset a stream speaks, from its response headers, its first event or its URL."""
    if any(name.lower() == AI_SDK_HEADER for name, _ in headers or ()):
        return "ai-sdk"
    if first_event is None:
        return None
    data = first_event.get("data")
    path = url.split("?", 1)[0].rstrip("/")
    if path.endswith("/v1/messages"):
        return "anthropic"
    if path.endswith("/v1/responses") or (first_event.get("event") == "response.created" and isinstance(data, dict)
                                          and isinstance(data.get("response"), dict)):
        return "openai-responses"
    if first_event.get("event") == "message" and isinstance(data, dict) and data.get("type") in ("start",
                                                                                                  "start-step"):
        return "ai-sdk"
    # the event name alone is too common (other agents say message_start too): require Anthropic's shape. Not a
    # ping, which Anthropic sends after message_start, and any agent may send first.
    if isinstance(data, dict) and first_event.get("event") == data.get("type") == "message_start" \
            and isinstance(data.get("message"), dict):
        return "anthropic"
    if isinstance(data, dict) and ("choices" in data or data.get("object") == "chat.completion.chunk"):
        return "openai"
    if path.endswith("/chat/completions"):
        return "openai"
    return None


# --- declaring rules ----------------------------------------------------------------------------------------

_RULE = re.compile(r"^\s*(\S+)\s+after\s+(\S+)(?:\s+by\s+([^=\s]+)(?:=(\S+))?)?\s*$")


def parse_rule(text: str) -> Rule:
    """The command-line form ``EVENT after PREVIOUS [by KEY[=PREVIOUS_KEY]]``, e.g.
    ``tool_result after tool_use by data.tool_use_id=data.id``."""
    m = _RULE.match(text)
    if not m:
        raise ValueError(f"bad rule {text!r}: expected 'EVENT after PREVIOUS [by KEY[=PREVIOUS_KEY]]'")
    event, after, key, after_key = m.groups()
    return Follows(S(event), S(after), P(key) if key else None, P(after_key or key) if key else None)


def _selectors(value: Any, name: str) -> list[Selector]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a selector string or a list of them")
    return [S(v) for v in value]


def _path(rule: dict, name: str) -> tuple | None:
    value = rule.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a path string like data.id")
    return P(value)


def _one(rule: dict, name: str) -> Selector:
    if not isinstance(rule.get(name), str):
        raise ValueError(f"a {rule.get('kind')} rule needs {name} = \"SELECTOR\"")
    return S(rule[name])


def rule_from_dict(rule: dict) -> Rule:
    kind = rule.get("kind")
    if kind == "follows":
        key = _path(rule, "key")
        return Follows(_one(rule, "event"), _one(rule, "after"),
                       _path(rule, "event_key") or key, _path(rule, "after_key") or key)
    if kind == "first":
        return First(_one(rule, "event"), _selectors(rule.get("ignore", []), "ignore"))
    if kind == "block":
        key = _path(rule, "key")
        if key is None:
            raise ValueError("a block rule needs key = \"PATH\"")
        return Block(_one(rule, "open"), _one(rule, "close"), key, _selectors(rule.get("inside", []), "inside"))
    if kind == "json":
        has = rule.get("has", [])
        if not isinstance(has, list) or not all(isinstance(h, str) for h in has):
            raise ValueError("has must be a list of paths")
        return Json(_one(rule, "event"), [P(h) for h in has], _path(rule, "type_path"),
                    _selectors(rule.get("unless", []), "unless"))
    if kind == "types":
        known = rule.get("known")
        if not isinstance(known, list) or not all(isinstance(k, str) for k in known):
            raise ValueError("a types rule needs known = [\"type\", ...]")
        return KnownTypes(known)
    if kind == "increasing":
        key = _path(rule, "key")
        if key is None:
            raise ValueError("an increasing rule needs key = \"PATH\"")
        contiguous = rule.get("contiguous", False)
        if not isinstance(contiguous, bool):
            raise ValueError("contiguous must be true or false")
        return Increasing(_one(rule, "event"), key, contiguous)
    raise ValueError(f"unknown rule kind {kind!r} (follows, first, block, json, types, increasing)")


def load_rules(path: str) -> Protocol:
    """A protocol from a rules file, with the file's ``preset`` (if any) as its ``preset``, the base to check it
    on; raises ValueError naming the file and the problem."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        doc = orjson.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read rules: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: rules must be a table/object")
    try:
        preset = doc.get("preset")
        if preset is not None and preset not in PRESET_CHOICES:
            raise ValueError(f"unknown preset {preset!r} ({', '.join(PRESET_CHOICES)})")
        if preset == "auto":
            preset = None  # the same as leaving it out
        rules = doc.get("rules", [])
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise ValueError("rules must be a list of tables")
        return Protocol(path, _selectors(doc.get("terminal", []), "terminal"),
                        _types_added_up([rule_from_dict(r) for r in rules]), preset)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
