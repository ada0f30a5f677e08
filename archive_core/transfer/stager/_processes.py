"""Worker processes that stage and publish whole tasks of a batch, so it uses every core.

Workers are plain `python -c` child interpreters with the driver's `sys.path`: forking the
driver's own process would copy the locks of Portal's other threads in whatever state they
are in, and multiprocessing's other start methods re-import the caller's `__main__` in every
worker. Tasks and answers cross the pipes as `multiprocessing.connection.Connection`
messages (a length header and a pickle, written and read whole); pickled here rather than
by `Connection.send`, whose ForkingPickler costs a third more per item of a task (measured:
1.8 against 1.5 us per ArchiveItem entry).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from archive_core import workers
from archive_core.model import FileOutcome, ProgressCallback
from archive_core.transfer.stager._plan import Plan, Unworded, failure_outcome

log = logging.getLogger(__name__)

#: Files per task handed to a worker: enough that the hand-off (pickling, a pipe round trip,
#: one sync) is small beside the copying, few enough that outcomes reach the core's journal
#: often and every worker gets several tasks per batch.
TASK_FILES = 500

#: Tasks queued at each worker: it starts the next the moment it finishes one, whatever the
#: core is doing with the outcomes.
TASKS_AHEAD = 2

#: How a worker starts: the driver process's import path, then the worker's loop.
BOOT = (
    "import os, sys; "
    "sys.path[:0] = os.environ.pop('ARCHIVE_CORE_STAGER_PATH').split(os.pathsep); "
    "from archive_core.transfer.stager._worker import serve; serve()"
)

#: One item of a task, as the driver's process keeps it: the item and its prepared task.
Entry = tuple[Any, Any]


def can_start_workers() -> bool:
    """Whether this process runs under a Python interpreter it can start again as a worker.

    Embedded interpreters (uWSGI, mod_wsgi) have some other program as `sys.executable`.
    """
    return os.path.basename(sys.executable or "").startswith("python")


class WorkerLost(Exception):
    """A staging worker died (killed, out of memory) or could not be started."""


class WorkerProcess:
    """One `python -c` child and the connections to it."""

    def __init__(self) -> None:
        import subprocess
        from multiprocessing.connection import Connection

        self.owner = os.getpid()
        env = dict(os.environ)
        env["ARCHIVE_CORE_STAGER_PATH"] = os.pathsep.join(p for p in sys.path if p)
        task_read, task_write = os.pipe()
        answer_read, answer_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", BOOT],
                stdin=task_read,
                stdout=answer_write,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            for fd in (task_read, task_write, answer_read, answer_write):
                os.close(fd)
            raise WorkerLost(f"could not start {sys.executable}: {exc.strerror or exc}") from exc
        os.close(task_read)
        os.close(answer_write)
        self.pid = self.process.pid
        self._tasks = Connection(task_write, readable=False)
        self._answers = Connection(answer_read, writable=False)

    def fileno(self) -> int:
        return self._answers.fileno()

    def send(self, task: tuple[Any, ...]) -> None:
        try:
            self._tasks.send_bytes(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as exc:
            raise WorkerLost(self._death(exc)) from exc

    def receive(self) -> list[FileOutcome | Unworded]:
        try:
            return pickle.loads(self._answers.recv_bytes())
        except (EOFError, OSError) as exc:
            raise WorkerLost(self._death(exc)) from exc

    def _death(self, exc: BaseException) -> str:
        import subprocess

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
        import subprocess

        if kill:
            self.process.kill()
        for connection in (self._tasks, self._answers):
            with contextlib.suppress(OSError):
                connection.close()
        try:
            self.process.wait(timeout=None if kill else 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ProcessPool:
    """The worker processes of one stager, started at its first batch in processes."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._name = name
        self._idle: list[WorkerProcess] = []

    def take(self) -> WorkerProcess:
        """An idle worker, started now if none is waiting; raises WorkerLost if it cannot be."""
        pid = os.getpid()
        while self._idle:
            worker = self._idle.pop()
            if worker.owner == pid and worker.process.poll() is None:
                return worker
            # Inherited over a fork (its pipes are shared with the parent) or dead: not ours.
        log.debug("%s: starting a staging process", self._name)
        return WorkerProcess()

    def give_back(self, worker: WorkerProcess) -> None:
        self._idle.append(worker)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for worker in idle:
            if worker.owner == os.getpid():
                worker.stop()


def run_in_processes(
    pool: ProcessPool,
    items: Sequence[Any],
    plan: Plan[Any, Any],
    *,
    request: Any,
    progress: ProgressCallback | None,
    name: str,
) -> Iterator[FileOutcome]:
    """Run `items` in tasks by `pool`'s workers; yield outcomes as tasks finish.

    `plan.prepare` runs here for each item; each worker stages, checks and publishes a
    task's files (`plan.stage`, `plan.publish`) before answering, as the in-process modes do
    chunk by chunk. It gets its next task before the core sees the last one's outcomes, so
    copying goes on while the core journals. A worker that dies fails its tasks, retryably,
    and `plan.abandon` cleans up after them. If the batch stops early (the core closes it,
    an error), the workers still busy are killed and their tasks abandoned; files they had
    published stay, and a re-run finds them and reports them reused.
    """
    feed = iter(items)
    refused: list[FileOutcome] = []
    # worker's answer pipe -> the worker and its queued tasks, oldest first
    busy: dict[int, tuple[WorkerProcess, collections.deque[list[Entry]]]] = {}

    def next_task() -> list[Entry]:
        work: list[Entry] = []
        for item in feed:
            try:
                work.append((item, plan.prepare(item)))
            except Exception as exc:
                refused.append(failure_outcome(item.key, plan.describe(item), exc, request))
            if len(work) >= TASK_FILES:
                break
        return work

    def worded(answer: list[Any], work: list[Entry], pid: int) -> list[FileOutcome]:
        """A task's outcomes from worker `pid`, its failures described with their items."""
        outcomes = []
        for outcome, (item, _) in zip(answer, work, strict=True):
            if isinstance(outcome, Unworded):
                what = plan.describe(item)
                if outcome.unexpected:
                    log.error(
                        "policy=%s job=%s %s failed unexpectedly (traceback on the stderr "
                        "of staging process %d)",
                        getattr(request, "policy", None),
                        getattr(request, "job_id", None),
                        what,
                        pid,
                    )
                outcome = outcome.worded(what)
            outcomes.append(outcome)
        return outcomes

    def feed_worker(worker: WorkerProcess) -> list[FileOutcome]:
        """Queue tasks at `worker` up to TASKS_AHEAD; outcomes to report if it died."""
        queued = busy.setdefault(worker.fileno(), (worker, collections.deque()))[1]
        while len(queued) < TASKS_AHEAD:
            work = next_task()
            if not work:
                break
            queued.append(work)
            try:
                worker.send((plan.stage, plan.publish, [(item.key, task) for item, task in work]))
            except WorkerLost as exc:
                return drop(worker, exc)
        if not queued:
            del busy[worker.fileno()]
            pool.give_back(worker)
        return []

    def drop(worker: WorkerProcess, exc: WorkerLost) -> list[FileOutcome]:
        """A worker died: kill it for sure, fail every task it had, and start another for
        the rest of the batch (each death fails whole tasks, so this ends)."""
        _, queued = busy.pop(worker.fileno())
        worker.stop(kill=True)
        outcomes = [outcome for work in queued for outcome in lost(work, exc, worker)]
        try:
            outcomes.extend(feed_worker(pool.take()))
        except WorkerLost as again:
            if not busy:  # nobody left to copy the rest: every file fails with the reason
                while work := next_task():
                    outcomes.extend(lost(work, again, None))
        return outcomes

    def lost(work: list[Entry], exc: WorkerLost, worker: WorkerProcess | None) -> list[FileOutcome]:
        """Fail a task whose worker died (or never started); clean up what it may have left."""
        log.error(
            "policy=%s job=%s a staging process of %s failed: %s",
            getattr(request, "policy", None),
            getattr(request, "job_id", None),
            name,
            exc,
        )
        if worker is not None:
            abandon(work, worker)
        return [
            FileOutcome.failure(
                item.key,
                f"{plan.describe(item)} failed: the worker process copying it stopped "
                f"unexpectedly ({exc}); a retry starts a fresh one",
                retryable=True,
            )
            for item, _ in work
        ]

    def abandon(work: list[Entry], worker: WorkerProcess) -> None:
        """Let the plan remove what `worker` (stopped and reaped now) left of `work`."""
        if plan.abandon is not None:
            made_by = workers.WorkerId(host=workers.current().host, pid=worker.pid)
            try:
                plan.abandon([task for _, task in work], made_by)
            except Exception as exc:
                log.warning("%s: could not clean up after a staging process: %s", name, exc)

    finished = False
    try:
        from multiprocessing.connection import wait

        dead: list[FileOutcome] = []
        failure: WorkerLost | None = None
        for _ in range(pool.size):
            try:
                dead.extend(feed_worker(pool.take()))
            except WorkerLost as exc:
                failure = exc
        if not busy and failure is not None:
            # No worker could be started at all: every file fails with the reason.
            while work := next_task():
                dead.extend(lost(work, failure, None))
        yield from refused
        refused.clear()
        yield from dead
        while busy:
            for fd in wait(list(busy)):
                if fd not in busy:
                    continue  # its worker died while an earlier answer was handled
                worker, queued = busy[fd]
                try:
                    answer = worker.receive()
                except WorkerLost as exc:
                    outcomes = drop(worker, exc)
                else:
                    outcomes = worded(answer, queued.popleft(), worker.pid)
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
                    abandon(work, worker)
