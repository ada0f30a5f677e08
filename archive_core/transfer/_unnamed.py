"""Unnamed files (O_TMPFILE) in a destination's directory, and giving one its name by a link."""

from __future__ import annotations

import errno
import os
import threading

from archive_core.transfer import directories
from archive_core.transfer._flags import O_CLOEXEC, O_DIRECTORY, O_TMPFILE


class Unnamed:
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


class _Refusals:
    """Where the file system refused O_TMPFILE (NFS, FUSE, SMB): named temporaries go there.

    Keyed by the archive root when the caller gives one (one file system in practice, known
    without a stat per file, which keying by st_dev would cost on every disk that does have
    O_TMPFILE), else by the directory. Bounded, so a process restoring into thousands of
    Portal's folders does not keep one entry for each: a key forgotten costs one refused
    open the next time, nothing more.
    """

    LIMIT = 1024

    def __init__(self) -> None:
        self._keys: dict[str, None] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] = None
            while len(self._keys) > self.LIMIT:
                del self._keys[next(iter(self._keys))]  # the oldest


REFUSED = _Refusals()


class _ProcFds:
    """This process's /proc/self/fd, open once, to link unnamed files through.

    `os.link(str(fd), name, src_dir_fd=<this>, follow_symlinks=True)` is linkat(2) with
    AT_SYMLINK_FOLLOW on the descriptor's magic link: no privilege needed (AT_EMPTY_PATH
    would need CAP_DAC_READ_SEARCH), and no ctypes (measured: 15-16 us a link against
    18-19 us through ctypes' linkat). A plain `os.link` of the /proc path calls link(2),
    which does not follow the magic link and fails with EXDEV. The directory is that of
    the process that opened it, so a forked child must open its own.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._fd: int | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # Right after fork the descriptor is still this child's copy: closing it is safe.
        if self._fd is not None:
            os.close(self._fd)
        self._pid, self._fd = -1, None

    def fd(self) -> int | None:
        """The directory's descriptor, or None where there is no /proc."""
        pid = os.getpid()
        if self._pid != pid:  # also after a fork that bypassed os.fork's hooks
            with self._lock:
                if self._pid != pid:
                    try:
                        self._fd = os.open("/proc/self/fd", os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                    except OSError:
                        self._fd = None
                    self._pid = pid
        return self._fd


_PROC_FDS = _ProcFds()


def create_unnamed(parent: str, root: str | None) -> tuple[Unnamed, list[str]] | None:
    """An unnamed file in `parent` (made when missing, below `root`) and the directories
    made for it, or None where there cannot be one (then a named temporary file is used)."""
    refusals_key = root if root is not None else parent
    if not O_TMPFILE or refusals_key in REFUSED or _PROC_FDS.fd() is None:
        return None
    flags = O_TMPFILE | os.O_WRONLY | O_CLOEXEC

    def create() -> Unnamed | None:
        try:
            return Unnamed(os.open(parent, flags, 0o666))
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                REFUSED.add(refusals_key)  # the file system has no O_TMPFILE
                return None
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return None  # out of descriptors (a big chunk held open): use a named one
            raise

    handle, created = directories.create_in(parent, create, root)
    if handle is None:
        directories.remove_created(created)
        return None
    return handle, created


def link_unnamed(handle: Unnamed, destination: str) -> None:
    """Give the unnamed file `destination` as its name; FileExistsError if it is taken."""
    os.link(str(handle.fd), destination, src_dir_fd=_PROC_FDS.fd(), follow_symlinks=True)
