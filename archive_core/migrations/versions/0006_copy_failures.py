"""Copies remember their last failed verification: when, and what was wrong.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

A copy that read back wrong (or could not be read at all) is recorded on its row, so that
`archive-core status` and the scrub report show it until a later verification passes or the
copy is repaired. Existing copies have no failure.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("archive_core_copies") as batch:
        batch.add_column(sa.Column("last_failure", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("failure", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("archive_core_copies") as batch:
        batch.drop_column("failure")
        batch.drop_column("last_failure")
