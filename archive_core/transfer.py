"""Shared byte moving for drivers: hash-while-copy, atomic publish, safe paths, readable sources.

Every driver that writes files reuses these pieces so the core's promises hold alike for all:
bytes are hashed (sha1 for Portal's value, sha256 for the catalog) while they move, a copy is
published under its final name only after its sha1 matched and its bytes are durable, and a
name or locator that comes from outside can never lead out of the archive root.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import itertools
import logging
import mmap
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import attrs

from archive_core import workers
from archive_core.errors import FixityMismatch, TransferFailed, UnsafeName
from archive_core.model import ProgressCallback
from archive_core.naming import NAME_MAX

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Bytes moved per read and write; large enough that hashlib and the kernel dominate Python.
CHUNK_SIZE = 8 * 1024 * 1024

#: From this size on a file is hashed by two threads in parallel with the write, written with
#: O_DIRECT (it bypasses the page cache, so no separate writeback has to be waited for, and an
#: archive run does not evict the host's working set) and made durable by its own fsync.
LARGE_FILE = 16 * 1024 * 1024

#: Chunks in flight in the large-file pipeline: one being read, the others hashed or written.
_PIPELINE_DEPTH = 4

#: O_DIRECT wants buffer addresses, offsets and lengths aligned to the device's logical block;
#: 4096 covers every current disk. Pool buffers come from mmap and are page aligned.
_ALIGN = 4096

_O_DIRECT = getattr(os, "O_DIRECT", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)

#: How many times a temporary file is re-tried when its directory vanished under it (a
#: concurrent delete removed the empty layout directory between mkdir and open).
_CREATE_ATTEMPTS = 3


@attrs.frozen(kw_only=True)
class Digests:
    """What the bytes that moved hash to: the size and both digests in lowercase hex."""

    size: int
    sha1: str
    sha256: str


# --- reusable buffers --------------------------------------------------------------------------


class _BufferPool:
    """Page-aligned chunk buffers, kept between copies.

    Reusing buffers avoids re-faulting fresh memory for every file (costly in VMs where the
    host backs guest pages lazily) and anonymous mmap gives the alignment O_DIRECT needs.
    """

    def __init__(self, size: int, keep: int) -> None:
        self._size = size
        self._keep = keep
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def acquire(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self._size)

    def release(self, buffer: mmap.mmap) -> None:
        """Keep `buffer` for the next copy, or let it go when the pool is full.

        A buffer let go is never closed here: views of it (a copy's chunk, a frame held by a
        traceback) may still be exported, and mmap.close() would then raise BufferError and
        fail a file that was copied perfectly well. The mapping is freed with its last view.
        """
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)


_POOL = _BufferPool(CHUNK_SIZE, keep=2 * _PIPELINE_DEPTH)


# --- sources and destinations --------------------------------------------------------------


def _label(stream: Any, fallback: str) -> str:
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


class _FdSink:
    """Writes to a file descriptor, honouring O_DIRECT's alignment and falling back gracefully."""

    def __init__(
        self, fd: int, label: str, *, flush_behind: bool, direct: bool | None = None
    ) -> None:
        self._fd = fd
        self._label = label
        if direct is None:  # a descriptor from elsewhere: ask the kernel how it was opened
            import fcntl

            direct = bool(_O_DIRECT) and bool(fcntl.fcntl(fd, fcntl.F_GETFL) & _O_DIRECT)
        self._direct = direct
        # Buffered large writes start writeback as they go, so the final fsync has little
        # left to wait for; posix_fadvise(DONTNEED) on dirty pages does exactly that on Linux.
        self._flush_behind = flush_behind and not direct and hasattr(os, "posix_fadvise")
        self._offset = 0

    def write(self, view: memoryview) -> None:
        try:
            if self._direct:
                aligned = len(view) - len(view) % _ALIGN
                if aligned:
                    self._write_all(view[:aligned])
                if aligned < len(view):
                    # Only the file's last chunk is short: finish it through the page cache.
                    self._drop_direct()
                    self._write_all(view[aligned:])
            else:
                self._write_all(view)
                if self._flush_behind:
                    os.posix_fadvise(
                        self._fd, self._offset - len(view), len(view), os.POSIX_FADV_DONTNEED
                    )
        except OSError as exc:
            raise TransferFailed(
                f"Could not write {self._label}: {exc.strerror or exc}.",
                paths=(self._label,),
                retryable=exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN),
            ) from exc

    def _write_all(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            try:
                count = os.write(self._fd, view[done:])
            except OSError as exc:
                if exc.errno == errno.EINVAL and self._direct:
                    # The file system or device refused this O_DIRECT write (alignment, no
                    # support): the same bytes go through the page cache instead.
                    self._drop_direct()
                    continue
                raise
            done += count
            self._offset += count

    def _drop_direct(self) -> None:
        if self._direct:
            import fcntl

            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
            self._direct = False


class _ObjectSink:
    """Writes to a file-like object without a descriptor (BytesIO, a remote file)."""

    def __init__(self, target: BinaryIO, label: str) -> None:
        self._target = target
        self._label = label

    def write(self, view: memoryview) -> None:
        done = 0
        try:
            while done < len(view):
                count = self._target.write(view[done:])
                done += len(view) - done if count is None else count
        except OSError as exc:
            raise TransferFailed(
                f"Could not write {self._label}: {exc.strerror or exc}.", paths=(self._label,)
            ) from exc


def _sink_for(destination: BinaryIO | int, label: str, *, large: bool) -> _FdSink | _ObjectSink:
    if isinstance(destination, int):
        return _FdSink(destination, label, flush_behind=large)
    try:
        fd = destination.fileno()
    except (AttributeError, OSError, ValueError):
        return _ObjectSink(destination, label)
    destination.flush()  # bytes already buffered in the object must land before ours
    return _FdSink(fd, label, flush_behind=large)


def _size_of(source: BinaryIO) -> int | None:
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


# --- hash while moving ---------------------------------------------------------------------


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
    src_label = source_name or _label(source, "the source")
    size = _size_of(source)
    sink = None
    if destination is not None:
        dst_label = destination_name or _label(destination, "the destination")
        sink = _sink_for(destination, dst_label, large=size is None or size >= LARGE_FILE)
    return _move(source, src_label, size, sink, progress)


def _move(
    source: BinaryIO,
    label: str,
    size: int | None,
    sink: _FdSink | _ObjectSink | None,
    progress: ProgressCallback | None,
) -> Digests:
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
    TransferFailed for a short or long file) *instead of* reporting the end, so the upload
    fails before it completes and nothing is stored under the final name. `digests` is set
    once the end was reached and checked.
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
            self._progress(count)
            return count
        self._finish()
        return 0

    def _finish(self) -> None:
        digests = Digests(
            size=self._size, sha1=self._sha1.hexdigest(), sha256=self._sha256.hexdigest()
        )
        if self._expected_size is not None and digests.size != self._expected_size:
            raise TransferFailed(
                f"{self.name} ended after {digests.size} bytes, expected {self._expected_size}; "
                "it changed while it was read. It was not stored.",
                paths=(self.name,),
                retryable=True,
            )
        if self._expected_sha1 and digests.sha1 != self._expected_sha1:
            raise FixityMismatch(path=self.name, expected=self._expected_sha1, actual=digests.sha1)
        self.digests = digests


def _move_inline(
    fill: Callable[[memoryview], int],
    sink: _FdSink | _ObjectSink | None,
    progress: ProgressCallback,
) -> Digests:
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    total = 0
    buffer = _POOL.acquire()
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
        _POOL.release(buffer)
    return Digests(size=total, sha1=sha1.hexdigest(), sha256=sha256.hexdigest())


def _move_pipelined(
    fill: Callable[[memoryview], int],
    sink: _FdSink | _ObjectSink | None,
    progress: ProgressCallback,
) -> Digests:
    """Read in this thread; sha1, sha256 and the write each run in their own thread.

    hashlib and os.write release the GIL on big buffers, so on a machine with SHA-NI the two
    digests and the I/O overlap: the time is that of the slowest of them, not their sum.
    Each worker has one thread, so every digest sees the chunks in order.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    buffers = [_POOL.acquire() for _ in range(_PIPELINE_DEPTH)]
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
                if len(inflight) == _PIPELINE_DEPTH:
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
                    slot = (slot + 1) % _PIPELINE_DEPTH
                if count < len(view):
                    break
            while inflight:
                settle(inflight.popleft())
    finally:
        # The executors have joined their threads here, so no worker still reads a buffer.
        for buffer in buffers:
            _POOL.release(buffer)
    return Digests(size=total, sha1=sha1.hexdigest(), sha256=sha256.hexdigest())


# --- names and locators from outside ---------------------------------------------------------


def _shown(text: str) -> str:
    """A name quoted for an error message: escapes visible, very long names shortened."""
    if len(text) <= 120:
        return repr(text)
    return f"{text[:100]!r}… ({len(os.fsencode(text))} bytes)"


def _check_component(part: str, *, whole: str, what: str) -> None:
    if part == "":
        raise UnsafeName(
            f"Refusing {what} {_shown(whole)}: it has an empty path component "
            "(a doubled or trailing '/').",
            paths=(whole,),
        )
    if part in (".", ".."):
        raise UnsafeName(
            f"Refusing {what} {_shown(whole)}: it has a {part!r} component; only plain names "
            "inside the archive root are allowed.",
            paths=(whole,),
        )
    length = len(os.fsencode(part))
    if length > NAME_MAX:
        raise UnsafeName(
            f"Refusing {what} {_shown(whole)}: its component {_shown(part)} is {length} bytes "
            f"long; file systems allow at most {NAME_MAX}.",
            paths=(whole,),
        )


def _check_text(text: str, *, what: str) -> None:
    if not isinstance(text, str):
        raise UnsafeName(f"Refusing {what} {text!r}: it is not text.", paths=(repr(text),))
    if not text:
        raise UnsafeName(f"Refusing an empty {what}.")
    if "\0" in text:
        raise UnsafeName(f"Refusing {what} {_shown(text)}: it contains a NUL byte.", paths=(text,))


def check_name(name: str, *, what: str = "file name") -> str:
    """Return `name` if it is one safe path component; raise UnsafeName naming it otherwise.

    Refused: empty, NUL bytes, '/', '.' and '..', more than 255 bytes.
    """
    _check_text(name, what=what)
    if "/" in name:
        raise UnsafeName(
            f"Refusing {what} {_shown(name)}: it contains '/', but must be a single name.",
            paths=(name,),
        )
    _check_component(name, whole=name, what=what)
    return name


def check_locator(locator: str, *, what: str = "locator") -> str:
    """Return `locator` if it is a safe relative posix path; raise UnsafeName naming it if not.

    For storage without a file system (object stores, tape indexes), where `safe_join` has
    no root to resolve against: the same refusals (empty, NUL bytes, absolute, '.' or '..'
    components, empty components, components over 255 bytes), no symlink check.
    """
    _locator_parts(locator, what=what, root=None)
    return locator


def _locator_parts(locator: str, *, what: str, root: str | None) -> list[str]:
    _check_text(locator, what=what)
    if locator.startswith("/"):
        where = f"the archive root {root}" if root is not None else "the archive target"
        raise UnsafeName(
            f"Refusing {what} {_shown(locator)}: it is an absolute path; only paths relative "
            f"to {where} are allowed.",
            paths=(locator,),
        )
    parts = locator.split("/")
    for part in parts:
        _check_component(part, whole=locator, what=what)
    return parts


def safe_join(root: str | os.PathLike[str], locator: str, *, what: str = "locator") -> Path:
    """`root / locator`, refusing any locator that could lead outside `root`.

    `locator` is a relative posix path (an archive name, or the part of an external id after
    the target). Refused with UnsafeName: empty, NUL bytes, absolute, '.' or '..' components,
    empty components, components over 255 bytes, and paths whose existing parts are symbolic
    links resolving outside root. Parts that do not exist yet are fine (they get created).
    """
    return Path(safe_lookup(root, locator, what=what)[0])


def safe_lookup(
    root: str | os.PathLike[str], locator: str, *, what: str = "locator", look: bool = True
) -> tuple[str, os.stat_result | None]:
    """`safe_join` for hot paths: the path as a string, and the lstat of its last component.

    The lstat is None when nothing exists there yet; callers that would stat the path next
    (is there a copy already?) save that call, which counts over thousands of small files.
    With `look=False` the last component is not looked at at all (None): for a caller
    that will only ever create it without following links (an O_EXCL create, a link).
    """
    parts = _locator_parts(locator, what=what, root=os.fspath(root))
    base = os.fspath(root)
    current = base
    real_root: str | None = None
    last = len(parts) - 1
    final: os.stat_result | None = None
    for index, part in enumerate(parts):
        current = os.path.join(current, part)
        if index == last and not look:
            return current, None
        try:
            info = os.lstat(current)
        except OSError:
            break  # nothing further exists, so nothing further can be a link
        if stat.S_ISLNK(info.st_mode):
            if real_root is None:
                real_root = os.path.realpath(base)
            target = os.path.realpath(current)
            if target != real_root and not target.startswith(real_root.rstrip("/") + "/"):
                prefix = "/".join(parts[: index + 1])
                raise UnsafeName(
                    f"Refusing {what} {_shown(locator)}: {_shown(prefix)} is a symbolic link "
                    f"that leads outside the archive root {base} (to {target}).",
                    paths=(locator,),
                )
        elif index < last and not stat.S_ISDIR(info.st_mode):
            break  # the open will fail with "Not a directory"; nothing can escape through it
        if index == last:
            final = info
    return current if final is not None else os.path.join(base, *parts), final


# --- opening sources -------------------------------------------------------------------------


class RegularFile:
    """A regular file open for reading, by descriptor: what `open_regular` returns.

    A plain descriptor and the size it had when opened, without `io.FileIO`'s extra system
    calls (a second fstat, an ioctl), which count when thousands of small files move.
    """

    __slots__ = ("_fd", "name", "size")

    def __init__(self, fd: int, name: str, size: int) -> None:
        self._fd = fd
        self.name = name
        self.size = size

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{self.name} is closed")
        return self._fd

    def readinto(self, view: memoryview | bytearray) -> int:
        return os.readv(self.fileno(), [view])

    def read(self, count: int = -1) -> bytes:
        if count >= 0:
            return os.read(self.fileno(), count)
        parts = []
        while part := os.read(self.fileno(), CHUNK_SIZE):
            parts.append(part)
        return b"".join(parts)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> RegularFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"<RegularFile {self.name!r} size={self.size}{' closed' if self.closed else ''}>"


def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> RegularFile:
    """Open a regular file for binary reading; its `name` is `path`, `size` its size.

    FIFOs, devices and directories are refused (OSError) without blocking on them.
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | _O_CLOEXEC | _O_NOCTTY | _O_NONBLOCK
    if not follow_symlinks:
        flags |= _O_NOFOLLOW
    fd = os.open(name, flags)
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if stat.S_ISREG(info.st_mode):
        return RegularFile(fd, name, info.st_size)
    os.close(fd)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", name)
    raise OSError(errno.EINVAL, "is not a regular file", name)


def open_first_readable(
    sources: Iterable[str | os.PathLike[str]],
) -> tuple[str, RegularFile]:
    """Open the first of several paths holding identical content that can be read.

    Returns the path opened and a binary stream the caller closes. Raises TransferFailed
    listing every path with the reason it could not be read.
    """
    reasons: list[tuple[str, str]] = []
    for source in sources:
        path = os.fspath(source)
        try:
            return path, open_regular(path)
        except ValueError:
            reasons.append((path, "contains a NUL byte"))
        except OSError as exc:
            reasons.append((path, exc.strerror or str(exc)))
    if not reasons:
        raise TransferFailed("No source path was given for this file.")
    listed = "; ".join(f"{path} ({reason})" for path, reason in reasons)
    count = len(reasons)
    head = "The source" if count == 1 else f"None of the {count} sources"
    raise TransferFailed(
        f"{head} could not be read: {listed}.", paths=[p for p, _ in reasons], retryable=True
    )


# --- atomic publish --------------------------------------------------------------------------


class _Unnamed:
    """An open file without a name (O_TMPFILE) in its destination's directory.

    Nothing about it is visible in the directory until it is linked there, and a process
    that dies holding it leaves nothing behind: the kernel frees it. It also spares the
    directory the temporary name's entry and the rename's second update.
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


@attrs.frozen(kw_only=True)
class StagedFile:
    """Bytes written and checked beside their destination, not yet under its name.

    Small files are held as an open unnamed file (`unnamed`) where the file system allows
    it, others under a temporary name (`temp`). Nothing is visible under `destination`
    until `publish_staged` links or renames it; `discard` drops it. Paths are plain
    strings: thousands of these are made per batch, and Path objects would be most of
    their cost.
    """

    temp: str | None
    destination: str
    digests: Digests
    source: str  # what was read, for messages
    durable: bool  # already fsynced on its own (large files): the batch sync may skip it
    # Whether publishing may replace what is under `destination` (a restore into Portal's
    # folder) or must leave it in place and fail (an archive copy: never overwritten).
    replace: bool
    sync_dirs: tuple[str, ...]  # directories whose fsync makes the published name durable
    unnamed: _Unnamed | None = attrs.field(default=None, eq=False)

    def discard(self) -> None:
        if self.unnamed is not None:
            self.unnamed.close()
        _abandon(self.temp, ())


#: Returned by `publish_staged` for a file whose destination already held the very same bytes
#: (a re-run after a crash between publish and the journal): nothing was changed there.
ALREADY_PUBLISHED = "already published"


class _TempTokens:
    """Host, pid, random per process and a counter: unique names without a syscall each.

    Host and pid are those of `archive_core.workers.current()`, so a temporary name tells
    which worker made it in the terms the journal records (`WorkerId`).
    """

    def __init__(self) -> None:
        self._prefix = ""
        self._counter = itertools.count()
        # A forked child must never share its parent's names.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._prefix = ""

    def next(self) -> str:
        if not self._prefix:
            me = workers.current()
            self._prefix = f"{me.host}.{me.pid}.{os.urandom(4).hex()}"
        return f"{self._prefix}{next(self._counter):x}"


_TOKENS = _TempTokens()

#: A temporary file nobody has written to for this long is stale whoever made it.
STALE_AFTER_SECONDS = 24 * 3600


def temporary_name(name: str) -> str:
    """A hidden name beside `name`, unique per host, process and call, that fits NAME_MAX.

    The shape is `.<name>.<host>.<pid>.<token>.partial`, so `sweep_partials` can tell which
    worker made it; long names are cut at the end (the name is only there for admins).
    """
    suffix = f".{_TOKENS.next()}.partial"
    budget = NAME_MAX - 1 - len(suffix)
    # Cutting bytes may split a UTF-8 sequence; fsdecode's surrogateescape keeps them exact.
    return "." + os.fsdecode(os.fsencode(name)[:budget]) + suffix


def sweep_partials(
    directory: str | os.PathLike[str], *, older_than: float = STALE_AFTER_SECONDS
) -> list[str]:
    """Remove the temporary files that stopped workers left in `directory`; return their names.

    A worker killed mid-copy (SIGKILL, a crash, a power cut) cannot remove its temporary
    file. One is stale when it was made on this host by a process that no longer runs, or
    when nothing has written to it for `older_than` seconds (made on another host sharing
    the directory, whose processes cannot be checked from here). Live copies are kept.
    """
    removed: list[str] = []
    host, me, now = workers.current().host, os.getpid(), time.time()
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    with entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(".partial")):
                continue
            fields = name[1 : -len(".partial")].rsplit(".", 3)
            owner_host, pid = (fields[1], fields[2]) if len(fields) == 4 else ("", "")
            if owner_host == host and pid.isdigit() and int(pid) != me:
                stale = not _process_exists(int(pid))
            else:
                try:
                    stale = now - entry.stat(follow_symlinks=False).st_mtime > older_than
                except OSError:
                    continue
            if stale:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed.append(name)
    return removed


def remove_partials(
    directory: str | os.PathLike[str],
    name: str,
    *,
    made_by: Collection[workers.WorkerId | str],
) -> list[str]:
    """Remove the temporary files the workers `made_by` made for `name` in `directory`.

    For a caller the core's journal told that those workers' attempts at this name died
    (`abandoned_by`); any other worker's temporary file may be a live copy and stays, so
    two workers writing one name never remove each other's. Workers are matched on the
    host label and pid a temporary name carries. A pid of this host that runs again (a
    reused pid looks the same in a name) is kept too: the sweep removes it once it is
    gone. Names cut to fit NAME_MAX are matched by the part that was kept.
    """
    here = workers.current().host
    owners: set[tuple[str, str]] = set()
    for worker in made_by:
        parsed = workers.WorkerId.parse(worker) if isinstance(worker, str) else worker
        if parsed is None:
            log.warning("ignoring %r: it is not a worker id", worker)
            continue
        if parsed.host == here and _process_exists(parsed.pid):
            continue
        owners.add((parsed.host, str(parsed.pid)))
    removed: list[str] = []
    if not owners:
        return removed
    wanted = os.fsencode(name)
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    with entries:
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".partial")):
                continue
            fields = entry.name[1 : -len(".partial")].rsplit(".", 3)
            if len(fields) != 4 or (fields[1], fields[2]) not in owners:
                continue
            kept = os.fsencode(fields[0])
            was_cut = len(os.fsencode(entry.name)) >= NAME_MAX - 8
            if kept != wanted and not (was_cut and kept and wanted.startswith(kept)):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def make_directories(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """Create `path` and missing parents; return the directories this call created.

    With `root`, only directories strictly below root are made. A missing root is most
    often the mount point of a share that is not mounted: creating it would write the
    archive onto whatever disk holds its parent, so TransferFailed says so instead.
    """
    current = os.path.normpath(os.fspath(path))
    top = os.path.normpath(os.fspath(root)) if root is not None else None
    if top is not None and current != top and not current.startswith(top.rstrip("/") + "/"):
        raise ValueError(f"{current} is not inside the archive root {top}")
    missing: list[str] = []
    while True:
        try:
            os.stat(current)
            break
        except FileNotFoundError:
            if current == top:
                raise root_missing(current) from None
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    created: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue  # another worker made it at the same moment
        created.append(directory)
    return tuple(created)


def root_missing(root: str | os.PathLike[str]) -> TransferFailed:
    """The error for an archive root that is not there: nothing is written, try again later."""
    return TransferFailed(
        f"archive root {os.fspath(root)} does not exist (is the share mounted?); "
        "nothing was written",
        paths=(os.fspath(root),),
        retryable=True,
    )


def _sync_dirs(parent: str, root: str | None, created: Sequence[str]) -> tuple[str, ...]:
    """Directories to fsync so a name in `parent` survives a crash, new directories included.

    With `root`, every directory from `parent` up to root: another worker may have created
    one of them in this batch and failed, so "created by this call" alone is not enough.
    """
    dirs = [parent]
    if root is not None and parent != root and parent.startswith(root.rstrip("/") + "/"):
        current = parent
        while current != root:
            current = os.path.dirname(current)
            dirs.append(current)
    dirs.extend(os.path.dirname(d) for d in created)
    return tuple(dict.fromkeys(dirs))


def _create_temp(
    parent: str, name: str, *, direct: bool, root: str | None
) -> tuple[str, int, bool, list[str]]:
    """Create a fresh temporary file in `parent` for `name` (directories only below `root`).

    Returns (path, fd, whether O_DIRECT is on, directories created).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC

    def create() -> tuple[str, int, bool]:
        temp = os.path.join(parent, temporary_name(name))
        if direct and _O_DIRECT:
            try:
                return temp, os.open(temp, flags | _O_DIRECT, 0o666), True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # This file system does not do O_DIRECT (tmpfs, some FUSE): write buffered.
        return temp, os.open(temp, flags, 0o666), False

    (temp, fd, direct_on), created = _in_directory(parent, create, root)
    return temp, fd, direct_on, created


def _in_directory(parent: str, create: Callable[[], T], root: str | None) -> tuple[T, list[str]]:
    """`create()` a file in `parent`; returns its result and the directories made for it.

    The directory is made only when the create says it is missing, which saves a stat per
    file in the usual case and also covers a concurrent delete pruning it between mkdir and
    create. With `root`, nothing is made at or above it (see `make_directories`). On any
    failure the directories made are removed again.
    """
    created: list[str] = []
    try:
        for attempt in range(_CREATE_ATTEMPTS + 1):
            try:
                return create(), created
            except FileNotFoundError:
                if attempt == _CREATE_ATTEMPTS:
                    raise
                created.extend(make_directories(parent, root=root))
    except BaseException:
        _abandon(None, created)
        raise
    raise AssertionError("unreachable")


#: Directories whose file system refused O_TMPFILE (NFS, FUSE): named temporaries there.
_NO_UNNAMED: set[str] = set()
_linkat: Any = None  # libc's linkat once looked up; False where files cannot be linked by fd


def _create_unnamed(parent: str, root: str | None) -> tuple[_Unnamed, list[str]] | None:
    """An unnamed file in `parent` (made when missing, below `root`), or None where there
    cannot be one."""
    if not _O_TMPFILE or parent in _NO_UNNAMED or not _load_linkat():
        return None
    flags = _O_TMPFILE | os.O_WRONLY | _O_CLOEXEC

    def create() -> _Unnamed | None:
        try:
            return _Unnamed(os.open(parent, flags, 0o666))
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                _NO_UNNAMED.add(parent)  # the file system has no O_TMPFILE
                return None
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return None  # out of descriptors (a big chunk held open): use a named one
            raise

    handle, created = _in_directory(parent, create, root)
    if handle is None:
        _abandon(None, created)
        return None
    return handle, created


def _load_linkat() -> Any:
    global _linkat
    if _linkat is None:
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).linkat
            function.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
            ]
            function.restype = ctypes.c_int
            _linkat = function if os.path.isdir("/proc/self/fd") else False
        except (OSError, AttributeError):
            _linkat = False
    return _linkat


def _link_unnamed(handle: _Unnamed, destination: str) -> None:
    """Give the unnamed file `destination` as its name; FileExistsError if it is taken."""
    import ctypes

    # Through /proc, linkat needs no privilege (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
    source = f"/proc/self/fd/{handle.fd}".encode()
    if _linkat(_AT_FDCWD, source, _AT_FDCWD, os.fsencode(destination), _AT_SYMLINK_FOLLOW):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), destination)


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def stage_file(
    source: str | os.PathLike[str] | BinaryIO,
    destination: str | os.PathLike[str],
    *,
    replace: bool,
    expected_sha1: str | None = None,
    progress: ProgressCallback | None = None,
    durable: bool | None = None,
    direct_io: bool = True,
    root: str | os.PathLike[str] | None = None,
    size: int | None = None,
) -> StagedFile:
    """Copy `source` beside `destination`, not under its name yet, and check its sha1 there.

    A small file (size known, under LARGE_FILE) becomes an unnamed file in the destination's
    directory where the file system allows it, anything else a temporary name. `replace`
    says what publishing does with a destination that is taken: replace it atomically (a
    restore into Portal's folder), or leave it in place and fail that file (an archive
    copy, which is never overwritten). Missing parent directories are created: with
    `root` (an archive root), only below it, and a missing root raises TransferFailed.
    `durable=None` fsyncs large files on their own (in the calling thread, so several
    stage in parallel) and leaves small ones to the one sync of `publish_staged`. `root`
    also adds every directory between the destination and root to those fsynced at
    publish time, so new layout directories are durable too. `size`, when the caller
    already knows it, saves asking the source again. A sha1 mismatch raises FixityMismatch;
    any failure drops what was written (and directories made for it) before raising.
    """
    target = os.fspath(destination)
    parent, name = os.path.split(target)
    top = os.fspath(root) if root is not None else None
    if isinstance(source, str | os.PathLike):
        source_label = os.fspath(source)
        try:
            stream = open_regular(source)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise TransferFailed(
                f"Could not read {source_label}: {reason}.", paths=(source_label,)
            ) from exc
        owned = True
    else:
        stream = source
        source_label = _label(source, "the source")
        owned = False
    try:
        if size is None:
            size = _size_of(stream)
        large = size is None or size >= LARGE_FILE
        unnamed: _Unnamed | None = None
        try:
            made = None if large else _create_unnamed(parent, top)
            if made is not None:
                (unnamed, created), temp, direct = made, None, False
                fd = unnamed.fd
            else:
                temp, fd, direct, created = _create_temp(
                    parent, name, direct=direct_io and large, root=top
                )
        except OSError as exc:
            raise TransferFailed(
                f"Could not create a file in {parent}: {exc.strerror or exc}.",
                paths=(target,),
                retryable=exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO),
            ) from exc
        try:
            try:
                sink = _FdSink(fd, target, flush_behind=large, direct=direct)
                digests = _move(stream, source_label, size, sink, progress)
                if expected_sha1 and digests.sha1 != expected_sha1.strip().lower():
                    raise FixityMismatch(
                        path=source_label,
                        expected=expected_sha1,
                        actual=digests.sha1,
                        destination=target,
                        replacing=replace,
                    )
                synced = large if durable is None else durable
                if synced:
                    os.fsync(fd)
            finally:
                if unnamed is None:
                    os.close(fd)
        except OSError as exc:
            if unnamed is not None:
                unnamed.close()
            _abandon(temp, created)
            raise TransferFailed(
                f"Could not write {target}: {exc.strerror or exc}.",
                paths=(target,),
                retryable=True,
            ) from exc
        except BaseException:
            if unnamed is not None:
                unnamed.close()
            _abandon(temp, created)
            raise
    finally:
        if owned:
            stream.close()
    return StagedFile(
        temp=temp,
        destination=target,
        digests=digests,
        source=source_label,
        durable=synced,
        replace=replace,
        sync_dirs=_sync_dirs(parent, top, created),
        unnamed=unnamed,
    )


def _abandon(temp: str | None, created: Sequence[str]) -> None:
    """Undo a failed staging: its temporary file, then the directories made for it if empty."""
    if temp is not None:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove temporary file %s: %s", temp, exc)
    for directory in reversed(created):
        try:
            os.rmdir(directory)
        except OSError:
            break  # another copy is being written there, or it is not empty: keep it


def sync_staged(staged: Sequence[StagedFile]) -> list[TransferFailed | None]:
    """First step of publishing: make the bytes of staged files durable.

    One syncfs per file system covers every file not already fsynced on its own, instead
    of one fsync each. Safe to run in a background thread while more files are staged (it
    may then make some of those durable too). Returns, aligned with `staged`, None or the
    error that means the file must not be published.
    """
    results: list[TransferFailed | None] = [None] * len(staged)
    by_device: dict[int, tuple[str, list[int]]] = {}
    devices: dict[str, int | OSError] = {}  # a chunk's files mostly share a few directories
    for index, item in enumerate(staged):
        if item.durable:
            continue
        parent = os.path.dirname(item.destination)
        device = devices.get(parent)
        if device is None:
            try:
                device = os.stat(parent).st_dev
            except OSError as exc:
                device = exc
            devices[parent] = device
        if isinstance(device, OSError):
            results[index] = _publish_error(item, device)
            continue
        by_device.setdefault(device, (parent, []))[1].append(index)
    for directory, indexes in by_device.values():
        try:
            sync_filesystem(directory)
        except OSError as exc:
            for index in indexes:
                results[index] = _publish_error(staged[index], exc)
    return results


def publish_staged(
    staged: Sequence[StagedFile],
    *,
    sync: bool = True,
    stop: Callable[[], bool] | None = None,
) -> list[TransferFailed | str | None]:
    """Publish staged files under their final names, durably, with one sync for the batch.

    Order: `sync_staged`, then every link or rename, then one fsync per distinct directory.
    Returns, aligned with `staged`, None for each file published, ALREADY_PUBLISHED where
    the destination already held the same bytes, or the error that kept it back (its
    staged bytes are dropped). A destination holding anything else is replaced or left in
    place, as each file was staged to (`stage_file(replace=...)`). `sync=False` skips the
    syncs (faster, not crash-safe). `stop`, asked before each name is published, ends the
    publishing once it answers True: the rest are dropped (whoever asked for them is gone).
    """
    results: list[TransferFailed | str | None] = (
        sync_staged(staged) if sync else [None] * len(staged)  # type: ignore[assignment]
    )
    for index, item in enumerate(staged):
        if results[index] is None and stop is not None and stop():
            results[index] = TransferFailed(
                f"{item.destination} was not published: its batch was stopped.",
                paths=(item.destination,),
                retryable=True,
            )
        if results[index] is not None:
            item.discard()
            continue
        try:
            if _publish(item):
                results[index] = ALREADY_PUBLISHED
        except TransferFailed as exc:
            results[index] = exc
            item.discard()
        except OSError as exc:
            results[index] = _publish_error(item, exc)
            item.discard()
    if sync:
        dirs: dict[str, list[int]] = {}
        for index, item in enumerate(staged):
            # A name found already there may be as fresh as ours (a worker killed after its
            # rename, before its directory fsync): it is made durable too.
            if results[index] is None or results[index] is ALREADY_PUBLISHED:
                for directory in item.sync_dirs:
                    dirs.setdefault(directory, []).append(index)
        for directory, indexes in dirs.items():
            try:
                fsync_directory(directory)
            except OSError as exc:
                for index in indexes:
                    if not isinstance(results[index], TransferFailed):
                        results[index] = TransferFailed(
                            f"{staged[index].destination} was written, but its directory "
                            f"{directory} could not be synced ({exc.strerror or exc}), so it "
                            "may not survive a crash.",
                            paths=(os.fspath(staged[index].destination),),
                            retryable=True,
                        )
    return results


def _publish(item: StagedFile) -> bool:
    """Give a staged file its destination's name; True when the very same bytes were there
    already (they are kept, and the staged copy dropped).

    Without `replace`, every step refuses to overwrite (a link, or a rename that must not
    replace): whatever appears under the name, even between our look and our publish, is
    never overwritten, and the file fails with TransferFailed saying what is there.
    """
    if item.unnamed is None:
        assert item.temp is not None
        if item.replace:
            os.replace(item.temp, item.destination)
            return False
        try:
            _link_or_rename_no_replace(item.temp, item.destination)
        except FileExistsError:
            if _holds(item.destination, item.digests):
                _abandon(item.temp, ())
                return True
            raise name_taken(item.destination, size=item.digests.size) from None
        return False
    handle = item.unnamed
    try:
        try:
            _link_unnamed(handle, item.destination)
            return False
        except FileExistsError:
            if _holds(item.destination, item.digests):
                return True
            if not item.replace:
                raise name_taken(item.destination, size=item.digests.size) from None
        # A destination holding other bytes is replaced atomically, as a rename would: the
        # file is linked beside it under a temporary name first.
        parent, name = os.path.split(item.destination)
        temp = os.path.join(parent, temporary_name(name))
        _link_unnamed(handle, temp)
        try:
            os.replace(temp, item.destination)
        except BaseException:
            _abandon(temp, ())
            raise
        return False
    finally:
        handle.close()


#: errno values of link(2) on a file system without hard links (FAT, some FUSE and SMB).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS})


def _link_or_rename_no_replace(temp: str, destination: str) -> None:
    """Move `temp` to `destination` unless that name is taken (then FileExistsError).

    A hard link refuses an existing name whatever it is (a file, a directory, a symlink,
    which is not followed), atomically; the temporary name is dropped after it. Where the
    file system has no hard links, renameat2(RENAME_NOREPLACE) does the same in one step.
    """
    try:
        os.link(temp, destination, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        _rename_no_replace(temp, destination, exc)
        return
    try:
        os.unlink(temp)
    except OSError as exc:
        # Published all the same: the extra name is a stray temporary file for the sweep.
        log.warning("could not remove temporary file %s: %s", temp, exc)


_renameat2: Any = None  # libc's renameat2 once looked up; False where there is none
_RENAME_NOREPLACE = 1


def _rename_no_replace(temp: str, destination: str, no_link: OSError) -> None:
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).renameat2
            function.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]
            function.restype = ctypes.c_int
            _renameat2 = function
        except (OSError, AttributeError):
            _renameat2 = False
    code = errno.ENOSYS
    if _renameat2:
        import ctypes

        if not _renameat2(
            _AT_FDCWD, os.fsencode(temp), _AT_FDCWD, os.fsencode(destination), _RENAME_NOREPLACE
        ):
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(code, os.strerror(code), destination)
    if code in (errno.EINVAL, errno.ENOSYS):
        raise TransferFailed(
            f"Could not publish {destination}: its file system supports neither hard links "
            f"({no_link.strerror or no_link}) nor renames that refuse to replace a file, so "
            "the copy cannot be published without risking another file under that name.",
            paths=(destination,),
        )
    raise OSError(code, os.strerror(code), destination)


def name_taken(destination: str, *, size: int | None = None) -> TransferFailed:
    """The error for a destination that holds something other than the bytes to publish there.

    For an archive copy this is damage or a foreign file (archive names carry the sha1 of
    their content): it is left for an admin to look at, never replaced.
    """
    kept = "It was left in place; nothing was replaced."
    try:
        info = os.lstat(destination)
    except FileNotFoundError:
        return TransferFailed(
            f"Could not publish {destination}: another file was under this name a moment ago "
            "and is gone now; try again. Nothing was replaced.",
            paths=(destination,),
            retryable=True,
        )
    except OSError as exc:
        return TransferFailed(
            f"Could not publish {destination}: something is under this name but cannot be "
            f"looked at ({exc.strerror or exc}). {kept}",
            paths=(destination,),
            retryable=True,
        )
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if size is not None and info.st_size != size:
            detail = f"{info.st_size} bytes, not the {size} bytes of this copy"
        else:
            detail = "the same size, other bytes"
        what = f"a different file already exists under this name ({detail})"
    elif stat.S_ISLNK(mode):
        try:
            what = f"a symbolic link (to {os.readlink(destination)}) is under this name"
        except OSError:
            what = "a symbolic link is under this name"
    elif stat.S_ISDIR(mode):
        what = "a directory is under this name"
    else:
        what = "something other than a regular file (a FIFO, socket or device) is there"
    return TransferFailed(f"Could not publish {destination}: {what}. {kept}", paths=(destination,))


def _holds(path: str, digests: Digests) -> bool:
    """Whether `path` is a regular file (not a link) holding exactly the bytes of `digests`."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size != digests.size:
            return False
        return hash_file(path, follow_symlinks=False).sha1 == digests.sha1
    except (OSError, TransferFailed):
        return False


def _publish_error(item: StagedFile, exc: OSError) -> TransferFailed:
    return TransferFailed(
        f"Could not publish {item.destination}: {exc.strerror or exc}.",
        paths=(os.fspath(item.destination),),
        retryable=True,
    )


def publish_file(
    source: str | os.PathLike[str] | BinaryIO,
    destination: str | os.PathLike[str],
    *,
    replace: bool,
    expected_sha1: str | None = None,
    progress: ProgressCallback | None = None,
    fsync: bool = True,
    direct_io: bool = True,
    root: str | os.PathLike[str] | None = None,
) -> Digests:
    """Copy one file atomically: temp beside destination, sha1 check, fsync, publish, fsync dir.

    Never leaves a partial file under `destination`. `replace` is as for `stage_file`: True
    (a restore into a destination of Portal's) replaces what is there atomically; an archive
    copy passes False, so a taken name fails and is left as it is. Raises FixityMismatch or
    TransferFailed.
    """
    staged = stage_file(
        source,
        destination,
        replace=replace,
        expected_sha1=expected_sha1,
        progress=progress,
        durable=fsync,
        direct_io=direct_io,
        root=root,
    )
    error = publish_staged([staged], sync=fsync)[0]
    if isinstance(error, TransferFailed):
        raise error
    return staged.digests


# --- durability primitives -------------------------------------------------------------------


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make the names in directory `path` durable (creations, renames, removals)."""
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_syncfs: Any = None  # libc's syncfs once looked up; False where there is none
_syncfs_lock = threading.Lock()


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Write back every dirty page of the file system holding `path` (syncfs(2)).

    One call makes thousands of freshly written files durable at the cost of one journal
    commit; falls back to os.sync() where syncfs is not available.
    """
    function = _load_syncfs()
    if not function:
        os.sync()
        return
    import ctypes

    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        if function(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fspath(path))
    finally:
        os.close(fd)


def _load_syncfs() -> Any:
    global _syncfs
    with _syncfs_lock:
        if _syncfs is None:
            try:
                import ctypes

                function = ctypes.CDLL(None, use_errno=True).syncfs
                function.argtypes = [ctypes.c_int]
                function.restype = ctypes.c_int
                _syncfs = function
            except (OSError, AttributeError):
                _syncfs = False
        return _syncfs
