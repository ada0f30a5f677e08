"""What the simulated hardware does beneath the port objects: head movement, index writes,
threading and unthreading, busy spells, the state faults, ltfs processes exiting and dying.

Every duration comes from the public cost model (`cost.TimingModel`); this module only decides
which of its costs a step pays and which resource pays them.
"""

from __future__ import annotations

import functools
import logging
import random
import shutil
import uuid as uuidlib
from pathlib import Path

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import SimulatedCartridge
from archive_core_tape_ltfs.cost import (
    BLOCK_SIZE,
    INDEX_POSITION,
    Position,
    TimingModel,
    profile_for,
)
from archive_core_tape_ltfs.model import (
    ALERT_CLEANING_REQUIRED,
    LOCK_PHYSICAL_WP,
    LOCK_WRITE_PERM_BOTH,
    LOCK_WRITE_PERM_DP,
    CapturedIndex,
    Extent,
    IndexedFile,
    ReadOnlyReason,
    VolumeState,
    is_cleaning_barcode,
    media_type_for,
)
from archive_core_tape_ltfs.sim import faults, index_xml
from archive_core_tape_ltfs.sim.engine import Engine, Step, drive_resource
from archive_core_tape_ltfs.sim.state import (
    CORRUPT,
    EXTRA_BLOCKS,
    NO_EOD,
    Phase,
    SimCartridge,
    SimDrive,
    SimFault,
    SimSlot,
    SimState,
    SimVolume,
)

logger = logging.getLogger(__name__)

FIRST_DATA_BLOCK = 5  # label and first index come first on the data partition
PEW_FRACTION = 0.99  # programmable early warning: no new file data beyond this
BLOB_DIR = "blobs"
KEPT_PHASES = 6  # busy spells a drive remembers, for status queries of callers behind it
# Reasons that stop LTFS writing even an index (a full volume and a WORM one still take one).
_NO_INDEX = frozenset(
    {
        ReadOnlyReason.WRITE_PROTECTED,
        ReadOnlyReason.WRITE_ERROR,
        ReadOnlyReason.OLDER_GENERATION,
        ReadOnlyReason.MOUNTED_READ_ONLY,
    }
)


@functools.cache
def _timing(generation: int, form: str) -> TimingModel:
    return TimingModel(profile=profile_for(generation, form))


def timing(drive: SimDrive) -> TimingModel:
    return _timing(drive.generation, drive.form)


def head(drive: SimDrive) -> Position:
    return Position(partition=drive.partition, block=drive.block)


def move_head(drive: SimDrive, target: Position) -> None:
    drive.partition, drive.block = target.partition, target.block


def writable_generations(drive: int) -> set[int]:
    return {drive, drive - 1}


def readable_generations(drive: int) -> set[int]:
    return {drive, drive - 1} if drive >= 8 else {drive, drive - 1, drive - 2}


def capacity_blocks(cartridge: SimCartridge) -> int:
    return cartridge.capacity_bytes // BLOCK_SIZE


def pew_block(cartridge: SimCartridge) -> int:
    return int(capacity_blocks(cartridge) * PEW_FRACTION)


def blob_dir(engine: Engine, volume: SimVolume) -> str:
    return str(engine.root / BLOB_DIR / volume.uuid)


def drive_row(step: Step, index: int) -> SimDrive:
    found = step.state.drive(index)
    if found is None:
        raise errors.TapeError(f"The simulated library has no drive {index}.", drive=index)
    return found


def in_service(drive: SimDrive, what: str) -> None:
    if drive.dead:
        raise errors.DriveError(
            f"Cannot {what} drive {drive.index}: the drive is out of service (it failed or was "
            f"taken offline at the library). Have it repaired or replaced.",
            drive=drive.index,
            retryable=False,
        )


# --- busy spells --------------------------------------------------------------------------


def busy(drive: SimDrive, state: str, start: float, end: float) -> None:
    """Remember a spell of `state` on the drive, so others' status queries see it."""
    drive.phases = (*drive.phases[-(KEPT_PHASES - 1) :], Phase(state=state, start=start, end=end))


def phase_at(drive: SimDrive, now: float) -> Phase | None:
    for phase in reversed(drive.phases):
        if phase.start <= now < phase.end:
            return phase
    return None


def drive_work(
    step: Step,
    drive: SimDrive,
    seconds: float,
    operation: str,
    *,
    start: float | None = None,
    nbytes: int = 0,
    locates: int = 0,
    backhitches: int = 0,
) -> float:
    """Book the drive for `seconds` from when the caller (or `start`) and it are free; the
    caller waits for it. Returns when it ends."""
    end, _ = step.occupy(
        drive_resource(drive.index),
        step.now if start is None else start,
        seconds,
        operation=operation,
        cartridge=drive.cartridge,
        nbytes=nbytes,
        locates=locates,
        backhitches=backhitches,
    )
    step.wait_until(end)
    return end


# --- LTFS on tape ---------------------------------------------------------------------------


def partition_letter(partition: int) -> str:
    return "a" if partition == 0 else "b"


def captured_index(step: Step, volume: SimVolume, *, indexed_only: bool) -> CapturedIndex:
    """The volume's index with every file and all its extents; `indexed_only`: only what an
    index on tape records (files written since the last one are not in it)."""
    files = step.files().all(volume.uuid, indexed_only=indexed_only)
    return CapturedIndex(
        volume_uuid=volume.uuid,
        generation=volume.generation,
        location=volume.index_location,
        files=tuple(
            IndexedFile(
                path=f.path,
                size=f.size,
                fileuid=f.fileuid,
                extents=tuple(
                    Extent(
                        partition=partition_letter(e.partition),
                        startblock=e.startblock,
                        byte_offset=0,
                        byte_count=e.byte_count,
                        file_offset=e.file_offset,
                    )
                    for e in f.extents
                ),
            )
            for f in files
        ),
    )


def lock_state(cartridge: SimCartridge, volume: SimVolume) -> int:
    """`ltfs.volumeLockState` as LTFS reports it: the volume's own lock bits and the
    cartridge's write-protect tab."""
    return volume.lock_state | (LOCK_PHYSICAL_WP if cartridge.write_protected else 0)


def volume_state(drive: SimDrive, cartridge: SimCartridge, volume: SimVolume) -> VolumeState:
    """Why the mounted volume takes no writes now (read live, after every error)."""
    reasons: set[ReadOnlyReason] = set()
    if cartridge.write_protected:
        reasons.add(ReadOnlyReason.WRITE_PROTECTED)
    if volume.lock_state & LOCK_WRITE_PERM_BOTH:
        reasons.add(ReadOnlyReason.WRITE_ERROR)
    if cartridge.generation not in writable_generations(drive.generation):
        reasons.add(ReadOnlyReason.OLDER_GENERATION)
    if cartridge.worm:
        reasons.add(ReadOnlyReason.WORM)
    if drive.ltfs is not None and drive.ltfs.mounted_read_only:
        reasons.add(ReadOnlyReason.MOUNTED_READ_ONLY)
    if volume.append_block >= pew_block(cartridge):
        reasons.add(ReadOnlyReason.FULL)
    return VolumeState(lock_state=lock_state(cartridge, volume), reasons=frozenset(reasons))


def takes_index(drive: SimDrive, cartridge: SimCartridge, volume: SimVolume) -> bool:
    return not (volume_state(drive, cartridge, volume).reasons & _NO_INDEX)


def write_index(step: Step, drive: SimDrive, volume: SimVolume, *, both_partitions: bool) -> float:
    """Append an index to the data partition (and rewrite it on the index partition, as an
    unmount does); returns the seconds it takes, for the caller to book."""
    model = timing(drive)
    files = volume.file_count
    if both_partitions:
        seconds = model.unmount(
            files, dirty=True, head=head(drive), append_block=volume.append_block
        )
        move_head(drive, INDEX_POSITION)
    else:
        seconds = model.sync(files, head(drive), volume.append_block)
    volume.index_location = f"b:{volume.append_block}"
    volume.append_block += model.index_blocks(files)
    if not both_partitions:
        move_head(drive, Position(partition=1, block=volume.append_block))
    volume.generation += 1
    volume.generations = (*volume.generations, volume.generation)
    step.files().mark_indexed(volume.uuid, volume.generation)
    volume.dirty = False
    return seconds


def finish_unmount(step: Step, drive: SimDrive) -> float:
    """The ltfs process writes the final index (if anything changed), captures it to its work
    directory if it was asked to, and exits; returns the seconds that took."""
    cartridge = step.state.cartridges.get(drive.cartridge or "")
    volume = cartridge.volume if cartridge else None
    seconds = timing(drive).library.clean_unmount_seconds
    if volume is not None and volume.dirty and takes_index(drive, cartridge, volume):
        seconds = write_index(step, drive, volume, both_partitions=True)
    if volume is not None and drive.ltfs is not None and drive.ltfs.capture_to:
        # ltfs_save_index_to_disk: <work_directory>/<volser>.schema, the UUID without a serial.
        name = volume.serial.strip() or volume.uuid
        index_xml.write_index(
            Path(drive.ltfs.capture_to) / f"{name}.schema",
            captured_index(step, volume, indexed_only=True),
            volume_name=volume.name,
            when=step.now,
        )
    drive.ltfs = None
    return seconds


def reap(step: Step) -> None:
    """Finish unmounts whose ltfs process has exited by now (the drive was booked for the
    index write when umount returned early)."""
    for drive in step.state.drives:
        ltfs = drive.ltfs
        if ltfs is not None and ltfs.exit_at is not None and ltfs.exit_at <= step.now:
            finish_unmount(step, drive)


def crash(state: SimState, drive: SimDrive) -> None:
    """The ltfs process holding `drive` dies: no final index, the reservation stays."""
    if drive.ltfs is None:
        raise errors.TapeError(f"No LTFS process holds drive {drive.index}.", drive=drive.index)
    drive.stale = drive.ltfs
    drive.ltfs = None
    drive.reserved = True
    cartridge = state.cartridges.get(drive.cartridge or "")
    if cartridge and cartridge.volume and cartridge.volume.dirty:
        cartridge.volume.consistency = EXTRA_BLOCKS


def drop_read_only(volume: SimVolume, *, reason: str) -> None:
    """LTFS after a permanent write error: write-perm in the MAM, never appendable again."""
    volume.lock_state |= LOCK_WRITE_PERM_DP
    logger.info("simulated volume %s dropped to read-only: %s", volume.serial, reason)


def forget_volume(step: Step, cartridge: SimCartridge) -> None:
    """The cartridge's LTFS volume is gone (reformatted, blanked, overwritten)."""
    if cartridge.volume is None:
        return
    step.files().forget_volume(cartridge.volume.uuid)
    shutil.rmtree(blob_dir(step.engine, cartridge.volume), ignore_errors=True)
    cartridge.volume = None


def new_volume(step: Step, cartridge: SimCartridge, *, serial: str, name: str, rules) -> SimVolume:
    uuid = uuidlib.uuid5(
        uuidlib.NAMESPACE_URL, f"sim:{step.state.seed}:{step.state.ops}:{cartridge.key}"
    )
    return SimVolume(
        uuid=str(uuid),
        serial=serial,
        name=name,
        mam_barcode=cartridge.label or "",
        append_block=FIRST_DATA_BLOCK,
        rules=rules,
    )


# --- threading and unthreading ----------------------------------------------------------------


def calibration_seconds(state: SimState, drive: SimDrive, cartridge: SimCartridge) -> float:
    """This cartridge's media optimisation, drawn from the library's seed (the same cartridge
    in the same library always takes as long, whatever ran before)."""
    uniform = random.Random(f"{state.seed}:calibration:{cartridge.key}").random()
    return timing(drive).calibration_seconds(uniform)


def refuse_while_calibrating(step: Step, drive: SimDrive, what: str) -> None:
    phase = next((p for p in reversed(drive.phases) if p.state == "calibrating"), None)
    if phase is not None and step.now < phase.end:
        minutes = (phase.end - max(step.now, phase.start)) / 60
        raise errors.DriveBusy(
            f"Cannot {what} drive {drive.index}: it is optimising new cartridge "
            f"{drive.cartridge} (LTO-9 media optimisation), which cannot be interrupted; "
            f"{minutes:.0f} more minutes. Wait until the drive is ready.",
            drive=drive.index,
            barcode=drive.cartridge,
        )


def unthread(step: Step, drive: SimDrive, what: str) -> float:
    """Rewind and unthread the cartridge (an eject, or the drive's part of an unload);
    returns when the drive is done."""
    refuse_while_calibrating(step, drive, what)
    model = timing(drive)
    seconds = model.unload(head(drive), drive.activity_bytes)
    start = max(step.now, drive.busy_until)
    end = drive_work(step, drive, seconds, "unload", start=start)
    busy(drive, "unloading", start, end)
    drive.threaded = False
    move_head(drive, Position())
    return end


def thread(step: Step, drive: SimDrive, cartridge: SimCartridge, start: float) -> None:
    """The drive threads a cartridge the robot put in it at `start` (the caller does not wait:
    a load returns once the robot has moved)."""
    model = timing(drive)
    drive.threaded = True
    drive.activity_bytes = 0
    if drive.needs_clean:
        # Flags read off page 0x2E are gone, the condition is not: the drive reports it again.
        drive.alerts = sorted({*drive.alerts, ALERT_CLEANING_REQUIRED})
    move_head(drive, Position())
    loading_end = start + model.load()
    if cartridge.cleaning:
        end = loading_end + model.library.cleaning_seconds
        state = "cleaning"
    else:
        calibrate = (
            cartridge.new
            and cartridge.generation == 9
            and drive.generation == 9
            and model.profile.calibration is not None
        )
        extra = calibration_seconds(step.state, drive, cartridge) if calibrate else 0.0
        end = loading_end + extra
        state = "calibrating" if calibrate else "loading"
        cartridge.new = False
    resource = drive_resource(drive.index)
    step.occupy(resource, start, loading_end - start, operation="load", cartridge=cartridge.key)
    busy(drive, "loading", start, loading_end)
    if end > loading_end:
        operation = "clean" if cartridge.cleaning else "calibrate"
        step.occupy(
            resource, loading_end, end - loading_end, operation=operation, cartridge=cartridge.key
        )
        busy(drive, state, loading_end, end)
    drive.ready_at = end


# --- cartridges and state faults ---------------------------------------------------------------


def new_cartridge(
    spec: SimulatedCartridge, *, default_generation: int, default_capacity: int | None
) -> SimCartridge:
    """A cartridge row for `spec`: generation and WORM from its barcode's media id when known."""
    cleaning = is_cleaning_barcode(spec.barcode)
    media = media_type_for(spec.barcode)
    generation = spec.generation or (media.generation if media else default_generation)
    code = media.code if media else (f"L{generation}" if generation < 10 else "LA")
    cartridge = SimCartridge(
        key=spec.barcode,
        label=spec.barcode,
        media_code=code,
        generation=generation,
        worm=bool(media and media.worm),
        capacity_bytes=spec.capacity_bytes
        or default_capacity
        or profile_for(generation).capacity_bytes,
        write_protected=spec.write_protected,
        new=spec.new and not cleaning,
        cleaning=cleaning,
        uses_left=spec.uses if cleaning else 0,
    )
    if spec.formatted and not cleaning:
        cartridge.volume = SimVolume(
            uuid=str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"sim:{spec.barcode}")),
            serial=spec.barcode[:6],
            mam_barcode=spec.barcode,
            append_block=FIRST_DATA_BLOCK,
        )
    return cartridge


def free_slot_for(state: SimState, spec: SimulatedCartridge) -> SimSlot:
    """The empty slot a cartridge is put into by hand; DestinationFull if it is not one."""
    slot = state.slot(spec.slot)
    if slot is None or slot.cartridge is not None:
        raise errors.DestinationFull(
            f"Cannot put {spec.barcode} in slot {spec.slot}: no such slot or it is full.",
            slot=spec.slot,
            barcode=spec.barcode,
        )
    return slot


def insert_cartridge(step: Step, spec: SimulatedCartridge) -> None:
    """An operator's hand puts a cartridge (new, or back from the vault) into a slot."""
    state = step.state
    slot = free_slot_for(state, spec)
    if spec.barcode in state.vault:
        state.vault = tuple(k for k in state.vault if k != spec.barcode)
        slot.cartridge = spec.barcode
        return
    if spec.barcode in state.cartridges:
        raise errors.TapeError(
            f"Cartridge {spec.barcode} is already in the library.", barcode=spec.barcode
        )
    generation = state.drives[0].generation if state.drives else 9
    state.cartridges[spec.barcode] = new_cartridge(
        spec, default_generation=generation, default_capacity=None
    )
    slot.cartridge = spec.barcode


def take_out(state: SimState, slot_number: int) -> str:
    """An operator's hand takes the cartridge out of a slot (to the vault); its key."""
    slot = state.slot(slot_number)
    if slot is None or slot.cartridge is None:
        raise errors.SourceEmpty(f"Slot {slot_number} is empty.", slot=slot_number)
    key = slot.cartridge
    slot.cartridge = None
    state.vault = (*state.vault, key)
    return key


def apply_state_fault(step: Step, fault: SimFault) -> None:
    state = step.state
    kind = fault.kind
    cartridge = state.cartridges.get(fault.barcode) if fault.barcode else None
    if kind == "needs_cleaning":
        drive = drive_row(step, fault.drive or 0)
        drive.needs_clean = True
        drive.alerts = sorted({*drive.alerts, ALERT_CLEANING_REQUIRED})
    elif kind == "swap":
        a, b = state.slot(fault.slot or 0), state.slot(fault.other_slot or 0)
        if a is None or b is None:
            raise errors.TapeError("A swap needs two existing slots (slot, other_slot).")
        a.cartridge, b.cartridge = b.cartridge, a.cartridge
    elif kind == "crash":
        crash(state, drive_row(step, fault.drive or 0))
    elif kind == "drive_dead":
        drive_row(step, fault.drive or 0).dead = True
    elif kind == "door_open":
        # Anything may have moved while it was open: the library reports it and forgets what
        # its scanner read until it is asked to scan again.
        state.unit_attention = "door"
        state.inventory_valid = False
    elif kind == "ie_open":
        state.unit_attention = "ie"
        if fault.slot is not None:
            _operator_at_ie(step, fault)
    else:
        if cartridge is None:
            raise errors.TapeError(f"Fault {kind!r} needs the barcode of a cartridge.")
        _cartridge_fault(step, cartridge, fault)


def _operator_at_ie(step: Step, fault: SimFault) -> None:
    slot = step.state.slot(fault.slot or 0)
    if slot is None or not slot.import_export:
        raise errors.TapeError(f"Slot {fault.slot} is not an import/export slot.", slot=fault.slot)
    if slot.cartridge is not None:
        take_out(step.state, slot.number)
    elif fault.barcode:
        insert_cartridge(step, SimulatedCartridge(barcode=fault.barcode, slot=slot.number))


def _cartridge_fault(step: Step, cartridge: SimCartridge, fault: SimFault) -> None:
    state, kind = step.state, fault.kind
    if kind == "barcode_unreadable":
        cartridge.label_readable = False
    elif kind == "mislabel":
        if not fault.label:
            raise errors.TapeError("A mislabel fault needs the new label (label=...).")
        cartridge.label = fault.label
    elif kind == "vault":
        where = state.where(cartridge.key)
        if isinstance(where, SimSlot):
            where.cartridge = None
        elif isinstance(where, SimDrive):
            where.cartridge, where.source_slot, where.threaded = None, None, False
        state.vault = (*state.vault, cartridge.key)
    elif kind == "write_protect":
        cartridge.write_protected = True
    elif kind in ("unformatted", "foreign"):
        forget_volume(step, cartridge)
        cartridge.foreign = kind == "foreign"
    elif kind in ("corrupt_index", "missing_eod"):
        if cartridge.volume is None:
            raise errors.TapeError(f"Cartridge {cartridge.key} holds no LTFS volume.")
        cartridge.volume.consistency = CORRUPT if kind == "corrupt_index" else NO_EOD


def on_step(step: Step) -> None:
    """What happens at the start of every port operation: ltfs processes that have exited by
    the caller's time are finished, state faults whose time has come are applied."""
    reap(step)
    for fault in faults.due_state_faults(step.state, step.now):
        apply_state_fault(step, fault)
