"""Staged copies gathered into chunks and published in a background thread, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from archive_core.model import FileOutcome
from archive_core.transfer.publish import ALREADY_PUBLISHED
from archive_core.transfer.stager._plan import Publish, Result, Staged

# Staged files are published (one sync, the links, directory fsyncs) and their outcomes handed
# to the core in chunks: big enough that the sync is paid rarely, small enough that the core
# journals progress often and a crash redoes little. Read when a chunk starts.
CHUNK_FILES = 256
CHUNK_BYTES = 256 * 1024 * 1024
CHUNK_SECONDS = 1.0


class Chunk:
    """Staged copies waiting to be published together; due by count, bytes or age."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._files, self._bytes, self._seconds = CHUNK_FILES, CHUNK_BYTES, CHUNK_SECONDS
        self._staged: list[Staged] = []
        self._size = 0
        self._deadline = 0.0

    def __bool__(self) -> bool:
        return bool(self._staged)

    def add(self, staged: Staged) -> None:
        if not self._staged:
            self._deadline = self._clock() + self._seconds
        self._staged.append(staged)
        self._size += staged.staged.digests.size

    def due(self) -> bool:
        return bool(self._staged) and (
            len(self._staged) >= self._files
            or self._size >= self._bytes
            or self._clock() >= self._deadline
        )

    def wait(self, longest: float) -> float:
        """How long to wait for more results before this chunk is due."""
        if not self._staged:
            return longest
        return min(longest, max(0.0, self._deadline - self._clock()))

    def take(self) -> list[Staged]:
        staged, self._staged, self._size = self._staged, [], 0
        return staged


def published_outcomes(
    ready: list[Staged], publish: Publish, *, stop: Callable[[], bool] | None = None
) -> list[FileOutcome]:
    """Publish a chunk with `publish`; the outcome of each of its files, in order.

    `stop` is asked before each name is published (see `transfer.publish_staged`).
    """
    try:
        errors = publish([s.staged for s in ready], stop=stop)
    except BaseException:
        for entry in ready:
            entry.staged.discard()
        raise
    outcomes = []
    for entry, error in zip(ready, errors, strict=True):
        digests = entry.staged.digests
        if error is None or error is ALREADY_PUBLISHED:
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
            assert not isinstance(error, str)
            outcomes.append(
                FileOutcome.failure(
                    entry.key, error.message, retryable=error.retryable, locator=entry.locator
                )
            )
    return outcomes


class Publisher:
    """Publishes chunks in a background thread while the next chunk is staged.

    The sync (syncfs), the links and the directory fsyncs are mostly waiting for the kernel
    and the disk, with the GIL released, so running them beside the staging (and beside the
    core's own work on the outcomes) hides most of their time. Only one chunk is in flight
    at a time, so outcomes keep their order and at most one chunk's files are pending. A
    chunk's outcomes are reported once all of it is published.
    """

    def __init__(self, publish: Publish, *, name: str) -> None:
        self._publish = publish
        self._name = name
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

            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{self._name}-publish")
        self._pending = (chunk, self._executor.submit(published_outcomes, chunk, self._publish))

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

        Those already linked stay published: a re-run finds them and reports them reused.
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


def publish_as_ready(
    groups: Iterable[list[Result]],
    chunk: Chunk,
    publisher: Publisher,
    *,
    taken: Callable[[int], None],
) -> Iterator[FileOutcome]:
    """The loop of the in-process modes: outcomes at once, staged copies chunk by chunk.

    `groups` are results as they arrive (one at a time inline, handed over in groups by
    worker threads, possibly none when a wait ran out); `taken(n)` is told when n results
    have left for the core or the publisher.
    """
    for group in groups:
        for result in group:
            if isinstance(result, FileOutcome):
                taken(1)
                yield result
            else:
                chunk.add(result)
        if chunk.due():
            ready = chunk.take()
            taken(len(ready))
            yield from publisher.submit(ready)
        yield from publisher.ready()
    if chunk:
        yield from publisher.submit(chunk.take())
    yield from publisher.finish()


def publish_results(
    groups: Iterable[list[Result]],
    publish: Publish,
    *,
    name: str,
    clock: Callable[[], float],
    taken: Callable[[int], None],
) -> Iterator[FileOutcome]:
    """For a driver that stages by itself (its own threads, a pipeline): its results as they
    arrive in groups (an empty group when a wait ran out, so that a chunk due by its age
    goes), published as the stager publishes its workers' (`publish_as_ready`): outcomes at
    once, staged copies chunk by chunk in the background. `taken(n)`: n results have left.
    Stopped early, every staged copy not published is discarded."""
    chunk = Chunk(clock)
    publisher = Publisher(publish, name=name)
    try:
        yield from publish_as_ready(groups, chunk, publisher, taken=taken)
    finally:
        for left in [*chunk.take(), *publisher.abandon()]:
            left.staged.discard()
