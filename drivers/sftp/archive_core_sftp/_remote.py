"""Paths on the server: every locator kept under remote_root, whatever a symlink there says.

A locator (from the core, an external id, Portal) is a relative posix path checked by the
core's `transfer.check_locator`. On the server, every directory between remote_root and the
file is looked at with LSTAT: a symbolic link is refused (the server's admin may point one
anywhere), so nothing is written, renamed, read or removed outside remote_root. remote_root
itself may be a link: it is the admin's choice of where the archive lives.
"""

from __future__ import annotations

import errno
import posixpath
import stat

from archive_core import CopyNotFound, UnsafeName
from archive_core_sftp import _wire


def join(root: str, locator: str) -> str:
    """remote_root/locator for a locator the core's checks accept; UnsafeName otherwise."""
    from archive_core import transfer

    return posixpath.join(root, transfer.check_locator(locator))


def _components(root: str, path: str) -> list[str]:
    relative = posixpath.relpath(path, root)
    if relative.startswith("..") or posixpath.isabs(relative):
        raise UnsafeName(f"Refusing {path}: it is not under remote_root {root}.", paths=(path,))
    return relative.split("/")


def _refuse_link(path: str, root: str) -> UnsafeName:
    return UnsafeName(
        f"Refusing {path}: it is a symbolic link on the server, and archive-core never "
        f"follows one under remote_root {root} (it could lead anywhere).",
        paths=(path,),
    )


def make_parents(connection: _wire.Connection, root: str, path: str) -> list[str]:
    """Create the directories between root and `path`'s parent; refuse a link or a file.

    Returns the directories this call made (their entries are new in their parents)."""
    parts = _components(root, path)[:-1]
    current = root
    made: list[str] = []
    for part in parts:
        current = posixpath.join(current, part)
        try:
            attrs = connection.lstat(current)
        except _wire.SFTPError as exc:
            if exc.errno != errno.ENOENT:
                raise
            try:
                connection.mkdir(current)
            except _wire.SFTPError as refused:
                if isinstance(refused, _wire.ConnectionLost):
                    raise
                # Another worker may have made it meanwhile; if not, the refusal (permission
                # denied, read-only) is the reason, not the "no such file" of a second look.
                try:
                    attrs = connection.lstat(current)
                except _wire.SFTPError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                    raise refused from None
            else:
                made.append(current)
                continue
        expect_directory(attrs, current, root)
    return made


def lookup(connection: _wire.Connection, root: str, path: str) -> _wire.Attrs:
    """LSTAT of the regular file at `path`, each directory on the way checked not a link.

    Raises SFTPError(ENOENT) when something on the way is missing, UnsafeName for a link.
    """
    for directory in directories_to(root, path):
        expect_directory(connection.lstat(directory), directory, root)
    attrs = connection.lstat(path)
    expect_file(attrs, path, root)
    return attrs


def directories_to(root: str, path: str) -> list[str]:
    """The directories between root and `path`, outermost first: each must not be a link."""
    parts = _components(root, path)[:-1]
    return [posixpath.join(root, *parts[: n + 1]) for n in range(len(parts))]


def expect_file(attrs: _wire.Attrs, path: str, root: str) -> None:
    """UnsafeName unless `attrs` (an LSTAT's) are a regular file's."""
    mode = attrs.permissions or 0
    if stat.S_ISLNK(mode):
        raise _refuse_link(path, root)
    if not stat.S_ISREG(mode):
        raise UnsafeName(f"Refusing {path}: it is not a regular file on the server.", paths=(path,))


def expect_directory(attrs: _wire.Attrs, path: str, root: str) -> None:
    """UnsafeName unless `attrs` (an LSTAT's) are a directory's."""
    mode = attrs.permissions or 0
    if stat.S_ISLNK(mode):
        raise _refuse_link(path, root)
    if not stat.S_ISDIR(mode):
        raise UnsafeName(
            f"Refusing {path}: it is in the way of a directory under remote_root {root}.",
            paths=(path,),
        )


def not_found(locator: str, root: str, path: str) -> CopyNotFound:
    return CopyNotFound(f"The copy {locator} is not on the server under {root}.", paths=(path,))


def remove_partials(
    connection: _wire.Connection, root: str, locator: str, made_by: tuple[str, ...]
) -> int:
    """Remove the temporary files the dead workers `made_by` left for `locator`'s name
    (the core's `abandoned_partials` chooses: a live worker's upload is never touched)."""
    from archive_core import transfer

    path = join(root, locator)
    directory, name = posixpath.split(path)
    try:
        entries = [
            entry.decode("utf-8", "surrogateescape") for entry, _ in connection.listdir(directory)
        ]
    except _wire.SFTPError as exc:
        if exc.errno == errno.ENOENT:
            return 0
        raise
    removed = 0
    for entry in transfer.abandoned_partials(entries, name, made_by=made_by):
        try:
            connection.remove(posixpath.join(directory, entry))
        except _wire.SFTPError as exc:
            if exc.errno != errno.ENOENT:
                raise
        else:
            removed += 1
    return removed
