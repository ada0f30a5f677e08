"""The catalog schema as archive-core made it before migrations (main at 203d7ca, whose
`Catalog` ran `metadata.create_all`), frozen here so that the upgrade test builds exactly what
sites have. Never edit it: it is what is out there."""

from __future__ import annotations

from typing import Any


def create(url: str) -> Any:
    """Make the pre-version catalog at `url`; returns its tables (copies, journal, workers)."""
    import sqlalchemy as sa

    metadata = tables(sa)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
    finally:
        engine.dispose()
    found = metadata.tables
    return (
        found["archive_core_copies"],
        found["archive_core_journal"],
        found["archive_core_workers"],
    )


def tables(sa: Any) -> Any:
    """The pre-version tables, in a MetaData of their own."""
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
    workers = sa.Table(
        "archive_core_workers",
        metadata,
        sa.Column("worker", sa.String(255), primary_key=True),
        sa.Column("heartbeat", ts, nullable=False),
    )
    del copies, journal, workers  # kept by name above: the text is what sites have
    return metadata
