"""The filesys driver's batch machinery: per-file work, chunked durable publish, threads."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from archive_core import transfer
from archive_core.errors import ArchiveCoreError
from archive_core.model import FileOutcome

log = logging.getLogger(__name__)

# Staged files are published (one sync, renames, directory fsyncs) and their outcomes handed
# to the core in chunks: big enough that the sync is paid rarely, small enough that the core
# journals progress often and a crash redoes little.
_CHUNK_FILES = 256
_CHUNK_BYTES = 256 * 1024 * 1024
_CHUNK_SECONDS = 1.0

# Workers hand results to the publishing thread in groups: per-file hand-offs between threads
# would cost more than copying a small file.
_HANDOFF_FILES = 32
_HANDOFF_SECONDS = 0.05

# Files go to worker threads (and more are added) while the process uses less than this
# much of one CPU, that is while it mostly waits on storage; checked this often.
_GROW_BELOW_CPU = 0.6
_GROW_SECONDS = 0.2

_END = object()


@attrs.frozen(kw_only=True)
class Staged:
    """A copy written and checked under a temporary name, waiting for its chunk's publish."""

    key: str
    locator: str
    staged: transfer.StagedFile


Result = FileOutcome | Staged


def run_batch(
    items: Sequence[Any],
    work: Callable[[Any], Result],
    describe: Callable[[Any], str],
    request: Any,
    *,
    parallel: int,
    fsync: bool,
    target: str,
) -> Iterator[FileOutcome]:
    """Run `work` for every item; publish staged copies in chunks; yield as they finish.

    Files are first handled one after another in this thread: on a fast local disk that
    is quickest, because Python threads would contend for the GIL over every small
    file. When the process turns out to be mostly waiting on storage (a NAS, a slow
    disk), the remaining files go to worker threads, up to `parallel`. Failures and
    reused copies are yielded at once; staged copies wait for their chunk's publish (one
    sync, renames, directory fsyncs). Whatever stops the generator (the core closing it,
    an error), workers stop and the temporary files of unpublished copies are removed.
    """
    feed = iter(items)
    chunk = _Chunk()
    pacer = _Pacer()
    publisher = _Publisher(fsync=fsync)
    workers: _Workers | None = None
    try:
        for item in feed:
            try:
                result = work(item)
            except Exception as exc:  # Ctrl-C and generator exits must still stop the batch
                result = failure_outcome(item.key, describe(item), exc, request)
            if isinstance(result, FileOutcome):
                yield result
            else:
                chunk.add(result)
            if chunk.due():
                yield from publisher.submit(chunk.take())
            yield from publisher.ready()
            if parallel > 1 and pacer.waiting_on_storage():
                log.debug(
                    "policy=%s job=%s target %s waits on storage: copying in parallel",
                    request.policy,
                    request.job_id,
                    target,
                )
                if chunk:  # publish what this thread staged, so the workers' window is exact
                    yield from publisher.submit(chunk.take())
                yield from publisher.finish()
                workers = _Workers(
                    feed,
                    work,
                    describe,
                    request,
                    limit=parallel,
                    window=2 * _CHUNK_FILES + parallel * _HANDOFF_FILES,
                    pacer=pacer,
                    name=f"filesys-{target}",
                )
                break
        while workers is not None and workers.running:
            for result in workers.collect(chunk.wait(_GROW_SECONDS)):
                if isinstance(result, FileOutcome):
                    workers.done(1)
                    yield result
                else:
                    chunk.add(result)
            if chunk.due():
                ready = chunk.take()
                workers.done(len(ready))
                yield from publisher.submit(ready)
            yield from publisher.ready()
        if chunk:
            yield from publisher.submit(chunk.take())
        yield from publisher.finish()
    finally:
        leftovers = workers.stop() if workers is not None else []
        for left in [*chunk.take(), *publisher.abandon(), *leftovers]:
            if isinstance(left, Staged):
                left.staged.discard()


def published_outcomes(
    ready: list[Staged], *, fsync: bool, stop: Callable[[], bool] | None = None
) -> list[FileOutcome]:
    """Publish a chunk (sync, renames, directory fsyncs); the outcome of each of its files.

    `stop` is asked before each name is published (see `transfer.publish_staged`).
    """
    try:
        errors = transfer.publish_staged([s.staged for s in ready], sync=fsync, stop=stop)
    except BaseException:
        for entry in ready:
            entry.staged.discard()
        raise
    outcomes = []
    for entry, error in zip(ready, errors, strict=True):
        digests = entry.staged.digests
        if error is None or error is transfer.ALREADY_PUBLISHED:
            outcomes.append(
                FileOutcome.success(
                    entry.key,
                    locator=entry.locator,
                    size=digests.size,
                    sha1=digests.sha1,
                    sha256=digests.sha256,
                    reused=error is not None,
                )
            )
        else:
            outcomes.append(
                FileOutcome.failure(
                    entry.key, error.message, retryable=error.retryable, locator=entry.locator
                )
            )
    return outcomes


# --- pacing ------------------------------------------------------------------------------------


class _Chunk:
    """Staged copies waiting to be published together."""

    def __init__(self) -> None:
        self._staged: list[Staged] = []
        self._bytes = 0
        self._deadline = 0.0

    def __bool__(self) -> bool:
        return bool(self._staged)

    def add(self, staged: Staged) -> None:
        if not self._staged:
            self._deadline = time.monotonic() + _CHUNK_SECONDS
        self._staged.append(staged)
        self._bytes += staged.staged.digests.size

    def due(self) -> bool:
        return bool(self._staged) and (
            len(self._staged) >= _CHUNK_FILES
            or self._bytes >= _CHUNK_BYTES
            or time.monotonic() >= self._deadline
        )

    def wait(self, longest: float) -> float:
        """How long to wait for more results before this chunk is due."""
        if not self._staged:
            return longest
        return min(longest, max(0.0, self._deadline - time.monotonic()))

    def take(self) -> list[Staged]:
        staged, self._staged, self._bytes = self._staged, [], 0
        return staged


class _Publisher:
    """Publishes chunks in a background thread while the next chunk is staged.

    The sync (syncfs), the renames and the directory fsyncs are mostly waiting for the
    kernel and the disk, with the GIL released, so running them beside the staging (and
    beside the core's own work on the outcomes) hides most of their time. Only one chunk
    is in flight at a time, so outcomes keep their order and at most one chunk's files
    are pending. A chunk's outcomes are reported once all of it is published.
    """

    def __init__(self, *, fsync: bool) -> None:
        self._fsync = fsync
        self._pending: tuple[list[Staged], Any] | None = None
        self._executor: Any = None

    def submit(self, chunk: list[Staged]) -> Iterator[FileOutcome]:
        """Start publishing `chunk`; yields the outcomes of the chunk before it."""
        try:
            yield from self.finish()
        except BaseException:  # closed while reporting the chunk before: nobody takes this one
            for entry in chunk:
                entry.staged.discard()
            raise
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="filesys-publish")
        self._pending = (
            chunk,
            self._executor.submit(published_outcomes, chunk, fsync=self._fsync),
        )

    def ready(self) -> Iterator[FileOutcome]:
        """Outcomes of the pending chunk if it is published (never waits)."""
        if self._pending is not None and self._pending[1].done():
            yield from self.finish()

    def finish(self) -> Iterator[FileOutcome]:
        """Wait for the pending chunk to be published; yield its outcomes."""
        if self._pending is None:
            return
        future = self._pending[1]
        self._pending = None
        yield from future.result()

    def abandon(self) -> list[Staged]:
        """Stop: the staged files nobody will report, once their publish has returned.

        Those already renamed stay published: a re-run finds them and reports them reused.
        """
        left: list[Staged] = []
        if self._pending is not None:
            chunk, future = self._pending
            self._pending = None
            future.exception()  # wait: the publish must not run on files being removed
            left = chunk
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        return left


class _Pacer:
    """Tells whether the process is mostly waiting (on storage) rather than computing."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def waiting_on_storage(self) -> bool:
        """True when, since the last sample (at least _GROW_SECONDS ago), CPU use was low."""
        now = time.monotonic()
        if now - self._wall < _GROW_SECONDS:
            return False
        cpu = time.process_time()
        busy = (cpu - self._cpu) / (now - self._wall)
        self._wall, self._cpu = now, cpu
        return busy < _GROW_BELOW_CPU


# --- worker threads ----------------------------------------------------------------------------


class _Workers:
    """Threads that pull items, run one file's work each, and hand results over in groups.

    Started when the publishing thread found itself waiting on storage: they start as two
    and grow, up to `limit`, while the process keeps waiting. At most `window` results are
    out at once (taken but not yet reported done), which bounds the temporary files a
    batch holds.
    """

    def __init__(
        self,
        feed: Iterator[Any],
        work: Callable[[Any], Result],
        describe: Callable[[Any], str],
        request: Any,
        *,
        limit: int,
        window: int,
        pacer: _Pacer,
        name: str,
    ) -> None:
        self._feed = feed
        self._feed_lock = threading.Lock()
        self._work = work
        self._describe = describe
        self._request = request
        self._limit = limit
        self._budget = threading.Semaphore(window)
        self._stop = threading.Event()
        self._drained = threading.Event()  # the feed is empty: no point in more threads
        self._results: queue.SimpleQueue[list[Result] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._finished = 0
        self._name = name
        self._pacer = pacer
        self._grow()
        self._grow()

    @property
    def running(self) -> bool:
        return self._finished < len(self._threads)

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
        self._consider_growing()
        return arrived

    def done(self, count: int) -> None:
        """`count` results have left the driver: room for as many more."""
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

    def _consider_growing(self) -> None:
        if (
            len(self._threads) < self._limit
            and not self._drained.is_set()
            and not self._stop.is_set()
            and self._pacer.waiting_on_storage()
        ):
            log.debug(
                "policy=%s job=%s %s still waits on storage: thread %d added",
                getattr(self._request, "policy", None),
                getattr(self._request, "job_id", None),
                self._name,
                len(self._threads) + 1,
            )
            self._grow()

    def _grow(self) -> None:
        thread = threading.Thread(
            target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _room(self) -> bool:
        """Wait until the window has room for one more result; False once stopped."""
        while not self._stop.is_set():
            if self._budget.acquire(timeout=0.1):
                return True
        return False

    def _run(self) -> None:
        group: list[Result] = []
        handed = time.monotonic()
        try:
            while not self._stop.is_set():
                if not self._budget.acquire(blocking=False):
                    # The window is full: what this thread holds must reach the publisher
                    # first, or both would wait for each other.
                    if group:
                        self._results.put(group)
                        group, handed = [], time.monotonic()
                    if not self._room():
                        break
                with self._feed_lock:
                    item = next(self._feed, _END)
                if item is _END:
                    self._budget.release()
                    self._drained.set()
                    break
                try:
                    group.append(self._work(item))
                except BaseException as exc:
                    group.append(
                        failure_outcome(item.key, self._describe(item), exc, self._request)
                    )
                if len(group) >= _HANDOFF_FILES or time.monotonic() - handed >= _HANDOFF_SECONDS:
                    self._results.put(group)
                    group, handed = [], time.monotonic()
        finally:
            if group:
                self._results.put(group)
            self._results.put(None)  # this thread is done


def failure_outcome(key: str, what: str, exc: BaseException, request: Any) -> FileOutcome:
    """A per-file failure with a message an admin can act on."""
    if isinstance(exc, ArchiveCoreError):
        return FileOutcome.failure(key, exc.message, retryable=exc.retryable)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return FileOutcome.failure(
            key, f"{what} failed: {exc.strerror or exc}{where}", retryable=True
        )
    log.error(
        "policy=%s job=%s filesys %s failed unexpectedly",
        getattr(request, "policy", None),
        getattr(request, "job_id", None),
        what,
        exc_info=exc,
    )
    return FileOutcome.failure(key, f"{what} failed: {type(exc).__name__}: {exc}")
