"""A trial's site and batch on disk, its catalog, and the harness's reads of that catalog."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from archive_core.naming import archive_name
from archive_core.testing.fileset import FileSet
from archive_core.testing.siteconfig import write_config
from archive_core.transfer import LARGE_FILE
from tests.killrun.plan import TARGETS, TrialPlan
from tests.pgserver import PostgresServer, unique_database_name
from tests.sites import POLICY


@attrs.frozen(kw_only=True)
class Site:
    """One site on disk: its config, the root of each target, its catalog."""

    config: Path
    roots: dict[str, Path]
    catalog_url: str


def build_site(directory: Path, catalog_url: str) -> Site:
    """A policy with two filesys targets (two copies per file), written as an admin would."""
    directory.mkdir(parents=True)
    roots = {}
    for n, target in enumerate(TARGETS):
        roots[target] = directory / f"archive{n}"
        roots[target].mkdir()
    config = write_config(
        directory / "archive-core.toml",
        targets={
            target: {
                "driver": "filesys",
                "settings": {"root": str(root), "layout": "item", "min_free_bytes": 0},
            }
            for target, root in roots.items()
        },
        policies={POLICY: {"name": "Kill trials", "targets": list(TARGETS)}},
        catalog_url=catalog_url,
    )
    return Site(config=config, roots=roots, catalog_url=catalog_url)


def build_batch(directory: Path, plan: TrialPlan) -> list[FileSet]:
    """Online files and the FileSets Portal would pass for them (Vidispine's sha1).

    A few items share bytes with another item, as Portal's duplicates do; their copies are
    still separate (the item id is part of the archive name).
    """
    rng = random.Random(plan.seed ^ 0x5EED)
    sizes = [rng.randint(1024, 8192) for _ in range(plan.small_files)]
    sizes += [LARGE_FILE + rng.randint(0, 8 * 1024 * 1024) for _ in range(plan.large_files)]
    rng.shuffle(sizes)
    folders = [directory / f"ingest{n}" for n in range(8)]
    for folder in folders:
        folder.mkdir(parents=True)
    file_sets: list[FileSet] = []
    for n, size in enumerate(sizes):
        if file_sets and size < LARGE_FILE and rng.random() < 0.02:
            data = Path(rng.choice(file_sets).files[0]).read_bytes()
        else:
            data = rng.randbytes(size)
        path = rng.choice(folders) / f"clip_{n:05d}.mxf"
        path.write_bytes(data)
        file_sets.append(
            FileSet(
                files=[str(path)],
                external_ids=[],
                item_id=f"VX-{1000 + n}",
                sha1=hashlib.sha1(data).hexdigest(),
                shape_id=f"VX-{5000 + n}",
                component_id=f"VX-{9000 + n}",
            )
        )
    return file_sets


def expected_locator(fs: Any) -> str:
    """Where the item layout puts a FileSet's copy under a root (documented by the driver)."""
    return f"{fs.item_id}/{archive_name(fs.files[0], item_id=fs.item_id, sha1=fs.sha1)}"


def write_manifest(path: Path, file_sets: Iterable[Any]) -> Path:
    path.write_text(json.dumps([fs._asdict() for fs in file_sets]), encoding="utf-8")
    return path


def as_file_sets(rows: Iterable[dict[str, Any]]) -> list[FileSet]:
    return [FileSet(**row) for row in rows]


class Databases:
    """Fresh catalog URLs for trials: SQLite files, or databases on one PostgreSQL server."""

    def __init__(self, server: PostgresServer | None) -> None:
        self._server = server
        self._made: list[str] = []

    def new(self, backend: str, directory: Path) -> str:
        if backend == "sqlite":
            return f"sqlite:///{directory / 'catalog.sqlite'}"
        if self._server is None:
            raise RuntimeError("a PostgreSQL trial needs a PostgresServer")
        name = unique_database_name("killrun")
        self._made.append(name)
        return self._server.create_database(name)

    def drop_all(self) -> None:
        made, self._made = self._made, []
        for name in made:
            assert self._server is not None
            try:
                self._server.drop_database(name)
            except Exception as exc:  # a leftover database is not worth failing a report
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)


def _read_catalog(site: Site, read: Callable[[Any], list[Any]]) -> list[Any]:
    """One read of the site's catalog, closed again at once."""
    from archive_core.catalog import Catalog

    catalog = Catalog(site.catalog_url)
    try:
        return read(catalog)
    finally:
        catalog.close()


def catalog_copies(site: Site) -> list[Any]:
    return _read_catalog(site, lambda catalog: catalog.copies(policy=POLICY))


def catalog_unfinished(site: Site) -> list[Any]:
    return _read_catalog(site, lambda catalog: catalog.unfinished())


class JournalCounter:
    """Counts journal rows of one job while a worker writes them, without creating tables.

    The harness reads the journal table itself: opening `Catalog` would create the schema,
    racing the worker's own creation of it on a fresh database.
    """

    def __init__(self, catalog_url: str, job_id: str) -> None:
        import sqlalchemy as sa

        url = sa.engine.make_url(catalog_url)
        if url.get_backend_name() == "sqlite":
            # Read-only: the worker must be the one to create the file and its schema.
            url = sa.engine.make_url(f"sqlite:///file:{url.database}?mode=ro&uri=true")
        self._engine = sa.create_engine(url)
        self._job = job_id
        self._sa = sa

    def count(self, *, finished_only: bool) -> int:
        """Files of the job's batches with a recorded result (finished_only), or all of them
        (their intent is written)."""
        sa = self._sa
        counted = "done + failed" if finished_only else "files"
        query = f"SELECT coalesce(sum({counted}), 0) FROM archive_core_batches WHERE job_id = :job"
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(sa.text(query), {"job": self._job}).scalar_one())
        except sa.exc.SQLAlchemyError:
            return 0  # no database or table yet: nothing journaled

    def close(self) -> None:
        self._engine.dispose()
