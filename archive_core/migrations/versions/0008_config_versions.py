"""Configuration versions: the targets and policies every worker reads from the catalog.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

One new table; nothing else changes. A site whose bootstrap file declares its own targets and
policies keeps reading them from the file: the table stays empty until a version is saved.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_core_config_versions",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("archive_core_config_versions")
