"""The simulated library: the composition root that puts a caller's port objects on an engine.

A `SimLibrary` is one caller of a virtual library whose state lives in a directory (shared by
every process that opens it); `worker(name)` gives another caller of the same library, with
its own timeline starting where this one is. Operator and test controls (faults, the
operator's hands, the timeline) live here too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import attrs
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings, Timeouts
from archive_core_tape_ltfs.sim import faults, mechanics
from archive_core_tape_ltfs.sim.changer import SimChanger
from archive_core_tape_ltfs.sim.content import SyntheticContent
from archive_core_tape_ltfs.sim.drive import SimTapeDrive
from archive_core_tape_ltfs.sim.engine import (
    DATABASE,
    ROBOT,
    Caller,
    Engine,
    TimelineEntry,
    VirtualClock,
    drive_resource,
    makespan,
)
from archive_core_tape_ltfs.sim.ltfs import SimLtfsVolume, SimMount, SimReader
from archive_core_tape_ltfs.sim.state import (
    SimCartridge,
    SimDrive,
    SimFault,
    SimSlot,
    SimState,
)

__all__ = [
    "ROBOT",
    "SimLibrary",
    "SimMount",
    "SimReader",
    "SyntheticContent",
    "TimelineEntry",
    "drive_resource",
    "makespan",
]

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
WORK_DIR = "work"


def new_state(settings: SimulatorSettings) -> tuple[SimState, list[SimCartridge]]:
    """A new library's rows as `settings` describe it."""
    storage = settings.slots
    slots = [SimSlot(number=n) for n in range(1, storage + 1)]
    slots += [
        SimSlot(number=storage + n, import_export=True)
        for n in range(1, settings.import_export + 1)
    ]
    model = _MODELS[settings.generation]
    drives = [
        SimDrive(
            index=index,
            serial=f"SIM{settings.generation:02d}{index:05d}",
            vendor="IBM",
            model=model if settings.form == "FH" else model.replace("TD", "HH"),
            revision="S001",
            generation=settings.generation,
            form=settings.form,
        )
        for index in range(settings.drives)
    ]
    state = SimState(seed=settings.seed, slots=tuple(slots), drives=tuple(drives))
    cartridges = []
    for spec in settings.cartridges or _default_cartridges(settings):
        slot = mechanics.free_slot_for(state, spec)
        cartridges.append(
            mechanics.new_cartridge(
                spec,
                default_generation=settings.generation,
                default_capacity=settings.capacity_bytes,
            )
        )
        slot.cartridge = spec.barcode
    return state, cartridges


def _default_cartridges(settings: SimulatorSettings) -> tuple[SimulatedCartridge, ...]:
    suffix = f"L{settings.generation}" if settings.generation < 10 else "LA"
    data = [
        SimulatedCartridge(barcode=f"SIM{n:03d}{suffix}", slot=slot)
        for n, slot in enumerate(range(1, settings.slots // 2 + 1, 2), start=1)
    ]
    return (*data, SimulatedCartridge(barcode="CLN001CU", slot=settings.slots))


# Releases before the discrete-event engine kept the whole library in this one JSON document.
_OLD_STATE_FILE = "library.json"


def _refuse_an_older_layout(state_dir: Path) -> None:
    """Never start an empty library beside an old one: its cartridges would seem gone."""
    if (state_dir / _OLD_STATE_FILE).exists() and not (state_dir / DATABASE).exists():
        raise errors.TapeError(
            f"The simulated library in {state_dir} was written by an earlier release "
            f"({_OLD_STATE_FILE}), which this one cannot read. Move the directory away (or "
            f"give another state_dir) to start a new simulated library."
        )


class SimLibrary:
    """One caller of a virtual tape library whose state lives in a directory.

    Each port call is one transaction of the library's store, on this caller's timeline.
    """

    def __init__(self, engine: Engine, caller: Caller, *, timeouts: Timeouts) -> None:
        self.engine = engine
        self.caller = caller
        self.timeouts = timeouts
        self.clock = VirtualClock(caller)
        self.changer = SimChanger(engine, caller, timeouts)
        self.ltfs = SimLtfsVolume(engine, caller)
        self.work_directory = engine.root / WORK_DIR
        with engine.transaction(caller) as step:
            indexes = [d.index for d in step.state.drives]
        self._drives = {i: SimTapeDrive(engine, caller, timeouts, i) for i in indexes}

    @classmethod
    def open(
        cls,
        settings: SimulatorSettings,
        *,
        timeouts: Timeouts | None = None,
        caller: str = "main",
    ) -> SimLibrary:
        """The library at `settings.state_dir`, created from `settings` if it does not exist.
        The caller starts at the library's present: the furthest any caller has got."""
        _refuse_an_older_layout(Path(settings.state_dir))
        engine = Engine(settings.state_dir, on_step=mechanics.on_step)
        if engine.create(lambda: new_state(settings)):
            logger.info("created a simulated tape library in %s", settings.state_dir)
        (engine.root / WORK_DIR).mkdir(exist_ok=True)
        return cls(engine, Caller(caller, engine.horizon()), timeouts=timeouts or Timeouts())

    def worker(self, name: str) -> SimLibrary:
        """This library for another caller, whose timeline starts at this caller's time."""
        return SimLibrary(self.engine, Caller(name, self.caller.now), timeouts=self.timeouts)

    def __repr__(self) -> str:
        return f"<SimLibrary {self.engine.root} caller={self.caller.name}>"

    def drive(self, index: int) -> SimTapeDrive:
        try:
            return self._drives[index]
        except KeyError:
            raise errors.TapeError(
                f"The simulated library has no drive {index}.", drive=index
            ) from None

    def drive_indexes(self) -> tuple[int, ...]:
        return tuple(sorted(self._drives))

    # --- the timeline ----------------------------------------------------------------------

    def timeline(self, resource: str | None = None) -> tuple[TimelineEntry, ...]:
        """What each drive (`drive0`, ...) and the robot (`robot`) did, in order of start."""
        return self.engine.timeline(resource)

    def makespan(self, since: float = 0.0) -> float:
        """From `since` to the end of the last thing any resource did after it."""
        ends = [e.end for e in self.timeline() if e.end > since]
        return max(ends) - since if ends else 0.0

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make the port calls inside one transaction instead of one each: for archive-scale
        tests and benchmarks driving many calls from one caller. The batch is atomic (a crash
        loses all of it, never part of a call); other processes wait until it ends."""
        with self.engine.transaction(self.caller):
            yield

    # --- state for tests and the simulated tools ------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SimState]:
        """The library's rows for one change made by hand (tests, the simulated tools)."""
        with self.engine.transaction(self.caller) as step:
            yield step.state

    def snapshot(self) -> SimState:
        with self.transaction() as state:
            return state

    def cartridge(self, barcode: str) -> SimCartridge:
        """A copy of the cartridge's simulated state (tests look at volumes through it)."""
        with self.transaction() as state:
            return attrs.evolve(state.cartridges[barcode])

    # --- the operator's hands ----------------------------------------------------------------

    def insert(self, spec: SimulatedCartridge) -> None:
        """An operator puts a cartridge (new, or back from the vault) into a slot."""
        with self.engine.transaction(self.caller) as step:
            mechanics.insert_cartridge(step, spec)

    def take_out(self, slot_number: int) -> str:
        """An operator removes the cartridge from a slot (to the vault); its key."""
        with self.transaction() as state:
            return mechanics.take_out(state, slot_number)

    # --- faults ----------------------------------------------------------------------------

    def inject(self, fault: SimFault | None = None, /, **fields) -> None:
        """Schedule a fault (see `faults.KINDS`). A state fault without a time fires now; a
        window (`becoming_ready`, `library_offline` with `seconds`) starts now by default."""
        fault = fault or SimFault(**fields)
        if fault.kind not in faults.KINDS:
            raise errors.TapeError(
                f"Unknown simulator fault {fault.kind!r}; known: {', '.join(sorted(faults.KINDS))}."
            )
        if fault.kind in faults.WINDOW_FAULTS and fault.at_time is None:
            fault.at_time = self.caller.now
        with self.engine.transaction(self.caller) as step:
            if (
                fault.kind in faults.STATE_FAULTS
                and fault.at_time is None
                and fault.after_ops is None
            ):
                mechanics.apply_state_fault(step, fault)
            else:
                step.state.faults = (*step.state.faults, fault)

    def set_random_faults(self, rates: dict[str, float], *, seed: int | None = None) -> None:
        unknown = set(rates) - set(faults.STEP_FAULTS)
        if unknown:
            raise errors.TapeError(f"Not a step fault: {', '.join(sorted(unknown))}.")
        with self.transaction() as state:
            state.random_faults = tuple(sorted(rates.items()))
            if seed is not None:
                state.seed = seed

    def faults(self) -> tuple[SimFault, ...]:
        """The faults scheduled, then the conditions in force (with `count` 0): a cartridge
        stuck in the picker, drives out of service, an inventory the door made invalid."""
        with self.transaction() as state:
            listed = [attrs.evolve(f) for f in state.faults]
            if state.picker is not None:
                listed.append(
                    SimFault(
                        kind="stuck_in_picker",
                        barcode=state.picker,
                        slot=state.picker_source,
                        count=0,
                    )
                )
            listed += [
                SimFault(kind="drive_dead", drive=d.index, count=0) for d in state.drives if d.dead
            ]
            if not state.inventory_valid:
                listed.append(SimFault(kind="door_open", count=0))
            return tuple(listed)

    def clear_faults(self, kind: str | None = None) -> int:
        """Drop scheduled faults (of `kind`, or all, random ones included) and end the
        conditions they left (the operator frees the picker, the drive is repaired, the
        library rescans); how many were cleared."""
        if kind is not None and kind not in faults.KINDS:
            raise errors.TapeError(
                f"Unknown simulator fault {kind!r}; known: {', '.join(sorted(faults.KINDS))}."
            )
        with self.transaction() as state:
            wanted = {kind} if kind else set(faults.KINDS)
            kept = tuple(f for f in state.faults if f.kind not in wanted)
            cleared = len(state.faults) - len(kept)
            state.faults = kept
            random_kept = tuple((k, r) for k, r in state.random_faults if k not in wanted)
            cleared += len(state.random_faults) - len(random_kept)
            state.random_faults = random_kept
            if "stuck_in_picker" in wanted and state.picker is not None:
                self._free_picker(state)
                cleared += 1
            if "drive_dead" in wanted:
                for drive in state.drives:
                    if drive.dead:
                        drive.dead = False
                        cleared += 1
            if "door_open" in wanted and not state.inventory_valid:
                state.inventory_valid = True
                state.unit_attention = None
                cleared += 1
            if "ie_open" in wanted and state.unit_attention == "ie":
                state.unit_attention = None
                cleared += 1
            return cleared

    def _free_picker(self, state: SimState) -> None:
        """The operator takes the cartridge out of the picker and puts it back in its slot
        (or the first free storage slot when that one has been filled since)."""
        home = state.slot(state.picker_source or 0)
        if home is None or home.cartridge is not None:
            home = next(
                (s for s in state.slots if not s.import_export and s.cartridge is None), None
            )
        if home is None:
            raise errors.DestinationFull(
                f"Cannot put cartridge {state.picker} back from the picker: no storage slot is "
                f"free.",
                barcode=state.picker,
            )
        home.cartridge = state.picker
        state.picker, state.picker_source = None, None
