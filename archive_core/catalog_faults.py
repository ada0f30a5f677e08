"""A catalog database's errors told to a person: which catalog, what is wrong, what to do.

Portal shows these messages to admins as they are, once per file of a batch. A database
driver's own words ("database is locked", SQLSTATE 25006) become one of a few faults
(`CatalogFault`), each worded here once; the driver's first line follows in parentheses where
it adds something, for whoever searches for it. No message carries the catalog's password.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from archive_core.errors import CatalogError, CatalogFault

#: SQLite's primary result codes (the low byte of `sqlite3.Error.sqlite_errorcode`).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_NOTADB = 26

#: PostgreSQL SQLSTATEs (and classes) that name a fault.
_PG_LOCK_TIMEOUT = "55P03"
_PG_RACES = ("40P01", "40001")  # deadlock detected, serialization failure
_PG_READ_ONLY = "25006"
_PG_FULL = "53100"
_PG_DAMAGED = ("XX001", "XX002")
_PG_GONE = ("57P01", "57P02", "57P03")  # shut down by an admin, crash, cannot connect now
_PG_NO_DATABASE = "3D000"


def mask_url(url: str) -> str:
    """`url` as the admin wrote it, with any password replaced by `***`.

    Done on the text, not by SQLAlchemy's parser: a URL that does not parse (a bad port, an
    unencoded `@` or `/` in the password) must not show its password either. The userinfo
    ends at the last `@` before the query, so a password holding one is masked whole.
    """
    userinfo = _userinfo(url)
    if userinfo is None or ":" not in userinfo:
        return url
    head, _, rest = url.partition("://")
    user = userinfo.split(":", 1)[0]
    return f"{head}://{user}:***@{rest[len(userinfo) + 1 :]}"


def url_password(url: str) -> str | None:
    """The password in `url` as written (everything from the user's `:` to the last `@`)."""
    userinfo = _userinfo(url)
    if userinfo is None or ":" not in userinfo:
        return None
    return userinfo.partition(":")[2]


def url_secrets(url: str) -> tuple[str, ...]:
    """The password in `url`, as written and as decoded (a driver may show either)."""
    from urllib.parse import unquote

    password = url_password(url) or ""
    return tuple(dict.fromkeys(s for s in (password, unquote(password)) if s))


def _userinfo(url: str) -> str | None:
    _, sep, rest = url.partition("://")
    if not sep or rest.startswith("/"):  # no authority: a SQLite file
        return None
    userinfo, at, _ = rest.split("?", 1)[0].rpartition("@")
    return userinfo if at else None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret in it masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def first_line(exc: Exception, secrets: Iterable[str] = ()) -> str:
    """The database driver's own first line: what is wrong, without the SQL or its
    parameters (file names), secrets masked."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    if not text:
        return type(orig).__name__
    line = text.splitlines()[0].strip()
    return scrub(line.removeprefix("connection failed: "), secrets)  # psycopg's own prefix


def lost_lock(exc: Exception) -> CatalogFault | None:
    """Whether a database error lost a lock: LOCKED when waiting for a lock was given up
    (SQLite busy, PostgreSQL lock timeout), CONFLICT when the database broke a deadlock or a
    serialization conflict; None for any other error. Either was rolled back whole."""
    orig = getattr(exc, "orig", None) or exc
    state = _sqlstate(orig)
    if state == _PG_LOCK_TIMEOUT:
        return CatalogFault.LOCKED
    if state in _PG_RACES:
        return CatalogFault.CONFLICT
    code = _sqlite_code(orig)
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return CatalogFault.LOCKED
    text = str(orig).lower()
    if code is None and ("database is locked" in text or "database table is locked" in text):
        return CatalogFault.LOCKED
    return None


def describe(
    exc: Exception,
    *,
    catalog: str,
    path: str | None,
    read_only_url: bool,
    lock_wait: float,
    attempts: int = 1,
    secrets: Iterable[str] = (),
) -> CatalogError:
    """The CatalogError for a database error of the catalog `catalog` (the masked URL).

    `path` is a SQLite catalog's file (None for a server), looked at to tell a read-only or
    full disk from other trouble; `read_only_url` says its URL asked for mode=ro.
    """
    orig = getattr(exc, "orig", None) or exc
    reason = first_line(exc, secrets)
    if path is not None:
        fault, message = _sqlite(orig, catalog, path, reason, read_only_url)
    else:
        fault, message = _server(exc, orig, catalog, reason)
    if fault is CatalogFault.LOCKED:
        message = _locked(catalog, lock_wait, server=path is None)
    elif fault is CatalogFault.CONFLICT:
        message = (
            f"The catalog {catalog} refused this change {attempts} times in a row because other "
            f"workers were changing the same records at that moment ({reason}). Run the job "
            "again."
        )
    retryable = fault in (
        CatalogFault.LOCKED,
        CatalogFault.CONFLICT,
        CatalogFault.UNREACHABLE,
        CatalogFault.FAILED,
    )
    return CatalogError(message, catalog=catalog, fault=fault, retryable=retryable)


def cannot_create_directory(catalog: str, directory: str, exc: OSError) -> CatalogError:
    """A SQLite catalog whose directory does not exist and cannot be made."""
    in_the_way = isinstance(exc, FileExistsError) or (
        os.path.lexists(directory) and not os.path.isdir(directory)
    )
    why = "a file of that name is in the way" if in_the_way else exc.strerror or str(exc)
    return CatalogError(
        f"The catalog {catalog} cannot be opened: its directory {directory} cannot be created "
        f"({why}). Create that directory, or set [catalog] url to a file in a directory this "
        f"worker ({_user()}) may write.",
        catalog=catalog,
        fault=CatalogFault.UNREACHABLE,
    )


def bad_url(catalog: str, why: Exception | str, secrets: Iterable[str]) -> CatalogError:
    """A catalog URL archive-core cannot use as written."""
    return CatalogError(
        f"The catalog URL {catalog} is not a database URL archive-core can read "
        f"({scrub(str(why), secrets)}). Correct [catalog] url in the configuration; a "
        "password in it must be URL-encoded, or given as [catalog] password.",
        catalog=catalog,
        fault=CatalogFault.UNREACHABLE,
    )


# --- the two kinds of database ---------------------------------------------------------------


def _sqlite(
    orig: Any, catalog: str, path: str, reason: str, read_only_url: bool
) -> tuple[CatalogFault, str]:
    if lost_lock(orig) is CatalogFault.LOCKED:
        return CatalogFault.LOCKED, ""
    code = _sqlite_code(orig)
    directory = os.path.dirname(path)
    if code in (_SQLITE_READONLY, _SQLITE_PERM) or (
        code in (_SQLITE_IOERR, _SQLITE_CANTOPEN) and _read_only_disk(directory)
    ):
        return CatalogFault.READ_ONLY, _sqlite_read_only(catalog, path, reason, read_only_url)
    if code == _SQLITE_FULL or (code == _SQLITE_IOERR and _no_space(directory)):
        return CatalogFault.FULL, (
            f"The catalog {catalog} is full: the disk holding it, or this worker's quota on "
            f"it, has no space left ({reason}). Free space in {directory}, then run the job "
            "again."
        )
    if code == _SQLITE_NOTADB:
        return CatalogFault.DAMAGED, (
            f"The catalog {catalog} is not a SQLite database ({reason}): the file was "
            "overwritten, or is not the catalog. Restore it from a backup, or set [catalog] "
            "url to the catalog's file."
        )
    if code == _SQLITE_CORRUPT:
        return CatalogFault.DAMAGED, (
            f"The catalog {catalog} is damaged ({reason}). Restore it from a backup; "
            f'`sqlite3 {path} "PRAGMA integrity_check"` shows what is damaged.'
        )
    if code == _SQLITE_CANTOPEN:
        where = (
            f"its directory {directory} does not exist"
            if not os.path.isdir(directory)
            else f"check that the user this worker runs as ({_user()}) may read and write "
            f"{path} and its directory"
        )
        return (
            CatalogFault.UNREACHABLE,
            f"The catalog {catalog} cannot be opened ({reason}): {where}.",
        )
    if code == _SQLITE_IOERR:
        return CatalogFault.FAILED, (
            f"The catalog {catalog} cannot be read or written: the disk holding it reports an "
            f"error ({reason}). Check that disk ({directory})."
        )
    return CatalogFault.FAILED, f"The catalog {catalog} failed: {reason}."


def _sqlite_read_only(catalog: str, path: str, reason: str, read_only_url: bool) -> str:
    if read_only_url:
        return (
            f"The catalog {catalog} is read-only: its URL opens it with mode=ro, so archive-core "
            "cannot record anything in it. Remove mode=ro from [catalog] url."
        )
    directory = os.path.dirname(path)
    if _read_only_disk(directory):
        return (
            f"The catalog {catalog} is on a read-only file system: the disk holding "
            f"{directory} is mounted read-only, so archive-core cannot write to the catalog "
            f"({reason}). Mount it read-write, or move the catalog to a writable disk."
        )
    return (
        f"The catalog {catalog} is read-only: the user this worker runs as ({_user()}) may "
        f"not write {path} or its directory ({reason}). Make both writable for that user "
        "(its owner and mode, and no immutable flag: `lsattr`)."
    )


def _server(exc: Exception, orig: Any, catalog: str, reason: str) -> tuple[CatalogFault, str]:
    state = _sqlstate(orig) or ""
    if state == _PG_LOCK_TIMEOUT:
        return CatalogFault.LOCKED, ""
    if state in _PG_RACES:
        return CatalogFault.CONFLICT, ""
    if state == _PG_READ_ONLY:
        return CatalogFault.READ_ONLY, (
            f"The catalog {catalog} is read-only: the database refuses writes ({reason}). If it "
            "is a standby (replica), set [catalog] url to the primary; otherwise turn "
            "default_transaction_read_only off for its database or user."
        )
    if state == _PG_FULL:
        return CatalogFault.FULL, (
            f"The catalog {catalog} is full: the database server has no disk space left for it "
            f"({reason}). Free space on the server's disk (or the tablespace holding the "
            "catalog's tables), then run the job again."
        )
    if state in _PG_DAMAGED:
        return CatalogFault.DAMAGED, (
            f"The catalog {catalog} is damaged ({reason}). Have its database repaired (REINDEX "
            "for a damaged index) or restored from a backup."
        )
    if state.startswith("28"):
        return CatalogFault.UNREACHABLE, (
            f"The catalog {catalog} refuses this worker's login ({reason}). Check the user in "
            "[catalog] url and [catalog] password."
        )
    if state == _PG_NO_DATABASE:
        return CatalogFault.UNREACHABLE, (
            f"The catalog {catalog} does not exist on its server ({reason}). Create the "
            "database, or correct [catalog] url."
        )
    unreachable = (
        getattr(exc, "connection_invalidated", False)
        or state.startswith("08")
        or state in _PG_GONE
        or (not state and type(orig).__name__ == "OperationalError")
    )
    if unreachable:
        return CatalogFault.UNREACHABLE, (
            f"The catalog {catalog} cannot be reached ({reason}). Check that its database "
            "server is running and accepts connections from this machine."
        )
    return CatalogFault.FAILED, f"The catalog {catalog} failed: {reason}."


def _locked(catalog: str, waited: float, *, server: bool) -> str:
    if server:
        return (
            f"The catalog {catalog} is locked by another session: archive-core waited "
            f"{waited:g} s for a lock on its tables and gave up. pg_stat_activity on the "
            "database server shows the session that holds it (a migration, a VACUUM FULL, a "
            "transaction left open); end it, then run the job again. [catalog] "
            "lock_wait_seconds sets how long workers wait."
        )
    return (
        f"The catalog {catalog} is locked by another program: archive-core waited "
        f"{waited:g} s for it and gave up. A program holding it open in a transaction (an "
        "sqlite3 shell, a backup) or a stuck worker keeps it locked; end that, then run the "
        "job again. [catalog] lock_wait_seconds sets how long workers wait."
    )


# --- what the error and the disk say ---------------------------------------------------------


def _sqlite_code(orig: Any) -> int | None:
    code = getattr(orig, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _sqlstate(orig: Any) -> str | None:
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _read_only_disk(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _no_space(directory: str) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
