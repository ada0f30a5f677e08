"""Lease waiters have a priority: restores are served before archives, then by arrival.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A tape drive or cartridge that several jobs wait for goes to the waiter of the highest
priority first (a restore someone is waiting on outranks a bulk archive), and among equals
to the first that came. Waiters already queued when the catalog is upgraded get priority 0,
which is what every waiter had before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "archive_core_lease_waiters",
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    )
    op.drop_index("ix_archive_core_lease_waiters_queue", table_name="archive_core_lease_waiters")
    op.create_index(
        "ix_archive_core_lease_waiters_queue",
        "archive_core_lease_waiters",
        ["resource", "priority", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_archive_core_lease_waiters_queue", table_name="archive_core_lease_waiters")
    op.create_index(
        "ix_archive_core_lease_waiters_queue", "archive_core_lease_waiters", ["resource", "id"]
    )
    with op.batch_alter_table("archive_core_lease_waiters") as batch:
        batch.drop_column("priority")
