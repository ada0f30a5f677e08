"""File objects on an LTFS mount whose OS errors come out as typed tape errors."""

from __future__ import annotations

import errno
import io
from collections.abc import Callable
from typing import Any

from archive_core import CopyNotFound
from archive_core_tape_ltfs import errors

_EUCLEAN = getattr(errno, "EUCLEAN", 117)
_ENOMEDIUM = getattr(errno, "ENOMEDIUM", 123)


def translate(
    exc: OSError,
    *,
    path: str,
    drive: int,
    barcode: str | None,
    what: str,
    write_protected: bool = False,
    worm: bool = False,
):
    """The typed error for an errno LTFS returned (tape-facts §3.8); EROFS on a cartridge LTFS
    mounted read-only because of its write-protect tab is WriteProtected, and on a writable
    WORM volume it is the WORM rule (an existing file is never removed or rewritten)."""
    where = {"drive": drive, "barcode": barcode, "paths": (path,), "detail": str(exc)}
    tape = f"cartridge {barcode}" if barcode else f"the cartridge in drive {drive}"
    code = exc.errno
    if code == errno.ENOSPC:
        return errors.NoSpace(
            f"Cannot {what} {path}: {tape} reached early warning; no more file data fits. "
            f"The partial file stays on tape and must be removed and written elsewhere.",
            **where,
        )
    if code == errno.EROFS and write_protected:
        return errors.WriteProtected(f"Cannot {what} {path}: {tape} is write-protected.", **where)
    if worm and code in (errno.EROFS, errno.EEXIST):
        return errors.ReadOnlyVolume(
            f"Cannot {what} {path}: {tape} is WORM; files on it can never be removed or "
            f"overwritten.",
            **where,
        )
    if code == errno.EEXIST:
        return errors.TapeError(f"Cannot {what} {path}: it already exists on {tape}.", **where)
    if code == errno.EROFS:
        return errors.ReadOnlyVolume(
            f"Cannot {what} {path}: the LTFS volume on {tape} is read-only.", **where
        )
    if code == errno.EIO:
        return errors.MediaError(
            f"Cannot {what} {path}: {tape} or drive {drive} reported a media error.", **where
        )
    if code == _EUCLEAN:
        return errors.NeedsCleaning(f"Cannot {what} {path}: drive {drive} needs cleaning.", **where)
    if code == _ENOMEDIUM:
        return errors.DriveNotReady(
            f"Cannot {what} {path}: drive {drive} lost its cartridge.", **where
        )
    if code == errno.EAGAIN:
        return errors.DriveBusy(
            f"Cannot {what} {path}: drive {drive} is revalidating its medium; try again.",
            **where,
        )
    if code == errno.EIDRM:
        return errors.InconsistentIndex(
            f"Cannot {what} {path}: {tape} was removed while LTFS held it.", **where
        )
    if code == errno.ENOENT:
        return CopyNotFound(f"{path} is not on {tape}.", paths=(path,))
    return errors.TapeError(f"Cannot {what} {path} on {tape}: {exc.strerror}.", **where)


class TapeFile(io.RawIOBase):
    """Wraps an open file on an LTFS mount; its OSErrors become what `fail` makes of them."""

    def __init__(self, raw: Any, *, fail: Callable[[OSError, str], Exception]) -> None:
        super().__init__()
        self._raw = raw
        self._fail = fail

    def readable(self) -> bool:
        return self._raw.readable()

    def writable(self) -> bool:
        return self._raw.writable()

    def readinto(self, buffer: Any) -> int:
        try:
            return self._raw.readinto(buffer)
        except OSError as exc:
            raise self._fail(exc, "read") from exc

    def write(self, data: Any) -> int:
        try:
            return self._raw.write(data)
        except OSError as exc:
            raise self._fail(exc, "write") from exc

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._raw.close()
        except OSError as exc:
            raise self._fail(exc, "close") from exc
        finally:
            super().close()
