"""The journal by batch, and each copy's placement.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A batch's intent becomes one `archive_core_batches` row holding its files, instead of a
journal row per file; only a file that fails (or is taken over from a dead worker) gets a
journal row of its own. Files a worker left open under 0001 (intents without a result) are
moved into batch rows, so the next run of those files still finds and takes them over; the
journal rows of finished work stay as they are. Copies gain `placement`, the driver's JSON
note of where the copy sits (a tape's barcode, partition and block).
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    batches = op.create_table(
        "archive_core_batches",
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
        sa.Column("started", TS, nullable=False),
        sa.Column("finished", TS),
    )
    op.create_index(
        "ix_archive_core_batches_open", "archive_core_batches", ["state", "target", "operation"]
    )
    op.create_index("ix_archive_core_batches_job", "archive_core_batches", ["job_id"])
    parts = op.create_table(
        "archive_core_batch_parts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_archive_core_batch_parts_batch", "archive_core_batch_parts", ["batch"])
    _move_open_intents(batches, parts)
    op.drop_index("ix_archive_core_journal_open", table_name="archive_core_journal")
    with op.batch_alter_table("archive_core_copies") as table:
        table.add_column(sa.Column("placement", sa.Text))


def _move_open_intents(batches: sa.Table, parts: sa.Table) -> None:
    journal = _table(
        "archive_core_journal",
        "id",
        "batch",
        "job_id",
        "policy",
        "target",
        "operation",
        "key",
        "name",
        "state",
        "worker",
        "started",
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(journal).where(journal.c.state == "intent").order_by(journal.c.id)
    ).mappings()
    grouped: dict[str, list] = {}
    for row in rows:
        grouped.setdefault(row["batch"], []).append(row)
    for batch, files in grouped.items():
        # A 0001 batch had one worker, job, target and operation; its first row says them.
        first = files[0]
        conn.execute(
            batches.insert().values(
                id=batch,
                job_id=first["job_id"],
                policy=first["policy"],
                target=first["target"],
                operation=first["operation"],
                worker=first["worker"],
                state="intent",
                files=len(files),
                done=0,
                failed=0,
                started=min(f["started"] for f in files),
            )
        )
        conn.execute(
            parts.insert().values(
                batch=batch,
                kind="files",
                data=json.dumps([[f["key"], f["name"]] for f in files], ensure_ascii=False),
            )
        )
        ids = [f["id"] for f in files]
        for start in range(0, len(ids), 500):
            conn.execute(journal.delete().where(journal.c.id.in_(ids[start : start + 500])))


def _table(name: str, *columns: str) -> sa.TableClause:
    """A table as this migration reads and writes it: timestamps typed, so that SQLite's
    text form is read back as a datetime."""
    return sa.table(name, *(sa.column(c, TS if c == "started" else None) for c in columns))


def downgrade() -> None:
    # Open batches go back to a row per file, so a 0001 worker still takes them over.
    conn = op.get_bind()
    batches = _table(
        "archive_core_batches",
        "id",
        "job_id",
        "policy",
        "target",
        "operation",
        "worker",
        "state",
        "started",
    )
    journal = _table(
        "archive_core_journal",
        "batch",
        "job_id",
        "policy",
        "target",
        "operation",
        "key",
        "name",
        "state",
        "worker",
        "started",
    )
    parts = _table("archive_core_batch_parts", "batch", "kind", "data")
    open_ = conn.execute(
        sa.select(batches, parts.c.data)
        .join(parts, parts.c.batch == batches.c.id)
        .where(batches.c.state == "intent", parts.c.kind == "files")
    ).mappings()
    rows = [
        {
            "batch": batch["id"],
            **{f: batch[f] for f in ("job_id", "policy", "target", "operation", "worker")},
            "key": key,
            "name": name,
            "state": "intent",
            "started": batch["started"],
        }
        for batch in open_
        for key, name in json.loads(batch["data"])
    ]
    if rows:
        conn.execute(journal.insert(), rows)
    with op.batch_alter_table("archive_core_copies") as table:
        table.drop_column("placement")
    op.create_index(
        "ix_archive_core_journal_open",
        "archive_core_journal",
        ["target", "operation", "state", "name"],
    )
    op.drop_table("archive_core_batch_parts")
    op.drop_table("archive_core_batches")
