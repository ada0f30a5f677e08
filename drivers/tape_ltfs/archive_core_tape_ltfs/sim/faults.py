"""Fault injection: every failure of tape-facts §6, by explicit schedule or by seeded chance."""

from __future__ import annotations

import random

from archive_core_tape_ltfs.sim.state import SimFault, SimState

# Faults that fail a step of the port when they fire (the step names where they can fire).
STEP_FAULTS: dict[str, frozenset[str]] = {
    "unit_attention": frozenset({"inventory", "load", "unload", "transfer"}),
    "library_offline": frozenset({"inventory", "load", "unload", "transfer"}),
    "becoming_ready": frozenset({"inventory", "load", "unload", "transfer"}),
    "move_failure": frozenset({"load", "unload", "transfer"}),
    "source_empty": frozenset({"load", "transfer"}),
    "destination_full": frozenset({"unload", "transfer"}),
    "load_hang": frozenset({"drive-load"}),
    "stale_reservation": frozenset({"mount"}),
    "write_error": frozenset({"write"}),
    "read_error": frozenset({"read"}),
    "eom_on_index": frozenset({"unmount"}),
    "unmount_returns_early": frozenset({"unmount"}),
}

# Faults that change the library's state when they fire (at once, or at their scheduled time).
STATE_FAULTS = frozenset(
    {
        "needs_cleaning",  # the drive sets TapeAlert 20
        "barcode_unreadable",  # the cartridge's label can no longer be read
        "swap",  # an operator swaps the cartridges of two slots
        "vault",  # an operator takes the cartridge out of the library
        "write_protect",  # the write-protect tab is slid on
        "unformatted",  # the cartridge is blank (or overwritten by other software)
        "foreign",  # the cartridge holds data written by other software
        "crash",  # the ltfs process of a drive dies (power loss, kill -9)
        "corrupt_index",  # the volume's latest index is damaged
        "missing_eod",  # the cartridge memory lost the end of data
    }
)

KINDS = frozenset(STEP_FAULTS) | STATE_FAULTS


def _matches(
    fault: SimFault, *, drive: int | None, barcode: str | None, slot: int | None, path: str | None
) -> bool:
    return (
        (fault.drive is None or fault.drive == drive)
        and (fault.barcode is None or fault.barcode == barcode)
        and (fault.slot is None or fault.slot == slot)
        and (fault.path is None or fault.path == path)
    )


def due(fault: SimFault, state: SimState) -> bool:
    if fault.at_time is not None and state.clock < fault.at_time:
        return False
    return not (fault.after_ops is not None and state.ops <= fault.after_ops)


def take(
    state: SimState,
    step: str,
    *,
    drive: int | None = None,
    barcode: str | None = None,
    slot: int | None = None,
    path: str | None = None,
) -> SimFault | None:
    """The scheduled or random fault that fires at this step, consumed; None if none does."""
    for fault in list(state.faults):
        if fault.kind not in STEP_FAULTS or step not in STEP_FAULTS[fault.kind]:
            continue
        if not due(fault, state):
            continue
        if not _matches(fault, drive=drive, barcode=barcode, slot=slot, path=path):
            continue
        fault.count -= 1
        if fault.count <= 0:
            state.faults.remove(fault)
        return fault
    for kind, probability in sorted(state.random_faults.items()):
        if kind not in STEP_FAULTS or step not in STEP_FAULTS[kind] or probability <= 0:
            continue
        # One draw per (seed, step number, kind): the same seed replays the same faults.
        if random.Random(f"{state.seed}:{state.ops}:{kind}").random() < probability:
            return SimFault(kind=kind, drive=drive, barcode=barcode, slot=slot, path=path)
    return None


def due_state_faults(state: SimState) -> list[SimFault]:
    """State-changing faults whose time has come, removed from the schedule."""
    ready = [f for f in state.faults if f.kind in STATE_FAULTS and due(f, state)]
    for fault in ready:
        state.faults.remove(fault)
    return ready
