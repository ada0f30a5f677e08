"""The simulator's engine: the store, one transaction a step, callers, resources, the timeline.

The store is one SQLite database in the state directory (WAL, `BEGIN IMMEDIATE` per step), so
separate processes share a library and a step killed half way leaves the one before it. The
library row, each slot, drive and cartridge, each file and each timeline entry is a row of its
own: a step reads and writes what it touches, whatever the library holds. Rows read are kept
between steps while no other connection has changed the database (`PRAGMA data_version`).

Time is discrete-event: each caller (a job, a worker thread, an operator command) has its own
clock; each drive and the robot is a resource busy until a time; an operation starts when its
caller and the resources it needs are free, and ends its caller's wait when it is done.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import cattrs
from archive_core_tape_ltfs.errors import TapeError
from archive_core_tape_ltfs.sim.state import (
    FileExtent,
    Phase,
    SimCartridge,
    SimDrive,
    SimFault,
    SimFile,
    SimLtfs,
    SimSlot,
    SimState,
    SimVolume,
    changed,
    clean,
    hot_changed,
    hot_fields,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

DATABASE = "library.db"
ROBOT = "robot"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS library (
    id INTEGER PRIMARY KEY CHECK (id = 0), body TEXT NOT NULL,
    ops INTEGER NOT NULL, horizon REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS slots (number INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS drives (idx INTEGER PRIMARY KEY, body TEXT NOT NULL, hot TEXT);
CREATE TABLE IF NOT EXISTS cartridges (key TEXT PRIMARY KEY, body TEXT NOT NULL, hot TEXT);
CREATE TABLE IF NOT EXISTS files (
    volume TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, fileuid INTEGER NOT NULL,
    generation INTEGER NOT NULL, extents TEXT NOT NULL, blob TEXT, seed INTEGER,
    PRIMARY KEY (volume, path)
) WITHOUT ROWID;
-- Only files no index has recorded yet: what the next index write marks, what a crash loses.
CREATE INDEX IF NOT EXISTS files_unindexed ON files (volume) WHERE generation = 0;
CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY, resource TEXT NOT NULL, operation TEXT NOT NULL,
    caller TEXT NOT NULL, cartridge TEXT, start REAL NOT NULL, "end" REAL NOT NULL,
    bytes INTEGER NOT NULL, locates INTEGER NOT NULL, backhitches INTEGER NOT NULL
);
"""


@attrs.frozen(kw_only=True)
class TimelineEntry:
    """One spell of a resource (a drive or the robot) doing one operation for one caller."""

    resource: str  # "drive0", "drive1", ..., "robot"
    operation: str
    caller: str
    cartridge: str | None
    start: float
    end: float
    bytes: int = 0
    locates: int = 0
    backhitches: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start


def makespan(entries: Iterable[TimelineEntry]) -> float:
    """From the first entry's start to the last one's end (0 for none)."""
    entries = tuple(entries)
    if not entries:
        return 0.0
    return max(e.end for e in entries) - min(e.start for e in entries)


#: Drive operations after which a write continues the same stream (a file's data, its close).
STREAMING = frozenset({"write", "close"})


def drive_resource(index: int) -> str:
    return f"drive{index}"


@attrs.define
class Caller:
    """One timeline: a job, a worker thread or an operator command, and how far it has got."""

    name: str
    now: float = 0.0


class VirtualClock:
    """A caller's clock: `now` is how far it has got; sleeping moves only its own hands."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def now(self) -> float:
        return self._caller.now

    def sleep(self, seconds: float) -> None:
        self._caller.now += max(0.0, seconds)


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    for cls in (Phase, SimLtfs, SimDrive, SimSlot, SimVolume, SimCartridge, SimFault, SimState):
        skipped = {
            f.name: override(omit=True)
            for f in attrs.fields(cls)
            if not f.metadata.get("stored", True) or f.metadata.get("hot")
        }
        converter.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, converter, **skipped)
        )
        converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **skipped))
    return converter


_CONVERTER = _converter()


def _dump(row: Any) -> str:
    return json.dumps(_CONVERTER.unstructure(row), separators=(",", ":"))


_DRIVE_HOT = hot_fields(SimDrive)
_VOLUME_HOT = hot_fields(SimVolume)


def _hot_of(row: SimDrive | SimCartridge) -> str | None:
    """The hot attributes of a drive, or of a cartridge's volume, as a short JSON list."""
    if isinstance(row, SimDrive):
        return json.dumps([getattr(row, n) for n in _DRIVE_HOT])
    if row.volume is None:
        return None
    return json.dumps([getattr(row.volume, n) for n in _VOLUME_HOT])


def _load(cls: type, body: str, hot: str | None = None) -> Any:
    row = _CONVERTER.structure(json.loads(body), cls)
    if hot is not None:
        target, names = (row, _DRIVE_HOT) if cls is SimDrive else (row.volume, _VOLUME_HOT)
        if target is not None:
            # A row stored before a hot field was added lacks it: its default stands.
            for name, value in zip(names, json.loads(hot), strict=False):
                object.__setattr__(target, name, value)
    clean(row)
    return row


class Cartridges:
    """The cartridge rows, read on first use in a step and kept while the store is unchanged."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._rows: dict[str, SimCartridge] = {}
        self._all = False
        self.touched: dict[str, SimCartridge] = {}

    def __getitem__(self, key: str) -> SimCartridge:
        row = self._rows.get(key)
        if row is None:
            found = self._engine.connection.execute(
                "SELECT body, hot FROM cartridges WHERE key = ?", (key,)
            ).fetchone()
            if found is None:
                raise KeyError(key)
            row = self._rows[key] = _load(SimCartridge, *found)
        self.touched[key] = row
        return row

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __setitem__(self, key: str, row: SimCartridge) -> None:
        row.changed = True
        self._rows[key] = self.touched[key] = row

    def keys(self) -> list[str]:
        if not self._all:
            for (key,) in self._engine.connection.execute("SELECT key FROM cartridges"):
                if key not in self._rows:
                    self.get(key)
            self._all = True
        return sorted(self._rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def values(self) -> list[SimCartridge]:
        return [self[key] for key in self.keys()]


@attrs.define
class Step:
    """One port operation of one caller: the library's rows for its length, and the clock."""

    engine: Engine
    state: SimState
    caller: Caller

    @property
    def now(self) -> float:
        return self.caller.now

    def _drive(self, resource: str) -> SimDrive:
        drive = self.state.drive(int(resource.removeprefix("drive")))
        assert drive is not None
        return drive

    def occupy(
        self,
        resource: str,
        start: float,
        seconds: float,
        *,
        operation: str,
        cartridge: str | None = None,
        nbytes: int = 0,
        locates: int = 0,
        backhitches: int = 0,
    ) -> tuple[float, int]:
        """Book `resource` from `start` (no earlier than it is free) for `seconds`; returns
        when it ends and the timeline entry's id."""
        if resource == ROBOT:
            # The robot serves every caller: a move goes into the first gap that holds it.
            start = self.state.robot_start(start, seconds)
            end = start + seconds
            self.state.book_robot(start, end)
        else:
            # A drive works for the caller that has it loaded, in that caller's order.
            drive = self._drive(resource)
            start = max(start, drive.busy_until)
            end = start + seconds
            drive.busy_until = end
            drive.streaming_until = end if operation in STREAMING else None
        entry = self.engine.record(
            resource,
            operation,
            self.caller.name,
            cartridge,
            start,
            end,
            nbytes,
            locates,
            backhitches,
        )
        return end, entry

    def wait_until(self, when: float) -> None:
        """The caller waits for something to finish."""
        self.caller.now = max(self.caller.now, when)

    # --- file rows ---------------------------------------------------------------------------

    def file(self, volume: str, path: str) -> SimFile | None:
        return self.engine.file(volume, path)

    def files(self) -> Files:
        return Files(self.engine)


class Files:
    """The file rows of volumes (SQL on the step's transaction)."""

    def __init__(self, engine: Engine) -> None:
        self._db = engine.connection
        self._engine = engine

    def exists(self, volume: str, path: str) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM files WHERE volume = ? AND path = ?", (volume, path)
        ).fetchone()
        return found is not None

    def add(self, volume: str, file: SimFile) -> None:
        self._db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                volume,
                file.path,
                file.size,
                file.fileuid,
                file.generation,
                _extents_text(file.extents),
                file.blob,
                file.seed,
            ),
        )

    def remove(self, volume: str, path: str) -> SimFile | None:
        file = self._engine.file(volume, path)
        if file is not None:
            self._db.execute("DELETE FROM files WHERE volume = ? AND path = ?", (volume, path))
        return file

    def all(self, volume: str, *, indexed_only: bool = False) -> list[SimFile]:
        where = " AND generation > 0" if indexed_only else ""
        rows = self._db.execute(
            f"SELECT path, size, fileuid, generation, extents, blob, seed FROM files "
            f"WHERE volume = ?{where} ORDER BY path",
            (volume,),
        )
        return [_file(row) for row in rows]

    def count(self, volume: str) -> int:
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM files WHERE volume = ?", (volume,)
        ).fetchone()
        return count

    def listing(self, volume: str) -> list[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT path, size FROM files WHERE volume = ? ORDER BY path", (volume,)
        )
        return [(path, size) for path, size in rows]

    def mark_indexed(self, volume: str, generation: int) -> None:
        self._db.execute(
            "UPDATE files SET generation = ? WHERE volume = ? AND generation = 0",
            (generation, volume),
        )

    def drop_unindexed(self, volume: str) -> int:
        return self._db.execute(
            "DELETE FROM files WHERE volume = ? AND generation = 0", (volume,)
        ).rowcount

    def drop_after(self, volume: str, generation: int) -> int:
        """Forget files no index up to `generation` recorded (a rollback)."""
        return self._db.execute(
            "DELETE FROM files WHERE volume = ? AND (generation = 0 OR generation > ?)",
            (volume, generation),
        ).rowcount

    def move_unindexed(self, volume: str, prefix: str) -> int:
        """Keep files written after the last index under `prefix` (ltfsck salvage)."""
        return self._db.execute(
            "UPDATE files SET path = ? || '/' || path WHERE volume = ? AND generation = 0",
            (prefix, volume),
        ).rowcount

    def forget_volume(self, volume: str) -> None:
        self._db.execute("DELETE FROM files WHERE volume = ?", (volume,))


def _extents_text(extents: tuple[FileExtent, ...]) -> str:
    return json.dumps(
        [[e.partition, e.startblock, e.byte_count, e.file_offset] for e in extents],
        separators=(",", ":"),
    )


def _file(row: tuple) -> SimFile:
    path, size, fileuid, generation, extents, blob, seed = row
    return SimFile(
        path=path,
        size=size,
        fileuid=fileuid,
        generation=generation,
        extents=tuple(FileExtent(*e) for e in json.loads(extents)),
        blob=blob,
        seed=seed,
    )


class Engine:
    """The store of one library directory, shared by every caller of this process."""

    def __init__(self, root: Path, *, on_step: Callable[[Step], None] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # One connection, used by the threads of this process under a lock: a step is short,
        # and SQLite serialises writers anyway.
        self.connection = sqlite3.connect(
            self.root / DATABASE, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA synchronous = NORMAL")
        self._lock = threading.RLock()
        self._local = threading.local()
        self._on_step = on_step
        self._state: SimState | None = None
        self._cartridges = Cartridges(self)
        self._version: int | None = None
        # Files being written in this process, by drive: an index sync flushes them first.
        self.open_writers: dict[int, list[Any]] = {}

    def close(self) -> None:
        self.connection.close()

    def create(self, build: Callable[[], tuple[SimState, list[SimCartridge]]]) -> bool:
        """Create the library from `build()` unless another process already has; True if
        this call created it."""
        with self._lock:
            db = self.connection
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if db.execute("SELECT 1 FROM library").fetchone() is not None:
                    db.execute("COMMIT")
                    return False
                state, cartridges = build()
                db.execute(
                    "INSERT INTO library VALUES (0, ?, ?, ?)", (_dump(state), 0, state.horizon)
                )
                db.executemany(
                    "INSERT INTO slots VALUES (?, ?)", [(s.number, _dump(s)) for s in state.slots]
                )
                db.executemany(
                    "INSERT INTO drives VALUES (?, ?, ?)",
                    [(d.index, _dump(d), _hot_of(d)) for d in state.drives],
                )
                db.executemany(
                    "INSERT INTO cartridges VALUES (?, ?, ?)",
                    [(c.key, _dump(c), _hot_of(c)) for c in cartridges],
                )
                db.execute("COMMIT")
                return True
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # --- transactions ------------------------------------------------------------------------

    def _read(self) -> SimState:
        """The library's rows, from this process's copy unless another connection wrote."""
        db = self.connection
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if self._state is None or version != self._version:
            body, ops, horizon = db.execute("SELECT body, ops, horizon FROM library").fetchone()
            state = _load(SimState, body)
            state.slots = tuple(
                _load(SimSlot, b) for (b,) in db.execute("SELECT body FROM slots ORDER BY number")
            )
            state.drives = tuple(
                _load(SimDrive, body, hot)
                for body, hot in db.execute("SELECT body, hot FROM drives ORDER BY idx")
            )
            object.__setattr__(state, "ops", ops)
            object.__setattr__(state, "horizon", horizon)
            clean(state)
            self._state = state
            self._cartridges = Cartridges(self)
            self._version = version
        state = self._state
        object.__setattr__(state, "cartridges", self._cartridges)
        self._cartridges.touched = {}
        return state

    def _write(self, state: SimState) -> None:
        db = self.connection
        if changed(state):
            db.execute(
                "UPDATE library SET body = ?, ops = ?, horizon = ?",
                (_dump(state), state.ops, state.horizon),
            )
            clean(state)
        else:
            db.execute("UPDATE library SET ops = ?, horizon = ?", (state.ops, state.horizon))
        for slot in state.slots:
            if slot.changed:
                db.execute("UPDATE slots SET body = ? WHERE number = ?", (_dump(slot), slot.number))
                clean(slot)
        for drive in state.drives:
            if changed(drive):
                db.execute(
                    "UPDATE drives SET body = ?, hot = ? WHERE idx = ?",
                    (_dump(drive), _hot_of(drive), drive.index),
                )
                clean(drive)
            elif drive.hot_changed:
                db.execute("UPDATE drives SET hot = ? WHERE idx = ?", (_hot_of(drive), drive.index))
                clean(drive)
        for key, cartridge in self._cartridges.touched.items():
            if changed(cartridge):
                db.execute(
                    "INSERT OR REPLACE INTO cartridges VALUES (?, ?, ?)",
                    (key, _dump(cartridge), _hot_of(cartridge)),
                )
            elif hot_changed(cartridge):
                db.execute("UPDATE cartridges SET hot = ? WHERE key = ?", (_hot_of(cartridge), key))
            clean(cartridge)

    def _forget(self) -> None:
        self._state = None
        self._version = None

    @contextlib.contextmanager
    def transaction(self, caller: Caller, *, count: bool = False) -> Iterator[Step]:
        """The library's rows for one caller, written back at the end (also when the step
        raised a tape error: a consumed fault or a volume dropped to read-only stays so)."""
        outer: Step | None = getattr(self._local, "step", None)
        if outer is not None:  # a nested call from within a step: part of its transaction
            step = outer if outer.caller is caller else Step(self, outer.state, caller)
            if count:
                object.__setattr__(step.state, "ops", step.state.ops + 1)
                if self._on_step is not None:
                    self._on_step(step)
            yield step
            return
        with self._lock:
            db = self.connection
            db.execute("BEGIN IMMEDIATE")
            try:
                state = self._read()
            except BaseException:
                db.execute("ROLLBACK")
                self._forget()
                raise
            step = Step(engine=self, state=state, caller=caller)
            self._local.step = step
            try:
                if count:
                    object.__setattr__(state, "ops", state.ops + 1)
                    if self._on_step is not None:
                        self._on_step(step)
                yield step
            except TapeError:
                self._commit(step)
                raise
            except BaseException:
                db.execute("ROLLBACK")
                self._forget()
                raise
            else:
                self._commit(step)
            finally:
                self._local.step = None

    def _commit(self, step: Step) -> None:
        state = step.state
        object.__setattr__(state, "horizon", max(state.horizon, step.caller.now))
        try:
            self._write(state)
            self.connection.execute("COMMIT")
        except BaseException:
            self.connection.execute("ROLLBACK")
            self._forget()
            raise

    def step(self, caller: Caller, _name: str) -> contextlib.AbstractContextManager[Step]:
        """A port operation: a transaction that counts as a step for fault schedules."""
        return self.transaction(caller, count=True)

    def horizon(self) -> float:
        """The latest time any caller of the library has reached."""
        with self._lock:
            (horizon,) = self.connection.execute("SELECT horizon FROM library").fetchone()
            return horizon

    # --- rows outside the library row ----------------------------------------------------

    def file(self, volume: str, path: str) -> SimFile | None:
        row = self.connection.execute(
            "SELECT path, size, fileuid, generation, extents, blob, seed FROM files "
            "WHERE volume = ? AND path = ?",
            (volume, path),
        ).fetchone()
        return None if row is None else _file(row)

    def record(
        self,
        resource: str,
        operation: str,
        caller: str,
        cartridge: str | None,
        start: float,
        end: float,
        nbytes: int = 0,
        locates: int = 0,
        backhitches: int = 0,
    ) -> int:
        cursor = self.connection.execute(
            'INSERT INTO timeline (resource, operation, caller, cartridge, start, "end", '
            "bytes, locates, backhitches) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (resource, operation, caller, cartridge, start, end, nbytes, locates, backhitches),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def stretch(self, entry: int, end: float, backhitches: int) -> None:
        """A read whose reader drained it slower than the drive could stream: it took longer."""
        self.connection.execute(
            'UPDATE timeline SET "end" = ?, backhitches = ? WHERE id = ?',
            (end, backhitches, entry),
        )

    def timeline(self, resource: str | None = None) -> tuple[TimelineEntry, ...]:
        with self._lock:
            query = (
                'SELECT resource, operation, caller, cartridge, start, "end", bytes, locates, '
                "backhitches FROM timeline"
            )
            args: tuple = ()
            if resource is not None:
                query += " WHERE resource = ?"
                args = (resource,)
            rows = self.connection.execute(query + " ORDER BY start, id", args).fetchall()
        return tuple(
            TimelineEntry(
                resource=r[0],
                operation=r[1],
                caller=r[2],
                cartridge=r[3],
                start=r[4],
                end=r[5],
                bytes=r[6],
                locates=r[7],
                backhitches=r[8],
            )
            for r in rows
        )
