"""The simulated library: state on disk, the virtual clock, faults, and the port objects on it."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import attrs
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings, Timeouts
from archive_core_tape_ltfs.cost import TimingModel, profile_for
from archive_core_tape_ltfs.model import LOCK_WRITE_PERM_DP, is_cleaning_barcode
from archive_core_tape_ltfs.sim import faults
from archive_core_tape_ltfs.sim.state import (
    CORRUPT,
    EXTRA_BLOCKS,
    NO_EOD,
    SimCartridge,
    SimDrive,
    SimFault,
    SimSlot,
    SimState,
    SimVolume,
    StateStore,
)

logger = logging.getLogger(__name__)

# The models the simulated drives report, per generation (IBM full-height naming).
_MODELS = {
    5: "ULTRIUM-TD5",
    6: "ULTRIUM-TD6",
    7: "ULTRIUM-TD7",
    8: "ULTRIUM-TD8",
    9: "ULTRIUM-TD9",
    10: "ULTRIUM-TD10",
}
FIRST_DATA_BLOCK = 5  # label and first index come first on the data partition


class VirtualClock:
    """Simulated seconds since the library was created; sleeping only moves the hands."""

    def __init__(self, library: SimLibrary) -> None:
        self._library = library

    def now(self) -> float:
        with self._library.transaction(readonly=True) as state:
            return state.clock

    def sleep(self, seconds: float) -> None:
        with self._library.transaction() as state:
            state.clock += max(0.0, seconds)


def new_state(settings: SimulatorSettings) -> SimState:
    state = SimState(seed=settings.seed)
    storage = settings.slots
    state.slots = [SimSlot(number=n) for n in range(1, storage + 1)]
    state.slots += [
        SimSlot(number=storage + n, import_export=True)
        for n in range(1, settings.import_export + 1)
    ]
    for index in range(settings.drives):
        state.drives.append(
            SimDrive(
                index=index,
                serial=f"SIM{settings.generation:02d}{index:05d}",
                vendor="IBM",
                model=_MODELS[settings.generation]
                if settings.form == "FH"
                else _MODELS[settings.generation].replace("TD", "HH"),
                revision="S001",
                generation=settings.generation,
                form=settings.form,
            )
        )
    cartridges = settings.cartridges or _default_cartridges(settings)
    for spec in cartridges:
        add_cartridge(
            state,
            spec,
            default_generation=settings.generation,
            default_capacity=settings.capacity_bytes,
        )
    return state


def _default_cartridges(settings: SimulatorSettings) -> tuple[SimulatedCartridge, ...]:
    suffix = f"L{settings.generation}" if settings.generation < 10 else "LA"
    data = [
        SimulatedCartridge(barcode=f"SIM{n:03d}{suffix}", slot=slot)
        for n, slot in enumerate(range(1, settings.slots // 2 + 1, 2), start=1)
    ]
    return (*data, SimulatedCartridge(barcode="CLN001CU", slot=settings.slots))


def add_cartridge(
    state: SimState,
    spec: SimulatedCartridge,
    *,
    default_generation: int,
    default_capacity: int | None,
) -> SimCartridge:
    slot = state.slot(spec.slot)
    if slot is None or slot.cartridge is not None:
        raise errors.DestinationFull(
            f"Cannot put {spec.barcode} in slot {spec.slot}: no such slot or it is full.",
            slot=spec.slot,
            barcode=spec.barcode,
        )
    generation = spec.generation or default_generation
    cleaning = is_cleaning_barcode(spec.barcode)
    cartridge = SimCartridge(
        key=spec.barcode,
        label=spec.barcode,
        generation=generation,
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
            append_block=FIRST_DATA_BLOCK,
        )
    state.cartridges[cartridge.key] = cartridge
    slot.cartridge = cartridge.key
    return cartridge


class SimLibrary:
    """A virtual tape library whose state lives in a directory, shared by every process.

    Each port call is one transaction: lock the directory, read the state, run the step on the
    virtual clock, write the state back (also when the step raised a tape error: a consumed
    fault or a volume dropped to read-only must stay so).
    """

    def __init__(self, store: StateStore, *, timeouts: Timeouts | None = None) -> None:
        from archive_core_tape_ltfs.sim.changer import SimChanger
        from archive_core_tape_ltfs.sim.drive import SimTapeDrive
        from archive_core_tape_ltfs.sim.ltfs import SimLtfsVolume

        self.store = store
        self.timeouts = timeouts or Timeouts()
        self._local = threading.local()
        self._thread_lock = threading.RLock()
        self.clock = VirtualClock(self)
        self.changer = SimChanger(self)
        self.ltfs = SimLtfsVolume(self)
        with self.transaction() as state:
            indexes = [d.index for d in state.drives]
        self._drives = {i: SimTapeDrive(self, i) for i in indexes}

    @classmethod
    def open(cls, settings: SimulatorSettings, *, timeouts: Timeouts | None = None) -> SimLibrary:
        """The library at `settings.state_dir`, created from `settings` if it does not exist."""
        store = StateStore(settings.state_dir)
        with store.locked():
            if not store.exists:
                store.write(new_state(settings))
                logger.info("created a simulated tape library in %s", settings.state_dir)
        return cls(store, timeouts=timeouts)

    def __repr__(self) -> str:
        return f"<SimLibrary {self.store.root}>"

    # --- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[SimState]:
        """The state under the directory lock; written back unless `readonly` (and no process
        exit had to be recorded)."""
        current = getattr(self._local, "state", None)
        if current is not None:  # nested call from within a step
            yield current
            return
        with self._thread_lock, self.store.locked():
            state = self.store.read()
            self._local.state = state
            try:
                reaped = self._reap(state)
                yield state
            except errors.TapeError:
                self.store.write(state)
                raise
            except BaseException:
                self.store.forget()
                raise
            else:
                if reaped or not readonly:
                    self.store.write(state)
            finally:
                self._local.state = None

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[SimState]:
        """A port operation: one transaction that counts as a step for fault schedules."""
        with self.transaction() as state:
            state.ops += 1
            for fault in faults.due_state_faults(state):
                self._apply(state, fault)
            yield state

    def _reap(self, state: SimState) -> bool:
        """Finish unmounts whose ltfs process has exited by now on the virtual clock."""
        reaped = False
        for drive in state.drives:
            if drive.ltfs and drive.ltfs.exit_at is not None and drive.ltfs.exit_at <= state.clock:
                from archive_core_tape_ltfs.sim.ltfs import finish_unmount

                finish_unmount(self, state, drive, charge=False)
                reaped = True
        return reaped

    # --- helpers for the port objects ----------------------------------------------------

    def drive(self, index: int):
        try:
            return self._drives[index]
        except KeyError:
            raise errors.TapeError(
                f"The simulated library has no drive {index}.", drive=index
            ) from None

    def drive_indexes(self) -> tuple[int, ...]:
        return tuple(sorted(self._drives))

    def timing(self, drive: SimDrive) -> TimingModel:
        return TimingModel(profile=profile_for(drive.generation, drive.form))

    def drive_state(self, state: SimState, index: int) -> SimDrive:
        found = state.drive(index)
        if found is None:
            raise errors.TapeError(f"The simulated library has no drive {index}.", drive=index)
        return found

    def blob_dir(self, volume: SimVolume) -> Path:
        return self.store.blob_path(volume.uuid)

    # --- operator and test controls ------------------------------------------------------

    def inject(self, fault: SimFault | None = None, /, **fields) -> None:
        """Schedule a fault (see `faults.KINDS`). A state fault without a time fires now."""
        fault = fault or SimFault(**fields)
        if fault.kind not in faults.KINDS:
            raise errors.TapeError(
                f"Unknown simulator fault {fault.kind!r}; known: {', '.join(sorted(faults.KINDS))}."
            )
        with self.transaction() as state:
            if (
                fault.kind in faults.STATE_FAULTS
                and fault.at_time is None
                and fault.after_ops is None
            ):
                self._apply(state, fault)
            else:
                state.faults.append(fault)

    def set_random_faults(self, rates: dict[str, float], *, seed: int | None = None) -> None:
        with self.transaction() as state:
            unknown = set(rates) - set(faults.STEP_FAULTS)
            if unknown:
                raise errors.TapeError(f"Not a step fault: {', '.join(sorted(unknown))}.")
            state.random_faults = dict(rates)
            if seed is not None:
                state.seed = seed

    def insert(self, spec: SimulatedCartridge) -> None:
        """An operator puts a cartridge (new, or back from the vault) into a slot."""
        with self.transaction() as state:
            if spec.barcode in state.vault:
                slot = state.slot(spec.slot)
                if slot is None or slot.cartridge is not None:
                    raise errors.DestinationFull(
                        f"Slot {spec.slot} is not free.", slot=spec.slot, barcode=spec.barcode
                    )
                state.vault.remove(spec.barcode)
                slot.cartridge = spec.barcode
                return
            if spec.barcode in state.cartridges:
                raise errors.TapeError(
                    f"Cartridge {spec.barcode} is already in the library.", barcode=spec.barcode
                )
            generation = state.drives[0].generation if state.drives else 9
            add_cartridge(state, spec, default_generation=generation, default_capacity=None)

    def take_out(self, slot_number: int) -> str:
        """An operator removes the cartridge from a slot (to the vault); its key."""
        with self.transaction() as state:
            slot = state.slot(slot_number)
            if slot is None or slot.cartridge is None:
                raise errors.SourceEmpty(f"Slot {slot_number} is empty.", slot=slot_number)
            key = slot.cartridge
            slot.cartridge = None
            state.vault.append(key)
            return key

    def cartridge(self, barcode: str) -> SimCartridge:
        """A copy of the cartridge's simulated state (tests look at volumes through it)."""
        with self.transaction(readonly=True) as state:
            return attrs.evolve(state.cartridges[barcode])

    def snapshot(self) -> SimState:
        with self.transaction(readonly=True) as state:
            return state

    def _apply(self, state: SimState, fault: SimFault) -> None:
        kind = fault.kind
        cartridge = state.cartridges.get(fault.barcode) if fault.barcode else None
        if kind == "needs_cleaning":
            drive = self.drive_state(state, fault.drive or 0)
            if 20 not in drive.alerts:
                drive.alerts.append(20)
        elif kind == "swap":
            a, b = state.slot(fault.slot or 0), state.slot(fault.other_slot or 0)
            if a is None or b is None:
                raise errors.TapeError("A swap needs two existing slots (slot, other_slot).")
            a.cartridge, b.cartridge = b.cartridge, a.cartridge
        elif kind == "crash":
            drive = self.drive_state(state, fault.drive or 0)
            crash(state, drive)
        else:
            if cartridge is None:
                raise errors.TapeError(f"Fault {kind!r} needs the barcode of a cartridge.")
            if kind == "barcode_unreadable":
                cartridge.label_readable = False
            elif kind == "vault":
                where = state.where(cartridge.key)
                if isinstance(where, SimSlot):
                    where.cartridge = None
                elif isinstance(where, SimDrive):
                    where.cartridge, where.source_slot, where.threaded = None, None, False
                state.vault.append(cartridge.key)
            elif kind == "write_protect":
                cartridge.write_protected = True
            elif kind in ("unformatted", "foreign"):
                if cartridge.volume is not None:
                    shutil.rmtree(self.blob_dir(cartridge.volume), ignore_errors=True)
                cartridge.volume = None
                cartridge.foreign = kind == "foreign"
            elif kind in ("corrupt_index", "missing_eod"):
                if cartridge.volume is None:
                    raise errors.TapeError(f"Cartridge {cartridge.key} holds no LTFS volume.")
                cartridge.volume.consistency = CORRUPT if kind == "corrupt_index" else NO_EOD


def crash(state: SimState, drive: SimDrive) -> None:
    """The ltfs process holding `drive` dies: no final index, the reservation stays."""
    if drive.ltfs is None:
        raise errors.TapeError(f"No LTFS process holds drive {drive.index}.", drive=drive.index)
    drive.ltfs = None
    drive.reserved = True
    cartridge = state.cartridges.get(drive.cartridge or "")
    if cartridge and cartridge.volume and cartridge.volume.dirty:
        cartridge.volume.consistency = EXTRA_BLOCKS


def drop_read_only(volume: SimVolume, *, reason: str) -> None:
    """LTFS after a permanent write error: write-perm in the MAM, never appendable again."""
    volume.lock_state |= LOCK_WRITE_PERM_DP
    logger.info("simulated volume %s dropped to read-only: %s", volume.serial, reason)
