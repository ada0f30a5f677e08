"""The simulated changer: the robot moves cartridges one at a time, the inventory is read as
mtx prints it, and the changer's faults (door, picker, offline windows) surface typed."""

from __future__ import annotations

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import Timeouts
from archive_core_tape_ltfs.model import (
    ALERT_CLEANING_MEDIA,
    ALERT_EXPIRED_CLEANING_MEDIA,
    ALERT_INVALID_CLEANING_TAPE,
    CLEANING_ALERTS,
    Inventory,
    LoadRequest,
    TransferRequest,
    UnloadRequest,
)
from archive_core_tape_ltfs.moves import empty_bay, free_slot, full_slot, unload_target
from archive_core_tape_ltfs.parse import mtx
from archive_core_tape_ltfs.retry import TransientRetry
from archive_core_tape_ltfs.sim import faults, mechanics, render
from archive_core_tape_ltfs.sim.engine import ROBOT, Caller, Engine, Step, VirtualClock
from archive_core_tape_ltfs.sim.state import CORRUPT, SimDrive, SimFault

_CLEANING_CARTRIDGE_ALERTS = frozenset(
    {ALERT_CLEANING_MEDIA, ALERT_EXPIRED_CLEANING_MEDIA, ALERT_INVALID_CLEANING_TAPE}
)
_WHAT = {"inventory": "read status", "load": "load", "unload": "unload", "transfer": "move"}


def changer_error(fault: SimFault, step: Step, *, what: str, slot, drive) -> errors.TapeError:
    where = {"slot": slot, "drive": drive, "device": step.state.changer_name}
    if fault.kind == "unit_attention":
        return errors.UnitAttention(
            f"Cannot {what}: the library reports a unit attention (Unit Attention, ASC 28h, "
            f"ASCQ 00h): it was reset or its door was opened. The inventory must be read again.",
            **where,
        )
    if fault.kind == "library_offline":
        until = ""
        if faults.is_window(fault) and fault.at_time is not None:
            until = f" for another {fault.at_time + fault.seconds - step.now:.0f} s"
        return errors.LibraryOffline(
            f"Cannot {what}: the library is offline{until} (Not Ready, ASC 04h, ASCQ 12h). "
            f"Check the library's front panel: it must be online and in random-access mode.",
            **where,
        )
    if fault.kind == "becoming_ready":
        return errors.LibraryBecomingReady(
            f"Cannot {what}: the library is still becoming ready (Not Ready, ASC 04h, "
            f"ASCQ 01h); it is probably scanning its slots. Try again in a few minutes.",
            **where,
        )
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
    def __init__(self, engine: Engine, caller: Caller, timeouts: Timeouts) -> None:
        self._engine = engine
        self._caller = caller
        self._retry = TransientRetry(
            clock=VirtualClock(caller),
            becoming_ready=timeouts.becoming_ready,
            interval=timeouts.poll_interval,
        )

    def _step(self, name: str):
        return self._engine.step(self._caller, name)

    # --- what every changer command meets first -------------------------------------------

    def _pending(self, step: Step, name: str, *, slot=None, drive=None, barcode=None) -> None:
        """A unit attention the library owes, a picker that holds a cartridge, a fault."""
        state, what = step.state, _WHAT.get(name, name)
        if state.unit_attention is not None:
            reason = state.unit_attention
            state.unit_attention = None
            qualifier, why = (
                ("01h", "an import/export element was accessed")
                if reason == "ie"
                else ("00h", "its door was opened")
            )
            raise errors.UnitAttention(
                f"Cannot {what}: the library reports a unit attention (Unit Attention, ASC "
                f"28h, ASCQ {qualifier}): {why}. The inventory must be read again.",
                slot=slot,
                drive=drive,
                device=state.changer_name,
            )
        if state.picker is not None and name != "inventory":
            raise errors.ChangerHardwareError(
                f"Cannot {what}: the library's picker still holds cartridge {state.picker} "
                f"(taken from slot {state.picker_source} when a move failed). An operator must "
                f"take it out of the picker before the robot can move again.",
                barcode=state.picker,
                slot=state.picker_source,
                device=state.changer_name,
            )
        fault = faults.take(
            state,
            name,
            now=step.now,
            slot=slot,
            drive=drive,
            barcode=barcode,
            kinds=faults.BEFORE_MOVE,
        )
        if fault is not None:
            raise changer_error(fault, step, what=what, slot=slot, drive=drive)

    def _jammed(self, step: Step, name: str, key: str, source: int | None) -> bool:
        """Whether a stuck-in-picker fault fires for this move: then the robot keeps the
        cartridge (the caller takes it from where it was and raises `_jam`)."""
        state = step.state
        fault = faults.take(state, name, now=step.now, barcode=key, kinds=faults.JAMS)
        if fault is None:
            return False
        state.picker, state.picker_source = key, source
        return True

    def _jam(self, step: Step) -> errors.ChangerHardwareError:
        state = step.state
        return errors.ChangerHardwareError(
            f"The robot could not release cartridge {state.picker} (from slot "
            f"{state.picker_source}): it is stuck in the picker (Hardware Error, ASC 40h, "
            f"ASCQ 01h). Every move fails until an operator takes it out.",
            barcode=state.picker,
            slot=state.picker_source,
            device=state.changer_name,
        )

    def _element_status(self, step: Step) -> Inventory:
        model = mechanics.timing(step.state.drives[0])
        step.caller.now += model.library.element_status_seconds
        return mtx.parse_status(render.mtx_status(step.state))

    def _robot(self, step: Step, start: float, operation: str, key: str) -> float:
        model = mechanics.timing(step.state.drives[0])
        end, _ = step.occupy(ROBOT, start, model.robot_move(), operation=operation, cartridge=key)
        return end

    # --- the port -----------------------------------------------------------------------

    def inventory(self, *, rescan: bool = False) -> Inventory:
        return self._retry("inventory", lambda: self.inventory_once(rescan=rescan))

    def inventory_once(self, *, rescan: bool = False) -> Inventory:
        """One READ ELEMENT STATUS, without retrying a transient condition."""
        with self._step("inventory") as step:
            self._pending(step, "inventory")
            if rescan:
                model = mechanics.timing(step.state.drives[0])
                end, _ = step.occupy(
                    ROBOT, step.now, model.inventory(len(step.state.slots)), operation="rescan"
                )
                step.wait_until(end)
                step.state.inventory_valid = True
            return self._element_status(step)

    def load(self, request: LoadRequest) -> None:
        self._retry("load", lambda: self.load_once(request))

    def load_once(self, request: LoadRequest) -> None:
        with self._step("load") as step:
            self._pending(
                step, "load", slot=request.slot, drive=request.drive, barcode=request.barcode
            )
            inventory = self._element_status(step)
            full_slot(inventory, request.slot, request.barcode, what="load")
            empty_bay(inventory, request.drive, loading=request.slot)
            drive = mechanics.drive_row(step, request.drive)
            mechanics.in_service(drive, f"load slot {request.slot} into")
            self._move_to_drive(step, request, drive)

    def _move_to_drive(self, step: Step, request: LoadRequest, drive: SimDrive) -> None:
        state = step.state
        slot = state.slot(request.slot)
        assert slot is not None and slot.cartridge is not None
        cartridge = state.cartridges[slot.cartridge]
        if self._jammed(step, "load", cartridge.key, slot.number):
            slot.cartridge = None
            raise self._jam(step)
        start = max(step.now, drive.busy_until)
        moved = self._robot(
            step, start, f"slot {slot.number} -> drive {drive.index}", cartridge.key
        )
        step.wait_until(moved)
        drive.busy_until = max(drive.busy_until, moved)
        slot.cartridge = None
        drive.cartridge = cartridge.key
        drive.source_slot = slot.number
        hang = faults.take(
            state, "drive-load", now=step.now, drive=drive.index, barcode=cartridge.key
        )
        drive.hung = hang is not None and hang.kind == "load_hang"
        if cartridge.cleaning:
            if cartridge.uses_left <= 0:
                drive.alerts = sorted({*drive.alerts, ALERT_EXPIRED_CLEANING_MEDIA})
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
            drive.needs_clean = False
            drive.bytes_since_clean = 0
        mechanics.thread(step, drive, cartridge, moved)

    def unload(self, request: UnloadRequest) -> int:
        return self._retry("unload", lambda: self.unload_once(request))

    def unload_once(self, request: UnloadRequest) -> int:
        with self._step("unload") as step:
            self._pending(step, "unload", drive=request.drive, slot=request.slot)
            target = unload_target(self._element_status(step), request.drive, request.slot)
            self._move_to_slot(step, request.drive, target)
            return target

    def _move_to_slot(self, step: Step, index: int, target: int) -> None:
        state = step.state
        drive = mechanics.drive_row(step, index)
        mechanics.in_service(drive, "unload")
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
        ready = mechanics.unthread(step, drive, "unload") if drive.threaded else step.now
        if self._jammed(step, "unload", cartridge.key, drive.source_slot):
            drive.cartridge, drive.source_slot, drive.hung = None, None, False
            raise self._jam(step)
        moved = self._robot(step, ready, f"drive {index} -> slot {target}", cartridge.key)
        step.wait_until(moved)
        drive.busy_until = max(drive.busy_until, moved)  # the bay is busy until it is empty
        slot = state.slot(target)
        assert slot is not None
        slot.cartridge = drive.cartridge
        drive.cartridge = None
        drive.source_slot = None
        drive.threaded = False
        drive.hung = False
        if cartridge.cleaning:
            # These flags are about the cleaning cartridge in the drive: they go with it.
            drive.alerts = sorted(set(drive.alerts) - _CLEANING_CARTRIDGE_ALERTS)

    def transfer(self, request: TransferRequest) -> None:
        self._retry("transfer", lambda: self.transfer_once(request))

    def transfer_once(self, request: TransferRequest) -> None:
        with self._step("transfer") as step:
            self._pending(step, "transfer", slot=request.source, barcode=request.barcode)
            inventory = self._element_status(step)
            full_slot(inventory, request.source, request.barcode, what="move")
            free_slot(inventory, request.destination, what=f"move slot {request.source} to")
            source = step.state.slot(request.source)
            destination = step.state.slot(request.destination)
            assert source is not None and source.cartridge is not None
            assert destination is not None
            if self._jammed(step, "transfer", source.cartridge, source.number):
                source.cartridge = None
                raise self._jam(step)
            moved = self._robot(
                step,
                step.now,
                f"slot {source.number} -> slot {destination.number}",
                source.cartridge,
            )
            step.wait_until(moved)
            destination.cartridge, source.cartridge = source.cartridge, None
