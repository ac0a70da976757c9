"""The options every replay front end shares, parsed and checked in one place.

``sse-capture replay`` (through the mitmproxy addon), ``mitmdump -s scripts/replay.py`` and ``sse-capture
serve`` take the same timing, byte-exact and fault options and the same recording arguments; each front end
only turns an ``OptionValueError`` into its own kind of error, so they accept and refuse the same values.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..recording import (IN_PROGRESS, Recording, RecordingError, find_recordings, header_pending, read_recording,
                         scan_recording)
from ..shown import shown_path
from .faults import FaultError, Faults, check_byte_exact, parse_swap
from .matching import Booking
from .schedule import Plan, Timing, build_plan, check_raw_chunks, parse_speed

#: Requests with no recording: as mitmproxy's ``server_replay_extra``.
EXTRA_CHOICES = ("forward", "kill", "204", "400", "404", "500")


class OptionValueError(ValueError):
    """A bad option value; ``option`` is the addon's name for it (``sse_replay_speed``)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ReplaySettings:
    timing: Timing = Timing()
    faults: Faults = Faults()
    byte_exact: bool = False


@contextlib.contextmanager
def option_value(name: str):
    """A ``ValueError`` in the block becomes an ``OptionValueError`` of option ``name`` (a ``RecordingError``,
    which names its file, passes as it is)."""
    try:
        yield
    except RecordingError:
        raise
    except ValueError as e:
        raise OptionValueError(name, str(e)) from None


def parse_settings(*, speed: str = "1", max_pause: str | None = None, byte_exact: bool = False,
                   cut_after: int | None = None, stall_after: int | None = None, drop: Iterable[str] = (),
                   stop_mid_event: int | None = None, rechunk: int | None = None,
                   swap: str | None = None) -> ReplaySettings:
    """Option values as given (text where the user types text) -> settings, or ``OptionValueError``."""
    with option_value("sse_replay_speed"):
        parsed_speed = parse_speed(speed)
    with option_value("sse_replay_max_pause"):
        pause = parse_seconds(max_pause)
    with option_value("sse_replay_swap"):
        parsed_swap = parse_swap(swap) if swap else None
    try:
        faults = Faults(cut_after=cut_after, stall_after=stall_after, drop_types=frozenset(drop),
                        stop_mid_event=stop_mid_event, rechunk=rechunk, swap=parsed_swap)
    except FaultError as e:
        raise OptionValueError(f"sse_replay_{e.field}", str(e)) from None
    if byte_exact:
        with option_value("sse_replay_bytes"):
            check_byte_exact(faults)
    return ReplaySettings(Timing(parsed_speed, pause), faults, byte_exact)


def parse_seconds(text: str | None) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be a number of seconds, got {text!r}") from None
    if not value >= 0:  # also NaN
        raise ValueError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def parse_extra(text: str) -> str:
    if text not in EXTRA_CHOICES:
        raise OptionValueError("sse_replay_extra", f"must be one of {', '.join(EXTRA_CHOICES)}, got {text!r}")
    return text


def load_recordings(args: Iterable[str | os.PathLike], warn: Callable[[str], None] = lambda _: None) -> list[Recording]:
    """Every recording the arguments name (files, or directories: every ``*.jsonl`` below them), each once
    however many arguments reach it, in the order first reached. ``RecordingError`` for a bad one.

    A proxy may be writing into a directory being replayed: a file it still holds (just created, or its stream not
    ended yet) is left out, with a ``warn``ing, as ``ls`` leaves it out; replayed, its stream would hang at its
    last line so far. Named as a file, it is replayed as far as it goes, held open after that (its stream had not
    ended either), with a warning; one without its header line yet is a ``RecordingError``.

    Every file is read through and checked, but only a file named itself is kept whole (its plan is then built
    at once when first served, in a few seconds for hundreds of thousands of events); a directory's recordings
    are kept as their header and end line, their lines read again when one is served: a directory of thousands
    of recordings needs no more memory than one of them."""
    seen: set[str] = set()
    left_out: set[str] = set()  # (still loaded if a later argument names the file itself)
    recordings = []
    for arg in args:
        named = not os.path.isdir(arg)
        for path in find_recordings(arg):
            real = os.path.realpath(path)
            if real in seen:
                continue
            try:
                # one of a directory's recordings is read whole when it is first served (see Plans)
                rec = read_recording(path) if named else scan_recording(path)
                pending = "still being written by a proxy" if rec.ending == IN_PROGRESS else None
            except RecordingError:
                if not header_pending(path):
                    raise
                pending = "still being written by a proxy, no header line yet"
                if named:
                    raise RecordingError(path, 0, pending) from None
            if pending and not named:
                if real not in left_out:
                    warn(f"{shown_path(path)}: {pending}; left out")
                left_out.add(real)
                continue
            if pending:
                warn(f"{shown_path(path)}: {pending}: replayed as far as it goes now, then held open")
            seen.add(real)
            recordings.append(rec)
    return recordings


def check_found(args: Iterable[str | os.PathLike], recordings: list, mapped: list) -> None:
    if not recordings and not mapped:
        raise OptionValueError("sse_replay", f"no recordings (*.jsonl) in {', '.join(map(os.fspath, args))}")


def check_recordings(settings: ReplaySettings, recordings: Iterable[Recording]) -> None:
    """What the settings need of every recording (``RecordingError``, naming the file, if one lacks it)."""
    if settings.byte_exact:
        for rec in recordings:
            check_raw_chunks(rec)


class Plans:
    """The plan of each recording under the settings, built on first use: a long one takes milliseconds, which
    every other stream playing in the event loop would wait. A recording ``load_recordings`` scanned has its records
    read then (and only the plan kept), so that a directory of thousands of recordings, or a recording of hours,
    does not sit in memory whole from start-up on."""

    #: a recording of more records than this has its plan built in a worker thread (see ``booked``)
    INLINE_RECORDS = 5000

    def __init__(self, settings: ReplaySettings):
        self.settings = settings
        self._plans: dict[int, Plan] = {}  # id(recording) -> plan
        self._building: dict[int, asyncio.Future] = {}  # id(recording) -> its plan being built in a thread

    def __getitem__(self, rec: Recording) -> Plan:
        plan = self._plans.get(id(rec))
        if plan is None:
            s = self.settings
            whole = rec if rec.records_read else read_recording(rec.path)
            plan = self._plans[id(rec)] = build_plan(whole, s.timing, s.faults, s.byte_exact)
        return plan

    async def booked(self, booking: Booking) -> Plan:
        """The plan of the booked recording. The first time, unless the recording is short, it is built in a worker
        thread: for a recording of hours that takes seconds, during which every other stream being played would
        wait (the thread shares the interpreter, but the event loop gets its turns). A plan that cannot be built
        gives the booking back, or the endpoint's next requests would wait for it."""
        rec = booking.recording
        try:
            plan = self._plans.get(id(rec))
            if plan is not None:
                return plan
            if rec.records_read and len(rec.records) <= self.INLINE_RECORDS:
                return self[rec]
            building = self._building.get(id(rec))
            if building is None:
                building = self._building[id(rec)] = asyncio.get_running_loop().run_in_executor(
                    None, self.__getitem__, rec)
                building.add_done_callback(lambda _: self._building.pop(id(rec), None))
            return await asyncio.shield(building)  # (another request may be waiting for the same plan)
        except BaseException:  # a cancelled request too
            booking.give_back()
            raise
