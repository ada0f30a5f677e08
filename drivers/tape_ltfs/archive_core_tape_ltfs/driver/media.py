"""The media store: what the driver knows of each cartridge and of the files on its volume.

A small SQLite database in the target's state directory, shared by the workers of one host
(the library is attached to that host). It records each cartridge the driver formatted or
took back (pool, state, volume serial and UUID, index generation, free space, WORM) and a mirror
of each volume's index as far as this driver wrote it (path, size, position, generation of
the sync that made it durable). It is **not** the catalog of copies: which Portal item owns
which copy is the core's catalog; this store only says what is on which tape, so that
cartridges are chosen without loading them and `stat()` answers without reading bytes.

Deleting a copy only *forgets* it here (`forgotten`): LTFS frees no space when a file is
removed, so the bytes stay on tape until the cartridge is reformatted.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import attrs

from archive_core_tape_ltfs.health import MediaFailure

DATABASE = "media.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cartridges (
    barcode TEXT PRIMARY KEY,
    pool TEXT NOT NULL,
    state TEXT NOT NULL,
    volume_serial TEXT NOT NULL,
    volume_uuid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    free_bytes INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL,
    files INTEGER NOT NULL,
    worm INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS files (
    barcode TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    partition TEXT,
    block INTEGER,
    generation INTEGER NOT NULL,
    sha1 TEXT NOT NULL,
    forgotten INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (barcode, path)
);
CREATE INDEX IF NOT EXISTS files_by_path ON files (path);
-- Read and write errors, which drive with which cartridge: what tells a failing drive from a
-- failing cartridge (see `health`).
CREATE TABLE IF NOT EXISTS media_failures (
    drive INTEGER NOT NULL,
    barcode TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL
);
"""


class CartridgeState(enum.Enum):
    """Where a recorded cartridge is in its life: appendable -> full, or read-only / damaged
    when LTFS or the driver stopped trusting it for writes, and retired by an operator (worn
    out, migrated): never written again, whatever happens to it. A scratch cartridge is one of
    a pool's scratch range the store has no row for yet: formatting it records it appendable.
    Every state is still read from."""

    APPENDABLE = "appendable"
    FULL = "full"  # marked after a clean unmount once early warning was met
    READ_ONLY = "read-only"  # LTFS dropped it to read-only (write error, write-protect tab)
    DAMAGED = "damaged"  # it did not unmount cleanly, or its state could not be read
    RETIRED = "retired"  # taken out of service by an operator (`archive-core tape retire`)


@attrs.frozen(kw_only=True)
class Cartridge:
    barcode: str
    pool: str
    state: CartridgeState
    volume_serial: str
    volume_uuid: str
    generation: int
    free_bytes: int
    total_bytes: int
    files: int
    worm: bool
    reason: str = ""  # why it is read-only or damaged, for admins


@attrs.frozen(kw_only=True)
class VolumeFile:
    """A file this driver wrote to a volume and saw synced (in index `generation`)."""

    barcode: str
    path: str
    size: int
    partition: str | None
    block: int | None
    generation: int
    sha1: str
    forgotten: bool = False


class MediaStore:
    """The cartridges and volume files of one target; opened on first use (no I/O before)."""

    def __init__(self, state_dir: Path) -> None:
        self._path = Path(state_dir) / DATABASE
        self._ready = False

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, timeout=30.0, isolation_level=None)
        try:
            if not self._ready:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                self._ready = True
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # --- media errors ----------------------------------------------------------------------

    def record_failure(self, failure: MediaFailure) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO media_failures VALUES (?, ?, ?, ?)",
                (failure.drive, failure.barcode, failure.at, failure.kind),
            )

    def failures(self, *, since: float) -> list[MediaFailure]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM media_failures WHERE at >= ?", (since,)).fetchall()
        return [_failure(row) for row in rows]

    # --- cartridges ------------------------------------------------------------------------

    def cartridge(self, barcode: str) -> Cartridge | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM cartridges WHERE barcode = ?", (barcode,)).fetchone()
        return _cartridge(row) if row else None

    def all_cartridges(self) -> list[Cartridge]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM cartridges ORDER BY barcode").fetchall()
        return [_cartridge(r) for r in rows]

    def cartridges(self, pool: str) -> list[Cartridge]:
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM cartridges WHERE pool = ? ORDER BY barcode", (pool,)
            ).fetchall()
        return [_cartridge(r) for r in rows]

    def save(self, cartridge: Cartridge) -> None:
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO cartridges VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    cartridge.barcode,
                    cartridge.pool,
                    cartridge.state.value,
                    cartridge.volume_serial,
                    cartridge.volume_uuid,
                    cartridge.generation,
                    cartridge.free_bytes,
                    cartridge.total_bytes,
                    cartridge.files,
                    int(cartridge.worm),
                    cartridge.reason,
                ),
            )

    def mark(self, barcode: str, state: CartridgeState, reason: str = "") -> None:
        with self._db() as db:
            db.execute(
                "UPDATE cartridges SET state = ?, reason = ? WHERE barcode = ?",
                (state.value, reason, barcode),
            )

    def update_usage(
        self, barcode: str, *, generation: int, free_bytes: int, total_bytes: int, files: int
    ) -> None:
        """What the volume said after a sync: its index generation, space and file count."""
        with self._db() as db:
            db.execute(
                "UPDATE cartridges SET generation = ?, free_bytes = ?, total_bytes = ?, "
                "files = ? WHERE barcode = ?",
                (generation, free_bytes, total_bytes, files, barcode),
            )

    # --- files -----------------------------------------------------------------------------

    def record(self, files: list[VolumeFile]) -> None:
        """Files made durable by a sync (replacing a forgotten entry of the same path)."""
        with self._db() as db:
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,0)",
                [
                    (f.barcode, f.path, f.size, f.partition, f.block, f.generation, f.sha1)
                    for f in files
                ],
            )

    def file(self, barcode: str, path: str) -> VolumeFile | None:
        """The file at `path` on the cartridge, forgotten or not."""
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM files WHERE barcode = ? AND path = ?", (barcode, path)
            ).fetchone()
        return _file(row) if row else None

    def files_on(self, barcode: str) -> list[VolumeFile]:
        """Every file this driver wrote to the cartridge and saw synced (forgotten ones too:
        their bytes stay on tape), without the markers `forget` leaves for files it never
        saw."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM files WHERE barcode = ? AND NOT (forgotten = 1 AND generation = 0 "
                "AND sha1 = '') ORDER BY path",
                (barcode,),
            ).fetchall()
        return [_file(r) for r in rows]

    def copies_of(self, path: str) -> list[VolumeFile]:
        """Every cartridge's file at `path` that is not forgotten."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM files WHERE path = ? AND forgotten = 0 ORDER BY barcode", (path,)
            ).fetchall()
        return [_file(r) for r in rows]

    def forget(self, barcode: str, path: str) -> bool:
        """Forget the file (its bytes stay on tape); whether it was known and not forgotten
        yet. A file the store never saw is remembered as forgotten too, so that a copy
        another site wrote is not restored after this one deleted it."""
        with self._db() as db:
            changed = db.execute(
                "UPDATE files SET forgotten = 1 WHERE barcode = ? AND path = ? AND forgotten = 0",
                (barcode, path),
            ).rowcount
            db.execute(
                "INSERT OR IGNORE INTO files VALUES (?, ?, 0, NULL, NULL, 0, '', 1)",
                (barcode, path),
            )
        return bool(changed)

    def drop(self, barcode: str, path: str) -> None:
        """The file was removed from the volume's index."""
        with self._db() as db:
            db.execute("DELETE FROM files WHERE barcode = ? AND path = ?", (barcode, path))


def _failure(row: tuple) -> MediaFailure:
    return MediaFailure(drive=row[0], barcode=row[1], at=row[2], kind=row[3])


def _cartridge(row: tuple) -> Cartridge:
    return Cartridge(
        barcode=row[0],
        pool=row[1],
        state=CartridgeState(row[2]),
        volume_serial=row[3],
        volume_uuid=row[4],
        generation=row[5],
        free_bytes=row[6],
        total_bytes=row[7],
        files=row[8],
        worm=bool(row[9]),
        reason=row[10],
    )


def _file(row: tuple) -> VolumeFile:
    return VolumeFile(
        barcode=row[0],
        path=row[1],
        size=row[2],
        partition=row[3],
        block=row[4],
        generation=row[5],
        sha1=row[6],
        forgotten=bool(row[7]),
    )
