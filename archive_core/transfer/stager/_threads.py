"""Worker threads that run items' work and hand their results over in groups."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from archive_core.model import FileOutcome
from archive_core.transfer.stager._chunks import Chunk
from archive_core.transfer.stager._plan import Result

# Workers hand results to the publishing thread in groups: per-file hand-offs between threads
# would cost more than copying a small file.
HANDOFF_FILES = 32
HANDOFF_SECONDS = 0.05

#: The calling thread looks at the chunk's age at least this often while workers copy.
COLLECT_SECONDS = 0.2

_END = object()


class Workers:
    """`count` threads that pull items, run one item's work each, and hand results over.

    At most `window` results are out at once (taken but not yet reported done), which bounds
    the staged files a batch holds. `work` never raises for an item's problem; `fail` turns
    anything that escapes it (KeyboardInterrupt in a thread, say) into that item's outcome.
    """

    def __init__(
        self,
        feed: Iterator[Any],
        work: Callable[[Any], Result],
        fail: Callable[[Any, BaseException], FileOutcome],
        *,
        count: int,
        window: int,
        name: str,
        clock: Callable[[], float],
    ) -> None:
        self._feed = feed
        self._feed_lock = threading.Lock()
        self._work = work
        self._fail = fail
        self._clock = clock
        self._budget = threading.Semaphore(window)
        self._stop = threading.Event()
        self._results: queue.SimpleQueue[list[Result] | None] = queue.SimpleQueue()
        self._finished = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        return self._finished < len(self._threads)

    def groups(self, chunk: Chunk) -> Iterator[list[Result]]:
        """Results as they are handed over, waiting no longer than `chunk` allows."""
        while self.running:
            yield self.collect(chunk.wait(COLLECT_SECONDS))

    def collect(self, timeout: float) -> list[Result]:
        """Results handed over within `timeout` seconds (possibly none)."""
        arrived: list[Result] = []
        try:
            group = self._results.get(timeout=timeout) if self.running else None
            while True:
                if group is None:
                    if self.running:
                        self._finished += 1
                else:
                    arrived.extend(group)
                group = self._results.get_nowait()
        except queue.Empty:
            pass
        return arrived

    def done(self, count: int) -> None:
        """`count` results have left the stager: room for as many more."""
        self._budget.release(count)

    def stop(self) -> list[Result]:
        """Stop and join every thread; return the results nobody collected."""
        self._stop.set()
        self._budget.release(len(self._threads))  # wake threads waiting for room
        for thread in self._threads:
            thread.join()
        left: list[Result] = []
        while True:
            try:
                group = self._results.get_nowait()
            except queue.Empty:
                return left
            left.extend(group or ())

    def _room(self) -> bool:
        """Wait until the window has room for one more result; False once stopped."""
        while not self._stop.is_set():
            if self._budget.acquire(timeout=0.1):
                return True
        return False

    def _run(self) -> None:
        group: list[Result] = []
        handed = self._clock()
        try:
            while not self._stop.is_set():
                if not self._budget.acquire(blocking=False):
                    # The window is full: what this thread holds must reach the publisher
                    # first, or both would wait for each other.
                    if group:
                        self._results.put(group)
                        group, handed = [], self._clock()
                    if not self._room():
                        break
                with self._feed_lock:
                    item = next(self._feed, _END)
                if item is _END:
                    self._budget.release()
                    break
                try:
                    group.append(self._work(item))
                except BaseException as exc:
                    group.append(self._fail(item, exc))
                if len(group) >= HANDOFF_FILES or self._clock() - handed >= HANDOFF_SECONDS:
                    self._results.put(group)
                    group, handed = [], self._clock()
        finally:
            if group:
                self._results.put(group)
            self._results.put(None)  # this thread is done
