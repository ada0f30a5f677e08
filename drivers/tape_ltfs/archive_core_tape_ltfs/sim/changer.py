"""The simulated changer: the robot moves cartridges, and the inventory is read as mtx prints it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import (
    ALERT_CLEANING_MEDIA,
    ALERT_EXPIRED_CLEANING_MEDIA,
    CLEANING_ALERTS,
    Inventory,
    LoadRequest,
    TransferRequest,
    UnloadRequest,
)
from archive_core_tape_ltfs.moves import empty_bay, free_slot, full_slot, unload_target
from archive_core_tape_ltfs.parse import mtx
from archive_core_tape_ltfs.retry import TransientRetry
from archive_core_tape_ltfs.sim import faults, render
from archive_core_tape_ltfs.sim.state import CORRUPT, SimFault, SimState

if TYPE_CHECKING:
    from archive_core_tape_ltfs.sim.library import SimLibrary

STATUS_SECONDS = 1.0  # one READ ELEMENT STATUS


def changer_fault(state: SimState, step: str, *, slot=None, drive=None, barcode=None) -> None:
    """Raise the changer error a scheduled or random fault calls for at this step."""
    fault = faults.take(state, step, slot=slot, drive=drive, barcode=barcode)
    if fault is None:
        return
    raise changer_error(fault, state, step=step, slot=slot, drive=drive)


def changer_error(fault: SimFault, state: SimState, *, step: str, slot, drive) -> errors.TapeError:
    where = {"slot": slot, "drive": drive, "device": state.changer_name}
    what = {"inventory": "read status", "load": "load", "unload": "unload", "transfer": "move"}.get(
        step, step
    )
    if fault.kind == "unit_attention":
        return errors.UnitAttention(
            f"Cannot {what}: the library reports a unit attention (Unit Attention, ASC 28h, "
            f"ASCQ 00h): it was reset or its door was opened. The inventory must be read again.",
            **where,
        )
    if fault.kind == "library_offline":
        return errors.LibraryOffline(
            f"Cannot {what}: the library is offline (Not Ready, ASC 04h, ASCQ 12h). Check the "
            f"library's front panel: it must be online and in random-access mode.",
            **where,
        )
    if fault.kind == "becoming_ready":
        # Keeps failing until its window has passed on the virtual clock.
        if fault.at_time is None:
            fault.at_time = state.clock
            fault.count = 10**9
            state.faults.append(fault)
        if state.clock < fault.at_time + fault.seconds:
            if fault not in state.faults:
                state.faults.append(fault)
            return errors.LibraryBecomingReady(
                f"Cannot {what}: the library is still becoming ready (Not Ready, ASC 04h, "
                f"ASCQ 01h); it is probably scanning its slots. Try again in a few minutes.",
                **where,
            )
        if fault in state.faults:
            state.faults.remove(fault)
        return errors.TapeError("becoming ready is over")  # never raised: see below
    if fault.kind == "move_failure":
        return errors.ChangerHardwareError(
            f"Cannot {what}: the library reports a hardware error (Hardware Error, ASC 40h, "
            f"ASCQ 01h). Check the library's front panel or event log.",
            **where,
        )
    if fault.kind == "source_empty":
        return errors.SourceEmpty(f"Cannot {what}: the source element is empty.", **where)
    if fault.kind == "destination_full":
        return errors.DestinationFull(f"Cannot {what}: the destination is full.", **where)
    return errors.ChangerError(f"Cannot {what}: simulated fault {fault.kind}.", **where)


class SimChanger:
    def __init__(self, library: SimLibrary) -> None:
        self._library = library
        timeouts = library.timeouts
        self._retry = TransientRetry(
            clock=library.clock,
            becoming_ready=timeouts.becoming_ready,
            interval=timeouts.poll_interval,
        )

    def _checked_fault(self, state: SimState, step: str, **where) -> None:
        try:
            changer_fault(state, step, **where)
        except errors.TapeError as exc:
            if type(exc) is errors.TapeError:  # a becoming-ready window that has passed
                return
            raise

    def _inventory(self, state: SimState) -> Inventory:
        state.clock += STATUS_SECONDS
        return mtx.parse_status(render.mtx_status(state))

    def inventory(self, *, rescan: bool = False) -> Inventory:
        return self._retry("inventory", lambda: self.inventory_once(rescan=rescan))

    def inventory_once(self, *, rescan: bool = False) -> Inventory:
        """One READ ELEMENT STATUS, without retrying a transient condition."""
        with self._library.step("inventory") as state:
            self._checked_fault(state, "inventory")
            if rescan:
                state.clock += self._library.timing(state.drives[0]).inventory(len(state.slots))
            return self._inventory(state)

    def load(self, request: LoadRequest) -> None:
        self._retry("load", lambda: self.load_once(request))

    def load_once(self, request: LoadRequest) -> None:
        with self._library.step("load") as state:
            self._checked_fault(
                state, "load", slot=request.slot, drive=request.drive, barcode=request.barcode
            )
            inventory = self._inventory(state)
            full_slot(inventory, request.slot, request.barcode, what="load")
            empty_bay(inventory, request.drive, loading=request.slot)
            self._move_to_drive(state, request)

    def _move_to_drive(self, state: SimState, request: LoadRequest) -> None:
        library = self._library
        slot = state.slot(request.slot)
        drive = library.drive_state(state, request.drive)
        assert slot is not None and slot.cartridge is not None
        cartridge = state.cartridges[slot.cartridge]
        timing = library.timing(drive)
        state.clock += timing.library.robot_move_seconds
        state.robot_moves += 1
        slot.cartridge = None
        drive.cartridge = cartridge.key
        drive.source_slot = slot.number
        drive.threaded = True
        drive.partition, drive.block = 0, 0
        hang = faults.take(state, "drive-load", drive=drive.index, barcode=cartridge.key)
        drive.hung = hang is not None and hang.kind == "load_hang"
        if cartridge.cleaning:
            if cartridge.uses_left <= 0:
                drive.alerts = sorted(set(drive.alerts) | {ALERT_EXPIRED_CLEANING_MEDIA})
                drive.threaded = False
                raise errors.CleaningMediaExpired(
                    f"Drive {drive.index} ejected cleaning cartridge {cartridge.label}: it is "
                    f"used up. Export it and insert a new cleaning cartridge.",
                    drive=drive.index,
                    barcode=cartridge.label,
                    slot=slot.number,
                )
            cartridge.uses_left -= 1
            drive.alerts = sorted((set(drive.alerts) - CLEANING_ALERTS) | {ALERT_CLEANING_MEDIA})
            drive.bytes_since_clean = 0
            drive.ready_at = (
                state.clock + timing.load(new_cartridge=False) + (timing.library.cleaning_seconds)
            )
            return
        calibrate = cartridge.new and cartridge.generation == 9 and drive.generation == 9
        drive.ready_at = state.clock + timing.load(new_cartridge=calibrate)
        cartridge.new = False

    def unload(self, request: UnloadRequest) -> int:
        return self._retry("unload", lambda: self.unload_once(request))

    def unload_once(self, request: UnloadRequest) -> int:
        with self._library.step("unload") as state:
            self._checked_fault(state, "unload", drive=request.drive, slot=request.slot)
            target = unload_target(self._inventory(state), request.drive, request.slot)
            self._move_to_slot(state, request.drive, target)
            return target

    def _move_to_slot(self, state: SimState, index: int, target: int) -> None:
        library = self._library
        drive = library.drive_state(state, index)
        assert drive.cartridge is not None
        cartridge = state.cartridges[drive.cartridge]
        if drive.ltfs is not None:
            if drive.ltfs.exit_at is None:
                raise errors.UnloadRefused(
                    f"Cannot unload drive {index}: the drive refuses to release the cartridge "
                    f"(medium removal prevented, ASC 53h ASCQ 03h): LTFS has it mounted.",
                    drive=index,
                    barcode=cartridge.label,
                )
            # umount has returned but ltfs is still writing the index: the tape is pulled
            # from under it, the index write is torn.
            if cartridge.volume is not None:
                cartridge.volume.consistency = CORRUPT
            drive.ltfs = None
        if drive.reserved:
            raise errors.UnloadRefused(
                f"Cannot unload drive {index}: the drive refuses to release the cartridge "
                f"(medium removal prevented, ASC 53h ASCQ 03h) since its LTFS process died. "
                f"Release the drive first. Do not power-cycle the library.",
                drive=index,
                barcode=cartridge.label,
            )
        timing = library.timing(drive)
        if drive.threaded:
            from archive_core_tape_ltfs.cost import Position

            state.clock += timing.unload(Position(partition=drive.partition, block=drive.block))
        state.clock += timing.library.robot_move_seconds
        state.robot_moves += 1
        slot = state.slot(target)
        assert slot is not None
        slot.cartridge = drive.cartridge
        drive.cartridge = None
        drive.source_slot = None
        drive.threaded = False
        drive.hung = False
        drive.partition, drive.block = 0, 0
        if cartridge.cleaning:
            drive.alerts = sorted(set(drive.alerts) - {ALERT_CLEANING_MEDIA})

    def transfer(self, request: TransferRequest) -> None:
        self._retry("transfer", lambda: self.transfer_once(request))

    def transfer_once(self, request: TransferRequest) -> None:
        with self._library.step("transfer") as state:
            self._checked_fault(state, "transfer", slot=request.source, barcode=request.barcode)
            inventory = self._inventory(state)
            full_slot(inventory, request.source, request.barcode, what="move")
            free_slot(inventory, request.destination, what=f"move slot {request.source} to")
            source = state.slot(request.source)
            destination = state.slot(request.destination)
            assert source is not None and destination is not None
            state.clock += self._library.timing(state.drives[0]).library.robot_move_seconds
            state.robot_moves += 1
            destination.cartridge, source.cartridge = source.cartridge, None
