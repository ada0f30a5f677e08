"""Fixtures shared by the core's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PostgresServer, PostgresUnavailable, unique_database_name

# The conformance kit's own tests run a vendor's test module with pytester.
pytest_plugins = ["pytester"]

# ==== PostgreSQL test server ==============================================================
# `postgresql_url`: one real server per test session (tests/pgserver.py);
# `catalog_url`: every catalog backend, each test with a store of its own.
# Without server binaries these skip, or fail when ARCHIVE_CORE_REQUIRE_POSTGRESQL=1 (CI).

REQUIRE_POSTGRESQL_ENV = "ARCHIVE_CORE_REQUIRE_POSTGRESQL"


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; stopped and removed when the session ends."""
    server = PostgresServer()
    unavailable: str | None = None
    try:
        server.start()
    except PostgresUnavailable as error:
        unavailable = str(error)
    if unavailable is not None:
        if os.environ.get(REQUIRE_POSTGRESQL_ENV) == "1":
            pytest.fail(
                f"PostgreSQL is required here ({REQUIRE_POSTGRESQL_ENV}=1): {unavailable}",
                pytrace=False,
            )
        pytest.skip(unavailable)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgresql_url(postgresql_server: PostgresServer) -> str:
    """SQLAlchemy URL of the session server's `archive_core_test` database."""
    return postgresql_server.url()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
    ]
)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty catalog database: a SQLite file, or a fresh PostgreSQL
    database on the session server, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    name = unique_database_name("catalog")
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


# ==== end of PostgreSQL test server =======================================================
