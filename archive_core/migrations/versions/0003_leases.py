"""Leases on named resources (a tape drive, a cartridge) and the queue of their waiters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Two new tables and nothing else changed, so a catalog's rows are untouched by it. A site
upgrades with `archive-core catalog upgrade` once its older workers are stopped.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "archive_core_leases",
        sa.Column("resource", sa.String(255), primary_key=True),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(255)),
        sa.Column("granted", TS, nullable=False),
        sa.Column("expires", TS, nullable=False),
        sa.Column("ttl", sa.Float, nullable=False),
        sa.Column("taken_over_from", sa.String(255)),
    )
    op.create_table(
        "archive_core_lease_waiters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(255)),
        sa.Column("arrived", TS, nullable=False),
        sa.Column("expires", TS, nullable=False),
        sa.UniqueConstraint("token", name="uq_archive_core_lease_waiter_token"),
    )
    op.create_index(
        "ix_archive_core_lease_waiters_queue", "archive_core_lease_waiters", ["resource", "id"]
    )


def downgrade() -> None:
    op.drop_table("archive_core_lease_waiters")
    op.drop_table("archive_core_leases")
