"""The virtual library's state as rows: the library, each slot, drive and cartridge, each file.

Every row class records its own changes: assigning an attribute marks the row (the object the
engine stores as one row) changed, so a step writes back only the rows it changed, not the
library. Collections inside a row are tuples, changed by assignment, for that reason. The few
attributes that change at nearly every step (a drive's head and busy time, a volume's append
point) are "hot": stored apart from the rest of their row, so a file written or read rewrites
a handful of numbers, not the drive and the cartridge.
"""

from __future__ import annotations

from typing import Any

import attrs

CLEAN = "clean"
EXTRA_BLOCKS = "extra-blocks"  # data written after the last index (crash while mounted)
CORRUPT = "corrupt"  # index write interrupted (tape moved before LTFS exited)
NO_EOD = "no-eod"  # cartridge memory lost the end of data (power loss while writing)
# ltfs pids of the simulated host start above Linux's PID_MAX_LIMIT (2**22), so none of them is
# ever taken for a real process (the owners of mounts are real processes).
FIRST_PID = 2**22


def _touched(instance: Any, attribute: Any, value: Any) -> Any:
    flag = "hot_changed" if attribute.metadata.get("hot") else "changed"
    object.__setattr__(instance, flag, True)
    return value if attribute.converter is None else attribute.converter(value)


def _row(cls):
    """An attrs class whose instances note any assignment in their `changed` flag."""
    return attrs.define(cls, on_setattr=_touched)


def _flag() -> Any:
    return attrs.field(default=False, eq=False, repr=False, metadata={"stored": False})


def _hot(default: Any) -> Any:
    return attrs.field(default=default, metadata={"hot": True})


@_row
class Phase:
    """A busy spell of a drive (loading, calibrating, cleaning, unloading), for status queries
    made by other callers while it lasts."""

    state: str
    start: float
    end: float
    changed: bool = _flag()
    hot_changed: bool = _flag()


@_row
class SimLtfs:
    """The ltfs process serving a mounted volume, and who mounted it."""

    pid: int
    owner_pid: int  # the OS process that mounted it (or adopted it)
    owner: str  # the caller within that process
    host: str
    mountpoint: str
    since: float
    mounted_read_only: bool = False
    exit_at: float | None = None  # set by umount: when the process will have exited
    # Set when the real tools' `ltfs -f` started it (sim/tools.py): its FUSE mount's options
    # in the host's mount table (none once umount took a dead one out), and the work directory
    # it writes its final index to at exit (`-o capture_index`), "" for none.
    options: tuple[str, ...] = ()
    capture_to: str = ""
    changed: bool = _flag()
    hot_changed: bool = _flag()


@_row
class SimDrive:
    index: int
    serial: str
    vendor: str
    model: str
    revision: str
    generation: int
    form: str
    cartridge: str | None = None
    source_slot: int | None = None
    ready_at: float = 0.0
    busy_until: float = _hot(0.0)  # the drive as a resource: free for the next command then
    # When the drive's last write (and nothing else since) ended: a write that comes next
    # continues its stream, the wait in between is part of how fast the host fed it.
    streaming_until: float | None = _hot(None)
    threaded: bool = False  # cartridge threaded on the heads (False after an eject)
    partition: int = _hot(0)
    block: int = _hot(0)
    activity_bytes: int = _hot(0)  # read and written since the cartridge was loaded
    phases: tuple[Phase, ...] = ()
    # TapeAlert flags as page 0x2E would report them (a tuple, whatever a caller assigns).
    alerts: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    needs_clean: bool = False  # the condition behind flag 20: writes fail until cleaned
    ltfs: SimLtfs | None = None
    stale: SimLtfs | None = None  # the mount of an ltfs process that died (until released)
    reserved: bool = False  # stale reservation / prevent-removal left by a crashed LTFS
    bytes_since_clean: int = _hot(0)
    clean_after_bytes: int | None = None
    hung: bool = False
    dead: bool = False  # out of service: every command fails
    changed: bool = _flag()
    hot_changed: bool = _flag()


@_row
class SimSlot:
    number: int
    import_export: bool = False
    cartridge: str | None = None
    changed: bool = _flag()
    hot_changed: bool = _flag()


@_row
class SimVolume:
    uuid: str
    serial: str
    name: str = ""
    mam_barcode: str = ""
    generation: int = 1
    block_size: int = 524288
    append_block: int = _hot(0)  # next free block of the data partition
    lock_state: int = 0
    consistency: str = CLEAN
    generations: tuple[int, ...] = (1,)
    next_fileuid: int = _hot(1)
    file_count: int = _hot(0)
    dirty: bool = _hot(False)  # changed since the last index on tape
    rules: str | None = None  # index-partition placement (`size=1M/name=*.xml`)
    index_location: str = ""  # where the latest index lies, `<partition>:<block>`
    changed: bool = _flag()
    hot_changed: bool = _flag()


@_row
class SimCartridge:
    key: str  # the barcode label it came with, or a made-up name for one without
    label: str | None
    media_code: str  # the media id the cartridge really is (L9, LZ, ...), whatever its label
    label_readable: bool = True
    generation: int = 9
    worm: bool = False
    capacity_bytes: int = 18 * 10**12
    write_protected: bool = False
    new: bool = True
    cleaning: bool = False
    uses_left: int = 0
    foreign: bool = False  # holds data written by other software
    volume: SimVolume | None = None
    changed: bool = _flag()
    hot_changed: bool = _flag()


@_row
class SimFault:
    """One injected fault: what, where it applies, when it fires and how often."""

    kind: str
    drive: int | None = None
    barcode: str | None = None
    slot: int | None = None
    path: str | None = None
    at_time: float | None = None  # fires at the first matching step at or after this time
    after_ops: int | None = None  # ... or after this many port operations
    count: int = 1  # how many matching steps it affects
    seconds: float = 0.0  # for windows (becoming ready, library offline)
    at_bytes: int | None = None  # for write errors: bytes into the next file
    other_slot: int | None = None  # for swaps
    label: str | None = None  # for mislabel: the barcode now on the cartridge
    changed: bool = _flag()
    hot_changed: bool = _flag()


ROBOT_BOOKINGS_KEPT = 64


@_row
class SimState:
    """The library row: changer identity, robot, door, faults, counters.

    `slots`, `drives` and `cartridges` are rows of their own that the engine attaches for the
    length of a step.
    """

    changer_name: str = "/dev/sim/changer"
    vendor: str = "SIMLIB"
    product: str = "VIRTUAL LTO LIB"
    vault: tuple[str, ...] = ()
    faults: tuple[SimFault, ...] = ()
    random_faults: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    next_pid: int = FIRST_PID
    # The robot's booked moves (start, end), sorted, the latest ROBOT_BOOKINGS_KEPT of them; a
    # caller behind in time books a move into a gap between them (see `robot_start`), so
    # workers on different drives overlap whichever of their threads ran first.
    robot_bookings: tuple[tuple[float, float], ...] = ()
    robot_floor: float = 0.0  # the end of the latest booking no longer kept
    # A cartridge the picker holds after a move went wrong, and the slot it came from.
    picker: str | None = None
    picker_source: int | None = None
    unit_attention: str | None = None  # a pending one: why (door opened, I/E opened)
    inventory_valid: bool = True  # False after the door was open: barcodes must be re-read
    slots: tuple[SimSlot, ...] = attrs.field(default=(), eq=False, metadata={"stored": False})
    drives: tuple[SimDrive, ...] = attrs.field(default=(), eq=False, metadata={"stored": False})
    cartridges: Any = attrs.field(default=None, eq=False, metadata={"stored": False})
    # Counters that change at every step: kept out of the library row (see the engine).
    ops: int = attrs.field(default=0, metadata={"stored": False})
    horizon: float = attrs.field(default=0.0, metadata={"stored": False})
    changed: bool = _flag()
    hot_changed: bool = _flag()

    def robot_start(self, start: float, seconds: float) -> float:
        """The earliest time at or after `start` when the robot is free for `seconds`."""
        start = max(start, self.robot_floor)
        for begin, end in self.robot_bookings:
            if end <= start:
                continue
            if begin >= start + seconds:
                break  # the move fits in the gap before this booking
            start = end
        return start

    def book_robot(self, start: float, end: float) -> None:
        bookings = sorted((*self.robot_bookings, (start, end)))
        if len(bookings) > ROBOT_BOOKINGS_KEPT:
            dropped, bookings = bookings[:-ROBOT_BOOKINGS_KEPT], bookings[-ROBOT_BOOKINGS_KEPT:]
            self.robot_floor = max(self.robot_floor, *(end for _begin, end in dropped))
        self.robot_bookings = tuple(bookings)

    def slot(self, number: int) -> SimSlot | None:
        if 1 <= number <= len(self.slots) and self.slots[number - 1].number == number:
            return self.slots[number - 1]
        return next((s for s in self.slots if s.number == number), None)

    def drive(self, index: int) -> SimDrive | None:
        if 0 <= index < len(self.drives) and self.drives[index].index == index:
            return self.drives[index]
        return next((d for d in self.drives if d.index == index), None)

    def where(self, key: str) -> SimSlot | SimDrive | None:
        for slot in self.slots:
            if slot.cartridge == key:
                return slot
        for drive in self.drives:
            if drive.cartridge == key:
                return drive
        return None


@attrs.frozen
class FileExtent:
    """Where a run of a file's bytes lies: partition 0/1, start block, its bytes."""

    partition: int
    startblock: int
    byte_count: int
    file_offset: int


@attrs.define
class SimFile:
    """A file row. Content is a blob of written bytes, a synthetic description, or nothing."""

    path: str
    size: int
    fileuid: int
    generation: int  # index generation that first recorded it; 0 = not yet in an index
    extents: tuple[FileExtent, ...] = ()
    blob: str | None = None  # the file holding its bytes, for written bytes
    seed: int | None = None  # for synthetic content

    @property
    def partition(self) -> int:
        return self.extents[0].partition if self.extents else 1

    @property
    def startblock(self) -> int:
        return self.extents[0].startblock if self.extents else 0


def hot_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in attrs.fields(cls) if f.metadata.get("hot"))


_NESTED = ("ltfs", "stale", "volume")


def clean(obj: Any) -> None:
    """Mark a row and its nested rows unchanged (after loading or writing it)."""
    for row in (obj, *(getattr(obj, n, None) for n in _NESTED), *getattr(obj, "faults", ())):
        if row is not None:
            object.__setattr__(row, "changed", False)
            object.__setattr__(row, "hot_changed", False)


def changed(obj: Any) -> bool:
    """Whether a row's stored part, or anything nested in it, was assigned since it was loaded
    or written."""
    if obj.changed:
        return True
    for name in _NESTED:
        inner = getattr(obj, name, None)
        if inner is not None and inner.changed:
            return True
    return any(fault.changed for fault in getattr(obj, "faults", ()))


def hot_changed(obj: Any) -> bool:
    """Whether a row's hot attributes (or its volume's) were assigned."""
    volume = getattr(obj, "volume", None)
    return obj.hot_changed or (volume is not None and volume.hot_changed)
