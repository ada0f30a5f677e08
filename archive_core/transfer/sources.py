"""Opening what is copied: regular files only, by descriptor, the first of several readable."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable

from archive_core.errors import TransferFailed
from archive_core.transfer._buffers import CHUNK_SIZE
from archive_core.transfer._flags import O_CLOEXEC, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK


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

    def readinto_at(self, view: memoryview | bytearray, offset: int) -> int:
        """Read into `view` from `offset`, leaving the file position alone: several threads
        may read parts of one file at once."""
        return os.preadv(self.fileno(), [view], offset)

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
    flags = os.O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK
    if not follow_symlinks:
        flags |= O_NOFOLLOW
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
