"""The SFTP sessions of one target: up to `connections` of them, one per transfer thread.

One OpenSSH server process serves one connection, one request at a time: its fsyncs (one
per archived copy) queue behind each other, and the disk's commit time, not the network,
bounds many small files. Several connections let the server make several copies durable at
once, which the file system's journal commits together. Each thread that asks is given a
slot, round robin, and keeps it; a slot whose connection broke connects again on its own,
so one dead connection costs its own files a reconnect and no other thread waits for it.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from archive_core_sftp import _session, _ssh, _wire
    from archive_core_sftp.config import SftpConfig


class SessionPool:
    """Up to `size` sessions to one target, connected when first needed."""

    def __init__(self, config: SftpConfig, *, work_dir: Path, size: int) -> None:
        self._config = config
        self._work_dir = work_dir
        self._slots: list[_session.Session | None] = [None] * size
        self._locks = [threading.Lock() for _ in range(size)]
        self._lock = threading.Lock()  # the askpass channel and the slot numbering
        self._askpass: _ssh.AskpassChannel | None = None
        self._turn = itertools.count()
        self._mine = threading.local()

    def _slot(self) -> int:
        slot = getattr(self._mine, "slot", None)
        if slot is None:
            with self._lock:
                slot = self._mine.slot = next(self._turn) % len(self._slots)
        return slot

    def connection(self) -> _wire.Connection:
        """This thread's live connection, connecting (again) when it has none or it broke."""
        from archive_core_sftp import _session, _ssh

        slot = self._slot()
        with self._locks[slot]:
            session = self._slots[slot]
            if session is not None and session.alive:
                return session.connection
            if session is not None:
                session.close()
                self._slots[slot] = None
            with self._lock:
                if self._askpass is None and _ssh.needs_prompts(self._config):
                    self._askpass = _ssh.askpass_for(self._config)
                askpass = self._askpass
            self._work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fresh = _session.connect(self._config, work_dir=self._work_dir, askpass=askpass)
            self._slots[slot] = fresh
            return fresh.connection

    def drop(self) -> None:
        """End this thread's connection at once (it broke, or a server froze under it)."""
        slot = self._slot()
        with self._locks[slot]:
            session = self._slots[slot]
            self._slots[slot] = None
        if session is not None:
            session.kill()
            session.close()

    def close(self) -> None:
        """End every session and the askpass channel (a later call connects anew)."""
        for slot, lock in enumerate(self._locks):
            with lock:
                session, self._slots[slot] = self._slots[slot], None
            if session is not None:
                session.close()
        with self._lock:
            if self._askpass is not None:
                self._askpass.close()
                self._askpass = None
