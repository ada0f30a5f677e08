"""The throwaway PostgreSQL server and the fixtures built on it really work, and clean up."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pgserver import (
    BINDIR_ENV,
    MAX_IDENTIFIER_BYTES,
    PostgresServer,
    PostgresStartFailed,
    PostgresUnavailable,
    find_bindir,
    unique_database_name,
)

REPO = Path(__file__).resolve().parent.parent


def _scalar(url: str, query: str) -> object:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(query)).scalar_one()
    finally:
        engine.dispose()


def _server_dirs() -> set[Path]:
    return {
        *Path(tempfile.gettempdir()).glob("archive-core-pg-*"),
        *Path("/tmp").glob("archive-core-pg-*"),
    }


def _processes() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout


def _port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir the unprivileged server account can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="archive-core-pgtest-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.postgresql
def test_sqlalchemy_engine_runs_queries_on_the_session_server(postgresql_url: str) -> None:
    url = sqlalchemy.make_url(postgresql_url)
    assert (url.drivername, url.host, url.database) == (
        "postgresql+psycopg",
        "127.0.0.1",
        "archive_core_test",
    )
    engine = sqlalchemy.create_engine(postgresql_url)
    try:
        with engine.begin() as connection:
            database = connection.execute(sqlalchemy.text("SELECT current_database()"))
            assert database.scalar_one() == "archive_core_test"
            connection.execute(sqlalchemy.text("CREATE TEMP TABLE copies (n int)"))
            connection.execute(sqlalchemy.text("INSERT INTO copies VALUES (1), (2), (40)"))
            total = connection.execute(sqlalchemy.text("SELECT sum(n) FROM copies")).scalar_one()
        assert total == 43
    finally:
        engine.dispose()


@pytest.mark.parametrize("round_", [1, 2])
def test_catalog_url_gives_every_test_an_empty_database(catalog_url: str, round_: int) -> None:
    # Both rounds create the same table: the second would find the first's if stores were shared.
    engine = sqlalchemy.create_engine(catalog_url)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE journal (round int)"))
            connection.execute(sqlalchemy.text("INSERT INTO journal VALUES (:r)"), {"r": round_})
        assert sqlalchemy.inspect(engine).get_table_names() == ["journal"]
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_databases_created_on_one_server_are_isolated(postgresql_server: PostgresServer) -> None:
    first, second = unique_database_name("iso"), unique_database_name("iso")
    first_url = postgresql_server.create_database(first)
    second_url = postgresql_server.create_database(second)
    try:
        assert first_url != second_url
        engine = sqlalchemy.create_engine(first_url)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE cartridges (barcode text)"))
            connection.execute(sqlalchemy.text("INSERT INTO cartridges VALUES ('A00001L8')"))
        engine.dispose()
        assert _scalar(second_url, "SELECT to_regclass('cartridges') IS NULL") is True
        assert _scalar(first_url, "SELECT count(*) FROM cartridges") == 1
    finally:
        postgresql_server.drop_database(first)
        postgresql_server.drop_database(second)
    remaining = f"SELECT count(*) FROM pg_database WHERE datname IN ('{first}', '{second}')"
    assert _scalar(postgresql_server.url(), remaining) == 0


database_names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
).filter(lambda name: len(f"h {name}".encode()) <= MAX_IDENTIFIER_BYTES)


@pytest.mark.postgresql
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suffix=database_names)
def test_database_url_reaches_the_database_whatever_its_name(
    postgresql_server: PostgresServer, suffix: str
) -> None:
    name = f"h {suffix}"  # the prefix keeps clear of `postgres`, `template1` and friends
    url = postgresql_server.create_database(name)
    try:
        assert _scalar(url, "SELECT current_database()") == name
    finally:
        postgresql_server.drop_database(name)


@pytest.mark.postgresql
def test_database_names_postgresql_would_truncate_are_refused(
    postgresql_server: PostgresServer,
) -> None:
    too_long = "x" * (MAX_IDENTIFIER_BYTES + 1)
    with pytest.raises(ValueError, match="1 to 63 bytes"):
        postgresql_server.create_database(too_long)
    with pytest.raises(ValueError, match="NUL"):
        postgresql_server.create_database("a\x00b")


@pytest.mark.postgresql
def test_server_stops_and_removes_its_directory_when_the_body_fails(
    postgresql_server: PostgresServer,
) -> None:
    server = PostgresServer(bindir=postgresql_server.bindir)
    with pytest.raises(RuntimeError, match="body failed"), server:
        root, port, pid = server.root, server.port, server.pid
        assert root is not None and port is not None and pid is not None
        assert (root / "data" / "PG_VERSION").is_file()
        assert _port_accepts(port)
        raise RuntimeError("body failed")
    assert not root.exists()
    assert not _port_accepts(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert server.root is None and server.port is None


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("fake_postgres", "expected"),
    [
        ("echo 'fake postgres: never listens'\nexec sleep 60", "did not accept connections within"),
        ("echo 'fake postgres: gives up'\nexit 3", "exited with 3"),
    ],
)
def test_start_gives_up_with_the_server_log_and_leaves_nothing_behind(
    postgresql_server: PostgresServer, shared_tmp: Path, fake_postgres: str, expected: str
) -> None:
    # initdb is the real one (it finds the real postgres next to its own resolved path); only
    # the server we launch is a stand-in that never accepts a connection.
    real = postgresql_server.bindir
    assert real is not None
    bindir = shared_tmp / "bin"
    bindir.mkdir()
    (bindir / "initdb").symlink_to(real / "initdb")
    (bindir / "postgres").write_text(f"#!/bin/sh\n{fake_postgres}\n")
    (bindir / "postgres").chmod(0o755)
    server = PostgresServer(bindir=bindir, start_timeout=1.0)
    before = _server_dirs()
    with pytest.raises(PostgresStartFailed, match=expected) as failure:
        server.start()
    assert "fake postgres" in str(failure.value)
    assert server.root is None
    assert _server_dirs() == before
    assert "fake postgres" not in _processes()


def test_start_without_server_binaries_names_the_setup_script(tmp_path: Path) -> None:
    before = _server_dirs()
    with pytest.raises(PostgresUnavailable, match="scripts/setup-system"):
        PostgresServer(bindir=tmp_path).start()
    assert _server_dirs() == before


def test_find_bindir_picks_the_highest_complete_version(tmp_path: Path) -> None:
    for version, binaries in [
        ("9.6", ("initdb", "postgres")),
        ("10", ("initdb", "postgres")),
        ("15", ("initdb", "postgres")),
        ("16", ("initdb",)),  # a client-only or half-removed install
        ("tools", ("initdb", "postgres")),
    ]:
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        for name in binaries:
            (bindir / name).write_text("#!/bin/sh\n")
            (bindir / name).chmod(0o755)
    assert find_bindir(tmp_path) == tmp_path / "15" / "bin"


@pytest.mark.parametrize(
    ("required", "outcome"),
    [("", "1 skipped"), ("1", "1 error")],
)
def test_postgresql_fixture_skips_or_fails_without_binaries(
    tmp_path: Path, required: str, outcome: str
) -> None:
    # A separate pytest run that uses the real fixtures, on a machine "without" PostgreSQL.
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import postgresql_server, postgresql_url  # noqa: F401\n"
    )
    (tmp_path / "test_needs_postgresql.py").write_text(
        "def test_needs_postgresql(postgresql_url):\n    pass\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        BINDIR_ENV: str(tmp_path / "no-such-bin"),
        "ARCHIVE_CORE_REQUIRE_POSTGRESQL": required,
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rsE", "-p", "no:cacheprovider", "--rootdir", tmp_path],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "scripts/setup-system" in result.stdout
