"""A staging worker process: stages, checks and publishes each task it gets, answers its outcomes.

It is a plain `python -c` child of the driver's process (never a fork of it, and never an
import of the caller's `__main__`), started by `_processes.WorkerProcess`. Tasks come on stdin
and one answer per task goes to stdout, each a `multiprocessing.connection` message. It stops
when stdin closes or its parent process changes: the driver closed it (it is idle then), or
the driver's process is gone (a killed job), and then nobody would journal what it publishes.
"""

from __future__ import annotations

import os
import pickle
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from archive_core.model import FileOutcome
from archive_core.transfer.stager._chunks import published_outcomes
from archive_core.transfer.stager._plan import Publish, Result, Staged, Unworded, unworded_failure

#: An idle worker looks at its parent this often: a pipe some other process inherited may
#: keep stdin open after the driver's process died, and getppid() tells all the same.
_PARENT_CHECK_SECONDS = 0.5


#: Put in the inbox for a task that could not be read here (its stage's module does not import).
_UNREADABLE = object()


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


def run_task(
    stage: Callable[[Any, None], Result],
    publish: Publish,
    entries: Sequence[tuple[str, Any]],
    *,
    stop: Callable[[], bool] = lambda: False,
) -> list[FileOutcome | Unworded]:
    """Stage every (key, task), publish them together, and return one outcome per entry.

    A failure is an `Unworded` unless its error says it all: the driver's process, which
    knows each item, words it. `stop` is asked between files and before each name is
    published; once it answers True the staged files are dropped and Abandoned is raised:
    nothing is published after that.
    """
    results: list[Result | Unworded] = []
    try:
        for key, task in entries:
            if stop():
                raise Abandoned
            try:
                results.append(stage(task, None))
            except Exception as exc:
                failed = unworded_failure(key, exc)
                if isinstance(failed, Unworded) and failed.unexpected:
                    traceback.print_exc()  # the driver's process logs the file; the trace is here
                results.append(failed)
    except BaseException:
        for result in results:
            if isinstance(result, Staged):
                result.staged.discard()
        raise
    staged = [r for r in results if isinstance(r, Staged)]
    published = iter(published_outcomes(staged, publish, stop=stop))
    if stop():
        raise Abandoned  # the rest were dropped by the publish; nobody takes the answer
    return [next(published) if isinstance(r, Staged) else r for r in results]


def serve() -> None:
    """The worker's loop: tasks in, their outcomes out, until stdin closes or the parent goes.

    A reader and a writer thread keep both pipes moving while a task runs, so the driver's
    process can queue the next task, and take this one's outcomes, whenever it gets to it:
    the worker never waits on a core busy journaling. The end of stdin stops the worker at
    once, between two files, even mid-task: the driver closes an idle worker's stdin only
    (`ProcessPool.close`), so an end with a task in flight means its process died, and
    what the worker published now nobody would journal (a killed job's re-run must find
    the state it left, not one a worker kept changing for seconds after).
    """
    from multiprocessing.connection import Connection

    tasks = Connection(0, writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # a stray print must not land in the answer pipe
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    parent = _Parent()

    def read_tasks() -> None:
        try:
            while True:
                inbox.put(pickle.loads(tasks.recv_bytes()))
        except (EOFError, OSError):
            parent.lost()
            inbox.put(None)
        except Exception:
            traceback.print_exc()  # to the driver's stderr: why this worker gives up
            inbox.put(_UNREADABLE)

    def write_answers() -> None:
        while (answer := outbox.get()) is not None:
            try:
                answers.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:
                os._exit(0)  # the driver's process is gone: nobody reads the answers

    threading.Thread(target=read_tasks, name="stager-in", daemon=True).start()
    writer = threading.Thread(target=write_answers, name="stager-out", daemon=True)
    writer.start()
    status = 0
    while not parent.gone():
        try:
            task = inbox.get(timeout=_PARENT_CHECK_SECONDS)
        except queue.Empty:
            continue
        if task is None or parent.gone():
            break
        if task is _UNREADABLE:
            status = 3  # the driver fails this task (and those queued after it) retryably
            break
        stage, publish, entries = task
        try:
            outcomes = run_task(stage, publish, entries, stop=parent.gone)
        except Abandoned:
            break
        outbox.put(outcomes)
    outbox.put(None)
    # Answers still queued go out to a driver that is there to read them; when its process
    # is gone, a pipe some other process inherited must not keep this one waiting.
    writer.join(timeout=None if os.getppid() == parent.pid else _PARENT_CHECK_SECONDS)
    sys.exit(status)
