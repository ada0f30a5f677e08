"""The audit trail: an append-only, hash-chained record of what was done, by whom.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Two new tables; nothing else changes. The trail starts empty at the upgrade (what was done
before is in the journal, for as long as the journal keeps it).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "archive_core_audit",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("process", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("policy", sa.String(255)),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(255), nullable=False),
        sa.Column("prev", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "archive_core_audit_head",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archive_core_audit_head")
    op.drop_table("archive_core_audit")
