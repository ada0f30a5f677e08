"""A staging worker process: copies, checks and publishes the small files of the tasks it gets.

It is a plain `python -c` child of the driver's process (never a fork of it, and never an
import of the caller's `__main__`), started by `_pool.StagingPool`. It reads tasks from stdin
and writes one answer per task to stdout, each a length-prefixed pickle; it exits when stdin
closes, that is when its driver closes or its process ends.
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import sys
import threading
from typing import Any, BinaryIO

from archive_core.model import ArchiveItem, FileOutcome
from archive_core_filesys._archive import stage_archive
from archive_core_filesys._batch import Staged, failure_outcome, published_outcomes

_LENGTH = struct.Struct(">Q")


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
    work: list[tuple[ArchiveItem, str]], *, root: str, fsync: bool, direct_io: bool
) -> list[FileOutcome]:
    """Stage every (item, locator), publish them together, and return one outcome per item."""
    results: list[FileOutcome | Staged] = []
    for item, locator in work:
        try:
            results.append(
                stage_archive(
                    item, locator, root=root, fsync=fsync, direct_io=direct_io, progress=None
                )
            )
        except Exception as exc:
            results.append(failure_outcome(item.key, f"archiving {item.name}", exc, None))
    published = iter(published_outcomes([r for r in results if isinstance(r, Staged)], fsync=fsync))
    return [next(published) if isinstance(r, Staged) else r for r in results]


def serve() -> None:
    """The worker's loop: tasks in, their outcomes out, until stdin closes.

    A reader and a writer thread keep both pipes moving while a task runs, so the driver's
    process can queue the next task, and take this one's outcomes, whenever it gets to it:
    the worker never waits on a core busy journaling.
    """
    tasks = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not land in the answer pipe
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read_tasks() -> None:
        try:
            while True:
                inbox.put(read_frame(tasks))
        except (EOFError, OSError):
            inbox.put(None)

    def write_answers() -> None:
        while (answer := outbox.get()) is not None:
            try:
                write_frame(answers, answer)
            except OSError:
                os._exit(0)  # the driver's process is gone: nobody reads the answers

    threading.Thread(target=read_tasks, name="stager-in", daemon=True).start()
    writer = threading.Thread(target=write_answers, name="stager-out")
    writer.start()
    while (task := inbox.get()) is not None:
        root, fsync, direct_io, work = task
        outbox.put(run_task(work, root=root, fsync=fsync, direct_io=direct_io))
    outbox.put(None)
    writer.join()
