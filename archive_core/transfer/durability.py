"""Making written bytes and names survive a crash: a directory's fsync, a file system's syncfs."""

from __future__ import annotations

import functools
import os
from typing import Any

from archive_core.transfer._flags import O_CLOEXEC, O_DIRECTORY


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make the names in directory `path` durable (creations, renames, removals)."""
    fd = os.open(path, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: str | os.PathLike[str]) -> None:
    """Write back every dirty page of the file system holding `path` (syncfs(2)).

    One call makes thousands of freshly written files durable at the cost of one journal
    commit; falls back to os.sync() where syncfs is not available.
    """
    function = _syncfs()
    if function is None:
        os.sync()
        return
    import ctypes

    fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
    try:
        if function(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fspath(path))
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Any:
    """libc's syncfs, or None. Through ctypes: the standard library has only os.sync(),
    which writes back every file system of the host, not just the one copies went to."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function
