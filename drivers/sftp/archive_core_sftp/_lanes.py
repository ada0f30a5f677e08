"""Small-file pipelines run side by side: one lane per connection, each lane a thread.

A lane takes tasks from the batch's shared queue, runs them through its pipeline
(`_pipeline.upload_small` or `download_small`) on its own connection and hands each
finished task, turned into what the caller publishes (`land`, run in the lane's thread), to
the caller's thread. A connection lost under a task costs it one more try, on a fresh
connection; a second loss is its outcome. At most `window` tasks are out at once (taken,
not yet reported `done` by the caller), which bounds what a batch holds while its chunks
wait for their publish (a restore's staged copies are open files).
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from archive_core import FileOutcome
from archive_core_sftp import _session, _wire
from archive_core_sftp._pool import Patience, SessionPool

log = logging.getLogger(__name__)

#: A lane's pipeline: (connection, tasks, files_in_flight) -> the tasks as they finish.
Pipeline = Callable[[_wire.Connection, Iterator[Any], int], Iterator[Any]]

_END = object()

#: The caller looks at its chunk's age at least this often while the lanes work.
COLLECT_SECONDS = 0.2


@attrs.frozen
class Work:
    """What lanes do with a batch's tasks: run them (`pipeline`), turn each finished one
    into what the caller publishes (`land`, in the lane's thread), and make a fresh task
    for one whose connection broke (`again`)."""

    pipeline: Pipeline
    land: Callable[[Any], Any]
    again: Callable[[Any], Any]


class Lanes:
    """`lanes` threads doing `work` on `tasks`; `results()` as they arrive."""

    def __init__(
        self,
        tasks: Iterable[Any],
        *,
        sessions: SessionPool,
        patience: Patience,
        work: Work,
        lanes: int,
        spread: bool,
        files_in_flight: int,
        window: int,
        name: str,
    ) -> None:
        self._waiting = collections.deque(tasks)
        self._sessions = sessions
        self._patience = patience
        self._work = work
        self._spread = spread  # a lane's own connection each (see _pool), or the first
        self._budget = threading.Semaphore(window)
        self._stop = threading.Event()
        self._arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
        count = max(1, min(lanes, files_in_flight, len(self._waiting)))
        each = math.ceil(files_in_flight / count)
        self.name = name
        self._threads = [
            threading.Thread(target=self._lane, args=(each,), name=f"{name}-lane-{n}")
            for n in range(count)
        ]
        self._running = len(self._threads)
        for thread in self._threads:
            thread.start()

    def results(self, timeout: float) -> Iterator[list[Any]]:
        """What the lanes landed, in groups as they arrive; an empty group when nothing
        came within `timeout` seconds (a chunk due by its age can go). Ends once every lane
        has."""
        while self._running:
            group: list[Any] = []
            try:
                landed = self._arrived.get(timeout=timeout)
                while True:
                    if landed is _END:
                        self._running -= 1
                    else:
                        group.append(landed)
                    landed = self._arrived.get_nowait()
            except queue.Empty:
                pass
            yield group

    def done(self, count: int) -> None:
        """`count` results have left the caller: room for as many more tasks."""
        self._budget.release(count)

    def stop(self) -> list[Any]:
        """No task is begun any more; the lanes end what they carry and are joined. Returns
        the results nobody took."""
        self._stop.set()
        self._waiting.clear()
        self._budget.release(len(self._threads))  # wake lanes waiting for room
        for thread in self._threads:
            thread.join()
        left: list[Any] = []
        while True:
            try:
                landed = self._arrived.get_nowait()
            except queue.Empty:
                return left
            if landed is not _END:
                left.append(landed)

    def _feed(self) -> Iterator[Any]:
        """Tasks from the shared queue, each once the window has room for it."""
        while not self._stop.is_set():
            if not self._budget.acquire(timeout=0.1):
                continue
            try:
                task = self._waiting.popleft()
            except IndexError:
                self._budget.release()
                return
            yield task

    def _lane(self, files_in_flight: int) -> None:
        try:
            while self._waiting and not self._stop.is_set():
                try:
                    connection = self._sessions.connection(self._patience, spread=self._spread)
                except _session.SessionFailed as exc:
                    for task in self._feed():
                        task.done = exc
                        self._arrived.put(self._work.land(task))
                    return
                try:
                    for task in self._work.pipeline(connection, self._feed(), files_in_flight):
                        if isinstance(task.done, _wire.ConnectionLost) and not task.tries:
                            self._budget.release()  # taken again from the queue
                            self._waiting.append(self._work.again(task))
                            continue
                        self._arrived.put(self._work.land(task))
                except _wire.ConnectionLost as exc:
                    log.info("%s: the SFTP connection broke (%s); connecting again", self.name, exc)
                    self._sessions.drop(spread=self._spread)
        finally:
            self._arrived.put(_END)


def published(
    lanes: Lanes,
    publish: Callable[..., Any],
    *,
    clock: Callable[[], float],
    deferred: list[Any],
) -> Iterator[FileOutcome]:
    """The lanes' results published as the stager publishes its own (`publish_results`);
    anything that is no result (a copy too large for a pipeline) is put in `deferred`."""
    from archive_core.transfer.stager import Staged, publish_results

    def groups() -> Iterator[list[Any]]:
        for group in lanes.results(timeout=COLLECT_SECONDS):
            results = []
            for landed in group:
                if isinstance(landed, FileOutcome | Staged):
                    results.append(landed)
                else:
                    lanes.done(1)
                    deferred.append(landed)
            yield results

    try:
        yield from publish_results(
            groups(), publish, name=lanes.name, clock=clock, taken=lanes.done
        )
    finally:
        # Stopped early (the core closed us): staged but never handed over, not left.
        for left in lanes.stop():
            if isinstance(left, Staged):
                left.staged.discard()
