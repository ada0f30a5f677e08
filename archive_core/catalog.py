"""The catalog of archived copies and the per-file journal, on any SQLAlchemy database.

One `copies` row per archived copy; one `journal` row per file per operation attempt, written
as "intent" before the transfer and "done"/"failed" after it. A worker killed mid-batch leaves
intents without results; the next run of the batch marks those "abandoned" (once it knows
their worker is dead: a live one's are left alone), finds copies that were completed (here or
by the driver's own idempotence) and never reports a partial copy.
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
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from archive_core import workers
from archive_core.errors import CatalogError
from archive_core.secret import Secret
from archive_core.workers import WorkerId

if TYPE_CHECKING:
    from archive_core.leases import Leases

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Journal states. "abandoned" marks an intent a later run superseded (its worker died).
INTENT, DONE, FAILED, ABANDONED = "intent", "done", "failed", "abandoned"

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


@attrs.frozen(kw_only=True)
class JournalEntry:
    """One file about to be transferred (the "intent" half of the journal)."""

    key: str  # unique within the batch
    name: str  # archive name, or the locator for restore/delete/verify
    item_id: str | None = None
    sha1: str | None = None


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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: While a worker has batches open it refreshes its heartbeat this often; another worker
#: takes its open intents for dead once the heartbeat is older than HEARTBEAT_STALE (and only
#: when liveness cannot be told from the process table, i.e. on another host).
HEARTBEAT_SECONDS = 20.0
HEARTBEAT_STALE = dt.timedelta(seconds=120)

#: A transaction that lost a lock conflict (PostgreSQL deadlock or serialization failure,
#: SQLite busy) is run again this many times, with growing pauses, before it is an error.
_RETRIES = 8

#: Batches this process has open, across every Catalog object in it: an open intent of this
#: very process is live work (another thread runs it) exactly when its batch is in here.
_open_batches: set[str] = set()
_open_lock = threading.Lock()


class Catalog:
    """Copies and journal in one database; safe for several workers on several machines.

    `worker` (default: this process) and `clock` are injectable so that tests can play a
    worker that died on another host without waiting for its heartbeat to go stale.
    """

    def __init__(
        self,
        url: str,
        *,
        password: Secret | None = None,
        worker: WorkerId | None = None,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.url = url
        self._password = password
        self._worker = worker
        self._clock = clock
        self._engine: Any = None
        self._tables: Any = None
        self._file: tuple[str, int, int] | None = None  # SQLite: path, device, inode opened
        self._lock = threading.Lock()
        self._batches: set[str] = set()  # this object's open batches (the heartbeat's reason)
        self._heartbeat: _Heartbeat | None = None
        self._leases: Leases | None = None

    def __repr__(self) -> str:
        return f"<Catalog {self.safe_url()}>"

    @property
    def worker(self) -> WorkerId:
        return self._worker or workers.current()

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
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<unparseable url>"

    # --- engine and schema -------------------------------------------------------------------

    def _connect(self):
        with self._lock:
            if self._engine is None:
                self._engine, self._tables, self._file = self._open()
        return self._engine, self._tables

    def _open(self):
        """The engine, the tables and the SQLite file's identity, on a catalog at this
        code's schema version (a new database is given it; an older or newer one refused,
        see `archive_core.schema`)."""
        import sqlalchemy as sa

        from archive_core import schema

        engine, database = self._engine_for()
        try:
            with self._schema_locked(engine) as conn:
                found = schema.state(conn)
                if found.empty:
                    schema.upgrade(conn, self.safe_url())
                refusal = found.refusal(self.safe_url())
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise CatalogError(
                f"Cannot reach catalog {self.safe_url()}: {_db_reason(exc)}", retryable=True
            ) from None
        except BaseException:
            engine.dispose()
            raise
        if refusal is not None:
            engine.dispose()
            raise CatalogError(refusal)
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
            raise CatalogError(f"Catalog URL is not a valid database URL: {exc}") from None
        if self._password is not None:
            url = url.set(password=self._password.reveal())
        kwargs: dict[str, Any] = {"future": True}
        sqlite = url.get_backend_name() == "sqlite"
        database = _sqlite_file(url) if sqlite else None
        if sqlite:
            if database and url.query.get("mode") != "ro":
                os.makedirs(os.path.dirname(database), exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
            if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
                # A database host that drops packets would otherwise hold a restore, which
                # needs no catalog, for the minutes a TCP connect takes to give up.
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = sa.create_engine(url, **kwargs)
        except Exception as exc:  # missing DBAPI module, bad options
            raise CatalogError(f"Cannot open catalog {self.safe_url()}: {exc}") from None
        if sqlite:
            sa.event.listen(engine, "connect", _sqlite_connect)
            sa.event.listen(engine, "begin", _sqlite_begin)
        return engine, database

    @contextlib.contextmanager
    def _schema_locked(self, engine: Any) -> Iterator[Any]:
        """A write transaction holding the schema lock: PostgreSQL's advisory lock (workers
        starting together on a new database would race to create the same tables), SQLite's
        write lock (BEGIN IMMEDIATE)."""
        with engine.connect() as conn:
            conn.execution_options(archive_core_write=True)
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
                return schema.state(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise CatalogError(
                f"Cannot reach catalog {self.safe_url()}: {_db_reason(exc)}", retryable=True
            ) from None
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
            with self._schema_locked(engine) as conn:
                return schema.upgrade(conn, self.safe_url())
        except sa.exc.SQLAlchemyError as exc:
            raise CatalogError(
                f"Could not upgrade catalog {self.safe_url()}: {_db_reason(exc)}; nothing "
                "was changed.",
                retryable=True,
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
        safe. Any other database error, or the last failed retry, is a CatalogError.
        """
        import sqlalchemy as sa

        for attempt in range(_RETRIES + 1):
            self._check_file(after_write=False)  # first: it may drop the engine for a new one
            engine, tables = self._connect()
            try:
                with engine.connect() as conn:
                    if write:
                        conn.execution_options(archive_core_write=True)
                    with conn.begin():
                        result = work(conn, tables)
            except sa.exc.DBAPIError as exc:
                if attempt < _RETRIES and _conflict(exc):
                    log.info("catalog: %s; running the transaction again", _db_reason(exc))
                    time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
                    continue
                raise CatalogError(
                    f"Catalog operation failed: {_db_reason(exc)}", retryable=True
                ) from None
            except sa.exc.SQLAlchemyError as exc:
                raise CatalogError(
                    f"Catalog operation failed: {_db_reason(exc)}", retryable=True
                ) from None
            if write:
                self._check_file(after_write=True)
            return result
        raise AssertionError("unreachable")

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
            query = t.copies.select().where(t.copies.c.external_id == external_id)
            row = conn.execute(query).mappings().first()
            return _record(CopyRecord, row) if row else None

        return self._run(work, write=False)

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
        ids = sorted(set(external_ids))
        if not ids:
            return
        stamp = when or self._clock()

        def work(conn, t) -> None:
            for chunk in _chunks(ids, _CHUNK):
                conn.execute(
                    t.copies.update()
                    .where(t.copies.c.external_id.in_(chunk))
                    .values(last_verified=stamp)
                )

        self._run(work, write=True)

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
        """Write the intent of a batch in one transaction.

        Older intents for the same names that never got a result are marked abandoned when
        the worker that wrote them is dead (see `_dead_intents`); a live worker's stay open,
        since it is still moving that file. `abandoned` names the dead workers per name.
        Call `end()` once the batch is over.
        """
        batch = uuid.uuid4().hex
        worker = str(self.worker)
        names = sorted({e.name for e in entries})

        def work(conn, t) -> dict[str, tuple[str, ...]]:
            now = self._clock()
            _beat(conn, t.workers, worker, now)
            dead = self._dead_intents(conn, t, target, operation, names, now)
            for chunk in _chunks(sorted(dead), _CHUNK):
                conn.execute(
                    t.journal.update()
                    .where(t.journal.c.id.in_(chunk), t.journal.c.state == INTENT)
                    .values(state=ABANDONED, finished=now)
                )
            if entries:
                _executemany(
                    conn,
                    t.journal,
                    t.journal.insert(),
                    [
                        {
                            "batch": batch,
                            "job_id": job_id,
                            "policy": policy,
                            "target": target,
                            "operation": operation,
                            "key": e.key,
                            "name": e.name,
                            "item_id": e.item_id,
                            "sha1": e.sha1,
                            "state": INTENT,
                            "worker": worker,
                            "started": now,
                        }
                        for e in entries
                    ],
                )
            abandoned: dict[str, set[str]] = {}
            for name, owner in dead.values():
                abandoned.setdefault(name, set()).add(owner)
            return {name: tuple(sorted(owners)) for name, owners in abandoned.items()}

        # Registered before the intents exist, so no other thread can take them for dead.
        with _open_lock:
            _open_batches.add(batch)
        try:
            abandoned = self._run(work, write=True)
        except BaseException:
            self.end(batch)
            raise
        with self._lock:
            self._batches.add(batch)
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

    def _dead_intents(
        self, conn, t, target: str, operation: str, names: Sequence[str], now: dt.datetime
    ) -> dict[int, tuple[str, str]]:
        """Open intents for `names` whose worker is dead: journal id -> (name, worker).

        Dead means: this very process, but the batch is no longer open in it; a process of
        this pid space that is gone; or, where the process table cannot tell (another host,
        container or boot), a heartbeat older than HEARTBEAT_STALE, or none at all.
        """
        import sqlalchemy as sa

        j = t.journal
        rows = []
        for chunk in _chunks(names, _CHUNK):
            rows.extend(
                conn.execute(
                    sa.select(j.c.id, j.c.name, j.c.worker, j.c.batch).where(
                        j.c.target == target,
                        j.c.operation == operation,
                        j.c.state == INTENT,
                        j.c.name.in_(chunk),
                    )
                )
            )
        if not rows:  # the usual batch: nothing left open by anyone
            return {}
        me = str(self.worker)
        verdict: dict[str, bool | None] = {}
        for _, _, owner, _ in rows:
            if owner not in verdict and owner != me:
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
                verdict[owner] = now - _utc(beat) < HEARTBEAT_STALE
        with _open_lock:
            running = set(_open_batches)
        dead = {}
        for row_id, name, owner, batch in rows:
            alive = batch in running if owner == me else bool(verdict[owner])
            if not alive:
                dead[row_id] = (name, owner)
        return dead

    def finish(self, batch: str, results: Sequence[JournalResult]) -> None:
        """Record results of part of a batch, and the copies they made or removed, atomically."""
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
        done = [r.key for r in results if r.ok]
        failed = [{"b_key": r.key, "b_error": r.error} for r in results if not r.ok]

        def work(conn, t) -> None:
            now = self._clock()
            # Successes carry nothing per row, so one statement per chunk marks them done;
            # only failures need a row each, for their error.
            for chunk in _chunks(done, _CHUNK):
                conn.execute(
                    t.journal.update()
                    .where(t.journal.c.batch == batch, t.journal.c.key.in_(chunk))
                    .values(state=DONE, finished=now)
                )
            if failed:
                conn.execute(
                    t.journal.update()
                    .where(t.journal.c.batch == batch, t.journal.c.key == sa.bindparam("b_key"))
                    .values(state=FAILED, error=sa.bindparam("b_error"), finished=now),
                    failed,
                )
            if new:
                _upsert(conn, t.copies, new, keys=("target", "locator"), keep=("created",))
            for chunk in _chunks(removed, _CHUNK):
                conn.execute(t.copies.delete().where(t.copies.c.external_id.in_(chunk)))

        self._run(work, write=True)

    def end(self, batch: str) -> None:
        """The batch is over in this process: its results are given, or given up on."""
        with _open_lock:
            _open_batches.discard(batch)
        with self._lock:
            self._batches.discard(batch)

    def beat(self) -> None:
        """Refresh this worker's heartbeat now (the heartbeat thread does it while busy)."""
        worker = str(self.worker)
        self._run(lambda conn, t: _beat(conn, t.workers, worker, self._clock()), write=True)

    def busy(self) -> bool:
        """Whether a batch begun through this catalog is still open."""
        with self._lock:
            return bool(self._batches)

    def unfinished(self, *, target: str | None = None) -> list[JournalRow]:
        """Intents with no result: files a worker was moving when it stopped."""

        def work(conn, t) -> list[JournalRow]:
            query = t.journal.select().where(t.journal.c.state == INTENT).order_by(t.journal.c.id)
            if target is not None:
                query = query.where(t.journal.c.target == target)
            return [_record(JournalRow, r) for r in conn.execute(query).mappings()]

        return self._run(work, write=False)

    def journal(self, *, job_id: str | None = None, batch: str | None = None) -> list[JournalRow]:
        def work(conn, t) -> list[JournalRow]:
            query = t.journal.select().order_by(t.journal.c.id)
            if job_id is not None:
                query = query.where(t.journal.c.job_id == job_id)
            if batch is not None:
                query = query.where(t.journal.c.batch == batch)
            return [_record(JournalRow, r) for r in conn.execute(query).mappings()]

        return self._run(work, write=False)

    def prune(
        self, *, done_before: dt.datetime, failed_before: dt.datetime, dry_run: bool = False
    ) -> Pruned:
        """Remove the journal rows of work finished before these times: done and abandoned
        rows before `done_before`, failed ones before `failed_before`. An intent (work not
        finished, or a dead worker's that no re-run has superseded yet) is never removed,
        however old: the next run of its batch needs it. In rounds of PRUNE_ROWS, so that a
        first prune of years of journal holds no lock for long."""
        import sqlalchemy as sa

        def old(t, states: tuple[str, ...], before: dt.datetime):
            return sa.and_(t.journal.c.state.in_(states), t.journal.c.finished < before)

        def count(conn, t) -> Pruned:
            def rows(states, before) -> int:
                query = sa.select(sa.func.count()).where(old(t, states, before))
                return conn.execute(query).scalar_one()

            return Pruned(
                done=rows((DONE, ABANDONED), done_before), failed=rows((FAILED,), failed_before)
            )

        if dry_run:
            return self._run(count, write=False)

        def one_round(states: tuple[str, ...], before: dt.datetime) -> Callable[..., int]:
            def work(conn, t) -> int:
                ids = sa.select(t.journal.c.id).where(old(t, states, before)).limit(PRUNE_ROWS)
                found = [row[0] for row in conn.execute(ids)]
                if found:
                    conn.execute(t.journal.delete().where(t.journal.c.id.in_(found)))
                return len(found)

            return work

        removed = {}
        for kind, states, before in (
            ("done", (DONE, ABANDONED), done_before),
            ("failed", (FAILED,), failed_before),
        ):
            removed[kind] = 0
            while True:
                gone = self._run(one_round(states, before), write=True)
                removed[kind] += gone
                if gone < PRUNE_ROWS:
                    break
        return Pruned(done=removed["done"], failed=removed["failed"])


#: Journal rows `Catalog.prune` removes per transaction.
PRUNE_ROWS = 5_000


@attrs.frozen(kw_only=True)
class Pruned:
    """How many journal rows a prune removed (or, dry, would remove)."""

    done: int  # done and abandoned
    failed: int


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


def _conflict(exc: Exception) -> bool:
    """Whether a database error is a lost lock conflict, so the transaction may run again."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in ("40P01", "40001", "55P03"):  # deadlock, serialization failure, lock timeout
        return True
    text = str(orig or exc).lower()
    return "database is locked" in text or "database table is locked" in text


def _upsert(
    conn, table, rows: list[dict[str, Any]], *, keys: tuple[str, ...], keep: tuple[str, ...] = ()
) -> None:
    """Insert rows; a row whose `keys` another worker wrote first is updated instead.

    Every column but the keys and `keep` (and `last_verified`, which only verify sets) is
    overwritten. Rows must come sorted by `keys`, so concurrent writers lock in one order.
    """
    backend = conn.dialect.name
    fixed = {*keys, *keep, "id", "last_verified"}
    columns = [c for c in rows[0] if c not in fixed]
    if backend in ("sqlite", "postgresql"):
        if backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys],
            set_={c: stmt.excluded[c] for c in columns},
        )
        _executemany(conn, table, stmt, rows)
        return
    for row in rows:  # portable path for other backends
        match = [table.c[k] == row[k] for k in keys]
        updated = conn.execute(table.update().where(*match).values({c: row[c] for c in columns}))
        if updated.rowcount == 0:
            conn.execute(table.insert().values(**row))


def _executemany(conn, table, stmt, rows: list[dict[str, Any]]) -> None:
    """Run `stmt` once per row, compiled once: the bulk path of a batch of thousands of files.

    SQLAlchemy's own executemany rebuilds every row's parameters through its compiler, which
    costs more than the database work for small files. Here the statement is compiled once
    and rows go straight to the DBAPI, after each column's own bind processor (SQLite needs
    its datetime format), so the result is what `conn.execute(stmt, rows)` would store.
    """
    dialect = conn.dialect
    keys = list(rows[0])
    compiled = stmt.compile(dialect=dialect, column_keys=keys)
    processors = {
        key: proc for key in keys if (proc := table.c[key].type.bind_processor(dialect)) is not None
    }
    if processors:
        rows = [dict(row) for row in rows]  # the caller's rows stay as they were
        for key, processor in processors.items():
            for row in rows:
                row[key] = processor(row[key])
    if compiled.positional:
        import operator

        # One C-level getter per row instead of a generator: this runs for every file.
        order = compiled.positiontup
        pick = operator.itemgetter(*order)
        params: list[Any] = (
            [pick(row) for row in rows] if len(order) > 1 else [(row[order[0]],) for row in rows]
        )
    else:
        params = rows
    conn.exec_driver_sql(compiled.string, params)


def _sqlite_connect(dbapi_conn, _record) -> None:
    # The sqlite3 module's own implicit BEGIN would start every write transaction DEFERRED;
    # `_sqlite_begin` says which kind each one is instead.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    # WAL lets readers (CLI, is_ready) run while a worker writes; NORMAL sync is safe with WAL
    # here because a lost "done" only means the next run re-verifies an existing copy.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # A write transaction takes the write lock up front (IMMEDIATE): one that began as a
    # reader and then writes fails at once with "database is locked" when another process
    # wrote in between, without waiting for busy_timeout. Readers stay DEFERRED (WAL lets
    # them run beside the writer).
    write = conn.get_execution_options().get("archive_core_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


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
        sa.UniqueConstraint("target", "locator", name="uq_archive_core_copy_location"),
        sa.Index("ix_archive_core_copies_name", "target", "name"),
        sa.Index("ix_archive_core_copies_external_id", "external_id"),
    )
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
        sa.Index("ix_archive_core_journal_open", "target", "operation", "state", "name"),
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
    # Workers waiting for a resource; the id gives their arrival order (every insert for one
    # resource happens under that resource's lock, so ids rise in commit order).
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
        sa.UniqueConstraint("token", name="uq_archive_core_lease_waiter_token"),
        sa.Index("ix_archive_core_lease_waiters_queue", "resource", "id"),
    )
    return _Tables(
        metadata=metadata,
        copies=copies,
        journal=journal,
        workers=workers,
        leases=leases,
        lease_waiters=lease_waiters,
    )


@attrs.frozen
class _Tables:
    metadata: Any
    copies: Any
    journal: Any
    workers: Any
    leases: Any
    lease_waiters: Any


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes, PostgreSQL the session's zone; we store UTC.
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _copy_row(copy: CopyRecord) -> dict[str, Any]:
    # attrs.asdict recurses and copies; this runs once per archived file.
    return {f: getattr(copy, f) for f in _COPY_FIELDS}


_COPY_FIELDS = tuple(a.name for a in attrs.fields(CopyRecord))


def _record(cls: type[R], row: Any) -> R:
    """A frozen record from a result row, its datetimes normalised to UTC."""
    values = {}
    for field in attrs.fields(cls):
        value = row[field.name]
        values[field.name] = _utc(value) if isinstance(value, dt.datetime) else value
    return cls(**values)


def _db_reason(exc: Exception) -> str:
    # The DBAPI's first line says what is wrong without the SQL or parameters (file names).
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
