"""Moving a temporary file to its name only if that name is free: never over anything there."""

from __future__ import annotations

import errno
import functools
import logging
import os
from typing import Any

from archive_core.errors import TransferFailed

log = logging.getLogger(__name__)

#: errno values of link(2) on a file system without hard links (FAT, some FUSE and SMB).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS})

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def link_or_rename_no_replace(temp: str, destination: str) -> None:
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


def _rename_no_replace(temp: str, destination: str, no_link: OSError) -> None:
    function = _renameat2()
    code = errno.ENOSYS
    if function is not None:
        import ctypes

        if not function(
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


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2, or None. Through ctypes: os.rename and os.replace take no flags,
    and RENAME_NOREPLACE is the only rename that refuses a taken name atomically."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function
