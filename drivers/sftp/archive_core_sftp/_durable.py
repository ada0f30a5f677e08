"""Renames on the server made durable: an fsync of the directory that holds the new name.

A copy's bytes are fsynced before its rename; the rename itself lives in the directory, and
until that is on disk a crash of the server can leave the copy under its temporary name only,
after Portal was told it is archived and deleted the original. SFTP has no "fsync this
directory", but OpenSSH's server opens a directory like a file (open(2) O_RDONLY) and its
fsync@openssh.com then fsyncs it. A chunk of copies is renamed first and each directory
that changed is fsynced once after, so the copies of a batch share a few fsyncs.
A server that refuses (another SFTP server, no fsync@openssh.com) is logged once: its renames
are as durable as its file system makes them by itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archive_core_sftp import _wire

log = logging.getLogger(__name__)


class DirectorySync:
    """Directory fsyncs for one target; gives up (once, logged) on a server that refuses."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._unsupported: str | None = None

    def sync(self, connection: _wire.Connection, directory: str) -> None:
        """Return once `directory` is durable with every rename made in it so far."""
        if self._unsupported is None:
            self._fsync(connection, directory)

    def _fsync(self, connection: _wire.Connection, directory: str) -> None:
        from archive_core_sftp import _wire

        if b"fsync@openssh.com" not in connection.extensions:
            self._give_up("the server does not offer fsync@openssh.com")
            return
        try:
            handle = connection.open(directory, _wire.O_READ)
        except _wire.SFTPError as exc:
            if isinstance(exc, _wire.ConnectionLost):
                raise
            self._give_up(f"it would not open the directory {directory} ({exc.strerror})")
            return
        try:
            connection.fsync(handle)
        finally:
            connection.close_handle(handle)

    def _give_up(self, why: str) -> None:
        if self._unsupported is None:
            self._unsupported = why
            log.warning(
                "target %s: renames on the server cannot be made durable by archive-core, "
                "because %s; they are as durable as the server's file system makes them",
                self._target,
                why,
            )
