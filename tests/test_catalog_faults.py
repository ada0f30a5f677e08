"""A catalog that is locked, read-only, full, unreachable or damaged, through Portal's face.

Each fault costs every file of the batch one clear error that names the catalog (its URL with
the password masked) and says what is wrong; no file is reported archived or deleted that the
catalog does not record; and once the admin clears the fault, the same worker runs the batch
again without duplicates.

Every fault is made for real: another process holding SQLite's write lock, a PostgreSQL session
holding a table lock, a catalog file the kernel refuses to write (`chattr +i`: these tests run
as root, who ignores permission bits), a read-only bind mount, a small tmpfs or a tablespace on
one filled up, a closed port, garbage bytes. Faults that need mount(2) or chattr are skipped,
saying so, where the tests may not use them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from archive_core.catalog import Catalog, JournalEntry
from archive_core.errors import CatalogError, ConfigError, RestoreFailed
from archive_core.policies import parse_config
from archive_core.portal import ArchiveCorePlugin
from archive_core.testing.fileset import FileSet
from archive_core.testing.siteconfig import toml_value
from tests.pgserver import HOST, PostgresServer, unique_database_name
from tests.sites import POLICY, files_under, filesys_site, media

#: The sites' `[catalog] lock_wait_seconds`: a lock another program holds is given up after this.
LOCK_WAIT = 1.0
#: In every PostgreSQL URL here (the test server trusts loopback and never asks for it); no
#: message, log line or Portal answer may ever show it.
PASSWORD = "Tr0ub4dor-catalog-pw"

BATCH = 3


# --- the faults ------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class Fault:
    """One way for a catalog to fail, made for real under a running worker's site."""

    plugin: ArchiveCorePlugin
    root: Path  # the filesys target's root
    online: Path  # where the online files are
    shown: str  # the catalog as every message must name it
    words: str  # what every file's message says is wrong
    reads: bool  # whether the catalog can still be read while it is broken
    arm: Callable[[], None]  # break it
    clear: Callable[[], None]  # what the admin does about it


FaultMaker = Callable[[Path, pytest.FixtureRequest], Iterator[Fault]]
#: Each fault by name: a generator that builds a site, yields the Fault, then tidies up.
FAULTS: dict[str, FaultMaker] = {}


def fault_maker(name: str) -> Callable[[FaultMaker], FaultMaker]:
    def register(maker: FaultMaker) -> FaultMaker:
        FAULTS[name] = maker
        return maker

    return register


def _site(tmp_path: Path, url: str) -> tuple[Path, ArchiveCorePlugin, Path]:
    """A site archiving to one filesys target with its catalog at `url`: config, plugin, root."""
    config, [root] = filesys_site(tmp_path, catalog_url=url)
    _set_catalog_url(config, url)
    return config, ArchiveCorePlugin(config), root


def _set_catalog_url(config: Path, url: str) -> None:
    """Point the site at `url`, as an admin edits the config (the plugin follows the file)."""
    settings = f"url = {toml_value(url)}\nlock_wait_seconds = {LOCK_WAIT}\n"
    text = re.sub(r"(?m)^url = .*\n(lock_wait_seconds = .*\n)?", settings, config.read_text())
    config.write_text(text)


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _restart_worker(plugin: ArchiveCorePlugin) -> None:
    """Close the worker's catalog connections, as a Portal worker restart does: the next call
    opens the database file anew (and the last close checkpoints SQLite's WAL away)."""
    plugin.site().catalog.close()


_HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin, or dies
db.execute("ROLLBACK")
"""


def _holding_write_lock(database: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_WRITE_LOCK, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def _release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(10) == 0


@fault_maker("sqlite-locked")
def _sqlite_locked(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """Another program (an sqlite3 shell, a backup tool) holds the write lock and keeps it."""
    database = tmp_path / "catalog.sqlite"
    _, plugin, root = _site(tmp_path, _sqlite_url(database))
    holder: list[subprocess.Popen[str]] = []

    def arm() -> None:
        holder.append(_holding_write_lock(database))

    def clear() -> None:
        _release(holder.pop())

    yield Fault(
        plugin=plugin,
        root=root,
        online=tmp_path / "online",
        shown=_sqlite_url(database),
        words="is locked by another program",
        reads=True,  # WAL: readers go on beside the writer
        arm=arm,
        clear=clear,
    )
    for process in holder:
        process.kill()
        process.wait()


def _immutable(path: Path, on: bool) -> None:
    """Make `path` unwritable even for root (chattr), or writable again."""
    if os.geteuid() != 0:
        path.chmod(0o444 if on else 0o644)
        return
    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True, capture_output=True)


def _require_chattr(directory: Path) -> None:
    if os.geteuid() != 0:
        return  # chmod does it for anyone else
    probe = directory / "chattr-probe"
    probe.touch()
    try:
        _immutable(probe, True)
        _immutable(probe, False)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"root ignores file modes, and chattr +i does not work here: {exc}")
    finally:
        probe.unlink()


@fault_maker("sqlite-read-only-file")
def _sqlite_read_only_file(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The catalog file is not writable for the worker (here: immutable, since root ignores
    permission bits; for any other user a mode of 0444 is the same to SQLite)."""
    _require_chattr(tmp_path)
    database = tmp_path / "catalog.sqlite"
    _, plugin, root = _site(tmp_path, _sqlite_url(database))
    armed: list[bool] = []

    def arm() -> None:
        _restart_worker(plugin)  # SQLite only notices at the next open of the file
        _immutable(database, True)
        armed.append(True)

    def clear() -> None:
        _immutable(database, False)
        armed.clear()

    yield Fault(
        plugin=plugin,
        root=root,
        online=tmp_path / "online",
        shown=_sqlite_url(database),
        words="is read-only",
        reads=True,
        arm=arm,
        clear=clear,
    )
    if armed:
        _immutable(database, False)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "--lazy", str(where)], check=False, capture_output=True)


def _require_mount(directory: Path) -> None:
    probe = directory / "mount-probe"
    probe.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"this fault needs a file system of its own, and mount fails here: {detail}")
    _unmount(probe)
    probe.rmdir()


@fault_maker("sqlite-read-only-file-system")
def _sqlite_read_only_fs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The disk holding the catalog is mounted read-only (an `errors=remount-ro` after a disk
    error, an NFS export made read-only), seen by a worker as it opens the catalog."""
    _require_mount(tmp_path)
    directory = tmp_path / "catalog-disk"
    directory.mkdir()
    database = directory / "catalog.sqlite"
    _, plugin, root = _site(tmp_path, _sqlite_url(database))
    mounted: list[bool] = []

    def arm() -> None:
        _restart_worker(plugin)
        _mount("--bind", str(directory), str(directory))
        mounted.append(True)
        _mount("-o", "remount,ro,bind", str(directory))

    def clear() -> None:
        _unmount(directory)
        mounted.clear()

    yield Fault(
        plugin=plugin,
        root=root,
        online=tmp_path / "online",
        shown=_sqlite_url(database),
        words="is on a read-only file system",
        reads=False,  # WAL needs its -shm file, which cannot be made there
        arm=arm,
        clear=clear,
    )
    if mounted:
        _unmount(directory)


def _fill(directory: Path) -> Path:
    """Fill the file system holding `directory` to the last byte; the filler's path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\xff" * chunk)
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def _sqlite_full(tmp_path: Path, *, restart: bool) -> Iterator[Fault]:
    _require_mount(tmp_path)
    directory = tmp_path / "catalog-disk"
    directory.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(directory))
    database = directory / "catalog.sqlite"
    _, plugin, root = _site(tmp_path, _sqlite_url(database))

    def arm() -> None:
        if restart:
            _restart_worker(plugin)
        _fill(directory)

    def clear() -> None:
        (directory / "filler").unlink()

    try:
        yield Fault(
            plugin=plugin,
            root=root,
            online=tmp_path / "online",
            shown=_sqlite_url(database),
            words="is full",
            # A running worker still reads; one that opens the catalog cannot even make the
            # shared-memory file every WAL reader needs.
            reads=not restart,
            arm=arm,
            clear=clear,
        )
    finally:
        plugin.site().close()
        _unmount(directory)


@fault_maker("sqlite-full")
def _sqlite_full_running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The disk holding the catalog fills up while a worker uses it."""
    yield from _sqlite_full(tmp_path, restart=False)


@fault_maker("sqlite-full-at-start")
def _sqlite_full_at_start(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """A worker opens a catalog on a disk that is full."""
    yield from _sqlite_full(tmp_path, restart=True)


def _moved_away(tmp_path: Path, good: str, bad: str, *, shown: str, words: str) -> Iterator[Fault]:
    """The site is pointed at a catalog that cannot be used, then back at the good one."""
    config, plugin, root = _site(tmp_path, good)
    yield Fault(
        plugin=plugin,
        root=root,
        online=tmp_path / "online",
        shown=shown,
        words=words,
        reads=False,
        arm=lambda: _set_catalog_url(config, bad),
        clear=lambda: _set_catalog_url(config, good),
    )


@fault_maker("sqlite-unreachable")
def _sqlite_unreachable(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The catalog's directory cannot be created: a file is where it should be."""
    blocker = tmp_path / "catalogs"
    blocker.write_text("a file, not a directory\n")
    bad = blocker / "catalog.sqlite"
    yield from _moved_away(
        tmp_path,
        _sqlite_url(tmp_path / "catalog.sqlite"),
        _sqlite_url(bad),
        shown=_sqlite_url(bad),
        words="cannot be opened",
    )


def _overwritten(
    tmp_path: Path, *, words: str, damage: Callable[[bytes], bytes]
) -> Iterator[Fault]:
    """A worker starts on a catalog file whose bytes were damaged; the admin restores it."""
    database = tmp_path / "catalog.sqlite"
    _, plugin, root = _site(tmp_path, _sqlite_url(database))
    backup: list[bytes] = []

    def arm() -> None:
        _restart_worker(plugin)
        backup.append(database.read_bytes())
        with database.open("r+b") as fh:  # in place: the same file, other bytes
            fh.write(damage(backup[0]))

    def clear() -> None:
        database.write_bytes(backup.pop())  # the admin restores last night's backup

    yield Fault(
        plugin=plugin,
        root=root,
        online=tmp_path / "online",
        shown=_sqlite_url(database),
        words=words,
        reads=False,
        arm=arm,
        clear=clear,
    )


def _garbage(size: int) -> bytes:
    pattern = b"\xde\xad\xbe\xef this is no database "
    return (pattern * (size // len(pattern) + 1))[:size]


@fault_maker("sqlite-not-a-database")
def _sqlite_not_a_database(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    yield from _overwritten(
        tmp_path, words="is not a SQLite database", damage=lambda data: _garbage(len(data))
    )


@fault_maker("sqlite-damaged")
def _sqlite_damaged(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The header (first page) is intact, every other page is garbage."""

    def damage(data: bytes) -> bytes:
        page = int.from_bytes(data[16:18], "big")
        assert data.startswith(b"SQLite format 3\x00") and len(data) > page
        return data[:page] + _garbage(len(data) - page)

    yield from _overwritten(tmp_path, words="is damaged", damage=damage)


# --- PostgreSQL ------------------------------------------------------------------------------


@contextlib.contextmanager
def _pg_database(server: PostgresServer) -> Iterator[tuple[str, str]]:
    """A fresh database: (its name, its URL with PASSWORD in it)."""
    name = unique_database_name("faults")
    url = server.create_database(name).replace(f"//{server.user}@", f"//{server.user}:{PASSWORD}@")
    assert PASSWORD in url
    try:
        yield name, url
    finally:
        server.drop_database(name)


def _pg_admin(server: PostgresServer, database: str = "postgres", **options: Any) -> Any:
    import psycopg

    return psycopg.connect(
        host=HOST, port=server.port, user=server.user, dbname=database, **options
    )


def _shown(url: str) -> str:
    return url.replace(PASSWORD, "***")


@fault_maker("pg-locked")
def _pg_locked(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """Another session (a migration, an admin's psql left in a transaction) holds a lock on the
    journal's batches, which every batch writes first."""
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    with _pg_database(server) as (name, url):
        _, plugin, root = _site(tmp_path, url)
        holder: list[Any] = []

        def arm() -> None:
            session = _pg_admin(server, name)
            session.execute("LOCK TABLE archive_core_batches IN ACCESS EXCLUSIVE MODE")
            holder.append(session)

        def clear() -> None:
            session = holder.pop()
            session.rollback()
            session.close()

        yield Fault(
            plugin=plugin,
            root=root,
            online=tmp_path / "online",
            shown=_shown(url),
            words="is locked by another session",
            reads=True,  # the copies table is not locked
            arm=arm,
            clear=clear,
        )
        for session in holder:
            session.close()
        plugin.site().close()


@fault_maker("pg-read-only")
def _pg_read_only(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The database is made read-only (as a standby, or by default_transaction_read_only), and
    the worker's sessions are cut, as a failover cuts them."""
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    with _pg_database(server) as (name, url):
        _, plugin, root = _site(tmp_path, url)

        def setting(value: str, *, cut: bool) -> None:
            with _pg_admin(server, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" {value}')
                if cut:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (name,),
                    )

        yield Fault(
            plugin=plugin,
            root=root,
            online=tmp_path / "online",
            shown=_shown(url),
            words="is read-only",
            reads=True,
            arm=lambda: setting("SET default_transaction_read_only = on", cut=True),
            # Sessions opened meanwhile stay read-only: the worker must not keep using them.
            clear=lambda: setting("RESET default_transaction_read_only", cut=False),
        )
        plugin.site().close()


@fault_maker("pg-full")
def _pg_full(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The disk holding the catalog's tables is full: here a tablespace on a small tmpfs,
    filled up, with the journal's last pages filled too (as months of journal fill them).

    A full disk under the whole server (its WAL) makes PostgreSQL stop, which a client sees
    as an unreachable server; that is the "unreachable" fault, not made here."""
    _require_mount(tmp_path)
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    account = pwd.getpwnam(server.user or "")
    # The server's account must reach the mount point, which tmp_path (root's, 0700) is not.
    base = Path(tempfile.mkdtemp(prefix="archive-core-tablespace-", dir="/tmp"))
    base.chmod(0o755)
    disk = base / "disk"
    disk.mkdir()
    options = f"size=2m,uid={account.pw_uid},gid={account.pw_gid},mode=0700"
    _mount("-t", "tmpfs", "-o", options, "tmpfs", str(disk))
    space = f"faults_{os.getpid()}_{time.monotonic_ns()}"
    try:
        with _pg_admin(server, autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE {space} LOCATION '{disk}'")
        try:
            with _pg_database(server) as (name, url):
                _, plugin, root = _site(tmp_path, url)

                def arm() -> None:
                    with _pg_admin(server, name, autocommit=True) as session:
                        session.execute(
                            f"ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE {space}"
                        )
                        session.execute(
                            f"ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE {space}"
                        )
                        _fill(disk)
                        _fill_journal(session)

                yield Fault(
                    plugin=plugin,
                    root=root,
                    online=tmp_path / "online",
                    shown=_shown(url),
                    words="is full",
                    reads=True,
                    arm=arm,
                    clear=lambda: (disk / "filler").unlink(),
                )
                plugin.site().close()
        finally:
            with _pg_admin(server, autocommit=True) as admin:
                admin.execute(f"DROP TABLESPACE IF EXISTS {space}")
    finally:
        _unmount(disk)
        shutil.rmtree(base, ignore_errors=True)


def _fill_journal(session: Any) -> None:
    """Add finished batches of a target no test uses until the journal has no room for one more:
    its batches and their parts, both of which a batch's intent writes.

    One row a statement: a failed statement of many would leave its rows dead in pages the
    next insert may prune and use again."""
    import psycopg

    fillers = (
        "INSERT INTO archive_core_batches (id, policy, target, operation, worker, state, "
        "files, done, failed, started) VALUES (%s, 'filler', 'filler', 'archive', 'filler', "
        "'done', 1, 1, 0, now())",
        "INSERT INTO archive_core_batch_parts (batch, kind, data) VALUES (%s, 'files', '[]')",
    )
    for statement in fillers:
        for n in itertools.count():
            try:
                session.execute(statement, (f"filler{n}",))
            except psycopg.errors.DiskFull:
                break


@fault_maker("pg-unreachable")
def _pg_unreachable(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fault]:
    """The site is pointed at a database server that does not answer (nothing listens)."""
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        closed = probe.getsockname()[1]  # free once the socket is closed: nothing listens
    bad = f"postgresql+psycopg://archive:{PASSWORD}@{HOST}:{closed}/portal_archive"
    with _pg_database(server) as (_, url):
        yield from _moved_away(tmp_path, url, bad, shown=_shown(bad), words="cannot be reached")


# --- the fixture ----------------------------------------------------------------------------

#: Every fault above, in the order made.
NAMES = tuple(FAULTS)
#: The faults that can strike a batch already running: pointing a site at another catalog
#: changes only the next call (the running one keeps the site it began with).
STRIKING = tuple(name for name in NAMES if not name.endswith("-unreachable"))


def _params(names: Iterable[str]) -> list[Any]:
    return [
        pytest.param(name, marks=[pytest.mark.postgresql] if name.startswith("pg-") else [])
        for name in names
    ]


@pytest.fixture(params=_params(NAMES))
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fault]:
    maker = FAULTS[request.param](tmp_path, request)
    made = next(maker)
    try:
        yield made
    finally:
        with contextlib.suppress(Exception):
            made.plugin.site().close()
        with contextlib.suppress(StopIteration):
            next(maker)


# --- what every fault must give --------------------------------------------------------------


def _batch(fault: Fault, prefix: str) -> list[FileSet]:
    return [
        media(fault.online, f"{prefix} {n}.mov", _content(prefix, n), item_id=f"VX-{n}")
        for n in range(BATCH)
    ]


def _content(prefix: str, n: int) -> bytes:
    return f"{prefix} {n} ".encode() * 50


def _one_error_each(text: str, file_sets: list[FileSet], fault: Fault) -> dict[str, str]:
    """Each file's line of a Portal message: one per file, each naming the catalog once and
    saying what is wrong with it."""
    lines = text.split("\n")[1:]
    assert len(lines) == len(file_sets), text
    found = {}
    for fs in file_sets:
        [line] = [line for line in lines if line.startswith(f"{fs.files[0]}: ")]
        assert line.count(fault.shown) == 1, line
        assert fault.words in line, line
        found[fs.files[0]] = line
    return found


def _never_the_password(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
        assert PASSWORD not in (record.exc_text or "")


def test_archive_gives_every_file_one_error_naming_the_catalog_and_reruns_once_it_is_fixed(
    fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = fault.plugin
    [seed], *_ = plugin.archive([media(fault.online, "seed.mov", b"seed" * 99)], POLICY, "seed")
    kept = files_under(fault.root)
    fault.arm()
    batch = _batch(fault, "clip")
    started = time.monotonic()
    archived, not_archived, error, extra = plugin.archive(batch, POLICY, "job-1")
    took = time.monotonic() - started
    assert (archived, not_archived, extra) == ([], batch, {})
    assert error.startswith(f"{BATCH} of {BATCH} files could not be archived:\n")
    _one_error_each(error, batch, fault)
    assert took < LOCK_WAIT + 10  # given up on, not waited for
    assert files_under(fault.root) == kept  # nothing was published
    _never_the_password(caplog, error)

    fault.clear()
    archived, not_archived, error, _ = plugin.archive(batch, POLICY, "job-2")
    assert (not_archived, error) == ([], "")
    recorded = plugin.site().catalog.copies()
    reported = [*seed.external_ids, *(e for fs in archived for e in fs.external_ids)]
    assert sorted(c.external_id for c in recorded) == sorted(reported)
    assert len(set(reported)) == BATCH + 1
    assert files_under(fault.root) == {fault.root / c.locator for c in recorded}
    _never_the_password(caplog)


class _BreakWhileCopying:
    """A progress observer that breaks the catalog as the driver copies the first bytes: the
    intents are in the journal, the copies are being written, the results are not recorded."""

    def __init__(self, arm: Callable[[], None]) -> None:
        self._arm: Callable[[], None] | None = arm

    def started(self, operation: str, files: int, total_bytes: int | None) -> None:
        pass

    def advanced(self, nbytes: int) -> None:
        arm, self._arm = self._arm, None
        if arm is not None:
            arm()

    def file_finished(self, outcome: Any) -> None:
        pass


@pytest.mark.parametrize("fault", _params(STRIKING), indirect=True)
def test_a_fault_after_the_copies_are_written_reports_none_archived_and_a_rerun_records_them(
    fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = fault.plugin
    plugin.archive([media(fault.online, "seed.mov", b"seed" * 99)], POLICY, "seed")
    batch = _batch(fault, "late")
    plugin.observer = _BreakWhileCopying(fault.arm)
    archived, not_archived, error, _ = plugin.archive(batch, POLICY, "job-1")
    plugin.observer = None
    assert (archived, not_archived) == ([], batch)
    for line in _one_error_each(error, batch, fault).values():
        assert "the copy was written" in line and "not reported archived" in line
    written = files_under(fault.root)
    assert len(written) == BATCH + 1  # on the target, but not reported: the catalog lacks them
    _never_the_password(caplog, error)

    fault.clear()
    archived, not_archived, error, _ = plugin.archive(batch, POLICY, "job-2")
    assert (not_archived, error) == ([], "")
    recorded = plugin.site().catalog.copies()
    assert files_under(fault.root) == written == {fault.root / c.locator for c in recorded}
    assert {e for fs in archived for e in fs.external_ids} <= {c.external_id for c in recorded}
    _never_the_password(caplog)


def test_delete_deletes_nothing_and_says_why_per_file_until_the_catalog_is_fixed(
    fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = fault.plugin
    archived, *_ = plugin.archive(_batch(fault, "gone"), POLICY, "archive")
    assert len(archived) == BATCH
    on_target = files_under(fault.root)
    fault.arm()
    caplog.clear()
    assert plugin.delete(archived, POLICY) == []
    assert files_under(fault.root) == on_target  # no copy was touched
    failed = [r.getMessage() for r in caplog.records if " delete failed for " in r.getMessage()]
    for fs in archived:
        [line] = [m for m in failed if f" delete failed for {fs.files[0]}: " in m]
        assert line.count(fault.shown) == 1 and fault.words in line, line
    _never_the_password(caplog)

    fault.clear()
    assert len(plugin.site().catalog.copies()) == BATCH  # every copy still recorded
    assert plugin.delete(archived, POLICY) == archived
    assert files_under(fault.root) == set()
    assert plugin.site().catalog.copies() == []
    _never_the_password(caplog)


def test_restore_needs_the_catalog_only_to_find_copies_portal_gave_no_external_id_for(
    fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = fault.plugin
    batch = _batch(fault, "master")
    archived, *_ = plugin.archive(batch, POLICY, "archive")
    assert len(archived) == BATCH
    anonymous = [fs._replace(external_ids=[]) for fs in archived]  # the catalog must say where
    for fs in batch:
        Path(fs.files[0]).unlink()
    fault.arm()
    if fault.reads:
        # Found in the catalog and restored; only the journal of the restore is skipped.
        assert plugin.restore(anonymous, POLICY) == anonymous
        for n, fs in enumerate(batch):
            assert Path(fs.files[0]).read_bytes() == _content("master", n)
        [skipped] = [
            r.getMessage() for r in caplog.records if "without its journal" in r.getMessage()
        ]
        assert skipped.count(fault.shown) == 1 and fault.words in skipped, skipped
        _never_the_password(caplog)
        return
    with pytest.raises(RestoreFailed) as caught:
        plugin.restore(anonymous, POLICY)
    message = str(caught.value)
    assert message.startswith(f"Restore failed for {BATCH} files (policy {POLICY}):\n")
    _one_error_each(message, anonymous, fault)
    assert not any(Path(fs.files[0]).exists() for fs in batch)
    _never_the_password(caplog, message, repr(caught.value))

    fault.clear()
    assert plugin.restore(anonymous, POLICY) == anonymous
    assert all(Path(fs.files[0]).exists() for fs in batch)


# --- the lock wait itself --------------------------------------------------------------------


def _entry() -> list[JournalEntry]:
    return [JournalEntry(key="0", name="a.mov")]


def test_a_lock_held_longer_than_lock_wait_is_given_up_once_with_a_locked_error(tmp_path):
    database = tmp_path / "catalog.sqlite"
    catalog = Catalog(_sqlite_url(database), lock_wait=0.5)
    catalog.copies()
    holder = _holding_write_lock(database)
    try:
        started = time.monotonic()
        with pytest.raises(CatalogError) as caught:
            catalog.begin(job_id="j", policy="p", target="t", operation="archive", entries=_entry())
        took = time.monotonic() - started
    finally:
        _release(holder)
    # Waiting is the retry: not one busy wait after another for each of the retries.
    assert 0.4 < took < 3
    error = caught.value
    assert (error.fault, error.catalog, error.retryable) == ("locked", _sqlite_url(database), True)
    assert "waited 0.5 s" in error.message
    catalog.close()


def test_a_lock_released_within_lock_wait_costs_a_wait_not_a_failure(tmp_path):
    database = tmp_path / "catalog.sqlite"
    catalog = Catalog(_sqlite_url(database), lock_wait=20)
    catalog.copies()
    holder = _holding_write_lock(database)
    try:
        threading.Timer(0.5, _release, args=(holder,)).start()
        batch = catalog.begin(
            job_id="j", policy="p", target="t", operation="archive", entries=_entry()
        )
    finally:
        if holder.poll() is None:
            holder.wait(10)
    assert [r.state for r in catalog.journal(batch=batch.id)] == ["intent"]
    catalog.close()


@pytest.mark.postgresql
def test_a_postgresql_lock_is_given_up_after_lock_wait_without_the_password(
    postgresql_server: PostgresServer,
):
    with _pg_database(postgresql_server) as (name, url):
        catalog = Catalog(url, lock_wait=0.5)
        catalog.copies()
        with _pg_admin(postgresql_server, name) as session:
            session.execute("LOCK TABLE archive_core_copies IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(CatalogError) as caught:
                catalog.copies()
            took = time.monotonic() - started
            session.rollback()
        assert 0.4 < took < 3
        assert caught.value.fault == "locked"
        assert caught.value.catalog == _shown(url)
        assert PASSWORD not in caught.value.message
        catalog.close()


def test_lock_wait_seconds_is_a_catalog_setting_of_tens_of_seconds_by_default():
    assert parse_config({}).catalog_lock_wait == 30
    assert parse_config({"catalog": {"lock_wait_seconds": 2.5}}).catalog_lock_wait == 2.5
    with pytest.raises(ConfigError) as refused:
        parse_config({"catalog": {"lock_wait_seconds": 0}})
    assert any("catalog.lock_wait_seconds" in p for p in refused.value.problems)


# --- the URL's password ----------------------------------------------------------------------


def test_a_catalog_url_that_does_not_parse_is_named_with_its_password_masked():
    catalog = Catalog(f"postgresql+psycopg://archive:{PASSWORD}@db host:notaport/x")
    with pytest.raises(CatalogError) as caught:
        catalog.copies()
    assert PASSWORD not in caught.value.message and PASSWORD not in repr(catalog)
    assert "postgresql+psycopg://archive:***@db host:notaport/x" in caught.value.message


def test_a_password_with_an_unencoded_at_sign_is_refused_without_showing_any_of_it(caplog):
    # A URL parser splits "archive:Tr0ub4dor@catalog-pw@host" at the first "@": the rest of
    # the password would be taken for the host name, and shown as one.
    caplog.set_level(logging.DEBUG)
    head, tail = "Tr0ub4dor", "catalog-pw"
    url = f"postgresql+psycopg://archive:{head}@{tail}@{HOST}:1/portal_archive"
    catalog = Catalog(url)
    with pytest.raises(CatalogError) as caught:
        catalog.copies()
    config = parse_config({"catalog": {"url": url}})
    shown = [caught.value.message, repr(catalog), catalog.safe_url(), caplog.text, repr(config)]
    assert not [text for text in shown if head in text or tail in text]
    assert "%40" in caught.value.message  # how to write it
