"""Per-file cost of archive-core's core, an older commit beside the code at hand (issue 10).

Run `python bench/core.py [--quick]` from the repository (in its virtualenv). It archives,
restores, verifies and deletes 10,000 small files through Portal's face
(`ArchiveCorePlugin(config).archive(...)` and its siblings) to a target of the in-memory
reference driver, so that nearly all the time is the core's: the catalog journal, the copy
rows, the FileSets. It does so on SQLite and on a PostgreSQL server it starts itself, with a
catalog that is empty and one that already holds 1,000,000 copies, for the commit before
issue 10's first change (0519e9a, checked out in a temporary worktree) and for the checkout
this script belongs to. Each (code, backend, catalog size) runs in a process of its own that
imports only its checkout's archive_core; the runs are interleaved. Printed per operation:
microseconds per file (wall and the calling process's CPU), SQL statements per batch, the
ratio new/old and the ratio between the catalog sizes. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, namedtuple
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from filesys import settle, workspace  # noqa: E402 - bench/filesys.py (imports no archive_core)

#: The commit before issue 10's first change (1220a0b): the baseline of its goals.
OLD_DEFAULT = "0519e9a"
POLICY = "4b0c1a1e-0000-4000-8000-000000000010"
TARGET = "vault"
FILE_SIZE = 1024
OPERATIONS = ("archive", "restore", "verify", "delete")
#: Issue 10: at most 25% of the old per-file cost; at most 1.2x between catalog sizes.
GOAL_RATIO = 0.25
GOAL_SIZES = 1.2
#: A distribution that registers the reference in-memory driver as an ordinary driver entry
#: point, put on the cells' path: the site finds it as it finds any installed driver.
DIST_NAME = "archive_core_bench_memory"
ENTRY_POINT = "memory = archive_core.testing.memory:MemoryDriver"

#: What Portal hands the plugin (its fields as Portal names them).
FileSet = namedtuple(
    "FileSet", ["files", "external_ids", "item_id", "sha1", "shape_id", "component_id"]
)


# === the cell: one code version, one backend, one catalog size, in a process of its own ========
#
# Everything below up to "the bench" runs in the child, with only that checkout's archive_core
# importable. It uses the public surfaces: ArchiveCorePlugin, the site config file, the
# in-memory driver and plain SQL against the copies table (read by reflection).


class StatementCount:
    """SQL the process sends, counted on every SQLAlchemy engine from outside the core."""

    def __init__(self) -> None:
        import sqlalchemy as sa

        self.reset()
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._statement)
        sa.event.listen(sa.engine.Engine, "begin", self._begin)
        sa.event.listen(sa.pool.Pool, "checkout", self._checkout)

    def reset(self) -> None:
        self.statements = 0
        self.executemany = 0
        self.rows = 0
        self.transactions = 0
        self.checkouts = 0
        self.kinds: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "executemany": self.executemany,
            "rows": self.rows,
            "transactions": self.transactions,
            "checkouts": self.checkouts,
            "kinds": dict(self.kinds),
        }

    def _statement(self, _conn, _cursor, statement, parameters, _context, executemany) -> None:
        self.statements += 1
        kind = (statement.lstrip().split(None, 1) or ["?"])[0].upper()
        if executemany:
            self.executemany += 1
            self.rows += len(parameters)
            kind += " (many)"
        self.kinds[kind] += 1

    def _begin(self, _conn) -> None:
        self.transactions += 1

    def _checkout(self, _dbapi, _record, _proxy) -> None:
        self.checkouts += 1


def _timed(count: StatementCount | None, call) -> tuple[Any, dict[str, Any]]:
    """`call()` with its wall time, this process's CPU time and the SQL it sent."""
    gc.collect()  # what earlier runs left is collected before the timer, not inside it
    if count is not None:
        count.reset()
    written, busy = _written(), _machine_busy()
    cpu, start = time.process_time(), time.perf_counter()
    result = call()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    sample: dict[str, Any] = {
        "wall": wall,
        "cpu": cpu,
        "machine": _machine_busy() - busy,
        "written": _written() - written,
    }
    if count is not None:
        sample.update(count.snapshot())
    return result, sample


def _machine_busy() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _written() -> int:
    """Bytes this process has caused to be written to storage (/proc/self/io)."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _load(manifest: str) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in json.loads(Path(manifest).read_text())]


class CoreCell:
    """A long-lived plugin on one catalog, as a Portal worker holds it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.work = Path(spec["workdir"])
        self.sources = _load(spec["sources"])
        self.warm_sources = _load(spec["warm"])

    def setup(self) -> dict[str, Any]:
        import archive_core
        from archive_core.portal import ArchiveCorePlugin
        from archive_core.testing.memory import create_bucket

        self.count = StatementCount()
        bucket = create_bucket(f"bench-{os.getpid()}")
        config = self.work / "archive-core.toml"
        config.write_text(
            f"""state_dir = "{self.work / "state"}"
[catalog]
url = "{self.spec["url"]}"
[targets.{TARGET}]
driver = "memory"
settings = {{ bucket = "{bucket}" }}
[policies.{POLICY}]
name = "Bench"
targets = ["{TARGET}"]
"""
        )
        self.plugin = ArchiveCorePlugin(config)
        # The first archive makes the catalog's schema: this code version's own.
        first, *rest = self._sets(self.warm_sources, "w")
        archived = self._archive([first], "bench-schema")
        started = time.perf_counter()
        filled = fill_catalog(self.spec["url"], self.spec["size"], len(self.sources))
        fill_seconds = time.perf_counter() - started
        # A long-lived worker has run every operation before: imports, caches, the driver
        # instance and the catalog's connections are paid for here, untimed.
        batch = archived + self._archive(rest, "bench-warm")
        self._check_restored(self._restore(self._restore_sets(batch, self.work / "restore-warm")))
        self._verify(batch, "bench-warm")
        self._delete(batch)
        return {
            "archive_core": archive_core.__file__,
            "copies": copies_in(self.spec["url"]),
            "fill_seconds": fill_seconds,
            "filled": filled,
        }

    def run(self, tag: str) -> dict[str, Any]:
        """One batch through archive, restore, verify and delete; only the calls are timed."""
        file_sets = self._sets(self.sources, tag)
        archived, archive = _timed(self.count, lambda: self._archive(file_sets, f"bench-{tag}"))
        wanted = self._restore_sets(archived, self.work / f"restore-{tag}")
        _, restore = _timed(self.count, lambda: self._restore(wanted))
        self._check_restored(wanted)
        _, verify = _timed(self.count, lambda: self._verify(archived, f"bench-{tag}"))
        _, delete = _timed(self.count, lambda: self._delete(archived))
        return {"archive": archive, "restore": restore, "verify": verify, "delete": delete}

    def _sets(self, sources: list[tuple[str, str]], tag: str) -> list[FileSet]:
        return [
            FileSet([path], [], f"VX-{tag}-{n}", sha1, f"VX-S{n}", f"VX-C{n}")
            for n, (path, sha1) in enumerate(sources)
        ]

    def _restore_sets(self, archived: list[FileSet], destination: Path) -> list[FileSet]:
        """The archived FileSets with a fresh destination each, as Portal asks for them."""
        destination.mkdir()
        return [fs._replace(files=[str(destination / Path(fs.files[0]).name)]) for fs in archived]

    def _archive(self, file_sets: list[FileSet], job_id: str) -> list[FileSet]:
        archived, not_archived, error, _ = self.plugin.archive(file_sets, POLICY, job_id)
        if error or not_archived or len(archived) != len(file_sets):
            raise RuntimeError(f"archive: {len(not_archived)} not archived: {error}")
        return archived

    def _restore(self, wanted: list[FileSet]) -> list[FileSet]:
        # Portal gives restore no job id. It raises when a file failed.
        restored = self.plugin.restore(wanted, POLICY)
        if len(restored) != len(wanted):
            raise RuntimeError(f"restore returned {len(restored)} of {len(wanted)} FileSets")
        return wanted

    def _check_restored(self, wanted: list[FileSet]) -> None:
        for fs in wanted:
            if os.stat(fs.files[0]).st_size != FILE_SIZE:
                raise RuntimeError(f"restore: {fs.files[0]} has the wrong size")

    def _verify(self, archived: list[FileSet], job_id: str) -> None:
        verified, failed, error = self.plugin.verify(archived, POLICY, job_id)
        if error or failed or len(verified) != len(archived):
            raise RuntimeError(f"verify: {len(failed)} failed: {error}")

    def _delete(self, archived: list[FileSet]) -> None:
        deleted = self.plugin.delete(archived, POLICY)
        if len(deleted) != len(archived):
            raise RuntimeError(f"delete: {len(archived) - len(deleted)} copies left")


class DriverCell:
    """The in-memory driver called directly with the requests the core would make: no core."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.work = Path(spec["workdir"])
        self.sources = _load(spec["sources"])
        self.warm_sources = _load(spec["warm"])

    def setup(self) -> dict[str, Any]:
        import archive_core
        from archive_core.driver import DriverContext
        from archive_core.testing.memory import MemoryConfig, MemoryDriver, create_bucket

        bucket = create_bucket(f"bench-driver-{os.getpid()}")
        self.driver = MemoryDriver(
            MemoryConfig(bucket=bucket), DriverContext(target=TARGET, state_dir=self.work)
        )
        self._cycle(self.warm_sources, "w", self.work / "restore-warm")
        return {"archive_core": archive_core.__file__, "copies": None, "fill_seconds": 0.0}

    def run(self, tag: str) -> dict[str, Any]:
        return self._cycle(self.sources, tag, self.work / f"restore-{tag}")

    def _cycle(self, sources: list[tuple[str, str]], tag: str, destination: Path):
        from archive_core.model import (
            ArchiveItem,
            ArchiveRequest,
            CopyRef,
            DeleteRequest,
            RestoreItem,
            RestoreRequest,
            VerifyRequest,
        )

        def progress(_count: int) -> None:  # the core hands drivers one; it must be cheap
            pass

        fields = {"policy": POLICY, "target": TARGET, "job_id": f"bench-{tag}"}
        names = [
            f"{Path(path).stem}_VX-{tag}-{n}_{sha1}{Path(path).suffix}"
            for n, (path, sha1) in enumerate(sources)
        ]
        destination.mkdir()
        archive = ArchiveRequest(
            **fields,
            items=[
                ArchiveItem(key=str(n), sources=[path], name=name, item_id=f"VX-{n}", sha1=sha1)
                for n, ((path, sha1), name) in enumerate(zip(sources, names, strict=True))
            ],
            progress=progress,
        )
        restore = RestoreRequest(
            **fields,
            items=[
                RestoreItem(
                    key=str(n),
                    locator=name,
                    destination=str(destination / Path(path).name),
                    sha1=sha1,
                )
                for n, ((path, sha1), name) in enumerate(zip(sources, names, strict=True))
            ],
            progress=progress,
        )
        refs = [
            CopyRef(key=str(n), locator=name, sha1=sha1)
            for n, ((_, sha1), name) in enumerate(zip(sources, names, strict=True))
        ]
        verify = VerifyRequest(**fields, items=refs, progress=progress)
        delete = DeleteRequest(**fields, items=refs)
        samples = {}
        for operation, call in (
            ("archive", lambda: list(self.driver.archive(archive))),
            ("restore", lambda: list(self.driver.restore(restore))),
            ("verify", lambda: list(self.driver.verify(verify))),
            ("delete", lambda: list(self.driver.delete(delete))),
        ):
            outcomes, samples[operation] = _timed(None, call)
            failed = [o for o in outcomes if not o.ok]
            if failed or len(outcomes) != len(sources):
                raise RuntimeError(f"driver {operation}: {failed[:1]}")
        return samples


def copies_in(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT count(*) FROM archive_core_copies").scalar_one()
    finally:
        engine.dispose()


def fill_catalog(url: str, count: int, spread: int) -> dict[str, Any]:
    """Add `count` copies of the bench's policy and target to the catalog, by plain SQL.

    The columns are read from the database (the schema this code version made). Each row is
    the one copy already there (the schema's first archive) with a new item id, sha1 and
    sha256 and the file stem of one of the batch's `spread` files, so the new names fall
    between the timed batch's in the (target, name) index instead of after them. Any other
    column is copied from that row as it is.
    """
    import datetime as dt

    import sqlalchemy as sa

    if count <= 0:
        return {"rows": 0}
    engine = sa.create_engine(url)
    try:
        copies = sa.Table("archive_core_copies", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            found = conn.execute(sa.select(copies)).mappings().all()
        if len(found) != 1:
            raise RuntimeError(f"expected the one warm-up copy to copy from, found {len(found)}")
        template = dict(found[0])
        item, sha1 = template["item_id"], template["sha1"]
        stem = Path(template["name"]).name.split("_", 1)[0]  # "clip00000"
        width = len(stem) - len("clip")
        columns = [c.name for c in copies.columns if not (c.primary_key and c.autoincrement)]
        fixed = {"size": FILE_SIZE, "created": dt.datetime.now(dt.UTC), "last_verified": None}
        row_of_template = [fixed.get(c, template[c]) for c in columns]
        # (column index, the new value's name or a pattern of the strings that name the copy)
        slots: list[tuple[int, str | None, str | None]] = []
        for i, c in enumerate(columns):
            value = template[c]
            if c in ("item_id", "sha1", "sha256"):
                slots.append((i, c, None))
            elif isinstance(value, str) and item in value:
                pattern = value.replace("{", "{{").replace("}", "}}")
                pattern = pattern.replace(sha1, "{sha1}").replace(item, "{item_id}")
                slots.append((i, None, pattern.replace(stem, "{stem}")))

        def rows_from(start: int, stop: int):
            rng = random.Random(start)  # the same catalog every run
            for n in range(start, stop):
                new = {
                    "item_id": f"VX-f{n}",
                    "sha1": rng.randbytes(20).hex(),
                    "sha256": rng.randbytes(32).hex(),
                    "stem": f"clip{rng.randrange(spread):0{width}d}",
                }
                row = row_of_template.copy()
                for i, name, pattern in slots:
                    row[i] = new[name] if pattern is None else pattern.format_map(new)
                yield row

        chunk = 50_000
        quote = engine.dialect.identifier_preparer.quote
        names = ", ".join(map(quote, columns))
        raw = engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            if engine.dialect.name == "postgresql":
                command = f"COPY archive_core_copies ({names}) FROM STDIN"
                # Every value as COPY text once; the new ones are hex digits and plain names.
                row_of_template[:] = map(_copy_text, row_of_template)
                slots[:] = [(i, n, p if p is None else _copy_text(p)) for i, n, p in slots]
                with dbapi.cursor() as cursor:
                    for start in range(0, count, chunk):
                        with cursor.copy(command) as copy:
                            # in pieces, so the server works while the next one is made
                            for piece in range(start, min(count, start + chunk), 5_000):
                                lines = [
                                    "\t".join(row) + "\n"
                                    for row in rows_from(piece, min(count, piece + 5_000))
                                ]
                                copy.write("".join(lines).encode())
                        dbapi.commit()
                dbapi.autocommit = True
                dbapi.execute("VACUUM ANALYZE archive_core_copies")  # what autovacuum would do
                dbapi.autocommit = False
            else:
                # SQLite stores what SQLAlchemy's bind processors make of a value (datetimes
                # as text); the core's rows and these must read back alike.
                processors = [copies.c[c].type.bind_processor(engine.dialect) for c in columns]
                row_of_template[:] = [
                    value if proc is None or value is None else proc(value)
                    for value, proc in zip(row_of_template, processors, strict=True)
                ]
                if any(processors[i] is not None for i, _, _ in slots):
                    raise RuntimeError("a column the fill varies needs a bind processor")
                insert = (
                    f"INSERT INTO archive_core_copies ({names}) "
                    f"VALUES ({', '.join('?' * len(columns))})"
                )
                dbapi.isolation_level = None  # BEGIN and COMMIT as written here
                cursor = dbapi.cursor()
                cursor.execute("PRAGMA cache_size=-1000000")  # 1 GB, this connection only
                for start in range(0, count, chunk):
                    cursor.execute("BEGIN")
                    cursor.executemany(insert, rows_from(start, min(count, start + chunk)))
                    cursor.execute("COMMIT")
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                cursor.close()
        finally:
            raw.close()
        return {"rows": count, "columns": columns}
    finally:
        engine.dispose()


def _copy_text(value: Any) -> str:
    """A value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if any(c in text for c in "\\\t\n\r"):
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def cell_main(fd: int) -> None:
    """Serve the bench's commands on the connection `fd` until it says quit."""
    conn = Connection(fd)
    cell: CoreCell | DriverCell | None = None
    while True:
        message = conn.recv()
        try:
            if message["command"] == "quit":
                conn.send({"ok": True})
                return
            if message["command"] == "setup":
                spec = message["spec"]
                cell = CoreCell(spec) if spec["kind"] == "core" else DriverCell(spec)
                reply = cell.setup()
            else:
                assert cell is not None
                reply = cell.run(message["tag"])
            conn.send({"ok": True, **reply})
        except BaseException as exc:
            conn.send({"ok": False, "error": f"{exc!r}\n{traceback.format_exc()}"})
            if not isinstance(exc, Exception):
                raise


# === the bench: the cells, the data, the table ===================================================


class Cell:
    """One child process: `kind` (core or driver) of one checkout on one catalog."""

    def __init__(self, spec: dict[str, Any], checkout: Path, dist: Path) -> None:
        self.spec = spec
        self.checkout = checkout
        self.label = spec["label"]
        work = Path(spec["workdir"])
        work.mkdir(parents=True)
        self.log = work / "cell.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_CORE_", "PG"))}
        env["PYTHONPATH"] = os.pathsep.join([str(checkout), str(dist)])
        ours, theirs = Pipe()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--cell", str(theirs.fileno())],
                env=env,
                cwd=work,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=[theirs.fileno()],
            )
        theirs.close()
        self.conn = ours

    def send(self, command: str, **fields: Any) -> None:
        self.conn.send({"command": command, **fields})

    def receive(self) -> dict[str, Any]:
        while not self.conn.poll(1.0):
            if self.process.poll() is not None:
                raise SystemExit(
                    f"cell {self.label} exited {self.process.returncode}:\n{self.tail()}"
                )
        try:
            reply = self.conn.recv()
        except EOFError:
            raise SystemExit(f"cell {self.label} went away:\n{self.tail()}") from None
        if not reply["ok"]:
            raise SystemExit(f"cell {self.label} failed: {reply['error']}\n{self.tail()}")
        return reply

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError, EOFError):
                self.send("quit")
                if self.conn.poll(10):
                    self.conn.recv()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.conn.close()


def _beside(sample: dict[str, Any]) -> float:
    """Cores the rest of the machine kept busy during a sample (PostgreSQL's server too)."""
    return max(0.0, sample["machine"] - sample["cpu"]) / sample["wall"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def describe(checkout: Path) -> str:
    """The checkout's commit (abbreviated hash, subject) and whether it has changes on top."""
    try:
        head = git(checkout, "log", "-1", "--format=%h %s")
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    head = head if len(head) <= 72 else head[:71] + "…"
    dirty = git(checkout, "status", "--porcelain", "--untracked-files=no")
    return f"{head}{' (+ uncommitted changes)' if dirty else ''}"


def write_distribution(dist: Path) -> None:
    """A dist-info that registers the in-memory driver as the entry point `memory`."""
    info = dist / f"{DIST_NAME}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[archive_core.drivers]\n{ENTRY_POINT}\n")
    (info / "RECORD").write_text("")


def write_sources(folder: Path, count: int) -> list[tuple[str, str]]:
    """`count` files of FILE_SIZE random bytes; their sha1, as Vidispine hands it in."""
    import hashlib

    folder.mkdir()
    out = []
    for n in range(count):
        data = os.urandom(FILE_SIZE)
        path = folder / f"clip{n:05d}.bin"
        path.write_bytes(data)
        out.append((str(path), hashlib.sha1(data).hexdigest()))
    return out


def load_pgserver():
    """tests/pgserver.py of this repository, loaded by path (it imports no archive_core)."""
    spec = importlib.util.spec_from_file_location("bench_pgserver", REPO / "tests" / "pgserver.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def quiet(server: Any) -> None:
    """Before a timed run: what the previous one left in memory is written out now."""
    if server is not None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            user=server.user,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute("CHECKPOINT")
    os.sync()


def platform_text(server: Any) -> str:
    import platform
    import sqlite3

    import sqlalchemy

    parts = [
        f"Python {platform.python_version()}",
        f"SQLAlchemy {sqlalchemy.__version__}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if server is not None:
        version = subprocess.run(
            [str(server.bindir / "postgres"), "--version"], capture_output=True, text=True
        ).stdout.split()
        parts.append(f"PostgreSQL {version[2] if len(version) > 2 else '?'} (fsync off)")
    parts.append(f"{os.cpu_count()} CPUs")
    return ", ".join(parts)


def count_text(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def table(rows: list[tuple[str, ...]], left: int = 2) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(
    results: dict[tuple, list[dict[str, Any]]],
    backends: list[str],
    sizes: list[int],
    files: int,
    repeats: int,
) -> str:
    """One table per operation, then the goals of issue 10 against the best runs."""
    us = 1e6 / files
    small, big = min(sizes), max(sizes)
    scaling = f"new {count_text(big)}/{count_text(small)}"

    def samples(key, operation, field) -> list[float]:
        return [run[operation][field] * us for run in results.get(key, [])]

    def best_ratio(top, bottom) -> float | None:
        return min(top) / min(bottom) if top and bottom else None

    def core_ratio(backend, size, operation, field="wall") -> float | None:
        """The core's own cost, new over old: each row's best less its driver's best."""
        parts = []
        for version in ("new", "old"):
            row = samples((version, backend, size), operation, field)
            driver = samples((version, "driver", None), operation, field)
            if not row or not driver:
                return None
            parts.append(min(row) - min(driver))
        # Where the driver's own time varies more than the core adds (restore's fsyncs), a
        # difference can come out negative: not measured, rather than a ratio that means nothing.
        return parts[0] / parts[1] if min(parts) > 0 else None

    def sql(key, operation) -> str:
        runs = results.get(key, [])
        if not runs or "statements" not in runs[0][operation]:
            return ""

        def median(field: str) -> int:
            return round(statistics.median(r[operation][field] for r in runs))

        return f"{median('statements')} / {median('transactions')} / {median('rows'):,}"

    def speed(values) -> str:
        return f"{statistics.median(values):.1f} / {min(values):.1f}" if values else "-"

    def ratio_text(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    out = [
        f"us/file: wall time / {files:,} files, median / best of {repeats} runs; cpu: the "
        "calling process's CPU time per file, best run; new/old: best / best; core new/old: "
        "(best - the driver alone's best), new over old (core cpu new/old: the same of the cpu "
        "column; where the driver's fsyncs swamp the wall time, as in restore, only it shows "
        "the core);",
        "SQL per batch: statements / transactions / rows of executemany statements (an "
        "executemany counts as one statement), median.",
    ]
    goals = [("operation", "backend", f"core new/old, {count_text(small)} copies")]
    if big != small:
        goals[0] += (f"core new/old, {count_text(big)} copies", scaling)
    for operation in OPERATIONS:
        rows = [
            (
                "backend",
                "copies",
                "old us/file",
                "new us/file",
                "new/old",
                "core new/old",
                "core cpu new/old",
                "old cpu",
                "new cpu",
                "old SQL per batch",
                "new SQL per batch",
                scaling if big != small else "",
            )
        ]
        for backend in [*backends, "driver"]:
            for size in [None] if backend == "driver" else sizes:
                old_key, new_key = ("old", backend, size), ("new", backend, size)
                old, new = samples(old_key, operation, "wall"), samples(new_key, operation, "wall")
                scale = None
                if size == big != small:
                    scale = best_ratio(new, samples(("new", backend, small), operation, "wall"))
                old_cpu, new_cpu = (
                    samples(old_key, operation, "cpu"),
                    samples(new_key, operation, "cpu"),
                )
                rows.append(
                    (
                        "driver alone" if backend == "driver" else backend,
                        "-" if size is None else f"{size:,}",
                        speed(old),
                        speed(new),
                        ratio_text(best_ratio(new, old)),
                        *(
                            "-"
                            if size is None
                            else ratio_text(core_ratio(backend, size, operation, f))
                            for f in ("wall", "cpu")
                        ),
                        f"{min(old_cpu):.1f}" if old_cpu else "-",
                        f"{min(new_cpu):.1f}" if new_cpu else "-",
                        sql(old_key, operation),
                        sql(new_key, operation),
                        "" if scale is None else f"{scale:.2f}",
                    )
                )
        out.append(f"\n{operation} ({files:,} files of {FILE_SIZE:,} B per batch)\n{table(rows)}")
        for backend in backends:
            kinds = {}
            for version in ("old", "new"):
                runs = results.get((version, backend, big), [])
                if runs and "kinds" in runs[-1][operation]:
                    counted = sorted(runs[-1][operation]["kinds"].items(), key=lambda kv: -kv[1])
                    kinds[version] = ", ".join(f"{k} {n}" for k, n in counted)
            if kinds.get("old") == kinds.get("new"):
                out.append(f"  {backend} SQL, old and new: {kinds.get('new', '-')}")
            else:
                for version, text in kinds.items():
                    out.append(f"  {backend} SQL, {version}: {text}")
        written = []
        for backend in [*backends, "driver"]:
            for size in [None] if backend == "driver" else sizes:
                per = {v: samples((v, backend, size), operation, "written") for v in ("old", "new")}
                if per["old"] and per["new"]:
                    where = "driver alone" if size is None else f"{backend} {count_text(size)}"
                    old_kib, new_kib = (statistics.median(per[v]) / 1e6 / 1024 for v in per)
                    written.append(f"{where}: {old_kib:.1f} / {new_kib:.1f}")
        out.append(
            "  KiB written to storage per file by the calling process, old / new: "
            + "; ".join(written)
        )
        if operation == "delete":
            continue  # not among issue 10's goals
        for backend in backends:
            row = [operation, backend]
            for size in sizes if big != small else [small]:
                row.append(_verdict(core_ratio(backend, size, operation), GOAL_RATIO))
            if big != small:
                value = best_ratio(
                    samples(("new", backend, big), operation, "wall"),
                    samples(("new", backend, small), operation, "wall"),
                )
                row.append(_verdict(value, GOAL_SIZES))
            goals.append(tuple(row))
    out.append("")
    for label, keys in (
        (
            "SQLite and driver cells (other processes only)",
            [k for k in results if k[1] != "postgresql"],
        ),
        ("PostgreSQL cells (its server included)", [k for k in results if k[1] == "postgresql"]),
    ):
        beside = [_beside(run[op]) for k in keys for run in results[k] for op in OPERATIONS]
        if beside:
            out.append(
                f"cores busy beside the cell during its timed calls, {label}: median "
                f"{statistics.median(beside):.2f}, max {max(beside):.2f}"
            )
    out.append(
        f"\nissue 10's goals: the core's cost per file, new/old <= {GOAL_RATIO} on both backends; "
        f"new {count_text(big)} vs {count_text(small)} copies <= {GOAL_SIZES}x\n{table(goals)}"
    )
    return "\n".join(out)


def _verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} {'met' if value <= goal else 'not met'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 files, 100k copies, 2 runs")
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql", "both"), default="both", help="catalogs"
    )
    parser.add_argument("--sizes", help="catalog sizes, comma separated (default 0,1000000)")
    parser.add_argument("--files", type=int, help="files per batch (default 10,000)")
    parser.add_argument(
        "--old", default=OLD_DEFAULT, help=f"the old commit (default {OLD_DEFAULT})"
    )
    parser.add_argument(
        "--new", type=Path, default=REPO, help="the new checkout (default: this repository)"
    )
    parser.add_argument("--repeats", type=int, help="runs per cell (default 3; --quick 2)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument("--save", type=Path, help="write every sample as JSON to this file")
    parser.add_argument("--cell", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell is not None:
        cell_main(args.cell)
        return

    started = time.perf_counter()
    files = args.files or (2_000 if args.quick else 10_000)
    default_sizes = "0,100000" if args.quick else "0,1000000"
    sizes = sorted({int(s.replace("_", "")) for s in (args.sizes or default_sizes).split(",")})
    repeats = args.repeats or (2 if args.quick else 3)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    warm_count = 500 if args.quick else 1_000
    new_root = args.new.resolve()
    old_rev = git(REPO, "rev-parse", "--verify", f"{args.old}^{{commit}}")

    base = workspace(args.keep)
    old_parent = Path(tempfile.mkdtemp(prefix="archive-core-bench-old-"))
    old_root = old_parent / "checkout"
    cells: dict[tuple, Cell] = {}
    server = None
    try:
        subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "worktree",
                "add",
                "--detach",
                "--quiet",
                str(old_root),
                old_rev,
            ],
            check=True,
        )
        checkouts = {"old": old_root, "new": new_root}
        print(f"old: {describe(old_root)}  [{old_root}]")
        print(f"new: {describe(new_root)}  [{new_root}]")
        settle(base)
        print(f"writing {files:,} + {warm_count:,} files of {FILE_SIZE} B ...")
        (base / "sources.json").write_text(json.dumps(write_sources(base / "src", files)))
        (base / "warm.json").write_text(json.dumps(write_sources(base / "warm", warm_count)))
        dist = base / "dist"
        write_distribution(dist)
        if "postgresql" in backends:
            pgserver = load_pgserver()
            server = pgserver.PostgresServer()
            server.start()
            print(f"PostgreSQL on port {server.port} (data in {server.root})")

        def spec(kind, version, backend, size) -> dict[str, Any]:
            label = f"{version}-{backend}-{size}" if kind == "core" else f"{version}-driver"
            work = base / "cells" / label
            url = None
            if backend == "sqlite":
                url = f"sqlite:///{work / 'catalog.sqlite'}"
            elif backend == "postgresql":
                url = server.create_database(f"bench_{version}_{size}")
            return {
                "kind": kind,
                "label": label,
                "workdir": str(work),
                "url": url,
                "size": size,
                "sources": str(base / "sources.json"),
                "warm": str(base / "warm.json"),
            }

        plan = [("driver", v, "driver", None) for v in ("old", "new")]
        plan += [("core", v, b, s) for b in backends for s in sizes for v in ("old", "new")]
        for kind, version, backend, size in plan:
            cells[(version, backend, size)] = Cell(
                spec(kind, version, backend, size), checkouts[version], dist
            )
        setup_started = time.perf_counter()
        filled = sum(1 for key in cells if key[1] != "driver" and key[2])
        print(
            f"setting up {len(cells)} cells"
            + (f", {filled} of them filling a catalog (not timed)" if filled else "")
            + " ..."
        )
        for cell in cells.values():
            cell.send("setup", spec=cell.spec)
        for key, cell in cells.items():
            reply = cell.receive()
            imported = Path(reply["archive_core"]).resolve()
            if not imported.is_relative_to(cell.checkout):
                raise SystemExit(f"cell {cell.label} imported {imported}, not {cell.checkout}")
            if reply["copies"] is not None and reply["copies"] != key[2]:
                raise SystemExit(f"cell {cell.label}: {reply['copies']} copies, not {key[2]}")
            if reply["fill_seconds"] > 1:
                print(f"  {cell.label}: {key[2]:,} copies filled in {reply['fill_seconds']:.0f} s")
        print(f"set up in {time.perf_counter() - setup_started:.0f} s")

        results: dict[tuple, list[dict[str, Any]]] = {key: [] for key in cells}
        order = list(cells)
        for r in range(repeats):
            print(f"run {r + 1} of {repeats}:")
            # old and new alternate which goes first, so a drift of the machine hits both
            pairs = [order[i : i + 2] for i in range(0, len(order), 2)]
            for pair in pairs:
                for key in pair if r % 2 == 0 else reversed(pair):
                    cell = cells[key]
                    quiet(server)
                    cell.send("run", tag=f"r{r}")
                    sample = cell.receive()
                    results[key].append(sample)
                    line = ", ".join(
                        f"{op} {sample[op]['wall'] * 1e6 / files:.0f}" for op in OPERATIONS
                    )
                    beside = [_beside(sample[op]) for op in OPERATIONS]
                    print(
                        f"  {cell.label}: {line} us/file; cores busy beside it "
                        f"{min(beside):.1f}-{max(beside):.1f}",
                        flush=True,
                    )

        print()
        print(f"old: {describe(old_root)}")
        print(f"new: {describe(new_root)}  [{new_root}]")
        print(platform_text(server))
        print()
        print(report(results, backends, sizes, files, repeats))
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text(
                json.dumps(
                    {
                        "old": old_rev,
                        "new": describe(new_root),
                        "files": files,
                        "results": [
                            {"cell": list(map(str, key)), "runs": runs}
                            for key, runs in results.items()
                        ],
                    },
                    indent=1,
                )
            )
    finally:
        for cell in cells.values():
            cell.close()
        if server is not None:
            server.stop()
        if old_root.exists():
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_root)],
                check=False,
            )
        shutil.rmtree(old_parent, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
