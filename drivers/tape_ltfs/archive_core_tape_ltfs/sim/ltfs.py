"""Simulated LTFS: format, mount, file I/O with on-tape extents, sync, unmount, ltfsck."""

from __future__ import annotations

import io
import math
import shutil
import uuid as uuidlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cost import BLOCK_SIZE, Position
from archive_core_tape_ltfs.model import (
    ALERT_CLEANING_REQUIRED,
    CLEANING_ALERTS,
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
from archive_core_tape_ltfs.sim import faults
from archive_core_tape_ltfs.sim.library import FIRST_DATA_BLOCK, drop_read_only
from archive_core_tape_ltfs.sim.state import (
    CLEAN,
    EXTRA_BLOCKS,
    NO_EOD,
    SimCartridge,
    SimDrive,
    SimFile,
    SimLtfs,
    SimState,
    SimVolume,
)

from archive_core import CopyNotFound

if TYPE_CHECKING:
    from archive_core_tape_ltfs.sim.library import SimLibrary

INDEX_BYTES_PER_FILE = 1024  # XML index size per file entry; estimate
PEW_FRACTION = 0.99  # programmable early warning: no new file data beyond this
DEEP_RECOVERY_SECONDS = 20 * 60  # ltfsck -z EOD recovery (LTFS17131I "about 20 minutes")
LOST_AND_FOUND = "_ltfs_lostandfound"


def _writable_generations(drive: int) -> set[int]:
    return {drive, drive - 1}


def _readable_generations(drive: int) -> set[int]:
    return {drive, drive - 1} if drive >= 8 else {drive, drive - 1, drive - 2}


def _capacity_blocks(cartridge: SimCartridge) -> int:
    return cartridge.capacity_bytes // BLOCK_SIZE


def _pew_block(cartridge: SimCartridge) -> int:
    return int(_capacity_blocks(cartridge) * PEW_FRACTION)


def _index_blocks(volume: SimVolume) -> int:
    return max(1, math.ceil(len(volume.files) * INDEX_BYTES_PER_FILE / BLOCK_SIZE))


def _head(drive: SimDrive) -> Position:
    return Position(partition=drive.partition, block=drive.block)


def _seek(library: SimLibrary, state: SimState, drive: SimDrive, target: Position) -> None:
    state.clock += library.timing(drive).locate(_head(drive), target)
    drive.partition, drive.block = target.partition, target.block


def write_index(
    library: SimLibrary,
    state: SimState,
    drive: SimDrive,
    volume: SimVolume,
    *,
    both_partitions: bool,
) -> None:
    """Append an index to the data partition (and rewrite it on the index partition)."""
    timing = library.timing(drive)
    _seek(library, state, drive, Position(partition=1, block=volume.append_block))
    blocks = _index_blocks(volume)
    state.clock += timing.index_sync(len(volume.files)) + timing.stream(blocks * BLOCK_SIZE)[0]
    volume.append_block += blocks
    drive.block = volume.append_block
    if both_partitions:
        _seek(library, state, drive, Position(partition=0, block=2))
        state.clock += timing.index_sync(len(volume.files))
    volume.generation += 1
    volume.generations.append(volume.generation)
    for file in volume.files.values():
        if file.generation == 0:
            file.generation = volume.generation
    volume.dirty = False


def index_write_seconds(library: SimLibrary, drive: SimDrive, volume: SimVolume) -> float:
    """How long the final index write of an unmount takes (DP then IP)."""
    timing = library.timing(drive)
    if not volume.dirty:
        return 1.0
    return (
        timing.locate(_head(drive), Position(partition=1, block=volume.append_block))
        + 2 * timing.index_sync(len(volume.files))
        + timing.locate(
            Position(partition=1, block=volume.append_block), Position(partition=0, block=2)
        )
    )


def finish_unmount(
    library: SimLibrary, state: SimState, drive: SimDrive, *, charge: bool = True
) -> None:
    """The ltfs process writes the final index (if anything changed) and exits."""
    cartridge = state.cartridges.get(drive.cartridge or "")
    volume = cartridge.volume if cartridge else None
    started = state.clock
    if volume is not None and volume.dirty and drive.ltfs and not drive.ltfs.read_only:
        write_index(library, state, drive, volume, both_partitions=True)
    if not charge:  # the write happened while the clock moved on for other steps
        state.clock = started
    drive.ltfs = None


def _drive_with_volume(library: SimLibrary, state: SimState, index: int, what: str):
    drive = library.drive_state(state, index)
    if drive.cartridge is None or not drive.threaded:
        raise errors.DriveNotReady(
            f"Cannot {what} drive {index}: it holds no cartridge.", drive=index
        )
    if state.clock < drive.ready_at or drive.hung:
        raise errors.DriveNotReady(
            f"Cannot {what} drive {index}: the cartridge is not ready yet.", drive=index
        )
    return drive, state.cartridges[drive.cartridge]


class SimLtfsVolume:
    def __init__(self, library: SimLibrary) -> None:
        self._library = library

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
        library = self._library
        with library.step("format") as state:
            drive, cartridge = _drive_with_volume(library, state, request.drive, "format in")
            self._guard(drive, "format the cartridge in")
            where = {"drive": drive.index, "barcode": request.barcode}
            if cartridge.cleaning:
                raise errors.UnformattedTape(
                    f"Cannot format {cartridge.label}: it is a cleaning cartridge.", **where
                )
            if cartridge.generation not in _writable_generations(drive.generation):
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
            if cartridge.volume is not None and not request.force:
                raise errors.AlreadyFormatted(
                    f"Cannot format {request.barcode}: it already holds an LTFS volume. "
                    f"Formatting it would destroy its files; force the format only for a "
                    f"cartridge the catalog does not know.",
                    **where,
                )
            if cartridge.volume is not None:
                shutil.rmtree(library.blob_dir(cartridge.volume), ignore_errors=True)
            timing = library.timing(drive)
            state.clock += timing.rewind(_head(drive)) + timing.library.format_seconds
            volume = SimVolume(
                uuid=str(
                    uuidlib.uuid5(
                        uuidlib.NAMESPACE_URL, f"sim:{state.seed}:{state.ops}:{cartridge.key}"
                    )
                ),
                serial=serial,
                name=request.name,
                append_block=FIRST_DATA_BLOCK,
            )
            cartridge.volume = volume
            cartridge.foreign = False
            drive.partition, drive.block = 1, volume.append_block
            return VolumeInfo(
                serial=serial, uuid=volume.uuid, generation=volume.generation, name=request.name
            )

    def mount(self, request: MountRequest) -> SimMount:
        library = self._library
        with library.step("mount") as state:
            drive, cartridge = _drive_with_volume(library, state, request.drive, "mount")
            self._guard(drive, "mount")
            where = {"drive": drive.index, "barcode": request.barcode or cartridge.label}
            fault = faults.take(state, "mount", drive=drive.index, barcode=cartridge.key)
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
            if cartridge.generation not in _readable_generations(drive.generation):
                raise errors.MediaError(
                    f"Cannot mount {cartridge.label}: an LTO-{cartridge.generation} cartridge "
                    f"cannot be read in an LTO-{drive.generation} drive.",
                    **where,
                )
            timing = library.timing(drive)
            if volume.consistency != CLEAN:
                if volume.consistency == EXTRA_BLOCKS:
                    state.clock += timing.library.consistency_check_seconds
                raise errors.InconsistentIndex(
                    f"Cannot mount {cartridge.label}: the LTFS index does not match the medium "
                    f"(the volume was not unmounted cleanly). Run a check (ltfsck) on it before "
                    f"using it again.",
                    **where,
                )
            if request.barcode:
                expected = volume_serial_for(request.barcode)
                if expected and volume.serial != expected:
                    state.clock += timing.mount(len(volume.files))
                    raise errors.WrongCartridge(
                        f"Drive {drive.index} should hold {request.barcode}, but its LTFS volume "
                        f"has serial {volume.serial}. The cartridge or its label was swapped.",
                        **where,
                    )
            reason = ""
            if cartridge.write_protected:
                reason = "write-protected"
            elif volume.lock_state:
                reason = "write error"
            elif cartridge.generation not in _writable_generations(drive.generation):
                reason = "medium generation read-only in this drive"
            elif request.read_only:
                reason = "mounted read-only"
            _seek(library, state, drive, Position(partition=0, block=2))
            state.clock += timing.mount(len(volume.files))
            state.next_pid += 1
            drive.ltfs = SimLtfs(
                pid=state.next_pid, read_only=bool(reason), read_only_reason=reason
            )
            return SimMount(
                library,
                drive=drive.index,
                pid=state.next_pid,
                barcode=cartridge.label,
                read_only=bool(reason),
            )

    def unmount(self, mount: Any, *, eject: bool = False) -> None:
        assert isinstance(mount, SimMount)
        library = self._library
        with library.step("unmount") as state:
            drive, cartridge, volume = mount._alive(state, "unmount")
            timing = library.timing(drive)
            early = faults.take(state, "unmount", drive=drive.index, barcode=cartridge.key)
            eom = early is not None and early.kind == "eom_on_index"
            returns_early = early is not None and early.kind == "unmount_returns_early"
            failure: errors.TapeError | None = None
            if returns_early:
                # umount returns at once; the ltfs process writes the index and exits later.
                assert drive.ltfs is not None
                drive.ltfs.exit_at = state.clock + index_write_seconds(library, drive, volume)
                state.clock += 0.5
                return
            if eom and volume.dirty and drive.ltfs and not drive.ltfs.read_only:
                _seek(library, state, drive, Position(partition=1, block=volume.append_block))
                drop_read_only(volume, reason="end of medium during the final index")
                failure = errors.NoSpace(
                    f"LTFS could not write the final index of {cartridge.label}: end of "
                    f"medium. The volume keeps its previous index and is now read-only; "
                    f"files written since the last sync are not on it.",
                    drive=drive.index,
                    barcode=cartridge.label,
                )
                for path in [p for p, f in volume.files.items() if f.generation == 0]:
                    del volume.files[path]
                volume.dirty = False
            finish_unmount(library, state, drive)
            if eject:
                state.clock += timing.unload(_head(drive))
                drive.threaded = False
                drive.partition, drive.block = 0, 0
            if failure is not None:
                raise failure

    def check(self, request: CheckRequest) -> CheckResult:
        library = self._library
        with library.step("check") as state:
            drive, cartridge = _drive_with_volume(library, state, request.drive, "check")
            self._guard(drive, "check")
            volume = cartridge.volume
            if volume is None:
                raise errors.UnformattedTape(
                    f"Cannot check {cartridge.label}: it holds no LTFS volume.",
                    drive=drive.index,
                    barcode=cartridge.label,
                )
            timing = library.timing(drive)
            state.clock += timing.library.consistency_check_seconds
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
                for path in [
                    p for p, f in volume.files.items() if f.generation > gen or f.generation == 0
                ]:
                    del volume.files[path]
                volume.generations = [g for g in volume.generations if g <= gen]
                volume.generation = gen
                volume.consistency = CLEAN
                write_index(library, state, drive, volume, both_partitions=True)
                return CheckResult(exit_code=1, output=f"rolled back to generation {gen}")
            if volume.consistency == CLEAN:
                return CheckResult(exit_code=0, output="volume is consistent")
            if volume.lock_state:
                # A write-perm'd cartridge cannot take the index ltfsck would write (ltfs#387).
                return CheckResult(exit_code=4, output="volume is write-perm locked")
            if volume.consistency == NO_EOD and request.mode is not CheckMode.DEEP:
                return CheckResult(exit_code=4, output="end of data missing: use deep recovery")
            if volume.consistency == NO_EOD:
                state.clock += DEEP_RECOVERY_SECONDS
            unindexed = [p for p, f in volume.files.items() if f.generation == 0]
            for path in unindexed:
                file = volume.files.pop(path)
                if request.mode is CheckMode.SALVAGE and volume.consistency == EXTRA_BLOCKS:
                    volume.files[f"{LOST_AND_FOUND}/{path}"] = file
            volume.consistency = CLEAN
            write_index(library, state, drive, volume, both_partitions=True)
            return CheckResult(
                exit_code=1, output=f"recovered; {len(unindexed)} files were not in the last index"
            )

    def release(self, drive: int) -> None:
        with self._library.step("release") as state:
            found = self._library.drive_state(state, drive)
            self._guard(found, "release")
            found.reserved = False
            state.faults = [
                f
                for f in state.faults
                if not (f.kind == "stale_reservation" and f.drive in (None, drive))
            ]


class SimMount:
    """A mounted simulated volume; every call checks its ltfs process is still alive."""

    def __init__(
        self, library: SimLibrary, *, drive: int, pid: int, barcode: str | None, read_only: bool
    ) -> None:
        self._library = library
        self.drive = drive
        self.pid = pid
        self.barcode = barcode
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"<SimMount drive={self.drive} {self.barcode} pid={self.pid}>"

    def _alive(self, state: SimState, what: str) -> tuple[SimDrive, SimCartridge, SimVolume]:
        drive = self._library.drive_state(state, self.drive)
        if drive.ltfs is None or drive.ltfs.pid != self.pid or drive.ltfs.exit_at is not None:
            raise errors.ToolFailed(
                f"Cannot {what}: the LTFS process of drive {self.drive} is gone (it crashed or "
                f"was unmounted).",
                drive=self.drive,
                barcode=self.barcode,
            )
        cartridge = state.cartridges[drive.cartridge or ""]
        assert cartridge.volume is not None
        return drive, cartridge, cartridge.volume

    def _writable(
        self, drive: SimDrive, cartridge: SimCartridge, volume: SimVolume, path: str
    ) -> None:
        where = {"drive": drive.index, "barcode": cartridge.label, "paths": (path,)}
        if cartridge.write_protected:
            raise errors.WriteProtected(
                f"Cannot write {path}: cartridge {cartridge.label} is write-protected.", **where
            )
        if volume.lock_state:
            raise errors.ReadOnlyVolume(
                f"Cannot write {path}: LTFS dropped cartridge {cartridge.label} to read-only "
                f"after a write error; it can be read but never appended again.",
                **where,
            )
        assert drive.ltfs is not None
        if drive.ltfs.read_only:
            raise errors.ReadOnlyVolume(
                f"Cannot write {path}: cartridge {cartridge.label} is mounted read-only "
                f"({drive.ltfs.read_only_reason}).",
                **where,
            )

    def capacity(self) -> Capacity:
        with self._library.step("statvfs") as state:
            _drive, cartridge, volume = self._alive(state, "query capacity")
            total = _pew_block(cartridge)
            free = 0 if volume.lock_state else max(0, total - volume.append_block)
            return Capacity(
                block_size=BLOCK_SIZE,
                total_bytes=total * BLOCK_SIZE,
                free_bytes=free * BLOCK_SIZE,
                files=len(volume.files),
            )

    def volume(self) -> VolumeInfo:
        with self._library.step("xattr") as state:
            _drive, _cartridge, volume = self._alive(state, "query the volume")
            return VolumeInfo(
                serial=volume.serial,
                uuid=volume.uuid,
                generation=volume.generation,
                lock_state=volume.lock_state,
                name=volume.name,
                block_size=volume.block_size,
            )

    def sync(self) -> int:
        with self._library.step("sync") as state:
            drive, _cartridge, volume = self._alive(state, "sync")
            if volume.dirty and not volume.lock_state and drive.ltfs and not drive.ltfs.read_only:
                write_index(self._library, state, drive, volume, both_partitions=False)
            return volume.generation

    def location(self, path: str) -> FileLocation | None:
        with self._library.step("xattr") as state:
            _drive, cartridge, volume = self._alive(state, "locate")
            file = volume.files.get(path.lstrip("/"))
            if file is None:
                raise CopyNotFound(f"{path} is not on cartridge {cartridge.label}.", paths=(path,))
            if file.size == 0:
                return None
            return FileLocation(
                partition="a" if file.partition == 0 else "b", startblock=file.startblock
            )

    def open_write(self, path: str, *, source_rate: float | None = None) -> BinaryIO:
        path = path.lstrip("/")
        with self._library.step("create") as state:
            drive, cartridge, volume = self._alive(state, f"create {path}")
            self._writable(drive, cartridge, volume, path)
            if path in volume.files:
                raise errors.TapeError(
                    f"Cannot create {path}: it already exists on cartridge {cartridge.label}.",
                    drive=drive.index,
                    barcode=cartridge.label,
                    paths=(path,),
                )
            fault = faults.take(state, "write", drive=drive.index, barcode=cartridge.key, path=path)
            fileuid = volume.next_fileuid
            volume.next_fileuid += 1
            blob = self._library.blob_dir(volume) / str(fileuid)
            blob.parent.mkdir(parents=True, exist_ok=True)
            return SimWriter(  # type: ignore[return-value]
                self,
                path=path,
                fileuid=fileuid,
                blob=str(blob),
                source_rate=source_rate,
                fail_at=(fault.at_bytes or 0) if fault is not None else None,
            )

    def open_read(self, path: str) -> BinaryIO:
        path = path.lstrip("/")
        with self._library.step("read") as state:
            drive, cartridge, volume = self._alive(state, f"read {path}")
            file = volume.files.get(path)
            if file is None:
                raise CopyNotFound(f"{path} is not on cartridge {cartridge.label}.", paths=(path,))
            if (
                faults.take(state, "read", drive=drive.index, barcode=cartridge.key, path=path)
                is not None
            ):
                raise errors.MediaError(
                    f"Cannot read {path}: cartridge {cartridge.label} or drive {drive.index} "
                    f"reported a media error. Read it from another copy.",
                    drive=drive.index,
                    barcode=cartridge.label,
                    paths=(path,),
                )
            timing = self._library.timing(drive)
            _seek(
                self._library,
                state,
                drive,
                Position(partition=file.partition, block=file.startblock),
            )
            state.clock += timing.stream(file.size)[0]
            drive.block += file.blocks
            with open(file.blob, "rb") as fh:
                data = fh.read(file.size)
            return io.BytesIO(data)  # type: ignore[return-value]

    def remove(self, path: str) -> None:
        path = path.lstrip("/")
        with self._library.step("remove") as state:
            drive, cartridge, volume = self._alive(state, f"remove {path}")
            self._writable(drive, cartridge, volume, path)
            if volume.files.pop(path, None) is None:
                raise CopyNotFound(f"{path} is not on cartridge {cartridge.label}.", paths=(path,))
            volume.dirty = True

    def files(self) -> Iterator[tuple[str, int]]:
        with self._library.step("readdir") as state:
            _drive, _cartridge, volume = self._alive(state, "list files")
            listed = sorted((p, f.size) for p, f in volume.files.items())
        return iter(listed)

    # --- called by SimWriter ----------------------------------------------------------------

    def _commit(self, writer: SimWriter, *, size: int, error: str | None) -> None:
        """Record a written (or partly written) file and charge its tape time."""
        with self._library.step("close") as state:
            drive, _cartridge, volume = self._alive(state, f"write {writer.path}")
            timing = self._library.timing(drive)
            blocks = timing.blocks_for(size)
            _seek(self._library, state, drive, Position(partition=1, block=volume.append_block))
            seconds, backhitches = timing.stream(size, writer.source_rate)
            state.clock += seconds + timing.library.per_file_seconds
            state.backhitches += backhitches
            if error == "write":
                # LTFS cleans up the failed extents, writes an index to the index partition
                # and marks the cartridge write-perm.
                drop_read_only(volume, reason=f"permanent write error in {writer.path}")
                write_index(self._library, state, drive, volume, both_partitions=True)
                return
            volume.files[writer.path] = SimFile(
                size=size,
                partition=1,
                startblock=volume.append_block if size else 0,
                blocks=blocks,
                fileuid=writer.fileuid,
                blob=writer.blob,
                generation=0,
            )
            volume.append_block += blocks
            drive.block = volume.append_block
            volume.dirty = True
            drive.bytes_since_clean += size
            if drive.clean_after_bytes and drive.bytes_since_clean >= drive.clean_after_bytes:
                drive.alerts = sorted(set(drive.alerts) | {ALERT_CLEANING_REQUIRED})

    def _limits(self) -> tuple[int, bool]:
        """(bytes that still fit before early warning, whether the drive demands cleaning)."""
        with self._library.transaction() as state:
            drive, cartridge, volume = self._alive(state, "write")
            room = max(0, _pew_block(cartridge) - volume.append_block) * BLOCK_SIZE
            return room, bool(set(drive.alerts) & {ALERT_CLEANING_REQUIRED})

    def _cleaning_failure(self, writer: SimWriter) -> errors.TapeError:
        with self._library.step("close") as state:
            drive, cartridge, volume = self._alive(state, f"write {writer.path}")
            # ltfs#387: the drive stops writing when it needs cleaning; LTFS treats it as a
            # write error.
            drop_read_only(volume, reason="drive needs cleaning")
            write_index(self._library, state, drive, volume, both_partitions=True)
            drive.alerts = sorted(set(drive.alerts) | (CLEANING_ALERTS & {20}))
            return errors.NeedsCleaning(
                f"Cannot write {writer.path}: drive {drive.index} needs cleaning (TapeAlert 20) "
                f"and stopped writing; LTFS dropped cartridge {cartridge.label} to read-only. "
                f"Clean the drive before writing again.",
                drive=drive.index,
                barcode=cartridge.label,
                paths=(writer.path,),
            )


class SimWriter(io.RawIOBase):
    """A file being written to a simulated volume; bytes go to a blob, tape time at close."""

    def __init__(
        self,
        mount: SimMount,
        *,
        path: str,
        fileuid: int,
        blob: str,
        source_rate: float | None,
        fail_at: int | None,
    ) -> None:
        super().__init__()
        self._mount = mount
        self.path = path
        self.fileuid = fileuid
        self.blob = blob
        self.source_rate = source_rate
        self._fail_at = fail_at
        self._fh = open(blob, "wb")  # noqa: SIM115 - closed in close()
        self._written = 0
        self._room, self._needs_cleaning = mount._limits()
        self._failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._failed:
            raise errors.ReadOnlyVolume(
                f"Cannot write {self.path}: the write already failed.", paths=(self.path,)
            )
        chunk = bytes(data)
        if self._needs_cleaning:
            self._failed = True
            self._fh.close()
            raise self._mount._cleaning_failure(self)
        if self._fail_at is not None and self._written + len(chunk) > self._fail_at:
            self._failed = True
            self._fh.close()
            self._mount._commit(self, size=self._written, error="write")
            raise errors.MediaError(
                f"Cannot write {self.path}: permanent write error on cartridge "
                f"{self._mount.barcode} in drive {self._mount.drive}. LTFS dropped the volume "
                f"to read-only; write the file to another cartridge.",
                drive=self._mount.drive,
                barcode=self._mount.barcode,
                paths=(self.path,),
            )
        if self._written + len(chunk) > self._room:
            fits = max(0, self._room - self._written)
            self._fh.write(chunk[:fits])
            self._written += fits
            self._failed = True
            self._fh.close()
            self._mount._commit(self, size=self._written, error=None)
            raise errors.NoSpace(
                f"Cannot write {self.path}: cartridge {self._mount.barcode} reached early "
                f"warning; no more file data fits. The partial file stays on tape and must be "
                f"removed and written elsewhere.",
                drive=self._mount.drive,
                barcode=self._mount.barcode,
                paths=(self.path,),
            )
        self._fh.write(chunk)
        self._written += len(chunk)
        return len(chunk)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._failed:
                self._fh.close()
                self._mount._commit(self, size=self._written, error=None)
        finally:
            if not self._fh.closed:
                self._fh.close()
            super().close()
