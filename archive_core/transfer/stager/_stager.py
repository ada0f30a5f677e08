"""One driver instance's stager: each batch run inline, in threads or in worker processes."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from archive_core.model import FileOutcome, ProgressCallback
from archive_core.transfer.hashing import serialized_progress
from archive_core.transfer.stager import _chunks, _processes
from archive_core.transfer.stager._plan import Mode, Plan, Result, Staged, failure_outcome

if TYPE_CHECKING:
    from archive_core.transfer.stager import _threads

log = logging.getLogger(__name__)

#: Batches from this many files are staged in worker processes by `Mode.AUTO`; smaller ones
#: finish before the workers would have paid for their start-up and hand-offs.
PROCESS_MIN_FILES = 2_000

#: Files whose size is known to be at least this are not "small": a batch mostly made of them
#: is bound by hashing and I/O, which the in-process pipeline already spreads over threads.
SMALL_FILE = 1024 * 1024


def choose_mode(
    items: Sequence[Any], *, threads: int, processes: int, remote: bool = False
) -> Mode:
    """What `Mode.AUTO` runs a batch of `items` as, by its shape and where it goes.

    Storage that answers over a network (`remote`: NFS, SMB, SFTP) is mostly waited on, so
    up to `threads` worker threads overlap the waits. A big batch of mostly small files
    (unknown sizes count as small) goes to `processes` worker processes, when there are
    two or more: per small file the work between system calls needs the interpreter, which
    threads would only take turns at. Anything else runs in the calling thread, quickest
    on a local disk.
    """
    if remote:
        return Mode.THREADS if threads > 1 else Mode.INLINE
    if processes > 1 and len(items) >= PROCESS_MIN_FILES:
        large = sum(1 for item in items if (item.size or 0) >= SMALL_FILE)
        if large * 2 < len(items):
            return Mode.PROCESSES
    return Mode.INLINE


class Stager:
    """Runs a driver's batches: per-item work, staged copies published in durable chunks.

    `workers` bounds how many items are copied at once (worker threads; worker processes
    also by the cores this process may use). Worker processes start at the first batch run
    in processes and are kept for the next ones until `close()`. `clock` times chunks and
    hand-offs (injected by tests).
    """

    def __init__(
        self, *, name: str, workers: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.threads = workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.processes = min(cores or 1, workers)
        self._clock = clock
        self._pool: _processes.ProcessPool | None = None
        self._warned = False

    def close(self) -> None:
        """Stop the worker processes, if a batch started them."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def mode_for(
        self, items: Sequence[Any], plan: Plan[Any, Any], mode: Mode | str, *, remote: bool
    ) -> Mode:
        """The mode a batch really runs in: AUTO chosen by shape, and what cannot run here
        (processes under an embedded interpreter or for a plan that cannot be named to
        one, threads when only one item may be copied at a time) run inline instead."""
        asked = Mode(mode)
        mode = asked
        if mode is Mode.AUTO:
            mode = choose_mode(items, threads=self.threads, processes=self.processes, remote=remote)
        if mode is Mode.PROCESSES:
            why = (
                None
                if _processes.can_start_workers()
                else f"{sys.executable or 'this interpreter'} cannot be started as a worker"
            )
            if why is None and not plan.runs_in_processes():
                why = "the plan's steps cannot be run by another interpreter"
            if why is not None:
                # Auto falls back quietly (an embedded interpreter is a fine deployment);
                # a setting that asked for processes is told once why it gets none.
                if asked is Mode.PROCESSES and not self._warned:
                    self._warned = True
                    log.warning("%s: staging in the calling thread: %s", self.name, why)
                return Mode.INLINE
        if mode is Mode.THREADS and self.threads < 2:
            return Mode.INLINE
        return mode

    def run(
        self,
        items: Sequence[Any],
        plan: Plan[Any, Any],
        *,
        mode: Mode | str = Mode.AUTO,
        remote: bool = False,
        request: Any = None,
        progress: ProgressCallback | None = None,
    ) -> Iterator[FileOutcome]:
        """Run `plan` for every item; yield exactly one outcome per item as they finish.

        Failures and reused copies are yielded at once; staged copies once their chunk is
        published (inline and threads) or their task is (processes). `request` gives log
        lines their policy and job id. Whatever stops the generator early (the core
        closing it, an error), workers stop and nothing unpublished is left behind.
        """
        chosen = self.mode_for(items, plan, mode, remote=remote)
        log.debug(
            "policy=%s job=%s %s: %d items %s",
            getattr(request, "policy", None),
            getattr(request, "job_id", None),
            self.name,
            len(items),
            chosen.value,
        )
        if chosen is Mode.PROCESSES:
            if self._pool is None:
                self._pool = _processes.ProcessPool(self.processes, self.name)
            return _processes.run_in_processes(
                self._pool, items, plan, request=request, progress=progress, name=self.name
            )
        threads = self.threads if chosen is Mode.THREADS else 1
        return self._run_here(items, plan, threads=threads, request=request, progress=progress)

    def _run_here(
        self,
        items: Sequence[Any],
        plan: Plan[Any, Any],
        *,
        threads: int,
        request: Any,
        progress: ProgressCallback | None,
    ) -> Iterator[FileOutcome]:
        """Inline (`threads` 1) or in worker threads: staged copies published chunk by chunk."""
        if threads > 1:
            progress = serialized_progress(progress)

        def fail(item: Any, exc: BaseException) -> FileOutcome:
            return failure_outcome(item.key, plan.describe(item), exc, request)

        def work(item: Any) -> Result:
            try:
                return plan.stage(plan.prepare(item), progress)
            except Exception as exc:  # Ctrl-C and generator exits must still stop the batch
                return fail(item, exc)

        chunk = _chunks.Chunk(self._clock)
        publisher = _chunks.Publisher(plan.publish, name=self.name)
        workers: _threads.Workers | None = None
        try:
            if threads > 1:
                from archive_core.transfer.stager import _threads

                workers = _threads.Workers(
                    iter(items),
                    work,
                    fail,
                    count=threads,
                    window=2 * _chunks.CHUNK_FILES + threads * _threads.HANDOFF_FILES,
                    name=self.name,
                    clock=self._clock,
                )
                yield from _chunks.publish_as_ready(
                    workers.groups(chunk), chunk, publisher, taken=workers.done
                )
            else:
                yield from _chunks.publish_as_ready(
                    ([work(item)] for item in items), chunk, publisher, taken=_ignore
                )
        finally:
            leftovers = workers.stop() if workers is not None else []
            for left in [*chunk.take(), *publisher.abandon(), *leftovers]:
                if isinstance(left, Staged):
                    left.staged.discard()


def _ignore(_count: int) -> None:
    pass
