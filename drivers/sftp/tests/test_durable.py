"""Renames made durable: the directories of a chunk of copies fsynced once it is renamed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from archive_core_sftp import _files, _session, _wire
from archive_core_sftp._durable import DirectorySync

from archive_core.transfer import HashingReader, open_regular
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import config_for, upload


class _Recording:
    """A real connection that notes, in order, the fsyncs and renames it is asked for."""

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

    def submit(self, ptype: int, body: list, replies: object, *args: object, **kw: object) -> int:
        if ptype == _wire.RENAME:
            new, _ = _wire._string(body[1], 0)
            self.steps.append(("rename", new.decode()))
        elif ptype == _wire.EXTENDED and bytes(body[0]).endswith(b"fsync@openssh.com"):
            handle, _ = _wire._string(body[1], 0)
            self.steps.append(("fsync", self._handles[handle]))
        return self._connection.submit(ptype, body, replies, *args, **kw)  # type: ignore[arg-type]


def _source(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(name.encode() * 1000)
    return path


def test_a_copy_is_fsynced_renamed_and_then_its_directories_are_fsynced(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = _source(tmp_path, "clip.mov")
    with _session.connect(config_for(sshd), work_dir=tmp_path, askpass=None) as session:
        recording = _Recording(session.connection)
        with open_regular(source) as stream:
            upload(
                recording,  # type: ignore[arg-type]
                HashingReader(stream, label=str(source)),
                root=str(root),
                locator="2026/12/clip.mov",
                durable=DirectorySync("offsite"),
            )
    temp = recording.steps[0][1]
    assert temp.startswith(f"{root}/2026/12/.clip.mov.") and temp.endswith(".partial")
    assert recording.steps[1:] == [
        ("rename", f"{root}/2026/12/clip.mov"),  # only once its bytes are on disk
        ("fsync", f"{root}/2026/12"),  # the new name
        ("fsync", f"{root}/2026"),  # the directory 12 made in it
        ("fsync", str(root)),  # the directory 2026 made in remote_root
    ]


def test_a_chunk_of_copies_in_one_directory_costs_one_directory_fsync(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with _session.connect(config_for(sshd), work_dir=tmp_path, askpass=None) as session:
        recording = _Recording(session.connection)
        staged = []
        for n in range(5):
            source = _source(tmp_path, f"clip{n}.mov")
            with open_regular(source) as stream:
                staged.append(
                    _files.stage(
                        recording,  # type: ignore[arg-type]
                        HashingReader(stream, label=str(source)),
                        root=str(root),
                        locator=source.name,
                        forget=lambda temp: None,
                    )
                )
        before = len(recording.steps)
        results = _files.publish(
            recording,  # type: ignore[arg-type]
            staged,
            root=str(root),
            durable=DirectorySync("offsite"),
        )
    assert results == [None] * 5
    assert recording.steps[before:] == [
        *[("rename", f"{root}/clip{n}.mov") for n in range(5)],
        ("fsync", str(root)),
    ]
    assert sorted(os.listdir(root)) == [f"clip{n}.mov" for n in range(5)]


def test_a_server_that_cannot_sync_a_directory_is_said_once_and_files_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Refusing:
        extensions = {b"fsync@openssh.com": b"1"}

        def open(self, path: str, flags: int) -> bytes:
            raise _wire.SFTPError(_wire.FAILURE, "Failure", path)

    sync = DirectorySync("offsite")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            sync.sync(Refusing(), "/archive")  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "target offsite: renames on the server cannot be made durable" in warnings[0]


def test_a_refused_directory_fsync_fails_the_chunk_retryably_and_the_rerun_finds_the_copies(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from archive_core_sftp.driver import SftpDriver

    from archive_core import ArchiveItem, ArchiveRequest, DriverContext

    root = tmp_path / "root"
    root.mkdir()
    sources = [_source(tmp_path, f"clip{n}.mov") for n in range(3)]
    items = [
        ArchiveItem(
            key=str(n),
            sources=[str(path)],
            name=path.name,
            sha1=hashlib.sha1(path.read_bytes()).hexdigest(),
        )
        for n, path in enumerate(sources)
    ]
    request = ArchiveRequest(policy="p", target="offsite", job_id="j", items=items)
    state = tmp_path / "state"
    state.mkdir()
    config = config_for(sshd, remote_root=str(root), min_free_bytes=0)
    driver = SftpDriver(config, DriverContext(target="offsite", state_dir=state))
    try:

        def refuse(self: DirectorySync, connection: object, directory: str) -> None:
            raise _wire.SFTPError(_wire.FAILURE, "Failure", directory)

        with monkeypatch.context() as patched:
            patched.setattr(DirectorySync, "sync", refuse)
            first = list(driver.archive(request))
        assert [o.ok for o in first] == [False] * 3
        assert all(o.retryable and "was written but not published" in o.error for o in first)
        assert sorted(os.listdir(root)) == [p.name for p in sources]  # no temporary left
        again = list(driver.archive(request))
    finally:
        driver.close()
    assert [(o.ok, o.reused) for o in again] == [(True, True)] * 3
