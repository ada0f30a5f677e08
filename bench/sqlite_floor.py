"""What SQLite itself costs to add and remove a batch of copy rows, with no archive-core around.

The floor under bench/core.py's SQLite rows: the catalog's own `archive_core_copies` table
(made by SQLAlchemy from the core's schema, so it follows the code), the core's connection
settings (WAL, synchronous=NORMAL) and its group commit (`FLUSH_EVERY` rows a transaction),
driven by bare `sqlite3.executemany`. A batch of copy rows is inserted and then deleted by
(target, locator), on a table already holding 0 and 1,000,000 rows whose names interleave with
the batch's (as bench/core.py fills its catalogs). Beside the catalog's indexes it runs the
same with schema 0003's extra index on external_id, and with no index at all (a plain row
store's floor), so what grows with the table shows by index:

    .venv/bin/python bench/sqlite_floor.py [--sizes 0,1000000] [--files 10000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import _written, table  # bench/core.py: its table and its /proc/self/io reading

TARGET, POLICY = "bench-target", "VX-P"
LAYOUTS = {
    "catalog (0004)": "the core's schema as it is: unique (target, locator), (target, name)",
    "+ external_id index (0003)": "the same with the index schema 0004 dropped",
    "no index": "rows only, deleted by id: the floor of any row store",
}


def _row(n: int, tag: str) -> tuple:
    # Names start with a hash, so a batch's names fall between the table's in every index.
    name = f"{hashlib.md5(str(n).encode()).hexdigest()[:10]}_{tag}{n}.mxf"
    locator = f"2026/12/{name}"
    return (
        POLICY,
        TARGET,
        f"filesys://{TARGET}/{locator}",
        locator,
        name,
        f"VX-{tag}{n}",
        hashlib.sha1(name.encode()).hexdigest(),
        hashlib.sha256(name.encode()).hexdigest(),
        1024,
        "2026-12-02 12:00:00.000000",
    )


COLUMNS = "policy, target, external_id, locator, name, item_id, sha1, sha256, size, created"
INSERT = f"INSERT INTO archive_core_copies ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
DELETE = "DELETE FROM archive_core_copies WHERE target = ? AND locator = ?"


def make(path: Path, layout: str) -> None:
    import sqlalchemy as sa

    from archive_core.catalog import _schema

    metadata = sa.MetaData()
    copies = _schema(sa).copies.to_metadata(metadata)
    if layout == "no index":
        copies.indexes.clear()
        copies.constraints = {
            c for c in copies.constraints if isinstance(c, sa.PrimaryKeyConstraint)
        }
    elif layout.startswith("+ external_id"):
        sa.Index("ix_archive_core_copies_external_id", copies.c.external_id)
    engine = sa.create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")  # as archive_core.catalog sets every connection
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def fill(conn: sqlite3.Connection, count: int) -> None:
    for start in range(0, count, 50_000):
        conn.execute("BEGIN")
        conn.executemany(INSERT, (_row(n, "f") for n in range(start, min(count, start + 50_000))))
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def batch(
    conn: sqlite3.Connection, files: int, group: int, tag: str, *, indexed: bool
) -> dict[str, float]:
    """Insert `files` rows, `group` a transaction, then delete them alike; seconds and bytes."""
    rows = [_row(n, tag) for n in range(files)]
    out = {}
    steps = [("insert", INSERT, rows), ("delete", DELETE, [(r[1], r[3]) for r in rows])]
    if not indexed:  # each delete would scan the whole table: take the batch's rows by id
        first = conn.execute("SELECT coalesce(max(id), 0) FROM archive_core_copies").fetchone()[0]
        steps[1] = (
            "delete",
            "DELETE FROM archive_core_copies WHERE id = ?",
            [(first + n + 1,) for n in range(files)],
        )
    for what, statement, values in steps:
        os.sync()
        written, cpu, wall = _written(), time.process_time(), time.perf_counter()
        for start in range(0, files, group):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(statement, values[start : start + group])
            conn.execute("COMMIT")
        out[what] = time.perf_counter() - wall
        out[f"{what} cpu"] = time.process_time() - cpu
        out[f"{what} written"] = _written() - written
    return out


def main() -> None:
    from archive_core.jobs.journal import FLUSH_EVERY

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1000000")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"SQLite {sqlite3.sqlite_version}; {args.files:,} copy rows a batch, {FLUSH_EVERY} a "
        f"transaction; best of {args.repeats}"
    )
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="archive-core-floor-", dir=Path.cwd()) as work:
        for layout in LAYOUTS:
            for size in sizes:
                path = Path(work) / f"{len(results)}.sqlite3"
                make(path, layout)
                conn = connect(path)
                fill(conn, size)
                results[(layout, size)] = [
                    batch(conn, args.files, FLUSH_EVERY, f"b{run}_", indexed=layout != "no index")
                    for run in range(args.repeats)
                ]
                conn.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
    us = 1e6 / args.files
    small, big = min(sizes), max(sizes)
    header = ("indexes", "rows before", "insert us/row", "cpu", "KiB/row", "delete us/row", "cpu")
    lines = [header]
    for (layout, size), runs in results.items():

        def best(field: str, runs=runs) -> float:
            return min(r[field] for r in runs)

        lines.append(
            (
                layout,
                f"{size:,}",
                f"{best('insert') * us:.1f}",
                f"{best('insert cpu') * us:.1f}",
                f"{statistics.median(r['insert written'] for r in runs) / args.files / 1024:.1f}",
                f"{best('delete') * us:.1f}",
                f"{best('delete cpu') * us:.1f}",
            )
        )
    print(table(lines))
    if big != small:
        print(
            f"\nbest at {big:,} rows over best at {small:,} "
            "(bench/core.py's goal for the whole core: 1.2)"
        )
        for layout, why in LAYOUTS.items():
            ratios = [
                min(r[what] for r in results[(layout, big)])
                / min(r[what] for r in results[(layout, small)])
                for what in ("insert", "delete")
            ]
            print(f"  {layout}: insert {ratios[0]:.2f}, delete {ratios[1]:.2f}  ({why})")


if __name__ == "__main__":
    main()
