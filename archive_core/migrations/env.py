"""Alembic's environment for the catalog: always run on a connection archive-core hands in.

archive-core never runs Alembic from its own command line against a URL in alembic.ini: the
catalog's URL, its secret and its lock are the Catalog's (`archive_core.schema.upgrade`).
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=context.config.attributes["version_table"],
    render_as_batch=True,  # SQLite alters a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
