"""Hashing while bytes move: sha1 and sha256 in one pass, for copies and pulled streams alike."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, NoReturn

import attrs

from archive_core.errors import FixityMismatch, TransferFailed
from archive_core.model import ProgressCallback
from archive_core.transfer._buffers import CHUNK_SIZE, PIPELINE_DEPTH, POOL
from archive_core.transfer._sinks import Sink, sink_for
from archive_core.transfer.sources import RegularFile, open_regular

#: From this size on a file is hashed by two threads in parallel with the write, written with
#: O_DIRECT (it bypasses the page cache, so no separate writeback has to be waited for, and an
#: archive run does not evict the host's working set) and made durable by its own fsync.
LARGE_FILE = 16 * 1024 * 1024


@attrs.frozen(kw_only=True)
class Digests:
    """What the bytes that moved hash to: the size and both digests in lowercase hex."""

    size: int
    sha1: str
    sha256: str


def label_of(stream: Any, fallback: str) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else fallback


def _filler(source: BinaryIO, label: str, size: int | None) -> Callable[[memoryview], int]:
    """A function that fills a buffer from `source` (short only at end of file).

    With `size` (what the file held when opened), filling stops once that many bytes are in:
    asking again would only find the end of the file, one more system call per small file.
    Shorter reads (FUSE, network file systems) go on being retried until `size` or the end.
    """
    readinto = source.readinto
    seen = 0

    def fill(view: memoryview) -> int:
        nonlocal seen
        filled = 0
        wanted = len(view)
        try:
            while filled < wanted:
                count = readinto(view[filled:])
                if not count:
                    break
                filled += count
                if seen + filled == size:
                    break
        except OSError as exc:
            raise TransferFailed(
                f"Could not read {label}: {exc.strerror or exc}.", paths=(label,), retryable=True
            ) from exc
        seen += filled
        return filled

    return fill


def size_of(source: BinaryIO) -> int | None:
    """How big `source` is, when it can tell (regular file, seekable stream).

    Only a hint for choosing how to copy (small inline, large pipelined), so the size of a
    regular file is taken as is, without asking for the read position (one syscall less
    per file counts when thousands of small files move).
    """
    if isinstance(source, RegularFile):
        return source.size
    try:
        info = os.fstat(source.fileno())
    except (AttributeError, OSError, ValueError):
        pass
    else:
        return info.st_size if stat.S_ISREG(info.st_mode) else None
    try:
        if not source.seekable():
            return None
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return end - here


def copy_stream(
    source: BinaryIO | int,
    destination: BinaryIO | int | None,
    *,
    progress: ProgressCallback | None = None,
    source_name: str | None = None,
    destination_name: str | None = None,
) -> Digests:
    """Move every byte of `source` to `destination`, hashing sha1 and sha256 on the way.

    `source` is a binary file object with `readinto` (or a file descriptor), `destination`
    a binary file object or descriptor, or None to only hash. `progress` is called in the
    calling thread with the bytes moved since its previous call. Large sources are hashed by
    two threads while a third writes, so the copy runs at the speed of the slower hash.
    Raises TransferFailed naming the side that failed.
    """
    if isinstance(source, int):
        source = open(source, "rb", buffering=0, closefd=False)  # noqa: SIM115 - not ours to close
    src_label = source_name or label_of(source, "the source")
    size = size_of(source)
    sink = None
    if destination is not None:
        dst_label = destination_name or label_of(destination, "the destination")
        sink = sink_for(destination, dst_label, large=size is None or size >= LARGE_FILE)
    return hash_while_moving(source, src_label, size, sink, progress)


def hash_while_moving(
    source: BinaryIO,
    label: str,
    size: int | None,
    sink: Sink | None,
    progress: ProgressCallback | None,
) -> Digests:
    """Copy `source` (of `size`, when known) into `sink` (or nowhere), hashing on the way.

    For the package's own copies (`copy_stream`, `stage_file`): small sources go through one
    buffer in this thread, large or unknown ones through the threaded pipeline.
    """
    large = size is None or size >= LARGE_FILE
    if large and hasattr(os, "posix_fadvise"):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # a read-ahead hint
            os.posix_fadvise(source.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    fill = _filler(source, label, size)
    report = progress or _ignore
    if large:
        return _move_pipelined(fill, sink, report)
    return _move_inline(fill, sink, report)


def hash_stream(source: BinaryIO | int, *, progress: ProgressCallback | None = None) -> Digests:
    """Size, sha1 and sha256 of everything readable from `source`."""
    return copy_stream(source, None, progress=progress)


def hash_file(
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    follow_symlinks: bool = True,
) -> Digests:
    """Size, sha1 and sha256 of the regular file at `path` (read once)."""
    with open_regular(path, follow_symlinks=follow_symlinks) as stream:
        return copy_stream(stream, None, progress=progress, source_name=os.fspath(path))


def _ignore(_count: int) -> None:
    pass


class HashingReader:
    """A reader over `source` that hashes what passes through and checks it at the end.

    For drivers whose storage pulls bytes from a stream (an object store's upload, a remote
    file write): hand this to the upload instead of the source. At the end of the source it
    compares the size and sha1 with what was expected and raises FixityMismatch (or
    TransferFailed for a short file) *instead of* reporting the end, so the upload fails
    before it completes and nothing is stored under the final name; a source longer than
    `expected_size` fails at its first byte over. With `expected_size` given, no read asks
    the source for more than is left (plus that one byte). `digests` is set once the end was
    reached and checked.
    """

    def __init__(
        self,
        source: BinaryIO,
        *,
        label: str,
        expected_sha1: str | None = None,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._source = source
        self.name = label
        self._expected_sha1 = expected_sha1.strip().lower() if expected_sha1 else None
        self._expected_size = expected_size
        self._progress = progress or _ignore
        self._sha1, self._sha256 = hashlib.sha1(), hashlib.sha256()
        self._size = 0
        self.digests: Digests | None = None

    def readable(self) -> bool:
        return True

    def read(self, count: int = -1) -> bytes:
        if count is None or count < 0:
            parts = []
            while part := self.read(CHUNK_SIZE):
                parts.append(part)
            return b"".join(parts)
        if self._expected_size is not None:
            # No more than is left, and one byte over to see a source that grew: an upload
            # asks for a MiB at a time, and a zeroed MiB per small file cost more than the file.
            count = min(count, max(self._expected_size - self._size, 0) + 1)
        buffer = bytearray(count)
        got = self.readinto(buffer)
        return bytes(memoryview(buffer)[:got])

    def readinto(self, view: Any) -> int:
        if self.digests is not None or not len(view):
            return 0
        try:
            if hasattr(self._source, "readinto"):
                count = self._source.readinto(view) or 0
            else:
                data = self._source.read(len(view)) or b""
                count = len(data)
                view[:count] = data
        except OSError as exc:
            raise TransferFailed(
                f"Could not read {self.name}: {exc.strerror or exc}.",
                paths=(self.name,),
                retryable=True,
            ) from exc
        if count:
            chunk = memoryview(view)[:count]
            self._sha1.update(chunk)
            self._sha256.update(chunk)
            self._size += count
            if self._expected_size is not None and self._size > self._expected_size:
                self._wrong_size("has more than")  # no need to read the rest to know
            self._progress(count)
            return count
        self._finish()
        return 0

    def _wrong_size(self, how: str) -> NoReturn:
        raise TransferFailed(
            f"{self.name} {how} the {self._expected_size} bytes expected; it changed while it "
            "was read. It was not stored.",
            paths=(self.name,),
            retryable=True,
        )

    def _finish(self) -> None:
        digests = Digests(
            size=self._size, sha1=self._sha1.hexdigest(), sha256=self._sha256.hexdigest()
        )
        if self._expected_size is not None and digests.size != self._expected_size:
            self._wrong_size(f"ended after {digests.size} bytes, not")
        if self._expected_sha1 and digests.sha1 != self._expected_sha1:
            raise FixityMismatch(path=self.name, expected=self._expected_sha1, actual=digests.sha1)
        self.digests = digests


def _move_inline(
    fill: Callable[[memoryview], int],
    sink: Sink | None,
    progress: ProgressCallback,
) -> Digests:
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    total = 0
    buffer = POOL.acquire()
    try:
        view = memoryview(buffer)
        while True:
            count = fill(view)
            if count:
                chunk = view[:count]
                sha1.update(chunk)
                sha256.update(chunk)
                if sink is not None:
                    sink.write(chunk)
                total += count
                progress(count)
            if count < len(view):
                break
    finally:
        POOL.release(buffer)
    return Digests(size=total, sha1=sha1.hexdigest(), sha256=sha256.hexdigest())


def _move_pipelined(
    fill: Callable[[memoryview], int],
    sink: Sink | None,
    progress: ProgressCallback,
) -> Digests:
    """Read in this thread; sha1, sha256 and the write each run in their own thread.

    hashlib and os.write release the GIL on big buffers, so on a machine with SHA-NI the two
    digests and the I/O overlap: the time is that of the slowest of them, not their sum.
    Each worker has one thread, so every digest sees the chunks in order.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    buffers = [POOL.acquire() for _ in range(PIPELINE_DEPTH)]
    views = [memoryview(b) for b in buffers]
    inflight: collections.deque[tuple[int, list[Future[None]]]] = collections.deque()
    total = 0

    def settle(entry: tuple[int, list[Future[None]]]) -> None:
        count, futures = entry
        for future in futures:
            future.result()
        progress(count)

    try:
        with (
            ThreadPoolExecutor(1, thread_name_prefix="sha1") as sha1_worker,
            ThreadPoolExecutor(1, thread_name_prefix="sha256") as sha256_worker,
            ThreadPoolExecutor(1, thread_name_prefix="write") as writer,
        ):
            slot = 0
            while True:
                if len(inflight) == PIPELINE_DEPTH:
                    settle(inflight.popleft())  # frees the buffer about to be refilled
                view = views[slot]
                count = fill(view)
                if count:
                    chunk = view[:count]
                    futures = [
                        sha1_worker.submit(sha1.update, chunk),
                        sha256_worker.submit(sha256.update, chunk),
                    ]
                    if sink is not None:
                        futures.append(writer.submit(sink.write, chunk))
                    inflight.append((count, futures))
                    total += count
                    slot = (slot + 1) % PIPELINE_DEPTH
                if count < len(view):
                    break
            while inflight:
                settle(inflight.popleft())
    finally:
        # The executors have joined their threads here, so no worker still reads a buffer.
        for buffer in buffers:
            POOL.release(buffer)
    return Digests(size=total, sha1=sha1.hexdigest(), sha256=sha256.hexdigest())


def serialized_progress(progress: ProgressCallback | None) -> ProgressCallback | None:
    """`progress` made safe to call from several threads at once (one call at a time): for a
    driver that moves several files in parallel and reports to the core's one callback."""
    if progress is None:
        return None
    lock = threading.Lock()

    def report(count: int) -> None:
        with lock:
            progress(count)

    return report
