"""A staging worker process: copies, checks and publishes the small files of the tasks it gets.

It is a plain `python -c` child of the driver's process (never a fork of it, and never an
import of the caller's `__main__`), started by `_pool.StagingPool`. It reads tasks from stdin
and writes one answer per task to stdout, each a length-prefixed pickle. It stops when stdin
closes or its parent process changes: the driver closed it (it is idle then), or the
driver's process is gone (a killed job), and then nobody will journal what it publishes.
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from archive_core.model import ArchiveItem, FileOutcome
from archive_core_filesys._archive import stage_archive
from archive_core_filesys._batch import Staged, failure_outcome, published_outcomes

_LENGTH = struct.Struct(">Q")

#: An idle worker looks at its parent this often: a pipe some other process inherited may
#: keep stdin open after the driver's process died, and getppid() tells all the same.
_PARENT_CHECK_SECONDS = 0.5


class Abandoned(Exception):
    """The driver's process went away mid-task: the task is dropped, nothing more published."""


class _Parent:
    """Whether the driver's process that started this worker is still there to take answers."""

    def __init__(self) -> None:
        self.pid = os.getppid()
        self._gone = threading.Event()

    def lost(self) -> None:
        """Stdin reached its end: the driver closed it, or its process ended."""
        self._gone.set()

    def gone(self) -> bool:
        # When the parent dies, the kernel hands this process to another: getppid changes.
        return self._gone.is_set() or os.getppid() != self.pid


def write_frame(stream: BinaryIO, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    frame = memoryview(_LENGTH.pack(len(payload)) + payload)
    while frame:  # an unbuffered pipe may take part of it (a signal in between)
        frame = frame[stream.write(frame) or 0 :]
    stream.flush()


def read_frame(stream: BinaryIO) -> Any:
    """The next message, or raises EOFError when the other side has gone."""
    head = _read_exactly(stream, _LENGTH.size)
    return pickle.loads(_read_exactly(stream, _LENGTH.unpack(head)[0]))


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    # The driver's side reads its pipes unbuffered (a buffer would hide a second answer
    # from select), where a read returns what has arrived so far.
    parts = []
    while count:
        data = stream.read(count)
        if not data:
            raise EOFError("the other end of the pipe closed")
        parts.append(data)
        count -= len(data)
    return b"".join(parts)


def run_task(
    work: list[tuple[ArchiveItem, str]],
    *,
    root: str,
    fsync: bool,
    direct_io: bool,
    stop: Callable[[], bool] = lambda: False,
) -> list[FileOutcome]:
    """Stage every (item, locator), publish them together, and return one outcome per item.

    `stop` is asked between files and before each name is published; once it answers True
    the staged files are dropped and Abandoned is raised: nothing is published after that.
    """
    results: list[FileOutcome | Staged] = []
    try:
        for item, locator in work:
            if stop():
                raise Abandoned
            try:
                results.append(
                    stage_archive(
                        item, locator, root=root, fsync=fsync, direct_io=direct_io, progress=None
                    )
                )
            except Exception as exc:
                results.append(failure_outcome(item.key, f"archiving {item.name}", exc, None))
    except BaseException:
        for result in results:
            if isinstance(result, Staged):
                result.staged.discard()
        raise
    staged = [r for r in results if isinstance(r, Staged)]
    published = iter(published_outcomes(staged, fsync=fsync, stop=stop))
    if stop():
        raise Abandoned  # the rest were dropped by the publish; nobody takes the answer
    return [next(published) if isinstance(r, Staged) else r for r in results]


def serve() -> None:
    """The worker's loop: tasks in, their outcomes out, until stdin closes or the parent goes.

    A reader and a writer thread keep both pipes moving while a task runs, so the driver's
    process can queue the next task, and take this one's outcomes, whenever it gets to it:
    the worker never waits on a core busy journaling. The end of stdin stops the worker at
    once, between two files, even mid-task: the driver closes an idle worker's stdin only
    (`StagingPool.close`), so an end with a task in flight means its process died, and
    what the worker published now nobody would journal (a killed job's re-run must find
    the state it left, not one a worker kept changing for seconds after).
    """
    tasks = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not land in the answer pipe
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    parent = _Parent()

    def read_tasks() -> None:
        try:
            while True:
                inbox.put(read_frame(tasks))
        except (EOFError, OSError):
            parent.lost()
            inbox.put(None)

    def write_answers() -> None:
        while (answer := outbox.get()) is not None:
            try:
                write_frame(answers, answer)
            except OSError:
                os._exit(0)  # the driver's process is gone: nobody reads the answers

    threading.Thread(target=read_tasks, name="stager-in", daemon=True).start()
    writer = threading.Thread(target=write_answers, name="stager-out", daemon=True)
    writer.start()
    while not parent.gone():
        try:
            task = inbox.get(timeout=_PARENT_CHECK_SECONDS)
        except queue.Empty:
            continue
        if task is None or parent.gone():
            break
        root, fsync, direct_io, work = task
        try:
            outcomes = run_task(work, root=root, fsync=fsync, direct_io=direct_io, stop=parent.gone)
        except Abandoned:
            break
        outbox.put(outcomes)
    outbox.put(None)
    # Answers still queued go out to a driver that is there to read them; when its process
    # is gone, a pipe some other process inherited must not keep this one waiting.
    writer.join(timeout=None if os.getppid() == parent.pid else _PARENT_CHECK_SECONDS)
