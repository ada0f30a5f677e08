"""Big batches of small files staged in worker processes, so they use every core despite the GIL."""

from __future__ import annotations

import collections
import logging
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from archive_core import transfer
from archive_core.model import ArchiveItem, FileOutcome, ProgressCallback
from archive_core_filesys._batch import failure_outcome

log = logging.getLogger(__name__)

#: Files per task handed to a worker: enough that the hand-off (pickling, a pipe round trip,
#: one sync) is small beside the copying, few enough that outcomes reach the core's journal
#: often and every worker gets several tasks per batch.
TASK_FILES = 500

#: Tasks queued at each worker: it starts the next the moment it finishes one, whatever the
#: core is doing with the outcomes.
TASKS_AHEAD = 2

#: Batches from this many files are staged in worker processes; smaller ones finish before
#: the workers would have paid for their start-up and hand-offs.
POOL_MIN_FILES = 2_000

#: Files whose size is known to be at least this are not "small": a batch mostly made of them
#: is bound by hashing and I/O, which the in-process pipeline already spreads over threads.
SMALL_FILE = 1024 * 1024

#: How a worker starts: the driver process's import path, then the worker's loop.
_BOOT = (
    "import os, sys; "
    "sys.path[:0] = os.environ.pop('ARCHIVE_CORE_STAGER_PATH').split(os.pathsep); "
    "from archive_core_filesys._stager import serve; serve()"
)


def worth_pooling(items: Sequence[ArchiveItem]) -> bool:
    """Whether `items` is a big batch of mostly small files (unknown sizes count as small)."""
    if len(items) < POOL_MIN_FILES:
        return False
    large = sum(1 for item in items if item.size is not None and item.size >= SMALL_FILE)
    return large * 2 < len(items)


def can_start_workers() -> bool:
    """Whether this process runs under a Python interpreter it can start again as a worker.

    Embedded interpreters (uWSGI, mod_wsgi) have some other program as `sys.executable`.
    """
    return os.path.basename(sys.executable or "").startswith("python")


class WorkerLost(Exception):
    """A staging worker died (killed, out of memory) or could not be started."""


class _Worker:
    """One `python -c` child and the pipes to it."""

    def __init__(self) -> None:
        from archive_core_filesys._stager import read_frame, write_frame

        self._read, self._write = read_frame, write_frame
        self.owner = os.getpid()
        env = dict(os.environ)
        env["ARCHIVE_CORE_STAGER_PATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Unbuffered: select() watches the pipe itself, so no answer may wait in a
                # buffer of ours while select waits for the pipe.
                bufsize=0,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise WorkerLost(f"could not start {sys.executable}: {exc.strerror or exc}") from exc
        self.pid = self.process.pid

    def fileno(self) -> int:
        assert self.process.stdout is not None
        return self.process.stdout.fileno()

    def send(self, task: tuple[Any, ...]) -> None:
        try:
            self._write(self.process.stdin, task)
        except (BrokenPipeError, OSError) as exc:
            raise WorkerLost(self._death(exc)) from exc

    def receive(self) -> list[FileOutcome]:
        try:
            return self._read(self.process.stdout)
        except (EOFError, OSError) as exc:
            raise WorkerLost(self._death(exc)) from exc

    def _death(self, exc: BaseException) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return f"it stopped answering ({exc})"
        if code < 0:
            return f"it was killed by signal {-code}"
        return f"it exited with status {code}"

    def stop(self, *, kill: bool = False) -> None:
        """End the process: close its input or kill it at once.

        Closing is for an idle worker (no task in flight), which then exits; a worker whose
        input ends mid-task takes it for its driver's death and drops the task unpublished.
        """
        if kill:
            self.process.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=None if kill else 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class StagingPool:
    """The worker processes of one driver instance, started at its first big batch.

    Workers are plain child interpreters: forking the driver's own process would copy the
    locks of Portal's other threads in whatever state they are in, and multiprocessing's
    other start methods re-import the caller's `__main__` in every worker.
    """

    def __init__(self, workers: int, name: str) -> None:
        self.size = workers
        self._name = name
        self._idle: list[_Worker] = []

    def take(self) -> _Worker:
        """An idle worker, started now if none is waiting; raises WorkerLost if it cannot be."""
        pid = os.getpid()
        while self._idle:
            worker = self._idle.pop()
            if worker.owner == pid and worker.process.poll() is None:
                return worker
            # Inherited over a fork (its pipes are shared with the parent) or dead: not ours.
        log.debug("%s: starting a staging process", self._name)
        return _Worker()

    def give_back(self, worker: _Worker) -> None:
        self._idle.append(worker)

    def close(self) -> None:
        workers, self._idle = self._idle, []
        for worker in workers:
            if worker.owner == os.getpid():
                worker.stop()


def run_pooled(
    pool: StagingPool,
    items: Sequence[ArchiveItem],
    locate: Callable[[ArchiveItem], str],
    request: Any,
    *,
    root: str,
    fsync: bool,
    direct_io: bool,
    progress: ProgressCallback | None,
) -> Iterator[FileOutcome]:
    """Archive `items` in tasks run by `pool`'s workers; yield outcomes as tasks finish.

    `locate` runs here (it may keep state, such as when a directory was last swept) and gives
    an item's locator or raises for a refused name. Each worker stages, checks and publishes
    a task's files durably before answering, as the in-process path does chunk by chunk; it
    gets its next task before the core sees the last one's outcomes, so copying goes on while
    the core journals. If the batch stops early (the core closes it, an error), the workers
    still busy are killed and their temporary files removed; files they had published stay,
    and a re-run finds them and reports them reused.
    """
    feed = iter(items)
    refused: list[FileOutcome] = []
    # worker's answer pipe -> the worker and its queued tasks, oldest first
    busy: dict[int, tuple[_Worker, collections.deque[list[tuple[ArchiveItem, str]]]]] = {}
    task_args = (root, fsync, direct_io)

    def next_task() -> list[tuple[ArchiveItem, str]]:
        work: list[tuple[ArchiveItem, str]] = []
        for item in feed:
            try:
                work.append((item, locate(item)))
            except Exception as exc:
                refused.append(failure_outcome(item.key, f"archiving {item.name}", exc, request))
            if len(work) >= TASK_FILES:
                break
        return work

    def feed_worker(worker: _Worker) -> list[FileOutcome]:
        """Queue tasks at `worker` up to TASKS_AHEAD; outcomes to report if it died."""
        queued = busy.setdefault(worker.fileno(), (worker, collections.deque()))[1]
        while len(queued) < TASKS_AHEAD:
            work = next_task()
            if not work:
                break
            queued.append(work)
            try:
                worker.send((*task_args, work))
            except WorkerLost as exc:
                return drop(worker, exc)
        if not queued:
            del busy[worker.fileno()]
            pool.give_back(worker)
        return []

    def drop(worker: _Worker, exc: WorkerLost) -> list[FileOutcome]:
        """A worker died: kill it for sure and fail every task it had."""
        _, queued = busy.pop(worker.fileno())
        worker.stop(kill=True)
        return [outcome for work in queued for outcome in _lost(work, exc, request, root)]

    finished = False
    try:
        lost: list[FileOutcome] = []
        failure: WorkerLost | None = None
        for _ in range(pool.size):
            try:
                lost.extend(feed_worker(pool.take()))
            except WorkerLost as exc:
                failure = exc
        if not busy and failure is not None:
            # No worker could be started at all: every file fails with the reason.
            while work := next_task():
                lost.extend(_lost(work, failure, request, root))
        yield from refused
        refused.clear()
        yield from lost
        while busy:
            for fd in select.select(list(busy), [], [])[0]:
                worker, queued = busy[fd]
                try:
                    outcomes = worker.receive()
                except WorkerLost as exc:
                    outcomes = drop(worker, exc)
                else:
                    queued.popleft()
                    outcomes.extend(feed_worker(worker))
                outcomes.extend(refused)
                refused.clear()
                for outcome in outcomes:
                    if progress is not None and outcome.ok and outcome.size:
                        progress(outcome.size)
                    yield outcome
        finished = True
    finally:
        if not finished:
            for worker, queued in busy.values():
                worker.stop(kill=True)
                for work in queued:
                    _remove_temporaries(work, root)


def _lost(
    work: list[tuple[ArchiveItem, str]], exc: WorkerLost, request: Any, root: str
) -> list[FileOutcome]:
    """Fail a task whose worker died; remove the temporary files it may have left."""
    log.error(
        "policy=%s job=%s a staging process of the filesys driver failed: %s",
        getattr(request, "policy", None),
        getattr(request, "job_id", None),
        exc,
    )
    _remove_temporaries(work, root)
    return [
        FileOutcome.failure(
            item.key,
            f"archiving {item.name} failed: the worker process copying it stopped unexpectedly "
            f"({exc}); a retry starts a fresh one",
            retryable=True,
        )
        for item, _ in work
    ]


def _remove_temporaries(work: list[tuple[ArchiveItem, str]], root: str) -> None:
    """Sweep the directories of `work`: a dead worker's temporary files go (its pid is gone)."""
    directories = {os.path.dirname(os.path.join(root, locator)) for _, locator in work}
    for directory in directories:
        try:
            transfer.sweep_partials(directory)
        except OSError as exc:
            log.warning("could not sweep %s: %s", directory, exc)
