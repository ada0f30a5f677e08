"""Renames on the server made durable: an fsync of the directory that holds the new name.

A copy's bytes are fsynced before its rename; the rename itself lives in the directory, and
until that is on disk a crash of the server can leave the copy under its temporary name only,
after Portal was told it is archived and deleted the original. SFTP has no "fsync this
directory", but OpenSSH's server opens a directory like a file (open(2) O_RDONLY) and its
fsync@openssh.com then fsyncs it. One such fsync serves every rename in that directory that
was made before it started, so files in flight share them instead of queueing one each.
A server that refuses (another SFTP server, no fsync@openssh.com) is logged once: its renames
are as durable as its file system makes them by itself.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archive_core_sftp import _wire

log = logging.getLogger(__name__)


class _Directory:
    """One directory's renames: how many were made, how many a finished fsync covers."""

    def __init__(self) -> None:
        self.renamed = 0
        self.covered = 0
        self.running = False
        self.users = 0  # callers waiting on it; the entry goes when none are left


class DirectorySync:
    """Directory fsyncs for one target, shared by its transfer threads."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._changed = threading.Condition()
        self._directories: dict[str, _Directory] = {}
        self._unsupported: str | None = None

    def after_rename(self, connection: _wire.Connection, directory: str) -> None:
        """Return once `directory` is durable with every rename made in it so far."""
        with self._changed:
            entry = self._directories.setdefault(directory, _Directory())
            entry.users += 1
            entry.renamed += 1
            ticket = entry.renamed
        try:
            self._wait_or_sync(connection, directory, entry, ticket)
        finally:
            with self._changed:
                entry.users -= 1
                if not entry.users:
                    del self._directories[directory]

    def _wait_or_sync(
        self, connection: _wire.Connection, directory: str, entry: _Directory, ticket: int
    ) -> None:
        while True:
            with self._changed:
                while entry.running and entry.covered < ticket:
                    self._changed.wait()
                if self._unsupported is not None or entry.covered >= ticket:
                    return  # an fsync that started after this rename has finished
                entry.running = True
                covers = entry.renamed
            done = False
            try:
                done = self._fsync(connection, directory)
            finally:
                with self._changed:
                    entry.running = False
                    if done:
                        entry.covered = max(entry.covered, covers)
                    self._changed.notify_all()

    def _fsync(self, connection: _wire.Connection, directory: str) -> bool:
        from archive_core_sftp import _wire

        if b"fsync@openssh.com" not in connection.extensions:
            self._give_up("the server does not offer fsync@openssh.com")
            return False
        try:
            handle = connection.open(directory, _wire.O_READ)
        except _wire.SFTPError as exc:
            if isinstance(exc, _wire.ConnectionLost):
                raise
            self._give_up(f"it would not open the directory {directory} ({exc.strerror})")
            return False
        try:
            connection.fsync(handle)
        finally:
            connection.close_handle(handle)
        return True

    def _give_up(self, why: str) -> None:
        if self._unsupported is None:
            self._unsupported = why
            log.warning(
                "target %s: renames on the server cannot be made durable by archive-core, "
                "because %s; they are as durable as the server's file system makes them",
                self._target,
                why,
            )
