"""LTFS over its tools: mkltfs, an `ltfs -f` child per mount, umount + wait, ltfsck."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import LibraryConfig
from archive_core_tape_ltfs.model import (
    Capacity,
    CheckMode,
    CheckRequest,
    CheckResult,
    FileLocation,
    FormatRequest,
    MountRequest,
    VolumeInfo,
    volume_serial_for,
)
from archive_core_tape_ltfs.parse import ltfs as ltfs_text
from archive_core_tape_ltfs.port import Clock, Mount
from archive_core_tape_ltfs.real.files import TapeFile, translate
from archive_core_tape_ltfs.real.mountfs import MountFs
from archive_core_tape_ltfs.runner import Command, Process, Runner

logger = logging.getLogger(__name__)

_XATTR = "user.ltfs."


class RealMount:
    """A volume mounted by an `ltfs -f` child process at a directory of this host."""

    def __init__(
        self,
        *,
        drive: int,
        mountpoint: Path,
        process: Process,
        fs: MountFs,
        read_only: bool,
        barcode: str | None,
        write_protected: bool = False,
    ) -> None:
        self.drive = drive
        self.write_protected = write_protected
        self.mountpoint = mountpoint
        self.process = process
        self.read_only = read_only
        self.barcode = barcode
        self._fs = fs

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
        )

    def _optional(self, name: str) -> str:
        try:
            return self._fs.getxattr(self.mountpoint, _XATTR + name).decode().strip()
        except OSError:
            return ""

    def sync(self) -> int:
        try:
            self._fs.setxattr(self.mountpoint, _XATTR + "sync", b"1")
        except OSError as exc:
            raise translate(
                exc, path="/", drive=self.drive, barcode=self.barcode, what="sync the index of"
            ) from exc
        return int(self._xattr("indexGeneration"))

    def location(self, path: str) -> FileLocation | None:
        target = self._path(path)
        try:
            partition = self._fs.getxattr(target, _XATTR + "partition").decode().strip()
            block = self._fs.getxattr(target, _XATTR + "startblock").decode().strip()
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return None  # an empty file has no extent
            raise translate(
                exc, path=path, drive=self.drive, barcode=self.barcode, what="locate"
            ) from exc
        return FileLocation(partition=partition, startblock=int(block))

    def open_write(self, path: str) -> BinaryIO:
        try:
            raw = self._fs.open(self._path(path), "xb")
        except OSError as exc:
            raise translate(
                exc,
                path=path,
                drive=self.drive,
                barcode=self.barcode,
                what="create",
                write_protected=self.write_protected,
            ) from exc
        return TapeFile(
            raw,
            path=path,
            drive=self.drive,
            barcode=self.barcode,
            write_protected=self.write_protected,
        )  # type: ignore[return-value]

    def open_read(self, path: str) -> BinaryIO:
        try:
            raw = self._fs.open(self._path(path), "rb")
        except OSError as exc:
            raise translate(
                exc, path=path, drive=self.drive, barcode=self.barcode, what="open"
            ) from exc
        return TapeFile(raw, path=path, drive=self.drive, barcode=self.barcode)  # type: ignore[return-value]

    def remove(self, path: str) -> None:
        try:
            self._fs.remove(self._path(path))
        except OSError as exc:
            raise translate(
                exc,
                path=path,
                drive=self.drive,
                barcode=self.barcode,
                what="remove",
                write_protected=self.write_protected,
            ) from exc

    def files(self) -> Iterator[tuple[str, int]]:
        for full, size in self._fs.walk(self.mountpoint):
            yield str(full.relative_to(self.mountpoint)), size


class LtfsTools:
    """mkltfs, ltfs, umount and ltfsck against the configured drives."""

    def __init__(
        self,
        *,
        config: LibraryConfig,
        runner: Runner,
        clock: Clock,
        device_of: Callable[[int], str],
        holding: dict[int, RealMount],
        eject: Callable[[int], None],
        fs: MountFs | None = None,
    ) -> None:
        self._config = config
        self._runner = runner
        self._clock = clock
        self._device_of = device_of
        self._holding = holding
        self._eject = eject
        self._fs = fs or MountFs()

    def _guard(self, drive: int, what: str) -> None:
        held = self._holding.get(drive)
        if held is not None and held.process.poll() is not None:
            # The ltfs process died (crash, kill): nothing holds the drive any more.
            self._holding.pop(drive, None)
        if drive in self._holding:
            raise errors.DriveHeldByLtfs(
                f"Cannot {what} drive {drive}: its volume is mounted at "
                f"{self._holding[drive].mountpoint}. Unmount it first.",
                drive=drive,
            )

    def format(self, request: FormatRequest) -> VolumeInfo:
        serial = request.serial
        if serial is None:
            raise errors.BarcodeUnreadable(
                f"Cannot format for barcode {request.barcode!r}: an LTFS volume serial is the "
                f"first 6 characters of the barcode, A-Z and 0-9 only.",
                barcode=request.barcode,
                drive=request.drive,
            )
        self._guard(request.drive, "format the cartridge in")
        device = self._device_of(request.drive)
        args = ["mkltfs", "-d", device, "-s", serial]
        if request.name:
            args += ["-n", request.name]
        if request.rules:
            args += ["-r", request.rules]
        if request.force:
            args.append("-f")
        done = self._runner.run(Command(argv=args, timeout=self._config.timeouts.format))
        output = done.stdout + done.stderr
        if done.exit_code != ltfs_text.MKLTFS_OK:
            if done.exit_code & ltfs_text.MKLTFS_USAGE and "LTFS15047E" not in output:
                raise errors.ToolFailed(
                    f"mkltfs refused its arguments ({' '.join(args)}).", detail=output[-800:]
                )
            raise ltfs_text.failure(
                output,
                what=f"format {request.barcode}",
                drive=request.drive,
                device=device,
                barcode=request.barcode,
            )
        uuid = ltfs_text.volume_uuid(output) or ""
        return VolumeInfo(serial=serial, uuid=uuid, generation=1, name=request.name)

    def mount(self, request: MountRequest) -> Mount:
        self._guard(request.drive, "mount")
        device = self._device_of(request.drive)
        mountpoint = self._config.mount_root / f"drive{request.drive}"
        mountpoint.mkdir(parents=True, exist_ok=True)
        if self._fs.mount_options(mountpoint) is not None:
            # A dead ltfs leaves its FUSE mount behind ("transport endpoint is not connected").
            self._runner.run(
                Command(argv=("umount", str(mountpoint)), timeout=self._config.timeouts.status)
            )
            if self._fs.mount_options(mountpoint) is not None:
                raise errors.DriveBusy(
                    f"Cannot mount drive {request.drive}: {mountpoint} is still mounted and "
                    f"could not be unmounted.",
                    drive=request.drive,
                )
        work = self._config.work_directory
        work.mkdir(parents=True, exist_ok=True)
        options = [
            f"devname={device}",
            "sync_type=unmount",
            f"work_directory={work}",
            "capture_index",
            "noatime",
            *self._config.ltfs_options,
        ]
        if request.read_only:
            options.append("ro")
        args = ["ltfs", "-f", str(mountpoint)]
        for option in options:
            args += ["-o", option]
        command = Command(argv=args, timeout=self._config.timeouts.mount)
        process = self._runner.spawn(command, work / f"ltfs-drive{request.drive}.log")
        # ltfs announces success before FUSE is up: the mount table is the only proof.
        deadline = self._clock.now() + command.timeout
        while (mount_options := self._fs.mount_options(mountpoint)) is None:
            code = process.poll()
            if code is not None:
                raise ltfs_text.failure(
                    process.stderr_text(),
                    what="mount",
                    drive=request.drive,
                    device=device,
                    barcode=request.barcode,
                )
            if self._clock.now() >= deadline:
                raise errors.ToolTimeout(
                    f"ltfs did not mount drive {request.drive} within {command.timeout:.0f} s.",
                    drive=request.drive,
                    device=device,
                    detail=process.stderr_text()[-800:],
                )
            self._clock.sleep(0.5)
        mount = RealMount(
            drive=request.drive,
            mountpoint=mountpoint,
            process=process,
            fs=self._fs,
            read_only="ro" in mount_options,
            barcode=request.barcode,
            write_protected="LTFS14019I" in process.stderr_text(),
        )
        self._holding[request.drive] = mount
        if request.barcode:
            expected = volume_serial_for(request.barcode)
            found = mount.volume().serial
            if expected and found != expected:
                self.unmount(mount)
                raise errors.WrongCartridge(
                    f"Drive {request.drive} should hold {request.barcode}, but its LTFS volume "
                    f"has serial {found}. The cartridge or its label was swapped.",
                    drive=request.drive,
                    barcode=request.barcode,
                )
        return mount

    def unmount(self, mount: Mount, *, eject: bool = False) -> None:
        assert isinstance(mount, RealMount)
        done = self._runner.run(
            Command(argv=("umount", str(mount.mountpoint)), timeout=self._config.timeouts.status)
        )
        if not done.ok and self._fs.mount_options(mount.mountpoint) is not None:
            raise errors.ToolFailed(
                f"Cannot unmount {mount.mountpoint}: {done.stderr.strip() or 'umount failed'}.",
                drive=mount.drive,
                detail=done.stderr,
            )
        # umount only starts the unmount: the index is on tape when ltfs has exited.
        code = mount.process.wait(self._config.timeouts.unmount)
        self._holding.pop(mount.drive, None)
        if code != 0:
            raise ltfs_text.failure(
                mount.process.stderr_text(),
                what="unmount",
                drive=mount.drive,
                device=self._device_of(mount.drive),
                barcode=mount.barcode,
            )
        if eject:
            self._eject(mount.drive)

    def check(self, request: CheckRequest) -> CheckResult:
        self._guard(request.drive, "check")
        device = self._device_of(request.drive)
        mode_args = {
            CheckMode.VERIFY: [],
            CheckMode.SALVAGE: ["-f"],
            CheckMode.DEEP: ["-z"],
            CheckMode.LIST_ROLLBACK: ["-l"],
        }
        if request.mode is CheckMode.ROLLBACK:
            if request.generation is None:
                raise errors.TapeError("A rollback check needs the generation to go back to.")
            args = ["ltfsck", "-r", "-g", str(request.generation), device]
        else:
            args = ["ltfsck", *mode_args[request.mode], device]
        done = self._runner.run(Command(argv=args, timeout=self._config.timeouts.check))
        output = done.stdout + done.stderr
        if done.exit_code & (16 | 64):
            raise errors.ToolFailed(
                f"ltfsck could not run on drive {request.drive} (exit {done.exit_code}).",
                drive=request.drive,
                device=device,
                detail=output[-800:],
            )
        return CheckResult(
            exit_code=done.exit_code,
            generations=ltfs_text.rollback_generations(output)
            if request.mode is CheckMode.LIST_ROLLBACK
            else (),
            output=output,
        )

    def release(self, drive: int) -> None:
        self._guard(drive, "release")
        device = self._device_of(drive)
        done = self._runner.run(
            Command(
                argv=("ltfs", "-o", f"devname={device}", "-o", "release_device"),
                timeout=self._config.timeouts.status,
            )
        )
        if not done.ok:
            raise ltfs_text.failure(
                done.stdout + done.stderr, what="release", drive=drive, device=device
            )
