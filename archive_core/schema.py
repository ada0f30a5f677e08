"""The catalog's schema version: what this code needs, what a database holds, the upgrade.

The schema is Alembic's (`archive_core/migrations`), its version kept in the table
`archive_core_version`. A worker opening a catalog checks the version with one query and
imports Alembic only to create a new catalog or to upgrade one.

An older catalog is never upgraded by a worker: workers still running the older code know
nothing of any lock a new one would take, and would go on writing while the tables change
under them. The worker reports it not ready with the command to run; the admin runs
`archive-core catalog upgrade` once those workers are stopped. A catalog newer than the code
is refused outright: this worker would write rows the newer schema does not expect.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs

from archive_core.errors import CatalogError

#: The revision this code reads and writes (a test checks that it is Alembic's head).
SCHEMA_VERSION = "0008"
#: Every revision this code's migrations know, oldest first.
KNOWN_VERSIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008")
#: The revision a catalog made by `create_all`, before versions, is stamped with.
BASELINE = "0001"

VERSION_TABLE = "archive_core_version"
#: The tables every catalog has, a catalog made before versions included: what tells a catalog
#: from an empty database, and what `upgrade` checks before it stamps a pre-version catalog
#: BASELINE. Tables of later revisions (the batches of 0002, the leases of 0003) are not
#: here: a pre-version catalog cannot have them, and its upgrade creates them.
TABLES = ("archive_core_copies", "archive_core_journal", "archive_core_workers")

# Alembic runs a migration through module-wide state (`alembic.context`): two catalogs made at
# once in one process (two sites, two threads) would run each other's. One at a time.
_ALEMBIC = threading.Lock()


@attrs.frozen
class SchemaState:
    """What a catalog database holds: its version (None: none recorded) and whether
    archive-core's tables are there."""

    version: str | None
    tables: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return self.version is None and not self.tables

    @property
    def current(self) -> bool:
        return self.version == SCHEMA_VERSION

    @property
    def newer(self) -> bool:
        return self.version is not None and self.version not in KNOWN_VERSIONS

    def describe(self) -> str:
        if self.empty:
            return "empty (made at the first use)"
        if self.version is None:
            return "from before schema versions (made by archive-core 0.1)"
        return f"version {self.version}"

    def refusal(self, catalog: str) -> str | None:
        """Why a worker must not use this catalog, in words for the admin; None if it may."""
        if self.current or self.empty:
            return None
        if self.newer:
            return (
                f"The catalog {catalog} has schema version {self.version}, newer than this "
                f"archive-core knows (it knows up to {SCHEMA_VERSION}): another worker runs a "
                "newer archive-core. Upgrade archive-core on this machine too; until then it "
                "does not write to that catalog."
            )
        return (
            f"The catalog {catalog} is {self.describe()}; this archive-core needs version "
            f"{SCHEMA_VERSION}. Stop the Portal workers that use it, then run "
            "`archive-core catalog upgrade` once (with this site's config); archive-core does "
            "not upgrade it by itself while older workers may still be writing to it."
        )


def state(conn: Any) -> SchemaState:
    """The schema state of the database `conn` is connected to."""
    import sqlalchemy as sa

    inspector = sa.inspect(conn)
    present = tuple(t for t in TABLES if inspector.has_table(t))
    version = None
    if inspector.has_table(VERSION_TABLE):
        rows = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        if len(rows) > 1:
            raise CatalogError(
                f"The catalog's {VERSION_TABLE} table holds {len(rows)} versions, not one: "
                "it was changed by hand. Leave one row, the version the tables are at."
            )
        version = rows[0][0] if rows else None
    return SchemaState(version=version, tables=present)


def upgrade(conn: Any, catalog: str) -> tuple[SchemaState, SchemaState]:
    """Bring the database `conn` is connected to (in a transaction holding the schema lock)
    to SCHEMA_VERSION; (before, after)."""
    before = state(conn)
    if before.newer:
        raise CatalogError(before.refusal(catalog) or "")
    config = _config(conn)
    with _ALEMBIC:
        _migrate(config, before, catalog)
    return before, state(conn)


def _migrate(config: Any, before: SchemaState, catalog: str) -> None:
    from alembic import command

    if before.version is None and before.tables:
        missing = [t for t in TABLES if t not in before.tables]
        if missing:
            raise CatalogError(
                f"The catalog {catalog} has some of archive-core's tables but not "
                f"{', '.join(missing)}: it is not a catalog archive-core made. Nothing was "
                "changed."
            )
        command.stamp(config, BASELINE)
    command.upgrade(config, SCHEMA_VERSION)


def head() -> str:
    """Alembic's head revision of the shipped migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(None)).get_current_head() or ""


def history() -> list[str]:
    """The shipped migrations' revisions, oldest first."""
    from alembic.script import ScriptDirectory

    revisions = ScriptDirectory.from_config(_config(None)).walk_revisions()
    return [r.revision for r in reversed(list(revisions))]


def _config(conn: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "archive_core:migrations")
    config.attributes["connection"] = conn
    config.attributes["version_table"] = VERSION_TABLE
    return config
