"""The catalog of archived copies and the per-file journal, on any SQLAlchemy database.

One `copies` row per archived copy; one `journal` row per file per operation attempt, written
as "intent" before the transfer and "done"/"failed" after it. A worker killed mid-batch leaves
intents without results; the next run of the batch marks those "abandoned", finds copies that
were completed (here or by the driver's own idempotence) and never reports a partial copy.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import attrs

from archive_core.errors import CatalogError

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
    """A batch whose intent is journaled; `abandoned` names had a dead worker's intent."""

    id: str
    abandoned: frozenset[str] = frozenset()


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


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Catalog:
    """Copies and journal in one database; safe for several workers on several machines."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Any = None
        self._tables: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Catalog {self._safe_url()}>"

    def _safe_url(self) -> str:
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<unparseable url>"

    # --- engine and schema -------------------------------------------------------------------

    def _connect(self):
        with self._lock:
            if self._engine is None:
                self._engine, self._tables = self._open()
        return self._engine, self._tables

    def _open(self):
        import sqlalchemy as sa

        try:
            url = sa.engine.make_url(self.url)
        except Exception as exc:
            raise CatalogError(f"Catalog URL is not a valid database URL: {exc}") from None
        kwargs: dict[str, Any] = {"future": True}
        if url.get_backend_name() == "sqlite":
            database = url.database
            if database and database != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = sa.create_engine(url, **kwargs)
        except Exception as exc:  # missing DBAPI module, bad options
            raise CatalogError(f"Cannot open catalog {self._safe_url()}: {exc}") from None
        if url.get_backend_name() == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        tables = _schema(sa)
        try:
            tables.metadata.create_all(engine)
        except sa.exc.SQLAlchemyError as exc:
            raise CatalogError(
                f"Cannot reach catalog {self._safe_url()}: {_db_reason(exc)}", retryable=True
            ) from None
        return engine, tables

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _tx(self):
        import sqlalchemy as sa

        engine, _ = self._connect()
        return _Transaction(engine, sa)

    # --- copies --------------------------------------------------------------------------------

    def find_copies(self, target: str, names: Iterable[tuple[str, str]]) -> dict[str, CopyRecord]:
        """Completed copies on `target` among (name, sha1) pairs, keyed by name.

        Only a copy whose recorded sha1 equals the asked one counts, so a name reused for
        different content never resolves to the old bytes.
        """
        wanted = dict(names)
        if not wanted:
            return {}
        _, t = self._connect()
        found: dict[str, CopyRecord] = {}
        with self._tx() as conn:
            for chunk in _chunks(list(wanted), _CHUNK):
                rows = conn.execute(
                    t.copies.select().where(t.copies.c.target == target, t.copies.c.name.in_(chunk))
                )
                for row in rows.mappings():
                    if row["sha1"] and row["sha1"] == wanted.get(row["name"]):
                        found[row["name"]] = _record(CopyRecord, row)
        return found

    def copy(self, external_id: str) -> CopyRecord | None:
        _, t = self._connect()
        with self._tx() as conn:
            row = (
                conn.execute(t.copies.select().where(t.copies.c.external_id == external_id))
                .mappings()
                .first()
            )
        return _record(CopyRecord, row) if row else None

    def copies(self, *, policy: str | None = None, target: str | None = None) -> list[CopyRecord]:
        _, t = self._connect()
        query = t.copies.select().order_by(t.copies.c.id)
        if policy is not None:
            query = query.where(t.copies.c.policy == policy)
        if target is not None:
            query = query.where(t.copies.c.target == target)
        with self._tx() as conn:
            return [_record(CopyRecord, r) for r in conn.execute(query).mappings()]

    def mark_verified(self, external_ids: Iterable[str], when: dt.datetime | None = None) -> None:
        _, t = self._connect()
        stamp = when or _now()
        ids = list(external_ids)
        with self._tx() as conn:
            for chunk in _chunks(ids, _CHUNK):
                conn.execute(
                    t.copies.update()
                    .where(t.copies.c.external_id.in_(chunk))
                    .values(last_verified=stamp)
                )

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

        Older intents for the same names that never got a result belong to a worker that died;
        they are marked abandoned so `unfinished()` shows only live work.
        """
        import sqlalchemy as sa

        _, t = self._connect()
        batch = uuid.uuid4().hex
        now, worker = _now(), _worker()
        abandoned: set[str] = set()
        with self._tx() as conn:
            for chunk in _chunks([e.name for e in entries], _CHUNK):
                open_intents = (
                    t.journal.c.target == target,
                    t.journal.c.operation == operation,
                    t.journal.c.state == INTENT,
                    t.journal.c.name.in_(chunk),
                )
                found = set(
                    conn.execute(sa.select(t.journal.c.name).where(*open_intents)).scalars()
                )
                if found:  # the usual batch has none: spare the update
                    abandoned |= found
                    conn.execute(
                        t.journal.update()
                        .where(*open_intents)
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
        if abandoned:
            log.warning(
                "target %s: %d files had an unfinished %s by a worker that stopped; redoing them",
                target,
                len(abandoned),
                operation,
            )
        return JournalBatch(id=batch, abandoned=frozenset(abandoned))

    def finish(self, batch: str, results: Sequence[JournalResult]) -> None:
        """Record results of part of a batch, and the copies they made or removed, atomically."""
        import sqlalchemy as sa

        if not results:
            return
        engine, t = self._connect()
        now = _now()
        with self._tx() as conn:
            # Successes carry nothing per row, so one statement per chunk marks them done;
            # only failures need a row each, for their error.
            done = [r.key for r in results if r.ok]
            for chunk in _chunks(done, _CHUNK):
                conn.execute(
                    t.journal.update()
                    .where(t.journal.c.batch == batch, t.journal.c.key.in_(chunk))
                    .values(state=DONE, finished=now)
                )
            failed = [{"b_key": r.key, "b_error": r.error} for r in results if not r.ok]
            if failed:
                conn.execute(
                    t.journal.update()
                    .where(t.journal.c.batch == batch, t.journal.c.key == sa.bindparam("b_key"))
                    .values(state=FAILED, error=sa.bindparam("b_error"), finished=now),
                    failed,
                )
            new = [_copy_row(r.copy) for r in results if r.copy is not None]
            if new:
                _upsert_copies(conn, engine, t.copies, new)
            removed = [r.removed for r in results if r.removed]
            for chunk in _chunks(removed, _CHUNK):
                conn.execute(t.copies.delete().where(t.copies.c.external_id.in_(chunk)))

    def unfinished(self, *, target: str | None = None) -> list[JournalRow]:
        """Intents with no result: files a worker was moving when it stopped."""
        _, t = self._connect()
        query = t.journal.select().where(t.journal.c.state == INTENT).order_by(t.journal.c.id)
        if target is not None:
            query = query.where(t.journal.c.target == target)
        with self._tx() as conn:
            return [_record(JournalRow, r) for r in conn.execute(query).mappings()]

    def journal(self, *, job_id: str | None = None, batch: str | None = None) -> list[JournalRow]:
        _, t = self._connect()
        query = t.journal.select().order_by(t.journal.c.id)
        if job_id is not None:
            query = query.where(t.journal.c.job_id == job_id)
        if batch is not None:
            query = query.where(t.journal.c.batch == batch)
        with self._tx() as conn:
            return [_record(JournalRow, r) for r in conn.execute(query).mappings()]


class _Transaction:
    """One connection in one transaction; database errors become CatalogError."""

    def __init__(self, engine: Any, sa: Any) -> None:
        self._engine = engine
        self._sa = sa
        self._ctx: Any = None

    def __enter__(self):
        try:
            self._ctx = self._engine.begin()
            return self._ctx.__enter__()
        except self._sa.exc.SQLAlchemyError as exc:
            raise CatalogError(
                f"Cannot reach the catalog: {_db_reason(exc)}", retryable=True
            ) from None

    def __exit__(self, *exc_info) -> bool:
        try:
            self._ctx.__exit__(*exc_info)
        except self._sa.exc.SQLAlchemyError as exc:
            raise CatalogError(f"Catalog write failed: {_db_reason(exc)}", retryable=True) from None
        if exc_info[1] is not None and isinstance(exc_info[1], self._sa.exc.SQLAlchemyError):
            raise CatalogError(
                f"Catalog operation failed: {_db_reason(exc_info[1])}", retryable=True
            ) from None
        return False


def _upsert_copies(conn, engine, table, rows: list[dict[str, Any]]) -> None:
    """Insert copies; a copy another worker recorded first (same locator) is updated instead."""
    backend = engine.dialect.name
    if backend in ("sqlite", "postgresql"):
        if backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.target, table.c.locator],
            set_={
                c: stmt.excluded[c]
                for c in ("policy", "external_id", "name", "item_id", "sha1", "sha256", "size")
            },
        )
        _executemany(conn, table, stmt, rows)
        return
    for row in rows:  # portable path for other backends
        updated = conn.execute(
            table.update()
            .where(table.c.target == row["target"], table.c.locator == row["locator"])
            .values(**{k: v for k, v in row.items() if k not in ("created", "last_verified")})
        )
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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers (CLI, is_ready) run while a worker writes; NORMAL sync is safe with WAL
    # here because a lost "done" only means the next run re-verifies an existing copy.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


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
    return _Tables(metadata=metadata, copies=copies, journal=journal)


@attrs.frozen
class _Tables:
    metadata: Any
    copies: Any
    journal: Any


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
