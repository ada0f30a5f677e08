"""A mounted LTFS volume: plain file I/O through the mountpoint, LTFS's virtual xattrs for the
rest, and its writability read live (lock state, mount options, what ltfs said at mount)."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NoReturn

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import (
    LOCK_WRITE_PERM_BOTH,
    LOCK_WRITE_PROTECTED,
    Capacity,
    FileLocation,
    ReadOnlyReason,
    VolumeInfo,
    VolumeState,
)
from archive_core_tape_ltfs.real.files import TapeFile, translate
from archive_core_tape_ltfs.real.mountfs import MountFs
from archive_core_tape_ltfs.runner import Process

_XATTR = "user.ltfs."


class RealMount:
    """A volume an `ltfs -f` process serves at a directory of this host (our child, or the
    child of a process that died, for an adopted mount)."""

    def __init__(
        self,
        *,
        drive: int,
        mountpoint: Path,
        process: Process,
        fs: MountFs,
        barcode: str | None,
        mounted_read_only: bool = False,
        read_only_at_mount: frozenset[ReadOnlyReason] = frozenset(),
        worm: bool = False,
    ) -> None:
        self.drive = drive
        self.mountpoint = mountpoint
        self.process = process
        self.barcode = barcode
        self._fs = fs
        self._mounted_read_only = mounted_read_only
        self._at_mount = read_only_at_mount
        self._worm = worm
        self._last_state = VolumeState(reasons=read_only_at_mount)

    def __repr__(self) -> str:
        return f"<RealMount drive={self.drive} at {self.mountpoint} pid={self.process.pid}>"

    def _path(self, path: str) -> Path:
        relative = Path(path.lstrip("/"))
        if ".." in relative.parts:
            raise errors.TapeError(f"Refusing a path outside the volume: {path!r}.")
        return self.mountpoint / relative

    def _xattr(self, name: str, path: Path | None = None) -> str:
        target = path or self.mountpoint
        try:
            return self._fs.getxattr(target, _XATTR + name).decode().strip()
        except OSError as exc:
            raise translate(
                exc, path=str(target), drive=self.drive, barcode=self.barcode, what="query"
            ) from exc

    def _optional(self, name: str) -> str:
        try:
            return self._fs.getxattr(self.mountpoint, _XATTR + name).decode().strip()
        except OSError:
            return ""

    def _fail(self, exc: OSError, path: str, what: str) -> Exception:
        """The typed error of a failed file call, judged by the volume's state right after it
        (a permanent write error turns the volume read-only with that very call)."""
        # When the mount itself is failing, judge by what was known before.
        with contextlib.suppress(errors.TapeError):
            self.state()
        return translate(
            exc,
            path=path,
            drive=self.drive,
            barcode=self.barcode,
            what=what,
            write_protected=ReadOnlyReason.WRITE_PROTECTED in self._last_state.reasons,
            worm=ReadOnlyReason.WORM in self._last_state.reasons and not self._last_state.read_only,
        )

    @property
    def read_only(self) -> bool:
        return self.state().read_only

    def state(self) -> VolumeState:
        # Three cheap reads, none of them touching the tape: LTFS keeps the lock state in
        # memory, /proc/mounts is the kernel's, statvfs is answered from LTFS's capacity cache.
        lock = int(self._xattr("volumeLockState"), 16)
        options = self._fs.mount_options(self.mountpoint) or []
        reasons = set(self._at_mount)
        if lock & LOCK_WRITE_PERM_BOTH:
            reasons.add(ReadOnlyReason.WRITE_ERROR)
            if not lock & LOCK_WRITE_PROTECTED:
                reasons.discard(ReadOnlyReason.WRITE_PROTECTED)
        if lock & LOCK_WRITE_PROTECTED:
            reasons.add(ReadOnlyReason.WRITE_PROTECTED)
        if self._mounted_read_only or ("ro" in options and not reasons):
            reasons.add(ReadOnlyReason.MOUNTED_READ_ONLY)
        if not reasons and self.capacity().free_bytes == 0:
            # LTFS reports no free space once the data partition is past (programmable)
            # early warning: new file data is refused from then on.
            reasons.add(ReadOnlyReason.FULL)
        if self._worm:
            reasons.add(ReadOnlyReason.WORM)
        state = VolumeState(lock_state=lock, reasons=frozenset(reasons))
        self._last_state = state
        return state

    def capacity(self) -> Capacity:
        stat = self._fs.statvfs(self.mountpoint)
        files = stat.f_files - stat.f_ffree if stat.f_files < 2**63 else 0
        return Capacity(
            block_size=stat.f_frsize,
            total_bytes=stat.f_blocks * stat.f_frsize,
            free_bytes=stat.f_bavail * stat.f_frsize,
            files=max(files, 0),
        )

    def volume(self) -> VolumeInfo:
        return VolumeInfo(
            serial=self._xattr("volumeSerial"),
            uuid=self._xattr("volumeUUID"),
            generation=int(self._xattr("indexGeneration")),
            lock_state=int(self._xattr("volumeLockState"), 16),
            name=self._optional("volumeName"),
            block_size=int(self._optional("volumeBlocksize") or 524288),
            mam_barcode=self._optional("mamBarcode"),
        )

    def sync(self) -> int:
        try:
            self._fs.setxattr(self.mountpoint, _XATTR + "sync", b"1")
        except OSError as exc:
            raise self._fail(exc, "/", "sync the index of") from exc
        return int(self._xattr("indexGeneration"))

    def location(self, path: str) -> FileLocation | None:
        target = self._path(path)
        try:
            partition = self._fs.getxattr(target, _XATTR + "partition").decode().strip()
            block = self._fs.getxattr(target, _XATTR + "startblock").decode().strip()
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return None  # an empty file has no extent
            raise self._fail(exc, path, "locate") from exc
        return FileLocation(partition=partition, startblock=int(block))

    def _open(self, path: str, mode: str, what: str) -> BinaryIO:
        try:
            raw = self._fs.open(self._path(path), mode)
        except OSError as exc:
            raise self._fail(exc, path, what) from exc
        return TapeFile(raw, fail=lambda exc, action: self._fail(exc, path, action))  # type: ignore[return-value]

    def open_write(self, path: str) -> BinaryIO:
        return self._open(path, "xb", "create")

    def open_read(self, path: str) -> BinaryIO:
        return self._open(path, "rb", "open")

    def remove(self, path: str) -> None:
        try:
            self._fs.remove(self._path(path))
        except OSError as exc:
            raise self._fail(exc, path, "remove") from exc

    def files(self) -> Iterator[tuple[str, int]]:
        for full, size in self._fs.walk(self.mountpoint):
            yield str(full.relative_to(self.mountpoint)), size


class MountView(RealMount):
    """A mount read through for queries (capacity, volume, state, files) by a process that does
    not own it: changing the volume belongs to its owner, or to whoever adopts it."""

    @classmethod
    def of(cls, mount: RealMount) -> MountView:
        view = cls.__new__(cls)
        view.__dict__.update(mount.__dict__)
        return view

    def _refuse(self, what: str) -> NoReturn:
        raise errors.changed_through_view(what, drive=self.drive, barcode=self.barcode)

    def sync(self) -> int:
        self._refuse("sync the index")

    def open_write(self, path: str) -> BinaryIO:
        self._refuse(f"write {path}")

    def remove(self, path: str) -> None:
        self._refuse(f"remove {path}")
