"""LTFS over its tools: mkltfs, an `ltfs -f` child per mount, umount + wait, ltfsck; the mounts
of every process on this host through a shared registry."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import LibraryConfig
from archive_core_tape_ltfs.model import (
    CapturedIndex,
    CheckMode,
    CheckRequest,
    CheckResult,
    FormatRequest,
    MountRecord,
    MountRequest,
    VolumeInfo,
    volume_serial_for,
)
from archive_core_tape_ltfs.parse import ltfs as ltfs_text
from archive_core_tape_ltfs.parse.index import parse_index
from archive_core_tape_ltfs.port import Clock, Mount
from archive_core_tape_ltfs.real.holders import Holders
from archive_core_tape_ltfs.real.mount import MountView, RealMount
from archive_core_tape_ltfs.real.mountfs import MountFs
from archive_core_tape_ltfs.real.processes import ForeignProcess, ProcessTable
from archive_core_tape_ltfs.real.registry import MountRegistry, Registered
from archive_core_tape_ltfs.runner import Command, Runner

logger = logging.getLogger(__name__)

# `ltfsck --capture-index` names each index it lists `<volser>-<generation>.schema`, or
# `<uuid>-<generation>.schema` without a serial (src/libltfs/ltfs.c, ltfs_save_index_to_disk).
_LISTED_INDEX = re.compile(r"^(?P<name>.+)-(?P<gen>\d+)\.schema$")


class LtfsTools:
    """mkltfs, ltfs, umount and ltfsck against the configured drives."""

    def __init__(
        self,
        *,
        config: LibraryConfig,
        runner: Runner,
        clock: Clock,
        device_of: Callable[[int], str],
        eject: Callable[[int], None],
        worm_of: Callable[[int, str | None], bool],
        processes: ProcessTable,
        fs: MountFs | None = None,
        caller: str = "main",
    ) -> None:
        self._config = config
        self._caller = caller  # recorded as the owner's name of the mounts made here
        self._runner = runner
        self._clock = clock
        self._device_of = device_of
        self._eject = eject
        self._worm_of = worm_of
        self._fs = fs or MountFs()
        self._holders = Holders(MountRegistry(config.work_directory), processes)

    # --- who holds a drive ---------------------------------------------------------------

    def holder(self, drive: int) -> str | None:
        """Who keeps LTFS on `drive`, in words for an error message; None when nobody does."""
        return self._holders.holder(drive)

    def _guard(self, drive: int, what: str) -> None:
        holder = self.holder(drive)
        if holder is not None:
            raise errors.DriveHeldByLtfs(
                f"Cannot {what} drive {drive}: {holder}. Unmount it first.", drive=drive
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

    # --- mount, unmount ------------------------------------------------------------------

    def _ltfs_work(self, drive: int) -> Path:
        """The drive's own LTFS work directory, where its captured index lands."""
        return self._config.work_directory / f"drive{drive}"

    def _log(self, drive: int) -> Path:
        return self._config.work_directory / f"ltfs-drive{drive}.log"

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
        # Read while nothing holds the drive: the cartridge memory says whether it is WORM.
        worm = self._worm_of(request.drive, request.barcode)
        work = self._ltfs_work(request.drive)
        work.mkdir(parents=True, exist_ok=True)
        options = [
            f"devname={device}",
            "sync_type=unmount",
            f"work_directory={work}",
            # At unmount ltfs writes the final index to <work_directory>/<volser>.schema.
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
        process = self._runner.spawn(command, self._log(request.drive))
        # ltfs announces success before FUSE is up: the mount table is the only proof.
        deadline = self._clock.now() + command.timeout
        while self._fs.mount_options(mountpoint) is None:
            if process.poll() is not None:
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
            barcode=request.barcode,
            mounted_read_only=request.read_only,
            read_only_at_mount=ltfs_text.read_only_at_mount(process.stderr_text()),
            worm=worm,
        )
        self._holders.hold(mount, since=self._clock.now(), owner_name=self._caller)
        self._check_identity(mount, request)
        return mount

    def _check_identity(self, mount: RealMount, request: MountRequest) -> None:
        """WrongCartridge, with the volume unmounted, unless it is the one the request names."""
        if not request.barcode and not request.volume_uuid:
            return
        volume = mount.volume()
        tape = request.barcode or f"the cartridge in drive {request.drive}"
        expected = volume_serial_for(request.barcode) if request.barcode else None
        if expected and volume.serial != expected:
            self._refuse(
                mount,
                errors.WrongCartridge(
                    f"Drive {request.drive} should hold {request.barcode}, but its LTFS "
                    f"volume has serial {volume.serial}. The cartridge or its label was "
                    f"swapped.",
                    drive=request.drive,
                    barcode=request.barcode,
                ),
            )
        if request.volume_uuid and volume.uuid.lower() != request.volume_uuid.lower():
            self._refuse(
                mount,
                errors.WrongCartridge(
                    f"The LTFS volume of {tape} in drive {request.drive} has UUID "
                    f"{volume.uuid}, but the catalog knows this cartridge as volume "
                    f"{request.volume_uuid}. It was reformatted, or its label belongs to "
                    f"another cartridge; it was unmounted untouched.",
                    drive=request.drive,
                    barcode=request.barcode,
                ),
            )

    def _refuse(self, mount: RealMount, error: errors.TapeError) -> None:
        try:
            self.unmount(mount)
        except errors.TapeError as failed:
            raise failed from error
        raise error

    def unmount(self, mount: Mount, *, eject: bool = False) -> CapturedIndex | None:
        assert isinstance(mount, RealMount)
        capture = self._capture_path(mount)
        if capture is not None:
            capture.unlink(missing_ok=True)  # an older unmount's copy is no proof of this one
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
        self._holders.unmounted(mount, cleanly=code == 0)
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
        return self._captured(capture)

    def _capture_path(self, mount: RealMount) -> Path | None:
        """Where ltfs will write this volume's final index: `<volser>.schema`, or
        `<uuid>.schema` for a volume formatted without a serial (ltfs_save_index_to_disk)."""
        try:
            volume = mount.volume()
        except errors.TapeError:
            return None  # the volume no longer answers: nothing will be captured
        return self._ltfs_work(mount.drive) / f"{volume.serial.strip() or volume.uuid}.schema"

    def _captured(self, path: Path | None) -> CapturedIndex | None:
        if path is None or not path.is_file():
            return None
        try:
            return parse_index(path, origin=str(path))
        except errors.InconsistentIndex as exc:
            logger.warning("%s", exc.message)
            return None

    # --- the registry --------------------------------------------------------------------

    def mounts(self) -> tuple[MountRecord, ...]:
        return self._holders.records()

    def adopt(self, drive: int) -> Mount:
        # A mount of this process has a live owner too: there is nothing to take over.
        record = self._holders.orphan(drive)
        mount = self._served(record, RealMount)
        self._holders.adopt(mount, record, owner_name=self._caller)
        return mount

    def view(self, drive: int) -> Mount:
        own = self._holders.own(drive)
        record = self._holders.live(drive)
        if own is None and record is None:
            raise errors.SourceEmpty(f"Drive {drive} has no LTFS mount on this host.", drive=drive)
        if own is not None:
            return MountView.of(own)
        assert record is not None
        return self._served(record, MountView)

    def _served(self, record: Registered, kind: type[RealMount]) -> RealMount:
        """A mount object over the volume another process's ltfs serves."""
        process = ForeignProcess(
            pid=record.ltfs_pid,
            started=record.ltfs_started,
            processes=self._holders.processes,
            clock=self._clock,
            log_path=self._log(record.drive),
            poll_interval=self._config.timeouts.poll_interval,
        )
        return kind(
            drive=record.drive,
            mountpoint=Path(record.mountpoint),
            process=process,
            fs=self._fs,
            barcode=record.barcode,
            read_only_at_mount=ltfs_text.read_only_at_mount(process.stderr_text()),
            worm=self._worm_of(record.drive, record.barcode),
        )

    # --- reading the index of an unmounted volume ----------------------------------------

    def read_index(self, drive: int) -> CapturedIndex:
        self._guard(drive, "read the index of the cartridge in")
        device = self._device_of(drive)
        # ltfsck writes every index it lists into its current directory.
        listing = self._config.work_directory / f"index-drive{drive}"
        shutil.rmtree(listing, ignore_errors=True)
        listing.mkdir(parents=True)
        try:
            done = self._runner.run(
                Command(
                    argv=("ltfsck", "--capture-index", device),
                    timeout=self._config.timeouts.check,
                    cwd=listing,
                )
            )
            output = done.stdout + done.stderr
            captured = [
                (int(m.group("gen")), path)
                for path in listing.glob("*.schema")
                if (m := _LISTED_INDEX.match(path.name))
            ]
            if not captured:
                raise ltfs_text.failure(
                    output, what="read the LTFS index", drive=drive, device=device
                )
            _generation, latest = max(captured)
            return parse_index(latest, origin=f"of the cartridge in drive {drive}")
        finally:
            shutil.rmtree(listing, ignore_errors=True)

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
        # The dead mount's record has done its job (telling everyone the drive needed this).
        self._holders.released(drive)
