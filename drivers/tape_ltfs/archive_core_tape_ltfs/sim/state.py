"""The virtual library's state, and its home on disk that every process shares under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

STATE_FILE = "library.json"
LOCK_FILE = "library.lock"
BLOB_DIR = "blobs"

CLEAN = "clean"
EXTRA_BLOCKS = "extra-blocks"  # data written after the last index (crash while mounted)
CORRUPT = "corrupt"  # index write interrupted (tape moved before LTFS exited)
NO_EOD = "no-eod"  # cartridge memory lost the end of data (power loss while writing)


@attrs.define
class SimFile:
    size: int
    partition: int
    startblock: int
    blocks: int
    fileuid: int
    blob: str
    generation: int  # index generation that first recorded it; 0 = not yet in an index


@attrs.define
class SimVolume:
    uuid: str
    serial: str
    name: str = ""
    generation: int = 1
    block_size: int = 524288
    files: dict[str, SimFile] = attrs.Factory(dict)
    append_block: int = 0  # next free block of the data partition
    lock_state: int = 0
    consistency: str = CLEAN
    generations: list[int] = attrs.Factory(lambda: [1])
    next_fileuid: int = 1
    dirty: bool = False  # changed since the last index on tape


@attrs.define
class SimCartridge:
    key: str  # the barcode label, or a made-up name for a cartridge without one
    label: str | None
    label_readable: bool = True
    generation: int = 9
    capacity_bytes: int = 18 * 10**12
    write_protected: bool = False
    new: bool = True
    cleaning: bool = False
    uses_left: int = 0
    foreign: bool = False  # holds data written by other software
    volume: SimVolume | None = None


@attrs.define
class SimLtfs:
    pid: int
    read_only: bool = False
    read_only_reason: str = ""
    exit_at: float | None = None  # set by umount: when the process will have exited


@attrs.define
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
    threaded: bool = False  # cartridge threaded on the heads (False after an eject)
    partition: int = 0
    block: int = 0
    alerts: list[int] = attrs.Factory(list)
    ltfs: SimLtfs | None = None
    reserved: bool = False  # stale reservation / prevent-removal left by a crashed LTFS
    bytes_since_clean: int = 0
    clean_after_bytes: int | None = None
    hung: bool = False


@attrs.define
class SimSlot:
    number: int
    import_export: bool = False
    cartridge: str | None = None


@attrs.define
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
    seconds: float = 0.0  # for becoming-ready
    at_bytes: int | None = None  # for write errors: bytes into the next file
    other_slot: int | None = None  # for swaps


@attrs.define
class SimState:
    clock: float = 0.0
    changer_name: str = "/dev/sim/changer"
    vendor: str = "SIMLIB"
    product: str = "VIRTUAL LTO LIB"
    slots: list[SimSlot] = attrs.Factory(list)
    drives: list[SimDrive] = attrs.Factory(list)
    cartridges: dict[str, SimCartridge] = attrs.Factory(dict)
    vault: list[str] = attrs.Factory(list)
    faults: list[SimFault] = attrs.Factory(list)
    random_faults: dict[str, float] = attrs.Factory(dict)
    seed: int = 0
    ops: int = 0
    next_pid: int = 40000
    robot_moves: int = 0
    backhitches: int = 0

    def slot(self, number: int) -> SimSlot | None:
        return next((s for s in self.slots if s.number == number), None)

    def drive(self, index: int) -> SimDrive | None:
        return next((d for d in self.drives if d.index == index), None)

    def where(self, key: str) -> SimSlot | SimDrive | None:
        for slot in self.slots:
            if slot.cartridge == key:
                return slot
        for drive in self.drives:
            if drive.cartridge == key:
                return drive
        return None


_CONVERTER = None


def _converter():
    global _CONVERTER
    if _CONVERTER is None:
        import cattrs

        _CONVERTER = cattrs.Converter()
    return _CONVERTER


class StateStore:
    """The state directory: `library.json` rewritten atomically under an exclusive flock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # The state as this process last read or wrote it, keyed by the file's identity, so a
        # step needs no parse when no other process changed the library meanwhile.
        self._cached: tuple[tuple[int, int, int], SimState] | None = None

    def _key(self) -> tuple[int, int, int]:
        stat = (self.root / STATE_FILE).stat()
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def forget(self) -> None:
        """Drop the cached state (after a step failed half way with an unexpected error)."""
        self._cached = None

    @property
    def exists(self) -> bool:
        return (self.root / STATE_FILE).exists()

    def blob_path(self, name: str) -> Path:
        return self.root / BLOB_DIR / name

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> SimState:
        key = self._key()
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        data = json.loads((self.root / STATE_FILE).read_text(encoding="utf-8"))
        state = _converter().structure(data, SimState)
        self._cached = (key, state)
        return state

    def write(self, state: SimState) -> None:
        data: Any = _converter().unstructure(state)
        tmp = self.root / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self.root / STATE_FILE)
        self._cached = (self._key(), state)
