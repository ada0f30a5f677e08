"""The catalog as archive-core made it before migrations: copies, journal, workers.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

A catalog made by `create_all` before this revision existed has exactly these tables and no
version: `archive-core catalog upgrade` checks they are there and stamps it 0001 instead
of creating them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "archive_core_copies",
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
        sa.Column("created", TS, nullable=False),
        sa.Column("last_verified", TS),
        sa.UniqueConstraint("target", "locator", name="uq_archive_core_copy_location"),
    )
    op.create_index("ix_archive_core_copies_name", "archive_core_copies", ["target", "name"])
    op.create_index("ix_archive_core_copies_external_id", "archive_core_copies", ["external_id"])
    op.create_table(
        "archive_core_journal",
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
        sa.Column("started", TS, nullable=False),
        sa.Column("finished", TS),
    )
    op.create_index("ix_archive_core_journal_batch", "archive_core_journal", ["batch", "key"])
    op.create_index(
        "ix_archive_core_journal_open",
        "archive_core_journal",
        ["target", "operation", "state", "name"],
    )
    op.create_index("ix_archive_core_journal_job", "archive_core_journal", ["job_id"])
    op.create_table(
        "archive_core_workers",
        sa.Column("worker", sa.String(255), primary_key=True),
        sa.Column("heartbeat", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("archive_core_workers", "archive_core_journal", "archive_core_copies"):
        op.drop_table(table)
