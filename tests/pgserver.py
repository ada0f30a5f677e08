"""A throwaway PostgreSQL server for tests: its own initdb, loopback port and temp directory."""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

#: The database every server creates when it starts; `PostgresServer.url()` names it.
DEFAULT_DATABASE = "archive_core_test"

#: Run-time account when the tests run as root (initdb refuses root): Debian's own, else ours.
SERVICE_ACCOUNT = "postgres"
FALLBACK_ACCOUNT = "archive-core-pg"

SETUP_HINT = "run scripts/setup-system to install the PostgreSQL server packages"

#: Points the tests at one server `bin` directory instead of searching (a source build, say).
BINDIR_ENV = "ARCHIVE_CORE_PG_BINDIR"

HOST = "127.0.0.1"
# PostgreSQL silently truncates longer identifiers, which would let two names meet.
MAX_IDENTIFIER_BYTES = 63
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 30


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries or the psycopg driver are not installed on this machine."""


class PostgresStartFailed(RuntimeError):
    """A server was found but did not initialise or start; the message carries its log."""


def find_bindir(versions_root: Path = Path("/usr/lib/postgresql")) -> Path | None:
    """Return the newest installed PostgreSQL server `bin` directory, or None when there is none.

    Debian keeps each major version in /usr/lib/postgresql/<version>/bin; elsewhere `pg_config
    --bindir` says where the server lives. Loose symlinks on PATH are ignored on purpose: they
    can point at a version other than the one these directories hold.
    """
    versioned = [
        (version, bindir)
        for bindir in versions_root.glob("*/bin")
        if (version := _version_key(bindir.parent.name)) is not None and _has_server(bindir)
    ]
    if versioned:
        return max(versioned)[1]
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        answer = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    bindir = Path(answer.stdout.strip())
    # Debian's pg_config ships with libpq-dev and names a bindir even when no server is there.
    return bindir if answer.stdout.strip() and _has_server(bindir) else None


def unique_database_name(prefix: str = "test") -> str:
    """A database name no other test of this run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1 that exists only between `start()` and `stop()`.

    Use it as a context manager; the server is stopped (fast shutdown) and its directory removed
    on exit, also when the body or the start itself fails. Authentication is `trust` on loopback
    only, which is fine for a server nobody else knows the port of and that lives for one run.
    """

    def __init__(
        self,
        *,
        bindir: Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.bindir = bindir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self.user: str | None = None
        self.root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def data_dir(self) -> Path:
        return self._require_root() / "data"

    @property
    def log_file(self) -> Path:
        return self._require_root() / "server.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def url(self, database: str = DEFAULT_DATABASE) -> str:
        """The SQLAlchemy URL (psycopg 3 dialect) of `database` on this server."""
        from sqlalchemy.engine import URL

        if self.port is None or self.user is None:
            raise RuntimeError("The PostgreSQL test server is not running.")
        return URL.create(
            "postgresql+psycopg", username=self.user, host=HOST, port=self.port, database=database
        ).render_as_string(hide_password=False)

    def start(self) -> None:
        """initdb, start the server, wait until it answers, create DEFAULT_DATABASE."""
        if self._process is not None:
            raise RuntimeError("The PostgreSQL test server is already running.")
        from_environment = os.environ.get(BINDIR_ENV)
        bindir = self.bindir or (Path(from_environment) if from_environment else find_bindir())
        if bindir is None or not _has_server(bindir):
            where = bindir or "/usr/lib/postgresql/*/bin or `pg_config --bindir`"
            raise PostgresUnavailable(
                f"No PostgreSQL server binaries (initdb, postgres) in {where}; {SETUP_HINT}."
            )
        try:
            import psycopg  # noqa: F401
        except ImportError as error:
            raise PostgresUnavailable(
                "The psycopg driver is not installed; run `uv sync --all-packages` "
                "(archive-core's `postgresql` extra)."
            ) from error
        self.bindir = bindir
        account = _run_as_account()
        self.user = account.pw_name if account else pwd.getpwuid(os.geteuid()).pw_name
        self.root = Path(tempfile.mkdtemp(prefix="archive-core-pg-", dir=_base_dir(account)))
        try:
            if account is not None:
                os.chown(self.root, account.pw_uid, account.pw_gid)
            self._initdb(account)
            self._launch(account)
            self.create_database(DEFAULT_DATABASE)
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL test server on %s:%s (data in %s)", HOST, self.port, self.root)

    def stop(self) -> None:
        """Fast shutdown (roll back open sessions, exit) and remove the server's directory."""
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()  # stops the process, removes the directory; does nothing a second time
        if self.root is not None:
            _shutdown(None, self.root, self.stop_timeout)
        self._process = None
        self.root = None
        self.port = None

    def create_database(self, name: str) -> str:
        """Create an empty database `name`; return its SQLAlchemy URL."""
        from psycopg import sql

        _check_identifier(name)
        with self._admin_connection() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, disconnecting whoever is still connected to it (PostgreSQL 13+)."""
        from psycopg import sql

        _check_identifier(name)
        with self._admin_connection() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def _admin_connection(self) -> Any:
        import psycopg

        if self.port is None:
            raise RuntimeError("The PostgreSQL test server is not running.")
        return psycopg.connect(
            host=HOST, port=self.port, user=self.user, dbname="postgres", autocommit=True
        )

    def _initdb(self, account: pwd.struct_passwd | None) -> None:
        command = [
            str(self._binary("initdb")),
            "--pgdata",
            str(self.data_dir),
            "--username",
            str(self.user),
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            # A server that lives for one test run needs no crash safety; this saves seconds.
            "--no-sync",
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            **_child_options(account, cwd=self._require_root()),
        )
        if result.returncode != 0:
            raise PostgresStartFailed(
                f"initdb exited with {result.returncode}:\n{result.stdout}{result.stderr}"
            )

    def _launch(self, account: pwd.struct_passwd | None) -> None:
        root = self._require_root()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.port = _free_port()
            # A fresh log per attempt, so a retry is judged by its own messages only.
            with self.log_file.open("wb") as log_sink:
                process = subprocess.Popen(
                    [
                        str(self._binary("postgres")),
                        "-D",
                        str(self.data_dir),
                        "-h",
                        HOST,
                        "-p",
                        str(self.port),
                        # Our own socket directory keeps clear of a system cluster's lock files.
                        "-k",
                        str(root),
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log_sink,
                    stderr=subprocess.STDOUT,
                    # Ctrl-C in the terminal is for pytest; pytest then stops the server itself.
                    start_new_session=True,
                    **_child_options(account, cwd=root),
                )
            self._process = process
            self._finalizer = weakref.finalize(self, _shutdown, process, root, self.stop_timeout)
            try:
                self._wait_until_accepting(process)
                return
            except PostgresStartFailed:
                port_taken = "could not bind" in self._log_tail()
                if not port_taken or attempt == _PORT_ATTEMPTS:
                    raise
                # Another process took the port between our probe and the server's bind.
                log.info("Port %s was taken before PostgreSQL bound it; trying another", self.port)
                self._finalizer.detach()
                _shutdown(process, None, self.stop_timeout)

    def _wait_until_accepting(self, process: subprocess.Popen[bytes]) -> None:
        import psycopg

        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while True:
            returncode = process.poll()
            if returncode is not None:
                raise PostgresStartFailed(
                    f"PostgreSQL exited with {returncode} before accepting connections on "
                    f"{HOST}:{self.port}. Server log ({self.log_file}):\n{self._log_tail()}"
                )
            try:
                psycopg.connect(
                    host=HOST, port=self.port, user=self.user, dbname="postgres", connect_timeout=2
                ).close()
                return
            except psycopg.OperationalError as error:
                last_error = error
            if time.monotonic() >= deadline:
                raise PostgresStartFailed(
                    f"PostgreSQL on {HOST}:{self.port} did not accept connections within "
                    f"{self.start_timeout:g}s (last attempt: {last_error}). "
                    f"Server log ({self.log_file}):\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(server log is empty)"

    def _binary(self, name: str) -> Path:
        assert self.bindir is not None
        return self.bindir / name

    def _require_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("The PostgreSQL test server has no directory: it is not started.")
        return self.root


def _shutdown(process: subprocess.Popen[bytes] | None, root: Path | None, timeout: float) -> None:
    # A module function rather than a method so weakref.finalize can run it at interpreter exit
    # (a test run killed between start and stop still leaves no server behind).
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)  # "immediate" shutdown
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
        if root.exists():
            log.warning("Could not remove the PostgreSQL test directory %s", root)


def _run_as_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None means "as ourselves" (we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in (SERVICE_ACCOUNT, FALLBACK_ACCOUNT):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresUnavailable(
            f"Running as root, and neither a {SERVICE_ACCOUNT!r} account nor useradd exists to "
            f"run PostgreSQL unprivileged; {SETUP_HINT}."
        )
    subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_ACCOUNT,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return pwd.getpwnam(FALLBACK_ACCOUNT)


def _child_options(account: pwd.struct_passwd | None, *, cwd: Path) -> dict[str, Any]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST ...) must not steer our server.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    options: dict[str, Any] = {"cwd": cwd, "env": environment, "umask": 0o077}
    if account is not None:
        environment.update(HOME=str(cwd), USER=account.pw_name, LOGNAME=account.pw_name)
        options.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    return options


def _base_dir(account: pwd.struct_passwd | None) -> str | None:
    """A temp directory the service account can reach (TMPDIR may sit under root's home)."""
    preferred = tempfile.gettempdir()
    if account is None or _reachable_by_others(Path(preferred)):
        return None
    return "/tmp"


def _reachable_by_others(directory: Path) -> bool:
    for part in [directory.resolve(), *directory.resolve().parents]:
        if not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))


def _version_key(name: str) -> tuple[int, ...] | None:
    if not re.fullmatch(r"\d+(\.\d+)*", name):
        return None
    return tuple(int(part) for part in name.split("."))


def _check_identifier(name: str) -> None:
    if not name or "\x00" in name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"{name!r} cannot be a PostgreSQL database name: it needs 1 to "
            f"{MAX_IDENTIFIER_BYTES} bytes of UTF-8 and no NUL character."
        )
