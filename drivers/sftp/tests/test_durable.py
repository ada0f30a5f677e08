"""Renames made durable: a directory fsync after each publish, shared by the files in flight."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from archive_core_sftp import _files, _session, _wire
from archive_core_sftp._durable import DirectorySync

from archive_core.transfer import HashingReader, open_regular
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import config_for


class _Recording:
    """A real connection that notes the OPENs of directories, fsyncs and renames it is asked."""

    def __init__(self, connection: _wire.Connection) -> None:
        self._connection = connection
        self.steps: list[tuple[str, str]] = []
        self._handles: dict[bytes, str] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)

    def open(self, path: str, flags: int, attrs: object = None) -> bytes:
        handle = self._connection.open(path, flags, attrs)  # type: ignore[arg-type]
        self._handles[handle] = path
        return handle

    def fsync(self, handle: bytes) -> None:
        self._connection.fsync(handle)
        self.steps.append(("fsync", self._handles[handle]))

    def rename(self, old: str, new: str) -> None:
        self._connection.rename(old, new)
        self.steps.append(("rename", new))


def test_an_upload_returns_after_the_new_name_and_the_directories_made_for_it_are_synced(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = tmp_path / "clip.mov"
    source.write_bytes(b"frames" * 1000)
    with _session.connect(config_for(sshd), work_dir=tmp_path, askpass=None) as session:
        recording = _Recording(session.connection)
        with open_regular(source) as stream:
            _files.upload(
                recording,  # type: ignore[arg-type]
                HashingReader(stream, label=str(source)),
                root=str(root),
                locator="2026/12/clip.mov",
                durable=DirectorySync("offsite"),
            )
    final = f"{root}/2026/12/clip.mov"
    assert recording.steps[-4:] == [
        ("rename", final),
        ("fsync", f"{root}/2026/12"),  # the new name
        ("fsync", f"{root}/2026"),  # the directory 12 made in it
        ("fsync", str(root)),  # the directory 2026 made in remote_root
    ]


class _SlowServer:
    """Just enough connection for DirectorySync: each fsync waits until the test lets it go."""

    extensions = {b"fsync@openssh.com": b"1"}

    def __init__(self) -> None:
        self.fsyncs = 0
        self.started = threading.Semaphore(0)
        self.go = threading.Semaphore(0)

    def open(self, path: str, flags: int) -> bytes:
        return path.encode()

    def fsync(self, handle: bytes) -> None:
        self.fsyncs += 1
        self.started.release()
        assert self.go.acquire(timeout=10)

    def close_handle(self, handle: bytes) -> None:
        pass


def test_renames_made_while_a_directory_fsync_runs_share_the_next_one() -> None:
    server = _SlowServer()
    sync = DirectorySync("offsite")
    first = threading.Thread(target=sync.after_rename, args=(server, "/archive"))
    first.start()
    assert server.started.acquire(timeout=10)  # the first rename's fsync is under way
    later = [
        threading.Thread(target=sync.after_rename, args=(server, "/archive")) for _ in range(3)
    ]
    for thread in later:
        thread.start()
    waiting = sync._directories["/archive"]
    deadline = time.monotonic() + 10
    while waiting.users < 4 and time.monotonic() < deadline:  # all three renames are in
        time.sleep(0.001)  # (polling other threads' progress, bounded; no timing asserted)
    assert waiting.users == 4
    server.go.release()  # the first finishes; it covers none of the three later renames
    assert server.started.acquire(timeout=10)  # one fsync for the three
    server.go.release()
    for thread in [first, *later]:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert server.fsyncs == 2


def test_a_server_that_cannot_sync_a_directory_is_said_once_and_files_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Refusing(_SlowServer):
        def open(self, path: str, flags: int) -> bytes:
            raise _wire.SFTPError(_wire.FAILURE, "Failure", path)

    sync = DirectorySync("offsite")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            sync.after_rename(Refusing(), "/archive")  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "target offsite: renames on the server cannot be made durable" in warnings[0]
