"""A wake-up call for an asyncio loop at a precise time: asyncio's own timers fire up to 1 ms late.

asyncio waits in epoll with a timeout in whole milliseconds, rounded up, so ``call_at(t)`` runs anywhere
in [t, t + 1 ms] — half the lateness budget of a replayed event through a proxy. So a wake-up comes a
little early and the last stretch is spent cycling the loop with ``call_soon`` (which keeps serving I/O)
until the time has come:

- ``TimerFdWakeup`` (Linux): a timerfd, watched by the loop like a socket, armed ``TIMERFD_EARLY`` ahead
  (nanosecond resolution, on the clock ``loop.time()`` reads). Waking a sleeping loop this way takes
  ~0.1 ms, so it spins at most that long per wake-up.
- ``SpinWakeup`` (elsewhere): an asyncio timer ``SPIN_SLACK`` ahead, so it spins up to 1.1 ms per
  wake-up, which costs CPU (in ``bench/replay_timing.py`` ~50% more per event at 200 streams).

``make_wakeup(loop, callback)`` picks the first that works (``SSE_REPLAY_WAKEUP=spin`` in the environment
forces the second, to compare them: ``bench/replay_timing.py`` does). ``at(when)`` (re)arms it, replacing
any earlier time; ``cancel()`` disarms it; ``close()`` releases it.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import math
import os
import sys
import time
from collections.abc import Callable

SPIN_SLACK = 0.0011  # epoll's timeout granularity (1 ms, rounded up), plus a margin
TIMERFD_EARLY = 0.00015  # a little more than it takes to wake the loop from epoll on a timerfd


class _Spinner:
    """The last stretch before ``_when``: cycle the loop until it has come, then call back."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]):
        self.loop, self.callback = loop, callback
        self._handle: asyncio.Handle | None = None
        self._when = 0.0

    def _tick(self) -> None:
        if self.loop.time() < self._when:
            self._handle = self.loop.call_soon(self._tick)
        else:
            self._handle = None
            self.callback()

    def _stop_spinning(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class SpinWakeup(_Spinner):
    def at(self, when: float) -> None:
        self._stop_spinning()
        self._when = when
        if when - self.loop.time() > SPIN_SLACK:
            self._handle = self.loop.call_at(when - SPIN_SLACK, self._tick)
        else:
            self._handle = self.loop.call_soon(self._tick)

    def cancel(self) -> None:
        self._stop_spinning()

    def close(self) -> None:
        self.cancel()


class _TimerSpec(ctypes.Structure):  # struct itimerspec
    _fields_ = [("interval_s", ctypes.c_long), ("interval_ns", ctypes.c_long),
                ("value_s", ctypes.c_long), ("value_ns", ctypes.c_long)]


_CLOCK_MONOTONIC, _TFD_TIMER_ABSTIME = 1, 1
_TFD_NONBLOCK, _TFD_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC  # as the kernel defines them on Linux


def _libc_timerfd() -> tuple[Callable[[], int], Callable[[int, int], None]]:
    """timerfd_create and timerfd_settime through libc (Python < 3.13 has no os.timerfd_*)."""
    libc = ctypes.CDLL(None, use_errno=True)
    create, settime = libc.timerfd_create, libc.timerfd_settime
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_TimerSpec), ctypes.c_void_p]
    settime.restype = ctypes.c_int

    def new() -> int:
        fd = create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return fd

    def arm(fd: int, when_ns: int) -> None:  # 0 disarms
        spec = _TimerSpec(0, 0, when_ns // 1_000_000_000, when_ns % 1_000_000_000)
        if settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    return new, arm


def _os_timerfd() -> tuple[Callable[[], int], Callable[[int, int], None]]:
    def new() -> int:
        return os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)

    def arm(fd: int, when_ns: int) -> None:
        os.timerfd_settime_ns(fd, flags=os.TFD_TIMER_ABSTIME, initial=when_ns)

    return new, arm


class TimerFdWakeup(_Spinner):
    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]):
        if not sys.platform.startswith("linux") or time.get_clock_info("monotonic").implementation != \
                "clock_gettime(CLOCK_MONOTONIC)":
            raise OSError(errno.ENOSYS, "timerfd needs Linux and loop.time() on CLOCK_MONOTONIC")
        super().__init__(loop, callback)
        new, self._arm = _os_timerfd() if hasattr(os, "timerfd_create") else _libc_timerfd()
        self.fd = new()
        self._armed = False
        try:
            loop.add_reader(self.fd, self._fired)  # NotImplementedError on loops without readers
        except BaseException:
            os.close(self.fd)
            raise

    def at(self, when: float) -> None:
        self._stop_spinning()
        self._when = when
        # loop.time() is time.monotonic(), CLOCK_MONOTONIC
        self._arm(self.fd, max(1, math.ceil((when - TIMERFD_EARLY) * 1e9)))
        self._armed = True

    def cancel(self) -> None:
        self._stop_spinning()
        if self._armed:
            self._arm(self.fd, 0)
            self._armed = False

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:  # re-armed or disarmed since it fired: not due
            return
        self._armed = False
        self._tick()

    def close(self) -> None:
        self._stop_spinning()
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


def make_wakeup(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> TimerFdWakeup | SpinWakeup:
    if os.environ.get("SSE_REPLAY_WAKEUP") == "spin":
        return SpinWakeup(loop, callback)
    try:
        return TimerFdWakeup(loop, callback)
    except (OSError, AttributeError, NotImplementedError):
        return SpinWakeup(loop, callback)
