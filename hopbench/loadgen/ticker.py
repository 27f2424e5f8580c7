"""Precise wake-ups for the send loop.

asyncio's and uvloop's timers have millisecond resolution: a send scheduled for
t fires anywhere in [t, t + 1 ms], which alone puts the send lag p99 near 1 ms.

On Linux the loop waits on a ``timerfd`` instead: a kernel high-resolution timer
(~50 µs slack, as ``nanosleep``) armed for the absolute time the next message is
due, watched by the event loop like any socket. The loop wakes when it fires and
nowhere else, with no other thread: one ``timerfd_settime`` per message.

Elsewhere (or where the call is refused) a thread sleeping with ``time.sleep``
wakes the loop through ``call_soon_threadsafe``: as precise, but each message then
costs two wake-ups of that thread and a hand-over of the GIL, measured at about a
quarter of a load worker's CPU per message at 1,000/s (bench/generator_cost.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import queue
import threading
import time

from hopbench import clock

_STOP = -1
_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        )
        return libc
    except (OSError, AttributeError):  # not Linux, or a libc without timerfd
        return None


class Ticker:
    """``await ticker.until(t_ns)`` returns at t_ns on the run's clock (or just after);
    ``close()`` when done. A timerfd where the kernel has one, else a thread."""

    def __init__(self) -> None:
        self._timer: _TimerFd | None = _TimerFd.make()
        self._thread: _ThreadTicker | None = None if self._timer else _ThreadTicker()

    @property
    def kind(self) -> str:
        return "timerfd" if self._timer is not None else "thread"

    async def until(self, t_ns: int) -> None:
        if self._timer is not None:
            await self._timer.until(t_ns)
        else:
            assert self._thread is not None
            await self._thread.until(t_ns)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.close()
        if self._thread is not None:
            self._thread.close()


class _TimerFd:
    _LIBC = _libc()

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self._fd = fd
        self._spec = _Itimerspec()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._due = 0  # kernel monotonic ns the armed timer is for

    @classmethod
    def make(cls) -> _TimerFd | None:
        libc = cls._LIBC
        if libc is None:
            return None
        fd = int(libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC))
        return None if fd < 0 else cls(libc, fd)

    async def until(self, t_ns: int) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._fd, self._fired)
        due = self._due = clock.kernel_ns(t_ns)  # the run's clock may be shifted
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(max(due, 1), 1_000_000_000)
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, self._spec, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count: reading it re-arms readability
        except BlockingIOError:
            return
        waiter = self._waiter
        # an expiry of an earlier, abandoned wait is not this one's: never wake early
        if waiter is not None and not waiter.done() and time.monotonic_ns() >= self._due:
            waiter.set_result(None)

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1


class _ThreadTicker:
    """A thread sleeping in ``time.sleep`` (nanosleep) wakes the loop for each message."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: queue.SimpleQueue[tuple[int, asyncio.Future[None] | None]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    async def until(self, t_ns: int) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="hopbench-ticker", daemon=True)
            self._thread.start()
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._requests.put((t_ns, future))
        await future

    def _run(self) -> None:
        assert self._loop is not None
        while True:
            t_ns, future = self._requests.get()
            if t_ns == _STOP or future is None:
                return
            delay_ns = t_ns - clock.now_ns()
            if delay_ns > 0:
                time.sleep(delay_ns / 1e9)
            try:
                self._loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # the loop closed under us
                return

    def close(self) -> None:
        if self._thread is not None:
            self._requests.put((_STOP, None))
            self._thread.join(timeout=1)
            self._thread = None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
