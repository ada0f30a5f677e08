"""The catalog of archived copies and the journal of batches, on any SQLAlchemy database.

One `copies` row per archived copy. The journal keeps one `batches` row per batch of one
operation on one target: written as "intent" before the transfer, with the batch's files
(key and name) in it, counted as their results are recorded and marked "done" once every
file has one. Only a file that failed gets a row of its own (`journal`, with the reason).
A worker killed mid-batch leaves its batch an intent; the next run of any of its files takes
those files over ("abandoned" in the old batch, once it knows that worker is dead: a live
one's are left alone), finds the copies that were completed (here or by the driver's own
idempotence) and never reports a partial copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import attrs

from archive_core import catalog_faults, workers
from archive_core.errors import ArchiveCoreError, CatalogError, CatalogFault
from archive_core.policies import LOCK_WAIT_SECONDS
from archive_core.secret import Secret
from archive_core.workers import WorkerId

if TYPE_CHECKING:
    from archive_core.audit import AuditTrail
    from archive_core.configstore import ConfigVersions
    from archive_core.leases import Leases

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Journal states. "abandoned" marks an intent a later run superseded (its worker died).
INTENT, DONE, FAILED, ABANDONED = "intent", "done", "failed", "abandoned"
#: Kinds of a batch's parts: its files, and a group of their results.
FILES, RESULTS = "files", "results"

_CHUNK = 500  # rows per IN (...) clause; keeps every backend's parameter limit happy


@attrs.frozen(kw_only=True)
class CopyRecord:
    """One archived copy of one file on one target."""

    policy: str
    target: str
    external_id: str
    locator: str
    name: str
    item_id: str | None
    sha1: str | None
    sha256: str | None
    size: int | None
    created: dt.datetime
    last_verified: dt.datetime | None = None
    # What the driver said about where the copy sits (a tape copy's barcode, partition and
    # start block), handed back with every later request for it; JSON-serialisable.
    placement: Mapping[str, Any] | None = None
    # The last verification that failed (cleared by one that passes), and what was wrong.
    last_failure: dt.datetime | None = None
    failure: str | None = None


@attrs.frozen(kw_only=True)
class CopySummary:
    """The copies of one policy on one target, in numbers."""

    policy: str
    target: str
    copies: int
    bytes: int
    never_verified: int
    oldest_verified: dt.datetime | None  # of those verified
    failed: int  # whose last verification failed


class JournalEntry(NamedTuple):
    """One file about to be transferred (the "intent" half of the journal); a named tuple
    because a batch makes one per file (see `archive_core.jobs.report.FileJob`)."""

    key: str  # unique within the batch
    name: str  # archive name, the destination for restore, the locator for delete/verify


@attrs.frozen(kw_only=True)
class JournalResult:
    """The result half: what happened to one entry of a batch."""

    key: str
    ok: bool
    error: str | None = None
    copy: CopyRecord | None = None  # archive: the copy to record
    removed: str | None = None  # delete: the external id whose copy is gone


@attrs.frozen(kw_only=True)
class JournalBatch:
    """A batch whose intent is journaled.

    `abandoned` maps each name that had a dead worker's open intent to those workers' ids
    (`archive_core.workers.WorkerId` strings): their leftovers for that name may go.
    """

    id: str
    abandoned: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class JournalRow:
    batch: str
    job_id: str | None
    policy: str
    target: str
    operation: str
    key: str
    name: str
    state: str
    worker: str
    started: dt.datetime
    finished: dt.datetime | None
    error: str | None


@attrs.frozen(kw_only=True)
class RecentBatch:
    """One batch as the overview lists it: whose, what, how far, how it ended."""

    id: str
    job_id: str | None
    policy: str
    target: str
    operation: str
    state: str
    files: int
    done: int
    failed: int
    started: dt.datetime
    finished: dt.datetime | None


@attrs.frozen(kw_only=True)
class Recent:
    batches: tuple[RecentBatch, ...]
    failures: tuple[JournalRow, ...]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: While a worker has batches open it refreshes its heartbeat this often; another worker
#: takes its open intents for dead once the heartbeat is older than HEARTBEAT_STALE (and only
#: when liveness cannot be told from the process table, i.e. on another host).
HEARTBEAT_SECONDS = 20.0
HEARTBEAT_STALE = dt.timedelta(seconds=120)

#: A transaction that lost a lock conflict (PostgreSQL deadlock or serialization failure,
#: SQLite busy) is run again this many times, with growing pauses, before it is an error;
#: but not once its lock wait (`Catalog(lock_wait=)`) is used up.
_RETRIES = 8

#: Batches this process has open, across every Catalog object in it: an open intent of this
#: very process is live work (another thread runs it) exactly when its batch is in here.
_open_batches: set[str] = set()
_open_lock = threading.Lock()


class Catalog:
    """Copies and journal in one database; safe for several workers on several machines.

    `worker` (default: this process) and `clock` are injectable so that tests can play a
    worker that died on another host without waiting for its heartbeat to go stale.
    `lock_wait` is how long one transaction waits, in all, for locks that other programs or
    workers hold (`[catalog] lock_wait_seconds`) before it fails as "locked".
    """

    def __init__(
        self,
        url: str,
        *,
        password: Secret | None = None,
        worker: WorkerId | None = None,
        clock: Callable[[], dt.datetime] = _now,
        lock_wait: float = LOCK_WAIT_SECONDS,
    ) -> None:
        self.url = url
        self._password = password
        self._lock_wait = lock_wait
        self._worker = worker
        self._clock = clock
        self._engine: Any = None
        self._tables: Any = None
        self._file: tuple[str, int, int] | None = None  # SQLite: path, device, inode opened
        self._lock = threading.Lock()
        # This object's open batches (the heartbeat's reason), with their entries: a failure's
        # journal row names its file.
        self._batches: dict[str, Sequence[JournalEntry]] = {}
        self._heartbeat: _Heartbeat | None = None
        self._leases: Leases | None = None
        self._audit: AuditTrail | None = None
        self._config_versions: ConfigVersions | None = None

    def __repr__(self) -> str:
        return f"<Catalog {self.safe_url()}>"

    @property
    def worker(self) -> WorkerId:
        return self._worker or workers.current()

    @property
    def audit(self) -> AuditTrail:
        """The audit trail kept in this catalog (`archive_core.audit`); no I/O until used."""
        with self._lock:
            if self._audit is None:
                from archive_core.audit import AuditTrail

                self._audit = AuditTrail(self)
            return self._audit

    @property
    def config_versions(self) -> ConfigVersions:
        """The site's configuration versions kept here (`archive_core.configstore`)."""
        with self._lock:
            if self._config_versions is None:
                from archive_core.configstore import ConfigVersions

                self._config_versions = ConfigVersions(self)
            return self._config_versions

    @property
    def leases(self) -> Leases:
        """Leases on named resources held in this catalog (`archive_core.leases`); made on
        first use, with no I/O until a lease is asked for."""
        with self._lock:
            if self._leases is None:
                from archive_core.leases import Leases

                self._leases = Leases(self)
            return self._leases

    def safe_url(self) -> str:
        """The URL with any password masked: what messages and the CLI show."""
        return catalog_faults.mask_url(self.url)

    # --- engine and schema -------------------------------------------------------------------

    def _connect(self, deadline: float):
        with self._lock:
            if self._engine is None:
                self._engine, self._tables, self._file = self._open(deadline)
        return self._engine, self._tables

    def _open(self, deadline: float):
        """The engine, the tables and the SQLite file's identity, on a catalog at this
        code's schema version (a new database is given it; an older or newer one refused,
        see `archive_core.schema`). Locks are waited for until `deadline` (monotonic)."""
        import sqlalchemy as sa

        from archive_core import schema

        engine, database = self._engine_for()
        try:
            # Read first: only a new, empty catalog needs the write lock, and a catalog that
            # can be read but not written (locked by another program, read-only, full) still
            # serves the reads of restore and verify.
            with engine.connect() as conn:
                conn.execution_options(archive_core_lock_wait=_left(deadline))
                with conn.begin():
                    found = schema.state(conn)
            if found.empty:
                with self._schema_locked(engine, deadline) as conn:
                    found = schema.state(conn)  # again: another worker may have made it
                    if found.empty:
                        schema.upgrade(conn, self.safe_url())
            refusal = found.refusal(self.safe_url())
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise self._fault(exc) from None
        except BaseException:
            engine.dispose()
            raise
        if refusal is not None:
            engine.dispose()
            raise CatalogError(refusal, catalog=self.safe_url())
        identity = None
        if database:
            info = os.stat(database)
            identity = (database, info.st_dev, info.st_ino)
        return engine, _schema(sa), identity

    def _engine_for(self) -> tuple[Any, str | None]:
        """A new engine for the URL (SQLite: its settings, and the file's path)."""
        import sqlalchemy as sa

        try:
            url = sa.engine.make_url(self.url)
        except Exception as exc:
            raise catalog_faults.bad_url(self.safe_url(), exc, self._secrets()) from None
        if "@" in (catalog_faults.url_password(self.url) or ""):
            # SQLAlchemy would end the password at its first "@" and take the rest for the
            # host: the rest of the password would go to DNS and into its error message.
            raise catalog_faults.bad_url(
                self.safe_url(), "its password holds an unencoded @ (write it as %40)", ()
            )
        if self._password is not None:
            url = url.set(password=self._password.reveal())
        kwargs: dict[str, Any] = {"future": True}
        sqlite = url.get_backend_name() == "sqlite"
        database = _sqlite_file(url) if sqlite else None
        if sqlite:
            if database and url.query.get("mode") != "ro":
                directory = os.path.dirname(database)
                try:
                    os.makedirs(directory, exist_ok=True)
                except OSError as exc:
                    raise catalog_faults.cannot_create_directory(
                        self.safe_url(), directory, exc
                    ) from None
            # The sqlite3 module's busy wait while connecting; each transaction then sets its
            # own from what is left of its lock wait (`_sqlite_begin`).
            kwargs["connect_args"] = {"timeout": self._lock_wait}
        else:
            kwargs["pool_pre_ping"] = True
            if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
                # A database host that drops packets would otherwise hold a restore, which
                # needs no catalog, for the minutes a TCP connect takes to give up.
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = sa.create_engine(url, **kwargs)
        except Exception as exc:  # missing DBAPI module, bad options
            raise CatalogError(
                f"The catalog {self.safe_url()} cannot be opened: "
                f"{catalog_faults.scrub(str(exc), self._secrets())}",
                catalog=self.safe_url(),
                fault=CatalogFault.UNREACHABLE,
            ) from None
        if sqlite:
            sa.event.listen(engine, "connect", _sqlite_connect)
            sa.event.listen(engine, "begin", _sqlite_begin)
        elif engine.dialect.name == "postgresql":
            sa.event.listen(engine, "begin", _postgresql_begin)
        return engine, database

    def _secrets(self) -> tuple[str, ...]:
        """What no message may show: the password, in the URL or given by reference."""
        given = (self._password.reveal(),) if self._password is not None else ()
        return (*given, *catalog_faults.url_secrets(self.url))

    def _fault(self, exc: Exception, *, attempts: int = 1) -> CatalogError:
        """The CatalogError a database error of this catalog is, worded for an admin."""
        import sqlalchemy as sa

        database = None
        read_only_url = False
        with contextlib.suppress(Exception):
            url = sa.engine.make_url(self.url)
            if url.get_backend_name() == "sqlite":
                database = _sqlite_file(url)
                read_only_url = url.query.get("mode") == "ro"
        return catalog_faults.describe(
            exc,
            catalog=self.safe_url(),
            path=database,
            read_only_url=read_only_url,
            lock_wait=self._lock_wait,
            attempts=attempts,
            secrets=self._secrets(),
        )

    @contextlib.contextmanager
    def _schema_locked(self, engine: Any, deadline: float) -> Iterator[Any]:
        """A write transaction holding the schema lock: PostgreSQL's advisory lock (workers
        starting together on a new database would race to create the same tables), SQLite's
        write lock (BEGIN IMMEDIATE)."""
        with engine.connect() as conn:
            conn.execution_options(archive_core_write=True, archive_core_lock_wait=_left(deadline))
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                yield conn

    def schema_state(self) -> Any:
        """The catalog's `schema.SchemaState`, read without changing anything."""
        import sqlalchemy as sa

        from archive_core import schema

        engine, _ = self._engine_for()
        try:
            with engine.connect() as conn:
                conn.execution_options(archive_core_lock_wait=self._lock_wait)
                return schema.state(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise self._fault(exc) from None
        finally:
            engine.dispose()

    def upgrade(self) -> tuple[Any, Any]:
        """Bring the catalog to this code's schema version, under the schema lock; the
        states (before, after). For `archive-core catalog upgrade`, run while no older
        worker uses the catalog."""
        import sqlalchemy as sa

        from archive_core import schema

        engine, _ = self._engine_for()
        try:
            with self._schema_locked(engine, time.monotonic() + self._lock_wait) as conn:
                return schema.upgrade(conn, self.safe_url())
        except sa.exc.SQLAlchemyError as exc:
            fault = self._fault(exc)
            raise CatalogError(
                f"{fault.message} The upgrade changed nothing.",
                catalog=fault.catalog,
                fault=fault.fault,
                retryable=fault.retryable,
            ) from None
        finally:
            engine.dispose()

    def close(self) -> None:
        with self._lock:
            if self._heartbeat is not None:
                self._heartbeat.stop()
                self._heartbeat = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _reopen(self) -> None:
        """Drop the engine: the next transaction opens the database file now at the path."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine, self._file = None, None

    def _check_file(self, *, after_write: bool) -> None:
        """Refuse to go on writing into a SQLite file that was deleted or replaced.

        SQLite keeps writing into an unlinked file as if nothing happened: every record
        would vanish with the last handle. Checked before each transaction and again after
        each write commits, so a write that landed in a deleted file is reported, not kept
        as a silent success.
        """
        if self._file is None:
            return
        path, device, inode = self._file
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise CatalogError(
                f"The catalog file {path} was deleted while archive-core was using it"
                + (", so the results just written to it are lost" if after_write else "")
                + ". Nothing is recorded until it is back: restore it from a backup, or "
                "restart the Portal workers to start a new, empty catalog there."
            ) from None
        except OSError as exc:
            raise CatalogError(
                f"The catalog file {path} cannot be checked: {exc.strerror}.", retryable=True
            ) from None
        if (info.st_dev, info.st_ino) == (device, inode):
            return
        log.warning("catalog file %s was replaced on disk; opening the new file", path)
        self._reopen()
        if after_write:
            raise CatalogError(
                f"The catalog file {path} was replaced while results were being written to "
                "it, so they are lost; the new file is used from now on.",
                retryable=True,
            )

    def _run(self, work: Callable[[Any, Any], T], *, write: bool) -> T:
        """`work(connection, tables)` in one transaction; lock conflicts are retried.

        Several workers writing overlapping batches may deadlock on PostgreSQL, or find a
        SQLite file busy; such a transaction was rolled back whole, so running it again is
        safe. All its attempts together wait at most `lock_wait` for locks: a lock another
        program keeps is given up on once, as "locked", not waited out again per retry. Any
        other database error, or the last failed retry, is a CatalogError saying what is
        wrong with the catalog.
        """
        import sqlalchemy as sa

        deadline = time.monotonic() + self._lock_wait
        for attempt in range(_RETRIES + 1):
            self._check_file(after_write=False)  # first: it may drop the engine for a new one
            engine, tables = self._connect(deadline)
            try:
                with engine.connect() as conn:
                    conn.execution_options(
                        archive_core_write=write, archive_core_lock_wait=_left(deadline)
                    )
                    with conn.begin():
                        result = work(conn, tables)
            except sa.exc.DBAPIError as exc:
                lost = catalog_faults.lost_lock(exc)
                left = deadline - time.monotonic()
                if lost is not None and attempt < _RETRIES and left > _SHORTEST_WAIT:
                    log.info(
                        "catalog %s: %s; running the transaction again",
                        self.safe_url(),
                        catalog_faults.first_line(exc, self._secrets()),
                    )
                    pause = min(2.0, 0.02 * 2**attempt) * (0.5 + random.random())
                    time.sleep(min(pause, left / 2))
                    continue
                raise self._failed(engine, exc, attempts=attempt + 1) from None
            except sa.exc.SQLAlchemyError as exc:
                raise self._failed(engine, exc) from None
            if write:
                self._check_file(after_write=True)
            return result
        raise AssertionError("unreachable")

    def _failed(self, engine: Any, exc: Exception, *, attempts: int = 1) -> CatalogError:
        """The error a failed transaction raises; the engine's idle connections are dropped
        unless it only lost a lock, so that the next transaction opens the database anew: a
        session opened read-only, or a file opened while damaged or not writable, stays that
        way after the admin has fixed it."""
        error = self._fault(exc, attempts=attempts)
        if error.fault not in (CatalogFault.LOCKED, CatalogFault.CONFLICT):
            engine.dispose()
        return error

    # --- copies --------------------------------------------------------------------------------

    def find_copies(self, target: str, names: Iterable[tuple[str, str]]) -> dict[str, CopyRecord]:
        """Completed copies on `target` among (name, sha1) pairs, keyed by name.

        Only a copy whose recorded sha1 equals the asked one counts, so a name reused for
        different content never resolves to the old bytes. A record is what the catalog
        remembers, not proof: the caller asks the target before it relies on one.
        """
        wanted = dict(names)
        if not wanted:
            return {}

        def work(conn, t) -> dict[str, CopyRecord]:
            found: dict[str, CopyRecord] = {}
            for chunk in _chunks(list(wanted), _CHUNK):
                rows = conn.execute(
                    t.copies.select().where(t.copies.c.target == target, t.copies.c.name.in_(chunk))
                )
                for row in rows.mappings():
                    if row["sha1"] and row["sha1"] == wanted.get(row["name"]):
                        found[row["name"]] = _record(CopyRecord, row)
            return found

        return self._run(work, write=False)

    def copy(self, external_id: str) -> CopyRecord | None:
        def work(conn, t) -> CopyRecord | None:
            for where in _located(t.copies, [external_id]):
                row = conn.execute(t.copies.select().where(where)).mappings().first()
                # The copy recorded under this very id (its driver's scheme), not another's.
                if row and row["external_id"] == external_id:
                    return _record(CopyRecord, row)
            return None

        return self._run(work, write=False)

    def placements(self, external_ids: Iterable[str]) -> dict[str, Mapping[str, Any]]:
        """The recorded placement of each of these copies that has one: external id -> it."""
        import json

        import sqlalchemy as sa

        wanted = set(external_ids)

        def work(conn, t) -> dict[str, Mapping[str, Any]]:
            c = t.copies
            found = {}
            for where in _located(c, wanted):
                query = sa.select(c.c.external_id, c.c.placement).where(
                    where, c.c.placement.is_not(None)
                )
                found.update(
                    (eid, json.loads(text)) for eid, text in conn.execute(query) if eid in wanted
                )
            return found

        return self._run(work, write=False) if wanted else {}

    def copies(self, *, policy: str | None = None, target: str | None = None) -> list[CopyRecord]:
        def work(conn, t) -> list[CopyRecord]:
            query = t.copies.select().order_by(t.copies.c.id)
            if policy is not None:
                query = query.where(t.copies.c.policy == policy)
            if target is not None:
                query = query.where(t.copies.c.target == target)
            return [_record(CopyRecord, r) for r in conn.execute(query).mappings()]

        return self._run(work, write=False)

    def mark_verified(self, external_ids: Iterable[str], when: dt.datetime | None = None) -> None:
        ids = set(external_ids)
        if not ids:
            return
        stamp = when or self._clock()

        def work(conn, t) -> None:
            for where in _located(t.copies, ids):
                conn.execute(
                    t.copies.update()
                    .where(where)
                    .values(last_verified=stamp, last_failure=None, failure=None)
                )

        self._run(work, write=True)

    def replace_copies(self, target: str, records: Sequence[CopyRecord]) -> int:
        """Make `records` the target's copies, in one transaction (a rebuild from the
        target); how many rows the target had before."""

        def work(conn, t) -> int:
            import sqlalchemy as sa

            before = conn.execute(
                sa.select(sa.func.count()).where(t.copies.c.target == target)
            ).scalar_one()
            conn.execute(t.copies.delete().where(t.copies.c.target == target))
            rows = [_copy_row(r) for r in sorted(records, key=lambda r: r.locator)]
            for chunk in _chunks(rows, _CHUNK):
                conn.execute(t.copies.insert(), list(chunk))
            return int(before)

        return self._run(work, write=True)

    def mark_failed(self, failures: Mapping[str, str], when: dt.datetime | None = None) -> None:
        """Record copies whose verification failed: external id -> what was wrong."""
        if not failures:
            return
        stamp = when or self._clock()

        def work(conn, t) -> None:
            for external_id, why in failures.items():
                for where in _located(t.copies, [external_id]):
                    conn.execute(
                        t.copies.update().where(where).values(last_failure=stamp, failure=why)
                    )

        self._run(work, write=True)

    def now(self) -> dt.datetime:
        """The catalog's clock: what `last_verified` and failures are stamped with."""
        return self._clock()

    def scrub_order(
        self, *, target: str, before: dt.datetime, policy: str | None = None, limit: int = 1000
    ) -> list[CopyRecord]:
        """A target's copies due for verification, neither verified nor failed since
        `before`: those verified longest ago first (never verified: the oldest), at most
        `limit`."""
        import sqlalchemy as sa

        def work(conn, t) -> list[CopyRecord]:
            c = t.copies.c
            never = sa.case((c.last_verified.is_(None), 0), else_=1)
            query = (
                t.copies.select()
                .where(_due(c, target, policy, before))
                .order_by(never, c.last_verified, c.created, c.id)
                .limit(limit)
            )
            return [_record(CopyRecord, r) for r in conn.execute(query).mappings()]

        return self._run(work, write=False)

    def scrub_count(self, *, target: str, before: dt.datetime, policy: str | None = None) -> int:
        """How many copies `scrub_order` would give, without a limit."""
        import sqlalchemy as sa

        def work(conn, t) -> int:
            query = sa.select(sa.func.count()).where(_due(t.copies.c, target, policy, before))
            return int(conn.execute(query).scalar_one())

        return self._run(work, write=False)

    def summary(self) -> list[CopySummary]:
        """Per policy and target: copies, bytes, the oldest verification, failures."""
        import sqlalchemy as sa

        def work(conn, t) -> list[CopySummary]:
            c = t.copies.c
            query = (
                sa.select(
                    c.policy,
                    c.target,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(c.size), 0),
                    sa.func.sum(sa.case((c.last_verified.is_(None), 1), else_=0)),
                    sa.func.min(c.last_verified),
                    sa.func.sum(sa.case((c.failure.is_not(None), 1), else_=0)),
                )
                .group_by(c.policy, c.target)
                .order_by(c.policy, c.target)
            )
            return [
                CopySummary(
                    policy=row[0],
                    target=row[1],
                    copies=int(row[2]),
                    bytes=int(row[3]),
                    never_verified=int(row[4] or 0),
                    oldest_verified=as_utc(row[5]) if row[5] is not None else None,
                    failed=int(row[6] or 0),
                )
                for row in conn.execute(query)
            ]

        return self._run(work, write=False)

    # --- journal -------------------------------------------------------------------------------

    def begin(
        self,
        *,
        job_id: str | None,
        policy: str,
        target: str,
        operation: str,
        entries: Sequence[JournalEntry],
    ) -> JournalBatch:
        """Write the intent of a batch: one row, whatever its size, in one transaction.

        Files of older intents with the same names are taken over when the worker that
        wrote them is dead (see `_dead_batches`); a live worker's stay open, since it is still
        moving those files. `abandoned` names the dead workers per name. Call `end()` once
        the batch is over.
        """
        import json

        batch = uuid.uuid4().hex
        worker = str(self.worker)
        names = {e.name for e in entries}
        files = json.dumps(list(entries), ensure_ascii=False)  # named tuples: [[key, name], ...]

        def work(conn, t) -> dict[str, tuple[str, ...]]:
            now = self._clock()
            _beat(conn, t.workers, worker, now)
            abandoned = self._take_over(conn, t, target, operation, names, now)
            conn.execute(
                t.batches.insert().values(
                    id=batch,
                    job_id=job_id,
                    policy=policy,
                    target=target,
                    operation=operation,
                    worker=worker,
                    state=INTENT,
                    files=len(entries),
                    done=0,
                    failed=0,
                    started=now,
                )
            )
            conn.execute(t.parts.insert().values(batch=batch, kind=FILES, data=files))
            return abandoned

        # Registered before the intent exists, so no other thread can take it for dead.
        with _open_lock:
            _open_batches.add(batch)
        try:
            abandoned = self._run(work, write=True)
        except BaseException:
            self._forget(batch)
            raise
        with self._lock:
            self._batches[batch] = entries
            if self._heartbeat is None:
                self._heartbeat = _Heartbeat(self)
        if abandoned:
            log.warning(
                "policy=%s job=%s target %s: %d files had an unfinished %s by a worker that "
                "stopped; redoing them",
                policy,
                job_id,
                target,
                len(abandoned),
                operation,
            )
        return JournalBatch(id=batch, abandoned=abandoned)

    def _take_over(
        self, conn, t, target: str, operation: str, names: set[str], now: dt.datetime
    ) -> dict[str, tuple[str, ...]]:
        """Take the files named `names` over from dead workers' open batches: name -> the
        dead workers. Each file taken over gets an "abandoned" row of its own and leaves its
        old batch, which is abandoned once no file is left in it."""
        import json

        b, p = t.batches, t.parts
        olds = self._dead_batches(conn, t, target, operation, now)
        if not olds:  # the usual batch: nothing left open by a dead worker
            return {}
        abandoned: dict[str, set[str]] = {}
        rows: list[dict[str, Any]] = []
        held = _held(conn, t, [old["id"] for old in olds])
        for old in olds:
            files, recorded = held[old["id"]]
            taken = [(k, n) for k, n in files if n in names and k not in recorded]
            if not taken:
                continue
            for key, name in taken:
                abandoned.setdefault(name, set()).add(old["worker"])
                rows.append(_journal_row(old, key, name, ABANDONED, now))
            gone = {k for k, _ in taken}
            left = [f for f in files if f[0] not in gone]
            conn.execute(
                p.update()
                .where(p.c.batch == old["id"], p.c.kind == FILES)
                .values(data=json.dumps(left, ensure_ascii=False))
            )
            if all(k in recorded for k, _ in left):
                conn.execute(
                    b.update().where(b.c.id == old["id"]).values(state=ABANDONED, finished=now)
                )
        if rows:
            conn.execute(t.journal.insert(), rows)
        return {name: tuple(sorted(owners)) for name, owners in abandoned.items()}

    def _dead_batches(
        self, conn, t, target: str, operation: str, now: dt.datetime
    ) -> list[Mapping[str, Any]]:
        """The rows of the open batches on `target` of `operation` whose worker is dead.

        Dead means: this very process, but the batch is no longer open in it; a process of
        this pid space that is gone; or, where the process table cannot tell (another host,
        container or boot), a heartbeat older than HEARTBEAT_STALE, or none at all.
        """
        import sqlalchemy as sa

        b = t.batches
        query = sa.select(b).where(
            b.c.state == INTENT, b.c.target == target, b.c.operation == operation
        )
        rows = list(conn.execute(query.order_by(b.c.id)).mappings())
        if not rows:
            return []
        me = str(self.worker)
        verdict: dict[str, bool | None] = {}
        for owner in {row["worker"] for row in rows}:
            if owner != me:
                parsed = WorkerId.parse(owner)
                verdict[owner] = False if parsed is None else parsed.is_alive()
        unknown = sorted(w for w, alive in verdict.items() if alive is None)
        for chunk in _chunks(unknown, _CHUNK):
            beats = conn.execute(
                sa.select(t.workers.c.worker, t.workers.c.heartbeat).where(
                    t.workers.c.worker.in_(chunk)
                )
            )
            for owner, beat in beats:
                verdict[owner] = now - as_utc(beat) < HEARTBEAT_STALE
        with _open_lock:
            running = set(_open_batches)
        return [
            row
            for row in rows
            if not (row["id"] in running if row["worker"] == me else bool(verdict[row["worker"]]))
        ]

    def finish(self, batch: str, results: Sequence[JournalResult]) -> None:
        """Record results of part of a batch, and the copies they made or removed, atomically.

        A success costs its copy's row (archive) or removal (delete) and, in the journal, only
        its key in the group's part and the batch's count; a failure gets a row with its reason.
        """
        import json

        import sqlalchemy as sa

        if not results:
            return
        # Rows in one fixed order: two workers recording overlapping copies then take the
        # same row locks in the same order, which cannot deadlock.
        new = sorted(
            (_copy_row(r.copy) for r in results if r.copy is not None),
            key=lambda row: (row["target"], row["locator"]),
        )
        removed = sorted({r.removed for r in results if r.removed})
        failed = [r for r in results if not r.ok]
        names = self._names(batch) if failed else {}

        def work(conn, t) -> None:
            now = self._clock()
            b = t.batches
            if failed:
                meta = conn.execute(sa.select(b).where(b.c.id == batch)).mappings().one()
                conn.execute(
                    t.journal.insert(),
                    [
                        _journal_row(meta, r.key, names.get(r.key, r.key), FAILED, now, r.error)
                        for r in failed
                    ],
                )
            keys = json.dumps([r.key for r in results], ensure_ascii=False)
            conn.execute(t.parts.insert(), {"batch": batch, "kind": RESULTS, "data": keys})
            ok = len(results) - len(failed)
            conn.execute(
                t.progress, {"p_batch": batch, "p_ok": ok, "p_bad": len(failed), "p_now": now}
            )
            if new:
                _upsert(conn, t.copies, new, keys=("target", "locator"), keep=("created",))
            for where in _located(t.copies, removed):
                conn.execute(t.copies.delete().where(where))

        self._run(work, write=True)

    def _names(self, batch: str) -> dict[str, str]:
        with self._lock:
            entries = self._batches.get(batch, ())
        return {e.key: e.name for e in entries}

    def end(self, batch: str) -> None:
        """The batch is over in this process: its results are given, or given up on.

        Nothing is written: a batch is done once its last file's result is recorded, and
        one that stopped short (the catalog refused a result) stays an intent, which the
        next run of its files takes over, as it would a dead worker's.
        """
        self._forget(batch)

    def _forget(self, batch: str) -> None:
        with _open_lock:
            _open_batches.discard(batch)
        with self._lock:
            self._batches.pop(batch, None)

    def beat(self) -> None:
        """Refresh this worker's heartbeat now (the heartbeat thread does it while busy)."""
        worker = str(self.worker)
        self._run(lambda conn, t: _beat(conn, t.workers, worker, self._clock()), write=True)

    def busy(self) -> bool:
        """Whether a batch begun through this catalog is still open."""
        with self._lock:
            return bool(self._batches)

    def unfinished(self, *, target: str | None = None) -> list[JournalRow]:
        """Files of open batches: what a worker was moving when it stopped, or is moving now
        (a batch's files are open until the batch is done, however many have results)."""
        import sqlalchemy as sa

        def work(conn, t) -> list[JournalRow]:
            b = t.batches
            query = sa.select(b).where(b.c.state == INTENT).order_by(b.c.started, b.c.id)
            if target is not None:
                query = query.where(b.c.target == target)
            found = list(conn.execute(query).mappings())
            held = _held(conn, t, [batch["id"] for batch in found])
            return [
                row
                for batch in found
                for row in _file_rows(batch, *held[batch["id"]])
                if row.state == INTENT
            ]

        return self._run(work, write=False)

    def journal(self, *, job_id: str | None = None, batch: str | None = None) -> list[JournalRow]:
        """One row per file of the matching batches: its own row where it has one (failed,
        or taken over by a later run), else its batch's state (done, or still an intent).
        Rows of work journaled before batches had rows of their own come as they were kept."""
        import sqlalchemy as sa

        def work(conn, t) -> list[JournalRow]:
            b, j = t.batches, t.journal
            files = sa.select(j).order_by(j.c.id)
            batches = sa.select(b).order_by(b.c.started, b.c.id)
            if job_id is not None:
                files = files.where(j.c.job_id == job_id)
                batches = batches.where(b.c.job_id == job_id)
            if batch is not None:
                files = files.where(j.c.batch == batch)
                batches = batches.where(b.c.id == batch)
            rows = [_record(JournalRow, r) for r in conn.execute(files).mappings()]
            own = {(r.batch, r.key) for r in rows}
            found = list(conn.execute(batches).mappings())
            held = _held(conn, t, [f["id"] for f in found])
            for one in found:
                rows.extend(
                    r for r in _file_rows(one, *held[one["id"]]) if (r.batch, r.key) not in own
                )
            return sorted(rows, key=lambda r: r.started)

        return self._run(work, write=False)

    def recent(self, *, batches: int = 20, failures: int = 50) -> Recent:
        """The last `batches` batches (newest first) and the last `failures` files that
        failed, with their messages: what an admin's overview shows. Two bounded queries."""
        import sqlalchemy as sa

        def work(conn, t) -> Recent:
            b, j = t.batches, t.journal
            query = sa.select(b).order_by(b.c.started.desc(), b.c.id.desc()).limit(batches)
            last = [_record(RecentBatch, r) for r in conn.execute(query).mappings()]
            query = sa.select(j).where(j.c.state == FAILED).order_by(j.c.id.desc()).limit(failures)
            failed = [_record(JournalRow, r) for r in conn.execute(query).mappings()]
            return Recent(batches=tuple(last), failures=tuple(failed))

        return self._run(work, write=False)

    def prune(
        self, *, done_before: dt.datetime, failed_before: dt.datetime, dry_run: bool = False
    ) -> Pruned:
        """Remove the journal of work finished before these times: batches done or abandoned
        before `done_before` (with the record of their files that succeeded), files'
        failures before `failed_before`. An open batch (work not finished, or a dead worker's
        that no re-run has taken over yet) is never removed, however old: the next run of
        its files needs it. In rounds of PRUNE_ROWS, so that a first prune of years of
        journal holds no lock for long."""
        import sqlalchemy as sa

        finished = (DONE, ABANDONED)

        def old(table, states: tuple[str, ...], before: dt.datetime):
            return sa.and_(table.c.state.in_(states), table.c.finished < before)

        def count(conn, t) -> Pruned:
            def rows(table, states, before, what=None) -> int:
                query = sa.select(sa.func.count() if what is None else what).where(
                    old(table, states, before)
                )
                return conn.execute(query).scalar_one() or 0

            b = t.batches
            return Pruned(
                batches=rows(b, finished, done_before),
                done=rows(b, finished, done_before, sa.func.sum(b.c.done))
                + rows(t.journal, finished, done_before),
                failed=rows(t.journal, (FAILED,), failed_before),
            )

        if dry_run:
            return self._run(count, write=False)

        def one_round(
            pick: Callable[[Any], Any], states: tuple[str, ...], before: dt.datetime
        ) -> Callable[..., tuple[int, int]]:
            def work(conn, t) -> tuple[int, int]:
                table = pick(t)
                done = table.c.done if table is t.batches else sa.literal(1)
                found = conn.execute(
                    sa.select(table.c.id, done).where(old(table, states, before)).limit(PRUNE_ROWS)
                ).all()
                if found:
                    ids = [r[0] for r in found]
                    conn.execute(table.delete().where(table.c.id.in_(ids)))
                    if table is t.batches:
                        conn.execute(t.parts.delete().where(t.parts.c.batch.in_(ids)))
                return len(found), sum(r[1] for r in found)

            return work

        removed = {"batches": 0, "done": 0, "failed": 0}
        for kind, pick, states, before in (
            ("batches", lambda t: t.batches, finished, done_before),
            ("done", lambda t: t.journal, finished, done_before),
            ("failed", lambda t: t.journal, (FAILED,), failed_before),
        ):
            while True:
                gone, files = self._run(one_round(pick, states, before), write=True)
                if kind == "batches":
                    removed["batches"] += gone
                    removed["done"] += files
                else:
                    removed[kind] += gone
                if gone < PRUNE_ROWS:
                    break
        return Pruned(**removed)


#: Rows (batches, or files' journal rows) `Catalog.prune` removes per transaction.
PRUNE_ROWS = 5_000


@attrs.frozen(kw_only=True)
class Pruned:
    """What a prune removed (or, dry, would remove)."""

    batches: int  # batch records of work done or abandoned
    done: int  # files those batches (and older journal rows) record as done or abandoned
    failed: int  # files' failure rows


class _Heartbeat:
    """Refreshes its catalog's worker heartbeat while that catalog has batches open.

    A daemon thread: it never keeps a process from exiting, and a process that dies takes it
    along, which is exactly what lets other workers see the death.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="archive-core-heartbeat", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            if not self._catalog.busy():
                continue
            try:
                self._catalog.beat()
            except CatalogError as exc:
                log.warning("catalog heartbeat failed: %s", exc.message)


def _beat(conn, table, worker: str, now: dt.datetime) -> None:
    _upsert(conn, table, [{"worker": worker, "heartbeat": now}], keys=("worker",))


#: The advisory lock key under which a PostgreSQL catalog's schema is created.
_SCHEMA_LOCK = 0x61726368  # "arch"


def _sqlite_file(url: Any) -> str | None:
    """The absolute path of a SQLite URL's database file; None for an in-memory database.

    A URI form (`sqlite:///file:/path?mode=ro&uri=true`) names the file after `file:`.
    """
    database = url.database
    if not database or database == ":memory:":
        return None
    if url.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
        if database.startswith("//"):  # file://host/path: only the local host is possible
            database = "/" + database[2:].split("/", 1)[-1]
        if not database or database == ":memory:":
            return None
    return os.path.abspath(database)


#: Below this much left of its lock wait, a transaction that lost a lock is not tried again.
_SHORTEST_WAIT = 0.05


def _left(deadline: float) -> float:
    """Seconds left until `deadline` (monotonic); never quite none, so that a last attempt
    still takes a free lock instead of failing at once."""
    return max(deadline - time.monotonic(), 0.001)


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _upsert(
    conn, table, rows: list[dict[str, Any]], *, keys: tuple[str, ...], keep: tuple[str, ...] = ()
) -> None:
    """Insert rows; a row whose `keys` another worker wrote first is updated instead.

    Every column but the keys and `keep` is overwritten: a copy written again at the same
    place is a new copy, not verified yet (its `last_verified` goes back to none). Rows must
    come sorted by `keys`, so concurrent writers lock in one order; they are the caller's to
    throw away (their values are converted in place).
    """
    backend = conn.dialect.name
    fixed = {*keys, *keep, "id"}
    columns = [c for c in rows[0] if c not in fixed]
    if backend in ("sqlite", "postgresql"):
        shape = (backend, table.name, keys, keep, tuple(rows[0]))
        plan = _PLANS.get(shape)
        if plan is None:
            plan = _PLANS[shape] = _upsert_plan(conn.dialect, table, rows[0], columns, keys)
        _executemany(conn, plan, rows)
        return
    for row in rows:  # portable path for other backends
        match = [table.c[k] == row[k] for k in keys]
        values = {c: row[c] for c in columns if c != "placement" or row[c] is not None}
        updated = conn.execute(table.update().where(*match).values(values))
        if updated.rowcount == 0:
            conn.execute(table.insert().values(**row))


@attrs.frozen
class _Plan:
    """A bulk statement compiled once per process: its SQL, the order its parameters go in
    (None: by name), and the bind processors its columns need (SQLite's datetime format)."""

    sql: str
    order: tuple[str, ...] | None
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]


#: Bulk statements by (backend, table, keys, kept columns, row columns): compiling one costs
#: more than writing a group of small files' rows.
_PLANS: dict[tuple[Any, ...], _Plan] = {}


def _upsert_plan(
    dialect, table, row: Mapping[str, Any], columns: list[str], keys: tuple[str, ...]
) -> _Plan:
    import sqlalchemy as sa

    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    stmt = insert(table)
    update = {c: stmt.excluded[c] for c in columns}
    if "placement" in update:
        # None is "not known", never "nowhere": a copy recorded again by a driver that did
        # not say its placement keeps the one recorded before.
        update["placement"] = sa.func.coalesce(update["placement"], table.c.placement)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c[k] for k in keys], set_=update)
    names = list(row)
    compiled = stmt.compile(dialect=dialect, column_keys=names)
    processors = tuple(
        (name, proc)
        for name in names
        if (proc := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    order = tuple(compiled.positiontup) if compiled.positional else None
    return _Plan(sql=compiled.string, order=order, processors=processors)


def _executemany(conn, plan: _Plan, rows: list[dict[str, Any]]) -> None:
    """Run a planned statement once per row: the bulk path of a batch of thousands of files.

    SQLAlchemy's own executemany rebuilds every row's parameters through its compiler, which
    costs more than the database work for small files. Here rows go straight to the DBAPI,
    after each column's own bind processor, so the result is what `conn.execute(stmt, rows)`
    would store. No row costs a round trip: SQLite runs in this process, and psycopg (3.1 and
    later) sends an executemany's rows to PostgreSQL in one pipeline.
    """
    for name, processor in plan.processors:
        # A column's values repeat across a batch (its one `created`): each converted once.
        converted: dict[Any, Any] = {}
        for row in rows:
            value = row[name]
            try:
                row[name] = converted[value]
            except KeyError:
                row[name] = converted[value] = processor(value)
    params: list[Any]
    if plan.order is None:
        params = rows
    else:
        import operator

        # One C-level getter per row instead of a generator: this runs for every file.
        order = plan.order
        pick = operator.itemgetter(*order)
        params = (
            [pick(row) for row in rows] if len(order) > 1 else [(row[order[0]],) for row in rows]
        )
    conn.exec_driver_sql(plan.sql, params)


def _sqlite_connect(dbapi_conn, _record) -> None:
    # The sqlite3 module's own implicit BEGIN would start every write transaction DEFERRED;
    # `_sqlite_begin` says which kind each one is instead.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    # WAL lets readers (CLI, is_ready) run while a worker writes; NORMAL sync is safe with WAL
    # here because a lost "done" only means the next run re-verifies an existing copy.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # A write transaction takes the write lock up front (IMMEDIATE): one that began as a
    # reader and then writes fails at once with "database is locked" when another process
    # wrote in between, without waiting for busy_timeout. Readers stay DEFERRED (WAL lets
    # them run beside the writer).
    options = conn.get_execution_options()
    wait = options.get("archive_core_lock_wait")
    if wait is not None:
        # SQLite's busy handler retries a taken lock until this much time has passed.
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {_millis(wait)}")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("archive_core_write") else "BEGIN")


def _postgresql_begin(conn) -> None:
    # Without a lock_timeout a statement waits for a lock as long as its holder keeps it:
    # a session left open in a transaction would hold every worker's batch for good.
    wait = conn.get_execution_options().get("archive_core_lock_wait")
    if wait is not None:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_millis(wait)}")


def _schema(sa):
    metadata = sa.MetaData()
    ts = sa.DateTime(timezone=True)
    copies = sa.Table(
        "archive_core_copies",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(2048), nullable=False),
        sa.Column("locator", sa.String(2048), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("item_id", sa.String(255)),
        sa.Column("sha1", sa.String(40)),
        sa.Column("sha256", sa.String(64)),
        sa.Column("size", sa.BigInteger),
        sa.Column("created", ts, nullable=False),
        sa.Column("last_verified", ts),
        sa.Column("placement", sa.Text),  # JSON, as the driver gave it
        sa.Column("last_failure", ts),
        sa.Column("failure", sa.Text),
        sa.UniqueConstraint("target", "locator", name="uq_archive_core_copy_location"),
        # No index on external_id: an external id names its (target, locator), found through
        # the unique index (see _located). A third index on every copy was a third random
        # B-tree page written per archived file.
        sa.Index("ix_archive_core_copies_name", "target", "name"),
    )
    # One row per batch: its intent (the files, as JSON [[key, name], ...]) and progress.
    batches = sa.Table(
        "archive_core_batches",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(255)),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("started", ts, nullable=False),
        sa.Column("finished", ts),
        sa.Index("ix_archive_core_batches_open", "state", "target", "operation"),
        sa.Index("ix_archive_core_batches_job", "job_id"),
    )
    # What a batch holds, kept apart from its small, often updated row: its files ("files":
    # JSON [[key, name], ...], written once), and one row per group of results recorded
    # ("results": JSON [key, ...], written with the group). Nothing here is ever rewritten
    # while the batch runs, so a batch of 10,000 files costs its list once.
    parts = sa.Table(
        "archive_core_batch_parts",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Index("ix_archive_core_batch_parts_batch", "batch"),
    )
    # One row per file that failed (with the reason), or that a later run took over from a
    # dead worker's batch; a file that succeeded is counted in its batch only.
    journal = sa.Table(
        "archive_core_journal",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(255)),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("name", sa.String(2048), nullable=False),
        sa.Column("item_id", sa.String(255)),
        sa.Column("sha1", sa.String(40)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("started", ts, nullable=False),
        sa.Column("finished", ts),
        sa.Index("ix_archive_core_journal_batch", "batch", "key"),
        sa.Index("ix_archive_core_journal_job", "job_id"),
    )
    # One row per worker process that wrote intents: its heartbeat tells workers on other
    # hosts whether those intents are still live work.
    workers = sa.Table(
        "archive_core_workers",
        metadata,
        sa.Column("worker", sa.String(255), primary_key=True),
        sa.Column("heartbeat", ts, nullable=False),
    )
    # One row per leased resource (archive_core.leases): who holds it, with which token,
    # until when. A released lease's row goes; an expired one stays until it is taken over.
    leases = sa.Table(
        "archive_core_leases",
        metadata,
        sa.Column("resource", sa.String(255), primary_key=True),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(255)),
        sa.Column("granted", ts, nullable=False),
        sa.Column("expires", ts, nullable=False),
        sa.Column("ttl", sa.Float, nullable=False),
        sa.Column("taken_over_from", sa.String(255)),
    )
    # Workers waiting for a resource, served by priority (higher first), then arrival: the id
    # gives their arrival order (every insert for one resource happens under that resource's
    # lock, so ids rise in commit order).
    lease_waiters = sa.Table(
        "archive_core_lease_waiters",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(255)),
        sa.Column("arrived", ts, nullable=False),
        sa.Column("expires", ts, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("token", name="uq_archive_core_lease_waiter_token"),
        sa.Index("ix_archive_core_lease_waiters_queue", "resource", "priority", "id"),
    )
    # The audit trail: append-only, each entry's hash covering the one before it; the head
    # (one row) names the last entry, so entries cut off the end are noticed too.
    audit = sa.Table(
        "archive_core_audit",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", ts, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("process", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("policy", sa.String(255)),
        sa.Column("subject", sa.Text, nullable=False),  # JSON
        sa.Column("outcome", sa.String(255), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    audit_head = sa.Table(
        "archive_core_audit_head",
        metadata,
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # Versions of the targets and policies (archive_core.configstore), numbered without gaps.
    config_versions = sa.Table(
        "archive_core_config_versions",
        metadata,
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", ts, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),  # JSON
        sa.Column("digest", sa.String(64), nullable=False),
    )
    return _Tables(
        metadata=metadata,
        copies=copies,
        batches=batches,
        parts=parts,
        journal=journal,
        workers=workers,
        leases=leases,
        lease_waiters=lease_waiters,
        audit=audit,
        audit_head=audit_head,
        config_versions=config_versions,
        progress=_progress(sa, batches),
    )


def _progress(sa, b):
    """A group of results counted in its batch, which is done with its last file's result
    (no write of its own at the end). Built once: making it costs more than running it."""
    ok, bad = sa.bindparam("p_ok", type_=sa.Integer), sa.bindparam("p_bad", type_=sa.Integer)
    complete = sa.and_(b.c.state == INTENT, b.c.done + b.c.failed + ok + bad >= b.c.files)
    return (
        b.update()
        .where(b.c.id == sa.bindparam("p_batch"))
        .values(
            done=b.c.done + ok,
            failed=b.c.failed + bad,
            state=sa.case((complete, DONE), else_=b.c.state),
            finished=sa.case(
                (complete, sa.bindparam("p_now", type_=b.c.started.type)), else_=b.c.finished
            ),
        )
    )


@attrs.frozen
class _Tables:
    metadata: Any
    copies: Any
    batches: Any
    parts: Any
    journal: Any
    workers: Any
    leases: Any
    lease_waiters: Any
    audit: Any
    audit_head: Any
    config_versions: Any
    progress: Any  # the statement counting a group of results in its batch


def _journal_row(
    batch: Mapping[str, Any],
    key: str,
    name: str,
    state: str,
    now: dt.datetime,
    error: str | None = None,
) -> dict[str, Any]:
    """A file's own journal row, in its batch (a `batches` row)."""
    return {
        "batch": batch["id"],
        "job_id": batch["job_id"],
        "policy": batch["policy"],
        "target": batch["target"],
        "operation": batch["operation"],
        "key": key,
        "name": name,
        "state": state,
        "error": error,
        "worker": batch["worker"],
        "started": batch["started"],
        "finished": now,
    }


def _held(conn, t, batches: Sequence[str]) -> dict[str, tuple[list[list[str]], set[str]]]:
    """What each batch holds: its files ([key, name] pairs) and the keys with a result."""
    import json

    import sqlalchemy as sa

    held: dict[str, tuple[list[list[str]], set[str]]] = {b: ([], set()) for b in batches}
    p = t.parts
    for chunk in _chunks(list(batches), _CHUNK):
        query = sa.select(p.c.batch, p.c.kind, p.c.data).where(p.c.batch.in_(chunk))
        for batch, kind, data in conn.execute(query.order_by(p.c.id)):
            files, recorded = held[batch]
            if kind == FILES:
                files.extend(json.loads(data))
            else:
                recorded.update(json.loads(data))
    return held


def _file_rows(
    batch: Mapping[str, Any], files: list[list[str]], recorded: set[str]
) -> list[JournalRow]:
    """A batch's files (those it still holds) as journal rows: done once a file's result
    is recorded (a failure has a row of its own, which the caller prefers), else in the
    batch's state."""
    started, finished = as_utc(batch["started"]), as_utc(batch["finished"])
    return [
        JournalRow(
            batch=batch["id"],
            job_id=batch["job_id"],
            policy=batch["policy"],
            target=batch["target"],
            operation=batch["operation"],
            key=key,
            name=name,
            state=DONE if key in recorded else batch["state"],
            worker=batch["worker"],
            started=started,  # type: ignore[arg-type]
            finished=finished,
            error=None,
        )
        for key, name in files
    ]


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime read from the catalog, in UTC: SQLite hands back naive datetimes (stored as
    UTC), PostgreSQL the session's zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _copy_row(copy: CopyRecord) -> dict[str, Any]:
    # attrs.asdict recurses and copies; this runs once per archived file.
    row = {f: getattr(copy, f) for f in _COPY_FIELDS}
    if copy.placement is not None:
        row["placement"] = placement_text(copy.placement)
    return row


def placement_text(placement: Mapping[str, Any]) -> str:
    """A copy's placement as the catalog keeps it; TypeError or ValueError when it cannot be
    kept (not JSON-serialisable, or NaN and infinities, which JSON has no words for)."""
    import json

    return json.dumps(placement, sort_keys=True, ensure_ascii=False, allow_nan=False)


_COPY_FIELDS = tuple(a.name for a in attrs.fields(CopyRecord))


def _record(cls: type[R], row: Any) -> R:
    """A frozen record from a result row, its datetimes normalised to UTC."""
    values = {}
    for field in attrs.fields(cls):
        value = row[field.name]
        if isinstance(value, dt.datetime):
            value = as_utc(value)
        elif field.name == "placement" and value is not None:
            import json

            value = json.loads(value)
        values[field.name] = value
    return cls(**values)


def _due(c: Any, target: str, policy: str | None, before: dt.datetime) -> Any:
    """Copies of `target` (and `policy`) neither verified nor failed since `before`."""
    import sqlalchemy as sa

    clauses = [
        c.target == target,
        sa.or_(c.last_verified.is_(None), c.last_verified < before),
        sa.or_(c.last_failure.is_(None), c.last_failure < before),
    ]
    if policy is not None:
        clauses.append(c.policy == policy)
    return sa.and_(*clauses)


def _located(copies: Any, external_ids: Iterable[str]) -> Iterator[Any]:
    """WHERE clauses, one per target and chunk, that pick the copies these external ids name.

    An external id is `<scheme>://<target>/<locator>`, made by ExternalId from the copy's own
    target and locator, so the unique (target, locator) index finds its row. The copy at that
    place is the one the driver was asked about, which is what a verify or delete records;
    the id's text is not compared again (a second list of 500 values per statement, and on a
    fresh PostgreSQL table a worse plan). An id that does not parse names no copy here.
    """
    import sqlalchemy as sa

    from archive_core.externalid import ExternalId

    by_target: dict[str, set[str]] = {}
    for text in external_ids:
        try:
            ext = ExternalId.parse(text)
        except ArchiveCoreError:
            continue
        by_target.setdefault(ext.target, set()).add(ext.locator)
    c = copies.c
    for target, locators in by_target.items():
        for chunk in _chunks(sorted(locators), _CHUNK):
            yield sa.and_(c.target == target, c.locator.in_(chunk))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
