"""Fault injection: every failure of tape-facts §6, by explicit schedule or by seeded chance.

Times are the time of the caller whose step meets the fault: a fault `at_time` fires at the
first matching step of a caller that has got that far.
"""

from __future__ import annotations

import random

from archive_core_tape_ltfs.sim.state import SimFault, SimState

_CHANGER_STEPS = frozenset({"inventory", "load", "unload", "transfer"})
_MOVES = frozenset({"load", "unload", "transfer"})

# Faults that fail a step of the port when they fire (the step names where they can fire).
STEP_FAULTS: dict[str, frozenset[str]] = {
    "unit_attention": _CHANGER_STEPS,
    "library_offline": _CHANGER_STEPS,  # with `seconds`: offline for that window
    "becoming_ready": _CHANGER_STEPS,
    "move_failure": _MOVES,
    "stuck_in_picker": _MOVES,  # the robot keeps the cartridge it was moving
    "source_empty": frozenset({"load", "transfer"}),
    "destination_full": frozenset({"unload", "transfer"}),
    "load_hang": frozenset({"drive-load"}),
    "stale_reservation": frozenset({"mount"}),
    "write_error": frozenset({"write"}),
    "read_error": frozenset({"read"}),
    "eom_on_index": frozenset({"unmount"}),
    "unmount_returns_early": frozenset({"unmount"}),
}

# Step faults that last a window of `seconds` from `at_time` instead of a number of steps.
WINDOW_FAULTS = frozenset({"becoming_ready", "library_offline"})

# Faults that change the library's state when they fire (at once, or at their scheduled time).
STATE_FAULTS = frozenset(
    {
        "needs_cleaning",  # the drive sets TapeAlert 20
        "barcode_unreadable",  # the cartridge's label can no longer be read
        "mislabel",  # the cartridge gets another barcode label (`label`); its volume keeps its
        "swap",  # an operator swaps the cartridges of two slots
        "vault",  # an operator takes the cartridge out of the library
        "write_protect",  # the write-protect tab is slid on
        "unformatted",  # the cartridge is blank (or overwritten by other software)
        "foreign",  # the cartridge holds data written by other software
        "crash",  # the ltfs process of a drive dies (power loss, kill -9)
        "corrupt_index",  # the volume's latest index is damaged
        "missing_eod",  # the cartridge memory lost the end of data
        "drive_dead",  # the drive goes out of service: every command fails
        "door_open",  # the door was opened: unit attention, barcodes must be re-read
        "ie_open",  # the operator opened the I/E station (and took or inserted a cartridge)
    }
)

KINDS = frozenset(STEP_FAULTS) | STATE_FAULTS
# What a changer command meets before it moves anything (a jam happens during the move).
BEFORE_MOVE = frozenset(STEP_FAULTS) - {"stuck_in_picker"}
JAMS = frozenset({"stuck_in_picker"})


def is_window(fault: SimFault) -> bool:
    return fault.kind in WINDOW_FAULTS and fault.seconds > 0


def _matches(
    fault: SimFault, *, drive: int | None, barcode: str | None, slot: int | None, path: str | None
) -> bool:
    return (
        (fault.drive is None or fault.drive == drive)
        and (fault.barcode is None or fault.barcode == barcode)
        and (fault.slot is None or fault.slot == slot)
        and (fault.path is None or fault.path == path)
    )


def due(fault: SimFault, state: SimState, now: float) -> bool:
    if fault.at_time is not None and now < fault.at_time:
        return False
    return not (fault.after_ops is not None and state.ops <= fault.after_ops)


def unschedule(state: SimState, fault: SimFault) -> None:
    state.faults = tuple(f for f in state.faults if f is not fault)


def take(
    state: SimState,
    step: str,
    *,
    now: float,
    drive: int | None = None,
    barcode: str | None = None,
    slot: int | None = None,
    path: str | None = None,
    kinds: frozenset[str] | None = None,
) -> SimFault | None:
    """The scheduled or random fault (of `kinds`, default any) that fires at this step,
    consumed; None if none does."""
    for fault in state.faults:
        if fault.kind not in STEP_FAULTS or step not in STEP_FAULTS[fault.kind]:
            continue
        if kinds is not None and fault.kind not in kinds:
            continue
        if not due(fault, state, now):
            continue
        if not _matches(fault, drive=drive, barcode=barcode, slot=slot, path=path):
            continue
        if is_window(fault):
            assert fault.at_time is not None
            if now >= fault.at_time + fault.seconds:
                unschedule(state, fault)  # its window has passed
                continue
            return fault
        fault.count -= 1
        if fault.count <= 0:
            unschedule(state, fault)
        return fault
    for kind, probability in state.random_faults:
        if kind not in STEP_FAULTS or step not in STEP_FAULTS[kind] or probability <= 0:
            continue
        if kinds is not None and kind not in kinds:
            continue
        # One draw per (seed, step number, kind): the same seed replays the same faults.
        if random.Random(f"{state.seed}:{state.ops}:{kind}").random() < probability:
            return SimFault(kind=kind, drive=drive, barcode=barcode, slot=slot, path=path)
    return None


def due_state_faults(state: SimState, now: float) -> list[SimFault]:
    """State-changing faults whose time has come, removed from the schedule."""
    ready = [f for f in state.faults if f.kind in STATE_FAULTS and due(f, state, now)]
    if ready:
        state.faults = tuple(f for f in state.faults if not any(f is r for r in ready))
    return ready
