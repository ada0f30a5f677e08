"""Where copied bytes go: a file descriptor (O_DIRECT where asked) or a file-like object."""

from __future__ import annotations

import errno
import os
from typing import BinaryIO

from archive_core.errors import TransferFailed
from archive_core.transfer._flags import O_DIRECT

#: O_DIRECT wants buffer addresses, offsets and lengths aligned to the device's logical block;
#: 4096 covers every current disk. Pool buffers come from mmap and are page aligned.
ALIGN = 4096


class FdSink:
    """Writes to a file descriptor, honouring O_DIRECT's alignment and falling back gracefully."""

    def __init__(
        self, fd: int, label: str, *, flush_behind: bool, direct: bool | None = None
    ) -> None:
        self._fd = fd
        self._label = label
        if direct is None:  # a descriptor from elsewhere: ask the kernel how it was opened
            import fcntl

            direct = bool(O_DIRECT) and bool(fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT)
        self._direct = direct
        # Buffered large writes start writeback as they go, so the final fsync has little
        # left to wait for; posix_fadvise(DONTNEED) on dirty pages does exactly that on Linux.
        self._flush_behind = flush_behind and not direct and hasattr(os, "posix_fadvise")
        self._offset = 0

    def write(self, view: memoryview) -> None:
        try:
            if self._direct:
                aligned = len(view) - len(view) % ALIGN
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
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~O_DIRECT)
            self._direct = False


class ObjectSink:
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


Sink = FdSink | ObjectSink


def sink_for(destination: BinaryIO | int, label: str, *, large: bool) -> Sink:
    if isinstance(destination, int):
        return FdSink(destination, label, flush_behind=large)
    try:
        fd = destination.fileno()
    except (AttributeError, OSError, ValueError):
        return ObjectSink(destination, label)
    destination.flush()  # bytes already buffered in the object must land before ours
    return FdSink(fd, label, flush_behind=large)
