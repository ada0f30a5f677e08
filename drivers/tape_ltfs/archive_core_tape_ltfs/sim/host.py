"""The host the simulated tools run on: its mount table, the file-system calls an LTFS mount
answers (statvfs, LTFS's virtual xattrs, files), its process table and the `ltfs` children.

The mount table is kept in the library's rows (each ltfs process's FUSE mount and options), so
every process that opens the library sees the same host: a mount made by one process is served,
adopted or unmounted by another, as on a real host. Owners of mounts are real processes of this
machine; the ltfs processes are the simulator's, with pids no real process can have.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.sim.library import SimLibrary
from archive_core_tape_ltfs.sim.ltfs import SimMount, pid_alive
from archive_core_tape_ltfs.sim.state import FIRST_PID, SimLtfs

from archive_core import CopyNotFound

_ERRNO = (
    (errors.NoSpace, errno.ENOSPC),
    (errors.WriteProtected, errno.EROFS),
    (errors.ReadOnlyVolume, errno.EROFS),
    (errors.MediaError, errno.EIO),
    (errors.NeedsCleaning, getattr(errno, "EUCLEAN", 117)),
    (errors.DriveNotReady, getattr(errno, "ENOMEDIUM", 123)),
)


def as_oserror(error: Exception) -> OSError:
    """The errno LTFS returns for what the simulated volume raised."""
    if isinstance(error, CopyNotFound):
        return FileNotFoundError(errno.ENOENT, "No such file or directory")
    for cls, code in _ERRNO:
        if isinstance(error, cls):
            return OSError(code, os.strerror(code))
    return OSError(errno.EIO, str(error))


@attrs.define
class LtfsProcess:
    """An `ltfs -f` child the tools started: alive while the simulated drive's LTFS process has
    its pid; what it printed is in its log file, as a real child's is."""

    pid: int
    log_path: Path
    library: SimLibrary | None = None
    drive: int = 0
    exit_code: int | None = None

    def poll(self) -> int | None:
        if self.exit_code is not None or self.library is None:
            return self.exit_code
        now = self.library.clock.now()
        with self.library.transaction() as state:
            drive = state.drives[self.drive]
            ltfs = drive.ltfs
            if ltfs is not None and ltfs.pid == self.pid:
                # umount returned early: the process exits when its index write is done.
                return 0 if ltfs.exit_at is not None and ltfs.exit_at <= now else None
            # Gone without an unmount finishing it: killed (the drive keeps its reservation).
            return 1 if drive.reserved else 0

    def wait(self, timeout: float) -> int:
        assert self.library is not None
        clock = self.library.clock
        with self.library.transaction() as state:
            ltfs = state.drives[self.drive].ltfs
            exit_at = ltfs.exit_at if ltfs is not None and ltfs.pid == self.pid else None
        # Blocking in wait() is what lets the caller's time pass until ltfs exits.
        if exit_at is not None and exit_at - clock.now() <= timeout:
            clock.sleep(exit_at - clock.now())
        code = self.poll()
        if code is None:
            raise errors.ToolTimeout(f"ltfs (pid {self.pid}) is still running.")
        return code

    def stderr_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def fail(self, text: str) -> None:
        """The process ends with an error it prints last (a failed final index write)."""
        self.exit_code = 1
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(text)


@attrs.define
class _Statvfs:
    f_frsize: int
    f_bsize: int
    f_blocks: int
    f_bavail: int
    f_bfree: int
    f_files: int
    f_ffree: int


@attrs.frozen
class Mounted:
    """An entry of the host's mount table: the drive whose ltfs process made it."""

    drive: int
    ltfs: SimLtfs
    alive: bool  # False: the ltfs process died and left its FUSE mount behind
    barcode: str | None


class SimulatedHost:
    """MountFs and ProcessTable of the host, from the simulated library's rows."""

    def __init__(self, library: SimLibrary) -> None:
        self.library = library

    # --- the mount table -------------------------------------------------------------------

    def _table(self) -> dict[str, Mounted]:
        """The host's mount table: each FUSE mount of a simulated ltfs, by mountpoint."""
        table: dict[str, Mounted] = {}
        with self.library.transaction() as state:
            for drive in state.drives:
                cartridge = state.cartridges.get(drive.cartridge or "")
                for ltfs, alive in ((drive.ltfs, True), (drive.stale, False)):
                    if ltfs is not None and ltfs.options:
                        table[ltfs.mountpoint] = Mounted(
                            drive=drive.index,
                            ltfs=ltfs,
                            alive=alive,
                            barcode=cartridge.label if cartridge else None,
                        )
        return table

    def mounted(self, mountpoint: Path) -> Mounted | None:
        return self._table().get(str(mountpoint))

    def served(self, found: Mounted) -> SimMount:
        """The simulated volume a live mount serves, for this host's caller."""
        return SimMount(
            self.library.engine,
            self.library.caller,
            drive=found.drive,
            pid=found.ltfs.pid,
            barcode=found.barcode,
        )

    def mount_options(self, mountpoint: Path) -> list[str] | None:
        found = self.mounted(mountpoint)
        return list(found.ltfs.options) if found is not None else None

    def _mount_at(self, path: Path) -> tuple[SimMount, str]:
        table = self._table()
        for candidate in (path, *path.parents):
            found = table.get(str(candidate))
            if found is not None and found.alive:
                return self.served(found), str(path.relative_to(candidate))
            if found is not None:
                raise OSError(errno.ENOTCONN, "Transport endpoint is not connected", str(path))
        raise OSError(errno.ENOENT, "not on a simulated mount", str(path))

    # --- file-system calls on a mount --------------------------------------------------------

    def statvfs(self, path: Path) -> Any:
        mount, _ = self._mount_at(path)
        capacity = mount.capacity()
        blocks = capacity.total_bytes // capacity.block_size
        free = capacity.free_bytes // capacity.block_size
        return _Statvfs(
            f_frsize=capacity.block_size,
            f_bsize=capacity.block_size,
            f_blocks=blocks,
            f_bavail=free,
            f_bfree=free,
            f_files=2**64 - 1,
            f_ffree=2**64 - 1 - capacity.files,
        )

    def getxattr(self, path: Path, name: str) -> bytes:
        mount, relative = self._mount_at(path)
        key = name.removeprefix("user.ltfs.")
        try:
            if relative == ".":
                volume = mount.volume()
                values = {
                    "volumeSerial": volume.serial,
                    "volumeUUID": volume.uuid,
                    "indexGeneration": str(volume.generation),
                    "volumeLockState": f"0x{volume.lock_state:08x}",
                    "volumeName": volume.name,
                    "mamBarcode": volume.mam_barcode,
                    "volumeBlocksize": str(volume.block_size),
                }
            else:
                location = mount.location(relative)
                if location is None:
                    raise OSError(errno.ENODATA, "No data available")
                values = {"partition": location.partition, "startblock": str(location.startblock)}
        except errors.TapeError as exc:
            raise as_oserror(exc) from exc
        if key not in values:
            raise OSError(errno.ENODATA, "No data available")
        return values[key].encode()

    def setxattr(self, path: Path, name: str, value: bytes) -> None:
        mount, relative = self._mount_at(path)
        if name == "user.ltfs.sync" and relative == ".":
            try:
                mount.sync()
            except errors.TapeError as exc:
                raise as_oserror(exc) from exc
            return
        raise OSError(errno.EACCES, "Permission denied")

    def open(self, path: Path, mode: str) -> Any:
        mount, relative = self._mount_at(path)
        try:
            if "r" in mode:
                return _OsFile(mount.open_read(relative))
            return _OsFile(mount.open_write(relative))
        except Exception as exc:
            raise as_oserror(exc) from exc

    def remove(self, path: Path) -> None:
        mount, relative = self._mount_at(path)
        try:
            mount.remove(relative)
        except Exception as exc:
            raise as_oserror(exc) from exc

    def walk(self, root: Path) -> Iterator[tuple[Path, int]]:
        mount, _ = self._mount_at(root)
        for relative, size in mount.files():
            yield root / relative, size

    # --- the process table -------------------------------------------------------------------

    def start_time(self, pid: int) -> float | None:
        now = self.library.clock.now()
        with self.library.transaction() as state:
            for drive in state.drives:
                ltfs = drive.ltfs
                if ltfs is not None and ltfs.pid == pid:
                    running = ltfs.exit_at is None or ltfs.exit_at > now
                    return ltfs.since if running else None
        if pid >= FIRST_PID:
            return None  # a simulated ltfs process that has exited
        # A real process of this machine (the owner of a mount); its start is of no interest
        # beyond telling it alive, as no simulated process can take its pid.
        return 0.0 if pid_alive(pid) else None

    def this_process(self) -> tuple[int, float]:
        return os.getpid(), 0.0


class _OsFile:
    """A simulated file whose typed errors come out as the OSErrors LTFS would return."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return self._inner.readable()

    def writable(self) -> bool:
        return self._inner.writable()

    def readinto(self, buffer: Any) -> int:
        try:
            return self._inner.readinto(buffer)
        except Exception as exc:
            raise as_oserror(exc) from exc

    def write(self, data: Any) -> int:
        try:
            return self._inner.write(data)
        except Exception as exc:
            raise as_oserror(exc) from exc

    def close(self) -> None:
        try:
            self._inner.close()
        except Exception as exc:
            raise as_oserror(exc) from exc
