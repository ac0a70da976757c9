"""``lint``: spec and protocol problems in a recording, each tied to an event index and time.

Spec checks always run; protocol checks come from a preset (auto-detected from the first event unless
chosen) plus any rules the user declares (see ``protocols``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..recording import IN_PROGRESS, RecordingError
from .fmt import event_number, path_text
from .protocols import PRESETS, Block, Emit, Protocol, detect
from .reader import AN_EVENT, EVENT_KINDS, RecordingStream, each_readable, unterminated_tail
from .stalls import Silences, Stall

ERROR, WARNING = "error", "warning"
DEFAULT_MAX_STALL = 30.0


@dataclass
class Finding:
    path: str
    code: str
    severity: str
    message: str
    index: int | None = None   # the event it is about (None: the stream as a whole)
    t: float | None = None

    def to_json(self) -> dict:
        return {**asdict(self), "path": path_text(self.path)}


@dataclass
class LintOptions:
    preset: str = "auto"                  # auto, none, or a name in PRESETS
    extra: Protocol | None = None         # the user's rules and terminal events
    max_stall: float = DEFAULT_MAX_STALL


def choose_protocol(options: LintOptions, first_event: dict | None, url: str, headers: list | None = None) -> Protocol:
    name = options.preset
    if name == "auto":
        name = detect(first_event, url, headers)
    base = PRESETS[name]() if name in PRESETS else Protocol("none")
    return base.extended(options.extra.fresh()) if options.extra else base


class _Linter:
    """Checks one recording as it streams past."""

    def __init__(self, path: str, url: str, options: LintOptions, headers: list | None = None):
        self.path, self.url, self.options, self.headers = path, url, options, headers
        self.findings: list[Finding] = []
        self.protocol: Protocol | None = None
        self.index = 0
        self.silences = Silences(path)
        self.last_t = 0.0   # of the last line, the end of a recording that has no end line
        self.terminal: tuple[int, str] | None = None   # index and type of the first terminal event
        self.ended_by_error = False                      # that event is the protocol's error event
        self.after_terminal = 0

    def emit_at(self, index: int | None, t: float | None) -> Callable[[str, str, str], None]:
        def emit(code: str, severity: str, message: str) -> None:
            self.findings.append(Finding(self.path, code, severity, message, index, t))
        return emit

    @staticmethod
    def once(emit: Emit) -> Emit:
        """``emit`` for the rules, saying each problem once: when two rules find the same thing (the preset's and
        a rules file's ``json`` rules both wanting JSON data) there is one finding, not one per rule."""
        said: set[tuple[str, str, str]] = set()

        def emit_once(code: str, severity: str, message: str) -> None:
            if (code, severity, message) not in said:
                said.add((code, severity, message))
                emit(code, severity, message)
        return emit_once

    @staticmethod
    def as_warnings(emit: Emit, why: str) -> Emit:
        """``emit`` with errors made warnings, saying ``why``."""
        def emit_warning(code: str, severity: str, message: str) -> None:
            emit(code, WARNING, f"{message} ({why})" if severity == ERROR else message)
        return emit_warning

    def record(self, record: dict) -> None:
        kind, t = record["kind"], record["t"]
        self.last_t = t
        if kind == "ignored" and record["field"] != "comment":  # (a comment longer than max_event_size: no problem)
            code = "id-null" if record["field"] == "id" else "retry-not-digits"
            self.emit_at(self.index, t)(code, ERROR, f"{record['field']} field ignored by clients: {record['reason']} "
                                                     f"(value {record['value']!r})")
        elif kind == "error":
            self.silences.error(record)
            self.emit_at(self.index, t)("recording-error", WARNING,
                                        f"the recording itself has a gap ({record.get('what', '?')}): "
                                        f"{record['message']}")
        elif kind in EVENT_KINDS:
            self.event(record)

    def event(self, record: dict) -> None:
        index, t = self.index, record["t"]
        emit = self.emit_at(index, t)
        if self.protocol is None:
            self.protocol = choose_protocol(self.options, record, self.url, self.headers)
        self.stall(self.silences.event(t, record["event"]))
        if self.terminal is not None:
            self.after_terminal += 1
            if self.after_terminal == 1:
                emit("after-terminal", ERROR, f"{record['event']} after the terminal event "
                                              f"{event_number(self.terminal[0])} ({self.terminal[1]})")
        elif any(s.matches(record) for s in self.protocol.terminal):
            self.terminal = (index, record["event"])
            self.ended_by_error = any(s.matches(record) for s in self.protocol.errors)
        emit_rule = self.once(emit)
        for rule in self.protocol.rules:
            rule.check(record, index, emit_rule)
        self.index += 1

    def stall(self, stall: Stall, live: bool = False) -> None:
        if stall.seconds <= self.options.max_stall or stall.unknown:  # (unknown: the recording-error warning says)
            return
        until = "until its last line so far (it is still being written)" if live else "until the end"
        if stall.after_index is None:
            where = "before the first event" if stall.before_index is not None else \
                f"from the start {until} (the stream sent no event at all)"
        elif stall.before_index is None:
            where = f"after the last event {event_number(stall.after_index)}, {until}"
        else:
            where = f"after event {event_number(stall.after_index)}"
        index = stall.before_index if stall.before_index is not None else stall.after_index
        self.emit_at(index, stall.start)("stall", ERROR, f"no event for {stall.seconds:.3f}s {where} "
                                                         f"(threshold {self.options.max_stall:g}s)")

    def finish(self, stream: RecordingStream) -> None:
        end, ending = stream.end, stream.ending
        if self.protocol is None:
            self.protocol = choose_protocol(self.options, None, self.url, self.headers)
        emit = self.emit_at(None, end["t"] if end else None)
        if self.after_terminal > 1:
            emit("after-terminal", ERROR, f"{self.after_terminal} events in all after the terminal event")
        self.stall(self.silences.until_end(end["t"] if end else self.last_t), live=ending == IN_PROGRESS)
        if ending == IN_PROGRESS:
            return  # what is missing may still come
        client_left = ending == "client_disconnected"  # (a stopped generation): what it still owed was never sent

        def owed(emit_: Emit) -> Emit:
            return self.as_warnings(emit_, "the client went away first") if client_left else emit_

        emit = owed(emit)
        emit_rule = self.once(emit)
        for rule in self.protocol.rules:
            if not (self.ended_by_error and isinstance(rule, Block)):  # the error closed what was open
                rule.finish(emit_rule)
        if self.protocol.terminal and self.terminal is None:
            wanted = " or ".join(str(s) for s in self.protocol.terminal)
            emit("no-terminal", ERROR, f"the stream never sent a terminal event ({wanted}); it ended: {ending}")
        if tail := unterminated_tail(stream):
            what = "an event (no blank line after it), which clients drop" if tail.lost == AN_EVENT else \
                f"a block (no blank line after it), so clients never set {tail.lost}"
            owed(self.emit_at(self.index, end["t"] if end else self.last_t))(
                "unterminated-event", ERROR, f"the stream ended in the middle of {what}: {tail.describe()}")
        if end is None:
            return
        endings = {k: v for k, v in (end.get("line_endings") or {}).items() if v}
        if len(endings) > 1:
            counts = ", ".join(f"{v} {k.upper()}" for k, v in endings.items())
            emit("mixed-line-endings", WARNING, f"mixed line endings: {counts}")
        if end.get("bom"):
            emit("bom", WARNING, "the stream starts with a UTF-8 byte order mark (clients strip it)")


def lint_file(path: str, options: LintOptions) -> tuple[list[Finding], str, str]:
    """Findings for one recording, the protocol it was checked against, and how it ended."""
    stream = RecordingStream(path)
    request = stream.header["request"]
    linter = _Linter(path, request.get("pretty_url") or request["url"], options,
                     stream.header["response"].get("headers"))
    for record in stream:
        linter.record(record)
    linter.finish(stream)
    linter.findings.sort(key=lambda f: f.index if f.index is not None else float("inf"))  # stable: stream-level last
    return linter.findings, linter.protocol.name, stream.ending


def lint_paths(path: str, options: LintOptions, errors: list[RecordingError]):
    """Yield ``(path, findings, protocol, ending)`` for each recording below ``path``."""
    return each_readable(path, lambda file: (file, *lint_file(file, options)), errors)
