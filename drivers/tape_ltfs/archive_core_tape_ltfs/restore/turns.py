"""When each drive's worker may make its next library call.

On real hardware the workers' threads call whenever they are ready. On a virtual clock (the
simulator) a call books the robot and the drives at its caller's time, so the calls must reach
the library in the order of their callers' clocks, as they would in real time: one at a time,
the worker furthest behind first. That also makes a simulated restore replay exactly.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from archive_core_tape_ltfs.port import Clock

T = TypeVar("T")


class _Turns:
    def turn(self, drive: int) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def call(self, drive: int) -> Callable[[Callable[[], T]], T]:
        """What runs one library call of `drive`'s worker in its turn."""

        def in_turn(action: Callable[[], T]) -> T:
            with self.turn(drive):
                return action()

        return in_turn


class FreeTurns(_Turns):
    """Real time: every worker calls when it is ready."""

    @contextlib.contextmanager
    def turn(self, drive: int) -> Iterator[None]:
        yield

    def leave(self, drive: int) -> None:
        return None


class ClockTurns(_Turns):
    """Virtual time: one call at a time, the worker whose clock is earliest (then the lowest
    drive) first; a worker that has finished leaves."""

    def __init__(self, clocks: Mapping[int, Clock]) -> None:
        self._clocks = dict(clocks)
        self._live = set(clocks)
        self._calling = False
        self._changed = threading.Condition()

    def _next(self) -> int:
        return min(self._live, key=lambda i: (self._clocks[i].now(), i))

    @contextlib.contextmanager
    def turn(self, drive: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._calling and self._next() == drive)
            self._calling = True
        try:
            yield
        finally:
            with self._changed:
                self._calling = False
                self._changed.notify_all()

    def leave(self, drive: int) -> None:
        with self._changed:
            self._live.discard(drive)
            self._changed.notify_all()
