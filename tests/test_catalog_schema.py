"""The catalog's schema version: new catalogs made at it, older ones upgraded in place by the
admin's command only, newer ones refused, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from archive_core import schema
from archive_core.catalog import Catalog, _schema
from archive_core.cli import main
from archive_core.errors import CatalogError
from tests.data import catalog_before_versions
from tests.sites import filesys_site

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _rows(url: str) -> dict[str, list[tuple]]:
    """Every row of the tables a catalog from before versions has, in their columns then."""
    import sqlalchemy as sa

    frozen = {t.name: t for t in catalog_before_versions.tables(sa).sorted_tables}
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: [
                    tuple(row)
                    for row in conn.execute(
                        sa.select(*(sa.column(c.name) for c in frozen[name].columns))
                        .select_from(sa.table(name))
                        .order_by(sa.text("1"))
                    )
                ]
                for name in schema.TABLES
            }
    finally:
        engine.dispose()


def _catalog_before_versions(url: str) -> dict[str, list[tuple]]:
    """A catalog as sites have it today, with a copy, journal rows and a worker in it."""
    import sqlalchemy as sa

    copies, journal, workers = catalog_before_versions.create(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                copies.insert(),
                [
                    {
                        "policy": "VX-P",
                        "target": "disk0",
                        "external_id": f"filesys://disk0/clip{n}.mov",
                        "locator": f"clip{n}.mov",
                        "name": f"clip{n}.mov",
                        "item_id": f"VX-{n}",
                        "sha1": "a" * 40,
                        "sha256": "b" * 64,
                        "size": 1000 + n,
                        "created": T0,
                    }
                    for n in range(3)
                ],
            )
            conn.execute(
                journal.insert(),
                [
                    {
                        "batch": "b1",
                        "job_id": "VX-J",
                        "policy": "VX-P",
                        "target": "disk0",
                        "operation": "archive",
                        "key": str(n),
                        "name": f"clip{n}.mov",
                        "state": "done" if n else "intent",
                        "worker": "host:1:0",
                        "started": T0,
                    }
                    for n in range(3)
                ],
            )
            conn.execute(workers.insert(), [{"worker": "host:1:0", "heartbeat": T0}])
    finally:
        engine.dispose()
    return _rows(url)


def test_the_code_uses_the_newest_shipped_migration_and_knows_every_one() -> None:
    assert schema.head() == schema.SCHEMA_VERSION
    assert schema.history() == list(schema.KNOWN_VERSIONS)


def test_a_new_catalog_is_made_at_the_code_version_with_the_tables_the_code_queries(
    catalog_url: str,
) -> None:
    import sqlalchemy as sa

    catalog = Catalog(catalog_url)
    try:
        assert catalog.copies() == []
        state = catalog.schema_state()
    finally:
        catalog.close()
    assert state.current and set(state.tables) == set(schema.TABLES)
    engine = sa.create_engine(catalog_url)
    try:
        inspector = sa.inspect(engine)
        for table in _schema(sa).metadata.sorted_tables:
            made = {c["name"] for c in inspector.get_columns(table.name)}
            assert made == {c.name for c in table.columns}, table.name
            indexes = {
                i["name"]
                for i in inspector.get_indexes(table.name)
                if not i.get("duplicates_constraint")  # PostgreSQL's of a UNIQUE constraint
            }
            assert {i.name for i in table.indexes} == indexes, table.name
    finally:
        engine.dispose()


def test_a_catalog_from_before_versions_is_refused_until_upgraded_and_keeps_every_row(
    catalog_url: str,
) -> None:
    before = _catalog_before_versions(catalog_url)
    catalog = Catalog(catalog_url)
    try:
        with pytest.raises(CatalogError) as refused:
            catalog.copies()
        assert "archive-core catalog upgrade" in refused.value.message
        assert "from before schema versions" in refused.value.message
        assert catalog.schema_state().version is None  # a worker changed nothing
        assert _rows(catalog_url) == before

        was, now = catalog.upgrade()
        assert was.version is None and now.current
        after = _rows(catalog_url)
        # Every row kept as it was, but the intent left open, which is now its batch's.
        [intent] = [r for r in before["archive_core_journal"] if "intent" in r]
        assert after == {
            **before,
            "archive_core_journal": [r for r in before["archive_core_journal"] if r != intent],
        }
        [open_] = catalog.unfinished()
        assert (open_.batch, open_.job_id, open_.key, open_.name, open_.worker) == (
            "b1",
            "VX-J",
            "0",
            "clip0.mov",
            "host:1:0",
        )
        assert open_.started == T0
        records = catalog.copies(policy="VX-P")
        assert sorted(r.locator for r in records) == ["clip0.mov", "clip1.mov", "clip2.mov"]
        assert {r.created for r in records} == {T0}
        # Found by the external ids Portal holds, through (target, locator) now.
        found = catalog.copy("filesys://disk0/clip1.mov")
        assert found is not None and (found.item_id, found.size) == ("VX-1", 1001)
        assert catalog.copy("filesys://disk0/clip9.mov") is None
        assert catalog.upgrade()[0].current  # a second upgrade has nothing to do
    finally:
        catalog.close()


def test_a_catalog_newer_than_the_code_is_refused_and_left_alone(catalog_url: str) -> None:
    import sqlalchemy as sa

    Catalog(catalog_url).close()  # made at the code's version
    catalog = Catalog(catalog_url)
    try:
        catalog.copies()
    finally:
        catalog.close()
    engine = sa.create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9001'")
    finally:
        engine.dispose()
    before = _rows(catalog_url)
    catalog = Catalog(catalog_url)
    try:
        with pytest.raises(CatalogError) as refused:
            catalog.copies()
        assert "newer than this archive-core knows" in refused.value.message
        with pytest.raises(CatalogError, match="newer than this archive-core knows"):
            catalog.upgrade()
    finally:
        catalog.close()
    assert _rows(catalog_url) == before


def test_a_catalog_with_only_some_of_the_tables_is_not_stamped(tmp_path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'odd.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE archive_core_copies (id INTEGER PRIMARY KEY)")
    engine.dispose()
    catalog = Catalog(url)
    try:
        with pytest.raises(CatalogError, match="not a catalog archive-core made"):
            catalog.upgrade()
        assert catalog.schema_state().version is None
    finally:
        catalog.close()


def test_catalog_status_and_upgrade_commands_show_and_apply_the_version(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    _catalog_before_versions(url)
    config, _ = filesys_site(tmp_path, catalog_url=url)
    run = CliRunner().invoke

    status = run(main, ["--config", str(config), "catalog", "status", "--json"])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.output)
    assert shown["version"] is None and shown["code_version"] == schema.SCHEMA_VERSION
    assert not shown["usable"] and "archive-core catalog upgrade" in shown["reason"]

    upgraded = run(main, ["--config", str(config), "catalog", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"to version {schema.SCHEMA_VERSION}" in upgraded.output

    status = run(main, ["--config", str(config), "catalog", "status"])
    assert status.exit_code == 0, status.output
    assert f"schema: version {schema.SCHEMA_VERSION}" in status.output
    assert "usable: yes" in status.output
    again = run(main, ["--config", str(config), "catalog", "upgrade"])
    assert "nothing to do" in again.output
