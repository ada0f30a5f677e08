"""Whole files on a real server: published only whole and checked, never over other bytes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from archive_core_sftp import _files, _session, _wire

from archive_core import FixityMismatch, TransferFailed
from archive_core.transfer import HashingReader, open_regular
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import config_for, upload


@pytest.fixture
def connection(sshd: SshServer, tmp_path: Path) -> Iterator[_wire.Connection]:
    with _session.connect(config_for(sshd), work_dir=tmp_path, askpass=None) as session:
        yield session.connection


@pytest.fixture
def root(tmp_path: Path) -> Path:
    made = tmp_path / "remote-root"
    made.mkdir()
    return made


def source_of(tmp_path: Path, size: int, name: str = "clip.mov") -> tuple[Path, str]:
    path = tmp_path / name
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha1(data).hexdigest()


def reader(path: Path, sha1: str) -> HashingReader:
    return HashingReader(open_regular(path), label=str(path), expected_sha1=sha1)


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.endswith(".partial")]


@pytest.mark.parametrize("size", [0, 1, _wire.MAX_CHUNK, 5 * _wire.MAX_CHUNK + 17])
def test_an_upload_is_published_whole_with_its_mtime_and_leaves_no_temporary(
    connection: _wire.Connection, root: Path, tmp_path: Path, size: int
) -> None:
    path, sha1 = source_of(tmp_path, size)
    done = upload(
        connection, reader(path, sha1), root=str(root), locator="VX-1/clip.mov", mtime=1_000_000
    )
    copy = root / "VX-1" / "clip.mov"
    assert (done.size, done.reused, done.path) == (size, False, str(copy))
    assert copy.read_bytes() == path.read_bytes()
    assert copy.stat().st_mtime == 1_000_000
    assert leftovers(root) == []


def test_bytes_that_do_not_hash_to_the_sha1_are_never_published(
    connection: _wire.Connection, root: Path, tmp_path: Path
) -> None:
    path, _ = source_of(tmp_path, 3 * _wire.MAX_CHUNK)
    with pytest.raises(FixityMismatch):
        upload(connection, reader(path, "0" * 40), root=str(root), locator="clip.mov")
    assert os.listdir(root) == []


def test_a_name_holding_the_same_bytes_is_the_copy(
    connection: _wire.Connection, root: Path, tmp_path: Path
) -> None:
    path, sha1 = source_of(tmp_path, 100_000)
    (root / "clip.mov").write_bytes(path.read_bytes())
    done = upload(connection, reader(path, sha1), root=str(root), locator="clip.mov")
    assert done.reused
    assert leftovers(root) == []


def test_a_name_holding_other_bytes_is_left_as_it_is_and_the_file_fails(
    connection: _wire.Connection, root: Path, tmp_path: Path
) -> None:
    path, sha1 = source_of(tmp_path, 100_000)
    other = os.urandom(100_000)
    (root / "clip.mov").write_bytes(other)
    with pytest.raises(TransferFailed, match="never replaces"):
        upload(connection, reader(path, sha1), root=str(root), locator="clip.mov")
    assert (root / "clip.mov").read_bytes() == other
    assert leftovers(root) == []


def test_a_remote_file_reads_back_whole_through_pipelined_reads(
    connection: _wire.Connection, root: Path
) -> None:
    data = os.urandom(7 * _wire.MAX_CHUNK + 5)
    (root / "clip.mov").write_bytes(data)
    with _files.RemoteReader(connection, str(root / "clip.mov"), len(data)) as remote:
        assert remote.read() == data


def test_a_remote_file_shorter_than_its_size_is_an_error(
    connection: _wire.Connection, root: Path
) -> None:
    (root / "clip.mov").write_bytes(b"x" * 1000)
    with (
        pytest.raises(TransferFailed, match="ended after"),
        _files.RemoteReader(connection, str(root / "clip.mov"), 5000) as remote,
    ):
        remote.read()


def test_every_refused_request_raises_with_the_servers_reason(
    connection: _wire.Connection, root: Path
) -> None:
    (root / "taken").write_bytes(b"x")
    (root / "other").write_bytes(b"y")
    with pytest.raises(_wire.SFTPError) as missing:
        connection.remove(str(root / "nothing-here"))
    assert missing.value.errno == 2
    with pytest.raises(_wire.SFTPError):
        connection.mkdir(str(root / "taken"))
    with pytest.raises(_wire.SFTPError):
        connection.rename(str(root / "other"), str(root / "taken"))  # never over a file
    assert (root / "taken").read_bytes() == b"x"


class _RefusingWrite:
    """The connection, but the `nth` WRITE goes to a handle the server does not know, so the
    server refuses that one chunk, as a full disk or a quota refuses it."""

    def __init__(self, connection: _wire.Connection, nth: int) -> None:
        self._connection = connection
        self._writes = 0
        self._nth = nth

    def __getattr__(self, name: str) -> object:
        return getattr(self._connection, name)

    def submit(self, ptype: int, body: list, replies: object, *args: object, **kw: object) -> int:
        if ptype == _wire.WRITE:
            self._writes += 1
            if self._writes == self._nth:
                head = bytes(body[0])
                length = int.from_bytes(head[:4], "big")
                body = [len(b"bogus").to_bytes(4, "big") + b"bogus" + head[4 + length :], body[1]]
        return self._connection.submit(ptype, body, replies, *args, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("nth", [1, 3, 6])
def test_a_refused_write_fails_the_upload_at_once_and_nothing_is_published(
    connection: _wire.Connection, root: Path, tmp_path: Path, nth: int
) -> None:
    path, sha1 = source_of(tmp_path, 5 * _wire.MAX_CHUNK + 17)  # six WRITEs; the last refused
    connection.operation_timeout = 30.0  # a reply waited for that never comes would show
    refusing = _RefusingWrite(connection, nth)
    with pytest.raises(TransferFailed, match="The server failed to write"):
        upload(refusing, reader(path, sha1), root=str(root), locator="clip.mov")  # type: ignore[arg-type]
    assert sorted(os.listdir(root)) == []  # neither the copy nor its temporary
    assert connection.lost is None  # every reply was collected: the connection goes on
    assert connection.stat(str(root)).permissions is not None
