"""Simulated LTFS: format, mount, file I/O with on-tape extents, sync, unmount, ltfsck.

Written bytes go to a blob file per file; synthetic files (`SimMount.write_synthetic`) are only
described. Reads stream: the bytes come from the blob or the description as the reader asks.
The drive streams at the rate its caller feeds or drains it, measured on the caller's clock.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import attrs
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cost import BLOCK_SIZE, INDEX_POSITION, Position
from archive_core_tape_ltfs.model import (
    ALERT_CLEANING_REQUIRED,
    Capacity,
    CapturedIndex,
    CheckMode,
    CheckRequest,
    CheckResult,
    FileLocation,
    FormatRequest,
    MountRecord,
    MountRequest,
    ReadOnlyReason,
    VolumeInfo,
    VolumeState,
    volume_serial_for,
)
from archive_core_tape_ltfs.sim import faults, mechanics
from archive_core_tape_ltfs.sim.content import SyntheticContent
from archive_core_tape_ltfs.sim.engine import Caller, Engine, Step
from archive_core_tape_ltfs.sim.state import (
    CLEAN,
    CORRUPT,
    EXTRA_BLOCKS,
    NO_EOD,
    FileExtent,
    SimCartridge,
    SimDrive,
    SimFault,
    SimFile,
    SimLtfs,
    SimVolume,
)

from archive_core import CopyNotFound

DEEP_RECOVERY_SECONDS = 20 * 60  # ltfsck -z EOD recovery (LTFS17131I "about 20 minutes")
LOST_AND_FOUND = "_ltfs_lostandfound"
EARLY_UMOUNT_SECONDS = 0.5  # umount returning before ltfs has written anything
MOUNT_ROOT = "mnt"  # under the state directory: drive N mounts at mnt/drive<N>


def _ready_drive(step: Step, index: int, what: str) -> tuple[SimDrive, SimCartridge]:
    drive = mechanics.drive_row(step, index)
    mechanics.in_service(drive, what)
    if drive.cartridge is None or not drive.threaded:
        raise errors.DriveNotReady(
            f"Cannot {what} drive {index}: it holds no cartridge.", drive=index
        )
    if step.now < drive.ready_at or drive.hung:
        raise errors.DriveNotReady(
            f"Cannot {what} drive {index}: the cartridge is not ready yet.", drive=index
        )
    return drive, step.state.cartridges[drive.cartridge]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


class SimLtfsVolume:
    def __init__(self, engine: Engine, caller: Caller) -> None:
        self._engine = engine
        self._caller = caller

    def _step(self, name: str):
        return self._engine.step(self._caller, name)

    def _guard(self, drive: SimDrive, what: str) -> None:
        if drive.ltfs is not None:
            raise errors.DriveHeldByLtfs(
                f"Cannot {what} drive {drive.index}: its volume is mounted. Unmount it first.",
                drive=drive.index,
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
        with self._step("format") as step:
            drive, cartridge = _ready_drive(step, request.drive, "format in")
            self._guard(drive, "format the cartridge in")
            where = {"drive": drive.index, "barcode": request.barcode}
            if cartridge.cleaning:
                raise errors.UnformattedTape(
                    f"Cannot format {cartridge.label}: it is a cleaning cartridge.", **where
                )
            if cartridge.generation not in mechanics.writable_generations(drive.generation):
                raise errors.MediaError(
                    f"Cannot format {request.barcode}: an LTO-{cartridge.generation} cartridge "
                    f"cannot be written in an LTO-{drive.generation} drive.",
                    **where,
                )
            if cartridge.write_protected:
                raise errors.WriteProtected(
                    f"Cannot format {request.barcode}: the cartridge is write-protected. Slide "
                    f"its write-protect tab to format it.",
                    **where,
                )
            if cartridge.volume is not None and cartridge.worm:
                raise errors.AlreadyFormatted(
                    f"Cannot format {request.barcode}: it is a WORM cartridge that already "
                    f"holds an LTFS volume; a WORM cartridge is formatted once, never again.",
                    **where,
                )
            if cartridge.volume is not None and not request.force:
                raise errors.AlreadyFormatted(
                    f"Cannot format {request.barcode}: it already holds an LTFS volume. "
                    f"Formatting it would destroy its files; force the format only for a "
                    f"cartridge the catalog does not know.",
                    **where,
                )
            mechanics.forget_volume(step, cartridge)
            model = mechanics.timing(drive)
            seconds = model.rewind(mechanics.head(drive)) + model.library.format_seconds
            mechanics.drive_work(step, drive, seconds, "format")
            volume = mechanics.new_volume(
                step, cartridge, serial=serial, name=request.name, rules=request.rules
            )
            volume.mam_barcode = request.barcode
            cartridge.volume = volume
            cartridge.foreign = False
            mechanics.move_head(drive, Position(partition=1, block=volume.append_block))
            return VolumeInfo(
                serial=serial,
                uuid=volume.uuid,
                generation=volume.generation,
                name=request.name,
                mam_barcode=volume.mam_barcode,
            )

    def mount(self, request: MountRequest) -> SimMount:
        with self._step("mount") as step:
            drive, cartridge = _ready_drive(step, request.drive, "mount")
            self._guard(drive, "mount")
            where = {"drive": drive.index, "barcode": request.barcode or cartridge.label}
            fault = faults.take(
                step.state, "mount", now=step.now, drive=drive.index, barcode=cartridge.key
            )
            if drive.reserved or fault is not None:
                raise errors.DriveBusy(
                    f"Cannot mount drive {drive.index}: it is reserved by another host or by an "
                    f"LTFS process that crashed; release the drive and try again.",
                    **where,
                )
            volume = cartridge.volume
            if cartridge.cleaning or volume is None:
                raise errors.UnformattedTape(
                    f"Cannot mount {cartridge.label or 'the cartridge'} in drive {drive.index}: "
                    f"it holds no LTFS volume (unformatted or written by other software). "
                    f"Format it only if it belongs to a scratch pool.",
                    **where,
                )
            if cartridge.generation not in mechanics.readable_generations(drive.generation):
                raise errors.MediaError(
                    f"Cannot mount {cartridge.label}: an LTO-{cartridge.generation} cartridge "
                    f"cannot be read in an LTO-{drive.generation} drive.",
                    **where,
                )
            model = mechanics.timing(drive)
            if volume.consistency != CLEAN:
                if volume.consistency == EXTRA_BLOCKS:
                    mechanics.drive_work(
                        step, drive, model.library.consistency_check_seconds, "consistency check"
                    )
                raise errors.InconsistentIndex(
                    f"Cannot mount {cartridge.label}: the LTFS index does not match the medium "
                    f"(the volume was not unmounted cleanly). Run a check (ltfsck) on it before "
                    f"using it again.",
                    **where,
                )
            seconds = model.mount(volume.file_count, mechanics.head(drive))
            mechanics.drive_work(step, drive, seconds, "mount")
            mechanics.move_head(drive, INDEX_POSITION)
            self._check_identity(request, drive, cartridge, volume, where)
            state = step.state
            state.next_pid += 1
            drive.ltfs = SimLtfs(
                pid=state.next_pid,
                owner_pid=os.getpid(),
                owner=step.caller.name,
                host=socket.gethostname(),
                mountpoint=str(self._engine.root / MOUNT_ROOT / f"drive{drive.index}"),
                since=step.now,
                mounted_read_only=request.read_only,
            )
            return SimMount(
                self._engine,
                self._caller,
                drive=drive.index,
                pid=state.next_pid,
                barcode=cartridge.label,
            )

    def _check_identity(
        self,
        request: MountRequest,
        drive: SimDrive,
        cartridge: SimCartridge,
        volume: SimVolume,
        where: dict,
    ) -> None:
        """The volume read from tape must be the one asked for (LTFS has read its label and
        index by now; nothing stays mounted when it is not)."""
        if request.barcode:
            expected = volume_serial_for(request.barcode)
            if expected and volume.serial != expected:
                raise errors.WrongCartridge(
                    f"Drive {drive.index} should hold {request.barcode}, but its LTFS volume "
                    f"has serial {volume.serial}. The cartridge or its label was swapped.",
                    **where,
                )
        if request.volume_uuid and request.volume_uuid != volume.uuid:
            raise errors.WrongCartridge(
                f"Drive {drive.index} should hold the LTFS volume {request.volume_uuid}, but "
                f"cartridge {cartridge.label or '(no barcode)'} in it holds volume "
                f"{volume.uuid} (serial {volume.serial}). It was not mounted.",
                **where,
            )

    def unmount(self, mount: Any, *, eject: bool = False) -> CapturedIndex | None:
        assert isinstance(mount, SimMount)
        with self._step("unmount") as step:
            drive, cartridge, volume = mount._alive(step, "unmount")
            model = mechanics.timing(drive)
            early = faults.take(
                step.state, "unmount", now=step.now, drive=drive.index, barcode=cartridge.key
            )
            if early is not None and early.kind == "unmount_returns_early":
                # umount returns at once; the ltfs process writes the index and exits later
                # (the drive stays busy with it meanwhile).
                assert drive.ltfs is not None
                seconds = model.library.clean_unmount_seconds
                if volume.dirty and mechanics.takes_index(drive, cartridge, volume):
                    seconds = model.unmount(
                        volume.file_count,
                        dirty=True,
                        head=mechanics.head(drive),
                        append_block=volume.append_block,
                    )
                start = max(step.now, drive.busy_until)
                drive.ltfs.exit_at = start + seconds
                step.occupy(
                    f"drive{drive.index}",
                    start,
                    seconds,
                    operation="unmount (ltfs exiting)",
                    cartridge=cartridge.key,
                )
                step.caller.now += EARLY_UMOUNT_SECONDS
                return None
            eom = early is not None and early.kind == "eom_on_index" and volume.dirty
            if eom and mechanics.takes_index(drive, cartridge, volume):
                raise self._end_of_medium(step, drive, cartridge, volume)
            seconds = mechanics.finish_unmount(step, drive)
            mechanics.drive_work(step, drive, seconds, "unmount")
            captured = mechanics.captured_index(step, volume, indexed_only=False)
            if eject:
                mechanics.unthread(step, drive, "eject the cartridge from")
            return captured

    def _end_of_medium(
        self, step: Step, drive: SimDrive, cartridge: SimCartridge, volume: SimVolume
    ) -> errors.TapeError:
        model = mechanics.timing(drive)
        target = Position(partition=1, block=volume.append_block)
        mechanics.drive_work(step, drive, model.locate(mechanics.head(drive), target), "unmount")
        mechanics.move_head(drive, target)
        mechanics.drop_read_only(volume, reason="end of medium during the final index")
        volume.file_count -= step.files().drop_unindexed(volume.uuid)
        volume.dirty = False
        drive.ltfs = None
        return errors.NoSpace(
            f"LTFS could not write the final index of {cartridge.label}: end of medium. The "
            f"volume keeps its previous index and is now read-only; files written since the "
            f"last sync are not on it.",
            drive=drive.index,
            barcode=cartridge.label,
        )

    def read_index(self, drive: int) -> CapturedIndex:
        with self._step("read-index") as step:
            found, cartridge = _ready_drive(step, drive, "read the index in")
            self._guard(found, "read the index in")
            volume = cartridge.volume
            if cartridge.cleaning or volume is None:
                raise errors.UnformattedTape(
                    f"Cannot read the index of {cartridge.label or 'the cartridge'} in drive "
                    f"{drive}: it holds no LTFS volume.",
                    drive=drive,
                    barcode=cartridge.label,
                )
            if volume.consistency in (CORRUPT, NO_EOD):
                raise errors.InconsistentIndex(
                    f"Cannot read the index of {cartridge.label}: its latest index is damaged. "
                    f"Run a check (ltfsck) on it.",
                    drive=drive,
                    barcode=cartridge.label,
                )
            model = mechanics.timing(found)
            seconds = model.mount(volume.file_count, mechanics.head(found))
            mechanics.drive_work(step, found, seconds, "read index")
            mechanics.move_head(found, INDEX_POSITION)
            # What is on tape: files written after the last index are not in it.
            return mechanics.captured_index(step, volume, indexed_only=True)

    def mounts(self) -> tuple[MountRecord, ...]:
        host = socket.gethostname()
        with self._engine.transaction(self._caller) as step:
            records = []
            for drive in step.state.drives:
                for ltfs, alive in ((drive.ltfs, True), (drive.stale, False)):
                    if ltfs is None:
                        continue
                    cartridge = step.state.cartridges.get(drive.cartridge or "")
                    records.append(
                        MountRecord(
                            drive=drive.index,
                            mountpoint=ltfs.mountpoint,
                            barcode=cartridge.label if cartridge else None,
                            owner_pid=ltfs.owner_pid,
                            owner_name=ltfs.owner,
                            ltfs_pid=ltfs.pid,
                            host=ltfs.host,
                            owner_alive=ltfs.host != host or pid_alive(ltfs.owner_pid),
                            ltfs_alive=alive and ltfs.exit_at is None,
                            since=ltfs.since,
                        )
                    )
            return tuple(records)

    def adopt(self, drive: int) -> SimMount:
        with self._step("adopt") as step:
            found = mechanics.drive_row(step, drive)
            ltfs = found.ltfs
            if ltfs is None or ltfs.exit_at is not None:
                raise errors.DriveNotReady(
                    f"Cannot adopt the mount of drive {drive}: no LTFS process holds it.",
                    drive=drive,
                )
            here = socket.gethostname()
            if ltfs.host != here or pid_alive(ltfs.owner_pid):
                raise errors.DriveHeldByLtfs(
                    f"Cannot adopt the mount of drive {drive}: its owner {ltfs.owner} (process "
                    f"{ltfs.owner_pid} on {ltfs.host}) is still alive. Let it unmount the "
                    f"volume, or stop that process first.",
                    drive=drive,
                )
            ltfs.owner_pid = os.getpid()
            ltfs.owner = step.caller.name
            ltfs.host = here
            return self._served(step, found, SimMount)

    def view(self, drive: int) -> SimMount:
        with self._engine.transaction(self._caller) as step:
            found = mechanics.drive_row(step, drive)
            ltfs = found.ltfs
            if ltfs is None or ltfs.exit_at is not None:
                raise errors.SourceEmpty(
                    f"Drive {drive} has no LTFS mount on this host.", drive=drive
                )
            return self._served(step, found, SimMountView)

    def _served(self, step: Step, drive: SimDrive, kind: type[SimMount]) -> SimMount:
        """A mount object over the volume `drive`'s ltfs serves now."""
        assert drive.ltfs is not None
        cartridge = step.state.cartridges.get(drive.cartridge or "")
        return kind(
            self._engine,
            self._caller,
            drive=drive.index,
            pid=drive.ltfs.pid,
            barcode=cartridge.label if cartridge else None,
        )

    def check(self, request: CheckRequest) -> CheckResult:
        with self._step("check") as step:
            drive, cartridge = _ready_drive(step, request.drive, "check")
            self._guard(drive, "check")
            volume = cartridge.volume
            if volume is None:
                raise errors.UnformattedTape(
                    f"Cannot check {cartridge.label}: it holds no LTFS volume.",
                    drive=drive.index,
                    barcode=cartridge.label,
                )
            model = mechanics.timing(drive)
            mechanics.drive_work(step, drive, model.library.consistency_check_seconds, "check")
            return self._checked(step, request, drive, volume)

    def _checked(
        self, step: Step, request: CheckRequest, drive: SimDrive, volume: SimVolume
    ) -> CheckResult:
        files = step.files()
        if request.mode is CheckMode.LIST_ROLLBACK:
            lines = [f"Generation: {g}" for g in volume.generations]
            return CheckResult(
                exit_code=0, generations=tuple(volume.generations), output="\n".join(lines)
            )
        if request.mode is CheckMode.ROLLBACK:
            gen = request.generation
            if gen is None or gen not in volume.generations:
                return CheckResult(exit_code=4, output=f"generation {gen} not found")
            if volume.lock_state:
                return CheckResult(exit_code=4, output="volume is write-perm locked")
            files.drop_after(volume.uuid, gen)
            volume.file_count = files.count(volume.uuid)
            volume.generations = tuple(g for g in volume.generations if g <= gen)
            volume.generation = gen
            volume.consistency = CLEAN
            self._rewrite_index(step, drive, volume)
            return CheckResult(exit_code=1, output=f"rolled back to generation {gen}")
        if volume.consistency == CLEAN:
            return CheckResult(exit_code=0, output="volume is consistent")
        if volume.lock_state:
            # A write-perm'd cartridge cannot take the index ltfsck would write (ltfs#387).
            return CheckResult(exit_code=4, output="volume is write-perm locked")
        if volume.consistency == NO_EOD and request.mode is not CheckMode.DEEP:
            return CheckResult(exit_code=4, output="end of data missing: use deep recovery")
        if volume.consistency == NO_EOD:
            mechanics.drive_work(step, drive, DEEP_RECOVERY_SECONDS, "deep recovery")
        if request.mode is CheckMode.SALVAGE and volume.consistency == EXTRA_BLOCKS:
            unindexed = files.move_unindexed(volume.uuid, LOST_AND_FOUND)
        else:
            unindexed = files.drop_unindexed(volume.uuid)
            volume.file_count -= unindexed
        volume.consistency = CLEAN
        self._rewrite_index(step, drive, volume)
        return CheckResult(
            exit_code=1, output=f"recovered; {unindexed} files were not in the last index"
        )

    def _rewrite_index(self, step: Step, drive: SimDrive, volume: SimVolume) -> None:
        seconds = mechanics.write_index(step, drive, volume, both_partitions=True)
        mechanics.drive_work(step, drive, seconds, "index write")

    def release(self, drive: int) -> None:
        with self._step("release") as step:
            found = mechanics.drive_row(step, drive)
            self._guard(found, "release")
            found.reserved = False
            found.stale = None
            step.state.faults = tuple(
                f
                for f in step.state.faults
                if not (f.kind == "stale_reservation" and f.drive in (None, drive))
            )


def _stream_start(step: Step, drive: SimDrive) -> float:
    """Since when a new file's data counts as coming: from the end of the drive's last write
    when nothing came between (the drive kept streaming through the host's pause, or stopped
    in it: how long the pause was decides), else from now."""
    if drive.streaming_until is not None and drive.streaming_until <= step.now:
        return drive.streaming_until
    return step.now


@attrs.define
class _Writing:
    """A file on its way to tape: what of it is already there, since when it is fed."""

    path: str
    fileuid: int
    mark: float  # caller's time when the bytes not yet on tape started coming
    flushed: int = 0
    extents: list[FileExtent] = attrs.Factory(list)
    blob: str | None = None
    seed: int | None = None


class SimMount:
    """A mounted simulated volume; every call checks its ltfs process is still alive."""

    def __init__(
        self, engine: Engine, caller: Caller, *, drive: int, pid: int, barcode: str | None
    ) -> None:
        self._engine = engine
        self._caller = caller
        self.drive = drive
        self.pid = pid
        self.barcode = barcode

    def __repr__(self) -> str:
        return f"<SimMount drive={self.drive} {self.barcode} pid={self.pid}>"

    def _step(self, name: str):
        return self._engine.step(self._caller, name)

    def _alive(self, step: Step, what: str) -> tuple[SimDrive, SimCartridge, SimVolume]:
        drive = mechanics.drive_row(step, self.drive)
        if drive.ltfs is None or drive.ltfs.pid != self.pid or drive.ltfs.exit_at is not None:
            raise errors.ToolFailed(
                f"Cannot {what}: the LTFS process of drive {self.drive} is gone (it crashed or "
                f"was unmounted).",
                drive=self.drive,
                barcode=self.barcode,
            )
        cartridge = step.state.cartridges[drive.cartridge or ""]
        assert cartridge.volume is not None
        return drive, cartridge, cartridge.volume

    def _writable(
        self, drive: SimDrive, cartridge: SimCartridge, volume: SimVolume, path: str
    ) -> None:
        where = {"drive": drive.index, "barcode": cartridge.label, "paths": (path,)}
        reasons = mechanics.volume_state(drive, cartridge, volume).reasons
        if ReadOnlyReason.WRITE_PROTECTED in reasons:
            raise errors.WriteProtected(
                f"Cannot write {path}: cartridge {cartridge.label} is write-protected.", **where
            )
        if ReadOnlyReason.WRITE_ERROR in reasons:
            raise errors.ReadOnlyVolume(
                f"Cannot write {path}: LTFS dropped cartridge {cartridge.label} to read-only "
                f"after a write error; it can be read but never appended again.",
                **where,
            )
        if ReadOnlyReason.OLDER_GENERATION in reasons:
            raise errors.ReadOnlyVolume(
                f"Cannot write {path}: cartridge {cartridge.label} is LTO-{cartridge.generation}"
                f", which drive {drive.index} (LTO-{drive.generation}) reads but cannot write.",
                **where,
            )
        if ReadOnlyReason.MOUNTED_READ_ONLY in reasons:
            raise errors.ReadOnlyVolume(
                f"Cannot write {path}: cartridge {cartridge.label} is mounted read-only.",
                **where,
            )

    def _new_file(self, step: Step, path: str) -> tuple[SimDrive, SimCartridge, SimVolume]:
        drive, cartridge, volume = self._alive(step, f"create {path}")
        self._writable(drive, cartridge, volume, path)
        if step.files().exists(volume.uuid, path):
            if cartridge.worm:
                raise errors.ReadOnlyVolume(
                    f"Cannot create {path}: it exists on WORM cartridge {cartridge.label}, "
                    f"where files cannot be overwritten.",
                    drive=drive.index,
                    barcode=cartridge.label,
                    paths=(path,),
                )
            raise errors.TapeError(
                f"Cannot create {path}: it already exists on cartridge {cartridge.label}.",
                drive=drive.index,
                barcode=cartridge.label,
                paths=(path,),
            )
        return drive, cartridge, volume

    # --- queries ---------------------------------------------------------------------------

    def state(self) -> VolumeState:
        with self._step("xattr") as step:
            drive, cartridge, volume = self._alive(step, "query the volume state")
            return mechanics.volume_state(drive, cartridge, volume)

    @property
    def read_only(self) -> bool:
        return self.state().read_only

    def capacity(self) -> Capacity:
        with self._step("statvfs") as step:
            _drive, cartridge, volume = self._alive(step, "query capacity")
            total = mechanics.pew_block(cartridge)
            free = max(0, total - volume.append_block)
            if volume.lock_state:
                free = 0
            return Capacity(
                block_size=BLOCK_SIZE,
                total_bytes=total * BLOCK_SIZE,
                free_bytes=free * BLOCK_SIZE,
                files=volume.file_count,
            )

    def volume(self) -> VolumeInfo:
        with self._step("xattr") as step:
            _drive, cartridge, volume = self._alive(step, "query the volume")
            return VolumeInfo(
                serial=volume.serial,
                uuid=volume.uuid,
                generation=volume.generation,
                lock_state=mechanics.lock_state(cartridge, volume),
                name=volume.name,
                block_size=volume.block_size,
                mam_barcode=volume.mam_barcode,
            )

    def location(self, path: str) -> FileLocation | None:
        with self._step("xattr") as step:
            _drive, cartridge, volume = self._alive(step, "locate")
            file = step.file(volume.uuid, path.lstrip("/"))
            if file is None:
                raise CopyNotFound(f"{path} is not on cartridge {cartridge.label}.", paths=(path,))
            if file.size == 0:
                return None
            return FileLocation(
                partition=mechanics.partition_letter(file.partition), startblock=file.startblock
            )

    def files(self) -> Iterator[tuple[str, int]]:
        with self._step("readdir") as step:
            _drive, _cartridge, volume = self._alive(step, "list files")
            listed = step.files().listing(volume.uuid)
        return iter(listed)

    # --- changes ---------------------------------------------------------------------------

    def sync(self) -> int:
        with self._step("sync") as step:
            drive, cartridge, volume = self._alive(step, "sync")
            for writer in list(self._engine.open_writers.get(self.drive, ())):
                self._flush(step, drive, volume, writer.writing, writer.written)
            if (
                volume.dirty
                and not volume.lock_state
                and mechanics.takes_index(drive, cartridge, volume)
            ):
                seconds = mechanics.write_index(step, drive, volume, both_partitions=False)
                mechanics.drive_work(step, drive, seconds, "sync")
            return volume.generation

    def remove(self, path: str) -> None:
        path = path.lstrip("/")
        with self._step("remove") as step:
            drive, cartridge, volume = self._alive(step, f"remove {path}")
            self._writable(drive, cartridge, volume, path)
            if cartridge.worm:
                raise errors.ReadOnlyVolume(
                    f"Cannot remove {path}: cartridge {cartridge.label} is WORM; files on it "
                    f"can never be removed or overwritten.",
                    drive=drive.index,
                    barcode=cartridge.label,
                    paths=(path,),
                )
            if step.files().remove(volume.uuid, path) is None:
                raise CopyNotFound(f"{path} is not on cartridge {cartridge.label}.", paths=(path,))
            volume.file_count -= 1
            volume.dirty = True

    def _begin_file(
        self, step: Step, path: str
    ) -> tuple[SimDrive, SimCartridge, SimVolume, SimFault | None, int, int]:
        """A new file's checks, the write fault due for it, its fileuid and the bytes that fit
        before early warning."""
        drive, cartridge, volume = self._new_file(step, path)
        fault = faults.take(
            step.state, "write", now=step.now, drive=drive.index, barcode=cartridge.key, path=path
        )
        fileuid = volume.next_fileuid
        volume.next_fileuid += 1
        room = max(0, mechanics.pew_block(cartridge) - volume.append_block) * BLOCK_SIZE
        return drive, cartridge, volume, fault, fileuid, room

    def open_write(self, path: str) -> BinaryIO:
        path = path.lstrip("/")
        with self._step("create") as step:
            drive, _cartridge, volume, fault, fileuid, room = self._begin_file(step, path)
            blob = Path(mechanics.blob_dir(self._engine, volume)) / str(fileuid)
            blob.parent.mkdir(parents=True, exist_ok=True)
            writing = _Writing(
                path=path, fileuid=fileuid, mark=_stream_start(step, drive), blob=str(blob)
            )
            writer = SimWriter(
                self,
                writing,
                room=room,
                needs_cleaning=drive.needs_clean,
                fail_at=(fault.at_bytes or 0) if fault is not None else None,
            )
            self._engine.open_writers.setdefault(self.drive, []).append(writer)
            return writer  # type: ignore[return-value]

    def write_synthetic(
        self, path: str, size: int, seed: int, *, feed_rate: float | None = None
    ) -> None:
        """Write a file of `size` bytes made from `seed` (see `SyntheticContent`) without
        holding its bytes anywhere. `feed_rate` is how fast its source delivers: the caller's
        clock runs on while it is read, as it would for a source that slow."""
        path = path.lstrip("/")
        with self._step("create") as step:
            drive, cartridge, volume, fault, fileuid, room = self._begin_file(step, path)
            writing = _Writing(
                path=path, fileuid=fileuid, mark=_stream_start(step, drive), seed=seed
            )
            fail_at = (fault.at_bytes or 0) if fault is not None else None
            if drive.needs_clean:
                raise self._cleaning_failure(step, drive, cartridge, volume, path)
            written = size
            if fail_at is not None and size > fail_at:
                written = fail_at
            elif size > room:
                written = room
            if feed_rate:
                step.caller.now += written / feed_rate
            if written < size and fail_at is not None:
                self._settle(step, drive, cartridge, volume, writing, written, error=True)
                raise self._write_error(path)
            self._settle(step, drive, cartridge, volume, writing, written, error=False)
            if written < size:
                raise self._no_space(path)

    def open_read(self, path: str) -> BinaryIO:
        path = path.lstrip("/")
        with self._step("read") as step:
            drive, cartridge, volume = self._alive(step, f"read {path}")
            file = step.file(volume.uuid, path)
            if file is None:
                raise CopyNotFound(f"{path} is not on cartridge {cartridge.label}.", paths=(path,))
            fault = faults.take(
                step.state,
                "read",
                now=step.now,
                drive=drive.index,
                barcode=cartridge.key,
                path=path,
            )
            if fault is not None:
                raise errors.MediaError(
                    f"Cannot read {path}: cartridge {cartridge.label} or drive {drive.index} "
                    f"reported a media error. Read it from another copy.",
                    drive=drive.index,
                    barcode=cartridge.label,
                    paths=(path,),
                )
            return self._reader(step, drive, cartridge, file)  # type: ignore[return-value]

    def _reader(
        self, step: Step, drive: SimDrive, cartridge: SimCartridge, file: SimFile
    ) -> SimReader:
        """Book the drive for the whole read at full speed (the reader stretches it if its
        caller drains slower): the locate to each extent and its streaming."""
        model = mechanics.timing(drive)
        here = mechanics.head(drive)
        first_locate = streaming = 0.0
        locates = 0
        for n, extent in enumerate(sorted(file.extents, key=lambda e: e.file_offset)):
            target = Position(partition=extent.partition, block=extent.startblock)
            seconds = model.locate(here, target)
            locates += seconds > 0
            if n == 0:
                first_locate = seconds
            else:
                streaming += seconds
            streaming += model.stream(extent.byte_count)[0]
            here = Position(
                partition=extent.partition,
                block=extent.startblock + model.blocks_for(extent.byte_count),
            )
        start = max(step.now, drive.busy_until)
        _end, entry = step.occupy(
            f"drive{drive.index}",
            start,
            first_locate + streaming,
            operation="read",
            cartridge=cartridge.key,
            nbytes=file.size,
            locates=locates,
        )
        mechanics.move_head(drive, here)
        drive.activity_bytes += file.size
        first_byte = start + first_locate
        step.wait_until(first_byte)
        content = (
            SyntheticContent(size=file.size, seed=file.seed) if file.seed is not None else None
        )
        return SimReader(
            self._engine,
            self._caller,
            drive=drive.index,
            path=file.path,
            size=file.size,
            blob=file.blob,
            content=content,
            first_byte=first_byte,
            streaming=streaming,
            entry=entry,
        )

    # --- the writing of a file --------------------------------------------------------------

    def _flush(
        self,
        step: Step,
        drive: SimDrive,
        volume: SimVolume,
        writing: _Writing,
        written: int,
        *,
        closing: bool = False,
    ) -> None:
        """The bytes of `writing` not yet on tape go there now, as an extent of their own (an
        index sync, or the file's close, which adds LTFS's work per file)."""
        pending = written - writing.flushed
        model = mechanics.timing(drive)
        overhead = model.library.per_file_seconds if closing else 0.0
        if pending <= 0:
            if closing:
                mechanics.drive_work(step, drive, overhead, "close")
            return
        target = Position(partition=1, block=volume.append_block)
        locate = model.locate(mechanics.head(drive), target)
        elapsed = step.now - writing.mark
        seconds, backhitches = model.stream(pending, pending / elapsed if elapsed > 0 else None)
        mechanics.drive_work(
            step,
            drive,
            locate + seconds + overhead,
            "write",
            start=writing.mark,
            nbytes=pending,
            locates=int(locate > 0),
            backhitches=backhitches,
        )
        writing.extents.append(
            FileExtent(
                partition=1,
                startblock=volume.append_block,
                byte_count=pending,
                file_offset=writing.flushed,
            )
        )
        volume.append_block += model.blocks_for(pending)
        mechanics.move_head(drive, Position(partition=1, block=volume.append_block))
        writing.flushed = written
        writing.mark = step.now
        drive.activity_bytes += pending
        drive.bytes_since_clean += pending
        if drive.clean_after_bytes and drive.bytes_since_clean >= drive.clean_after_bytes:
            drive.needs_clean = True
            drive.alerts = sorted({*drive.alerts, ALERT_CLEANING_REQUIRED})

    def _settle(
        self,
        step: Step,
        drive: SimDrive,
        cartridge: SimCartridge,
        volume: SimVolume,
        writing: _Writing,
        size: int,
        *,
        error: bool,
    ) -> None:
        """Record a written (or partly written) file and charge its tape time."""
        self._flush(step, drive, volume, writing, size, closing=True)
        if error:
            # LTFS cleans up the failed extents, writes an index to the index partition
            # and marks the cartridge write-perm.
            mechanics.drop_read_only(volume, reason=f"permanent write error in {writing.path}")
            seconds = mechanics.write_index(step, drive, volume, both_partitions=True)
            mechanics.drive_work(step, drive, seconds, "index write")
            return
        step.files().add(
            volume.uuid,
            SimFile(
                path=writing.path,
                size=size,
                fileuid=writing.fileuid,
                generation=0,
                extents=tuple(writing.extents),
                blob=writing.blob,
                seed=writing.seed,
            ),
        )
        volume.file_count += 1
        volume.dirty = True

    def _commit(self, writer: SimWriter, *, error: bool) -> None:
        with self._step("close") as step:
            self._engine.open_writers.get(self.drive, []).remove(writer)
            drive, cartridge, volume = self._alive(step, f"write {writer.writing.path}")
            self._settle(
                step, drive, cartridge, volume, writer.writing, writer.written, error=error
            )

    def _cleaning_failure(
        self, step: Step, drive: SimDrive, cartridge: SimCartridge, volume: SimVolume, path: str
    ) -> errors.TapeError:
        # ltfs#387: the drive stops writing when it needs cleaning; LTFS treats it as a
        # write error.
        mechanics.drop_read_only(volume, reason="drive needs cleaning")
        seconds = mechanics.write_index(step, drive, volume, both_partitions=True)
        mechanics.drive_work(step, drive, seconds, "index write")
        drive.alerts = sorted({*drive.alerts, ALERT_CLEANING_REQUIRED})
        return errors.NeedsCleaning(
            f"Cannot write {path}: drive {drive.index} needs cleaning (TapeAlert 20) and "
            f"stopped writing; LTFS dropped cartridge {cartridge.label} to read-only. Clean the "
            f"drive before writing again.",
            drive=drive.index,
            barcode=cartridge.label,
            paths=(path,),
        )

    def _fail_cleaning(self, writer: SimWriter) -> errors.TapeError:
        with self._step("close") as step:
            self._engine.open_writers.get(self.drive, []).remove(writer)
            drive, cartridge, volume = self._alive(step, f"write {writer.writing.path}")
            return self._cleaning_failure(step, drive, cartridge, volume, writer.writing.path)

    def _write_error(self, path: str) -> errors.TapeError:
        return errors.MediaError(
            f"Cannot write {path}: permanent write error on cartridge {self.barcode} in drive "
            f"{self.drive}. LTFS dropped the volume to read-only; write the file to another "
            f"cartridge.",
            drive=self.drive,
            barcode=self.barcode,
            paths=(path,),
        )

    def _no_space(self, path: str) -> errors.TapeError:
        return errors.NoSpace(
            f"Cannot write {path}: cartridge {self.barcode} reached early warning; no more "
            f"file data fits. The partial file stays on tape and must be removed and written "
            f"elsewhere.",
            drive=self.drive,
            barcode=self.barcode,
            paths=(path,),
        )


class SimWriter(io.RawIOBase):
    """A file being written to a simulated volume: bytes go to its blob as they come, tape
    time is charged when they reach tape (at an index sync or at close)."""

    def __init__(
        self,
        mount: SimMount,
        writing: _Writing,
        *,
        room: int,
        needs_cleaning: bool,
        fail_at: int | None,
    ) -> None:
        super().__init__()
        self._mount = mount
        self.writing = writing
        self.written = 0
        self._room = room
        self._needs_cleaning = needs_cleaning
        self._fail_at = fail_at
        assert writing.blob is not None
        self._fh = open(writing.blob, "wb")  # noqa: SIM115 - closed in close()
        self._failed = False

    def writable(self) -> bool:
        return True

    def _stop(self) -> None:
        self._failed = True
        self._fh.close()

    def write(self, data: Any) -> int:
        path = self.writing.path
        if self._failed:
            raise errors.ReadOnlyVolume(
                f"Cannot write {path}: the write already failed.", paths=(path,)
            )
        chunk = bytes(data)
        if self._needs_cleaning:
            self._stop()
            raise self._mount._fail_cleaning(self)
        if self._fail_at is not None and self.written + len(chunk) > self._fail_at:
            self._stop()
            self._mount._commit(self, error=True)
            raise self._mount._write_error(path)
        if self.written + len(chunk) > self._room:
            fits = max(0, self._room - self.written)
            self._fh.write(chunk[:fits])
            self.written += fits
            self._stop()
            self._mount._commit(self, error=False)
            raise self._mount._no_space(path)
        self._fh.write(chunk)
        self.written += len(chunk)
        return len(chunk)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._failed:
                self._fh.close()
                self._mount._commit(self, error=False)
        finally:
            if not self._fh.closed:
                self._fh.close()
            super().close()


class SimReader(io.RawIOBase):
    """A file being read: bytes from its blob or its synthetic description, in order.

    The drive was booked for streaming the file at full speed; when the reader's caller drains
    it slower (its clock runs on between reads), the read is stretched to the rate it drained
    at, back-hitches included, once the last byte is delivered (or at close).
    """

    def __init__(
        self,
        engine: Engine,
        caller: Caller,
        *,
        drive: int,
        path: str,
        size: int,
        blob: str | None,
        content: SyntheticContent | None,
        first_byte: float,
        streaming: float,
        entry: int,
    ) -> None:
        super().__init__()
        self._engine = engine
        self._caller = caller
        self._drive = drive
        self.path = path
        self.size = size
        self.content = content  # the synthetic description, None for written bytes
        self._blob = blob
        self._fh: BinaryIO | None = None
        self._first_byte = first_byte
        self._streaming = streaming
        self._entry = entry
        self._offset = 0
        self._settled = False

    def readable(self) -> bool:
        return True

    def _produce(self, count: int) -> bytes:
        count = min(count, self.size - self._offset)
        if count <= 0:
            return b""
        if self.content is not None:
            data = self.content.read(self._offset, count)
        else:
            if self._fh is None:
                assert self._blob is not None
                self._fh = open(self._blob, "rb")  # noqa: SIM115 - closed in close()
                self._fh.seek(self._offset)
            data = self._fh.read(count)
        self._offset += len(data)
        if self._offset >= self.size:
            self._settle()
        return data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self._offset
        return self._produce(size)

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        data = self._produce(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> int:
        """Consume the rest of the file without producing its bytes (tape time is charged as
        for a reader that takes them as fast as they come); the number of bytes consumed."""
        left = self.size - self._offset
        self._offset = self.size
        self._settle()
        return left

    def _settle(self) -> None:
        """Charge the streaming at the rate the caller drained the file."""
        if self._settled:
            return
        self._settled = True
        caller = self._caller
        elapsed = caller.now - self._first_byte
        booked_end = self._first_byte + self._streaming
        if elapsed <= self._streaming or self._offset == 0:
            caller.now = max(caller.now, booked_end)
            return
        with self._engine.transaction(caller) as step:
            drive = mechanics.drive_row(step, self._drive)
            model = mechanics.timing(drive)
            seconds, backhitches = model.stream(self._offset, self._offset / elapsed)
            end = self._first_byte + max(self._streaming, seconds)
            if drive.busy_until == booked_end:
                drive.busy_until = end
            self._engine.stretch(self._entry, end, backhitches)
            step.wait_until(end)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._settle()
        finally:
            if self._fh is not None:
                self._fh.close()
            super().close()


class SimMountView(SimMount):
    """A mount read through for queries by a caller that does not own it: changing the volume
    belongs to its owner, or to whoever adopts it."""

    def _refuse(self, what: str) -> NoReturn:
        raise errors.changed_through_view(what, drive=self.drive, barcode=self.barcode)

    def sync(self) -> int:
        self._refuse("sync the index")

    def open_write(self, path: str) -> BinaryIO:
        self._refuse(f"write {path}")

    def write_synthetic(
        self, path: str, size: int, seed: int, *, feed_rate: float | None = None
    ) -> None:
        self._refuse(f"write {path}")

    def remove(self, path: str) -> None:
        self._refuse(f"remove {path}")
