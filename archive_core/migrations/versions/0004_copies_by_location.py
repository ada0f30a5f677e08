"""Copies are looked up by (target, locator): the index on external_id is dropped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Every external id archive-core has recorded is `<scheme>://<target>/<locator>` made from the
copy's own target and locator (ExternalId, unchanged since the first release), so the unique
(target, locator) index finds any copy an external id names. The third index cost every
archived file a third random index page written to the catalog; no row changes.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_archive_core_copies_external_id", table_name="archive_core_copies")


def downgrade() -> None:
    op.create_index("ix_archive_core_copies_external_id", "archive_core_copies", ["external_id"])
