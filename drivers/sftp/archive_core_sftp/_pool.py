"""The SFTP sessions of one target: up to `connections` of them, for the uploads' threads.

One OpenSSH server process serves one connection, one request at a time: its fsyncs (one
per archived copy) queue behind each other, and on a disk whose fsync takes milliseconds its
commit time, not the network, bounds many small files. Several connections let the server
make several copies durable at once, which the file system's journal commits together. So
each upload thread (`spread=True`) is given a slot, round robin, and keeps it; everything
else (restores, verifies, deletes, readiness) shares the first: reads gain nothing from more
server processes and, measured with client and server on one small machine, lose to the
extra ssh processes. A slot whose connection broke connects again on its own, so one dead
connection costs its own files a reconnect.

During a job, an attempt that fails for a reason that may pass (server unreachable, login
timed out) is tried again after each of the job's `Patience.delays`; connecting is one at a
time across the pool, so while one thread waits out the delays the others wait for its
result, and once they are spent every thread fails at once with the same reason: a batch
against a dead server costs one round of attempts, not one per file.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from archive_core_sftp import _session, _ssh, _wire
    from archive_core_sftp.config import SftpConfig


log = logging.getLogger(__name__)

#: Waits between connection attempts during a job: 4 attempts in all, so a server restarting
#: or a network blip costs seconds, not the files; each is capped at operation_timeout.
RECONNECT_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)
#: No attempt is begun once the attempts and waits would pass this many operation_timeouts
#: (a hung server takes connect_timeout per attempt): a file never waits much longer for a
#: connection than for a request.
RECONNECT_BUDGET = 3


@attrs.define
class Patience:
    """One job's connection attempts: the waits between them, and the failure once spent.

    Shared by the job's transfer threads (changed under the pool's connect lock).
    """

    delays: tuple[float, ...]
    gave_up: _session.SessionFailed | None = None


class SessionPool:
    """Up to `size` sessions to one target, connected when first needed.

    `on_connect(connection)` runs after each fresh login, before the connection is used;
    `sleep` and `clock` are injected so that tests never wait.
    """

    def __init__(
        self,
        config: SftpConfig,
        *,
        target: str,
        work_dir: Path,
        size: int,
        on_connect: Callable[[_wire.Connection], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._target = target
        self._work_dir = work_dir
        self._slots: list[_session.Session | None] = [None] * size
        self._locks = [threading.Lock() for _ in range(size)]
        self._lock = threading.Lock()  # the slot numbering and the askpass channel
        self._connecting = threading.Lock()  # one login (and its waits) at a time
        self._askpass: _ssh.AskpassChannel | None = None
        self._turn = itertools.count()
        self._mine = threading.local()
        self._on_connect = on_connect
        self._sleep = sleep
        self._clock = clock

    def patience(self) -> Patience:
        """A job's connection attempts (see the module's doc)."""
        timeout = self._config.operation_timeout
        return Patience(delays=tuple(min(d, timeout) for d in RECONNECT_DELAYS))

    def _slot(self, spread: bool) -> int:
        if not spread:
            return 0
        slot = getattr(self._mine, "slot", None)
        if slot is None:
            with self._lock:
                slot = self._mine.slot = next(self._turn) % len(self._slots)
        return slot

    def connection(
        self, patience: Patience | None = None, *, spread: bool = False
    ) -> _wire.Connection:
        """A live connection (this thread's slot with `spread`, else the first), connecting
        (again) when there is none or it broke.

        With `patience` (a job's) failed attempts are tried again; without it (readiness),
        one attempt. Raises SessionFailed."""
        slot = self._slot(spread)
        with self._locks[slot]:
            session = self._slots[slot]
            if session is not None and session.alive:
                return session.connection
            if session is not None:
                session.close()
                self._slots[slot] = None
            with self._connecting:
                if patience is not None and patience.gave_up is not None:
                    raise patience.gave_up
                fresh = self._connect(patience)
            self._slots[slot] = fresh
            if self._on_connect is not None:
                self._on_connect(fresh.connection)
            return fresh.connection

    def _connect(self, patience: Patience | None) -> _session.Session:
        from archive_core_sftp import _session, _ssh

        with self._lock:
            if self._askpass is None and _ssh.needs_prompts(self._config):
                self._askpass = _ssh.askpass_for(self._config)
            askpass = self._askpass
        self._work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        delays = patience.delays if patience is not None else ()
        budget = RECONNECT_BUDGET * self._config.operation_timeout
        started = self._clock()
        attempt = 0
        while True:
            try:
                return _session.connect(self._config, work_dir=self._work_dir, askpass=askpass)
            except _session.SessionFailed as exc:
                # A host key or login refused will not pass by itself: never tried again.
                spent = attempt == len(delays) or (
                    self._clock() - started + delays[attempt] > budget
                )
                if not exc.retryable or spent:
                    if patience is not None:
                        patience.gave_up = exc
                    raise
                log.warning(
                    "target %s: connection attempt %d of %d failed (%s); trying again in %.1f s",
                    self._target,
                    attempt + 1,
                    len(delays) + 1,
                    exc.message,
                    delays[attempt],
                )
                self._sleep(delays[attempt])
                attempt += 1

    def drop(self, *, spread: bool = False) -> None:
        """End the connection `connection(spread=)` gives this thread, at once (it broke, or
        a server froze under it)."""
        slot = self._slot(spread)
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
