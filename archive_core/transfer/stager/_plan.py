"""What a driver hands the stager: its steps for each item, and what one item's work gives back."""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs

from archive_core.errors import ArchiveCoreError, TransferFailed
from archive_core.model import FileOutcome, ProgressCallback
from archive_core.transfer.hashing import Digests
from archive_core.transfer.publish import publish_staged
from archive_core.transfer.staging import StagedFile
from archive_core.workers import WorkerId

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
TaskT = TypeVar("TaskT")


class Mode(enum.StrEnum):
    """Where a batch's copies are made."""

    AUTO = "auto"  # by the batch's shape: see `choose_mode`
    INLINE = "inline"  # one after another in the calling thread
    THREADS = "threads"  # in worker threads: overlaps waits on slow or remote storage
    PROCESSES = "processes"  # in worker processes: uses every core for many small files


class StagedCopy(Protocol):
    """A copy written and checked, not under its name yet: a local `StagedFile`, or a
    driver's own (a temporary file on a server) that its plan's `publish` knows."""

    @property
    def digests(self) -> Digests: ...

    def discard(self) -> None:
        """Drop what was written; called when nobody will publish it."""


@attrs.frozen(kw_only=True)
class Staged:
    """A copy written and checked beside its destination, waiting for its chunk's publish."""

    key: str
    locator: str
    staged: StagedFile | StagedCopy


#: What one item's work gives: its outcome already (a failure, a copy found reused), or a
#: staged copy that its chunk's publish turns into one.
Result = FileOutcome | Staged

#: Publishes a chunk's staged files; one result per file, as `transfer.publish_staged`.
Publish = Callable[..., list[TransferFailed | str | None]]


@attrs.frozen(kw_only=True)
class Plan(Generic[ItemT, TaskT]):
    """A batch's steps for each item, and where each may run.

    `prepare(item)` always runs in the driver's process (it may keep state, such as which
    directories were swept) and gives the item's task; raising fails that item.
    `stage(task, progress)` copies and checks it, in the calling thread, a worker thread or
    a worker process. For processes it must be importable by name (a module-level function,
    or a functools.partial of one, with picklable arguments) and `progress` is None there:
    the stager reports each file's size when its outcome arrives. `describe(item)` begins
    a failure message ("archiving clip.mov"). `publish(staged, stop=...)` publishes one
    chunk (durably by default; `functools.partial(publish_staged, sync=False)` skips the
    syncs); importable too, since processes publish their own tasks. `abandon(tasks,
    made_by)` removes what worker process `made_by` (a `workers.WorkerId`), which died or
    was stopped with these tasks, may have left (temporary files), once it is gone.
    """

    prepare: Callable[[ItemT], TaskT]
    stage: Callable[[TaskT, ProgressCallback | None], Result]
    describe: Callable[[ItemT], str]
    publish: Publish = publish_staged
    abandon: Callable[[Sequence[TaskT], WorkerId], None] | None = None

    def runs_in_processes(self) -> bool:
        """Whether `stage` and `publish` can be named to a fresh interpreter."""
        return _importable(self.stage) and _importable(self.publish)


def _importable(function: Any) -> bool:
    import pickle

    target = function.func if isinstance(function, functools.partial) else function
    if getattr(target, "__module__", None) in (None, "__main__"):
        return False  # a worker never imports the caller's __main__
    try:
        pickle.dumps(function, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # lambdas, closures, objects holding locks or sockets
        return False
    return True


def failure_outcome(key: str, what: str, exc: BaseException, request: Any) -> FileOutcome:
    """A per-file failure with a message an admin can act on (`what`: "archiving clip.mov")."""
    failed = unworded_failure(key, exc)
    if isinstance(failed, FileOutcome):
        return failed
    if failed.unexpected:
        log.error(
            "policy=%s job=%s %s failed unexpectedly",
            getattr(request, "policy", None),
            getattr(request, "job_id", None),
            what,
            exc_info=exc,
        )
    return failed.worded(what)


def unworded_failure(key: str, exc: BaseException) -> FileOutcome | Unworded:
    """An item's failure as far as it can be told without knowing what the item's work was:
    complete for the core's own errors (their message says it all), else `Unworded`."""
    if isinstance(exc, ArchiveCoreError):
        return FileOutcome.failure(key, exc.message, retryable=exc.retryable)
    return Unworded.of(key, exc)


@attrs.frozen(kw_only=True)
class Unworded:
    """An item's failure without the words for what its work was ("archiving clip.mov").

    A worker process sends these back instead of describing every item of its tasks: the
    driver's process, which has the items, adds the description to the few that failed.
    """

    key: str
    reason: str  # "Permission denied (/srv/archive/VX-1)", "ValueError: ..."
    retryable: bool
    unexpected: bool  # not an OSError: a fault of the code, worth a log line with a traceback

    @classmethod
    def of(cls, key: str, exc: BaseException) -> Unworded:
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            return cls(
                key=key, reason=f"{exc.strerror or exc}{where}", retryable=True, unexpected=False
            )
        return cls(key=key, reason=f"{type(exc).__name__}: {exc}", retryable=False, unexpected=True)

    def worded(self, what: str) -> FileOutcome:
        return FileOutcome.failure(
            self.key, f"{what} failed: {self.reason}", retryable=self.retryable
        )
