"""Nothing outside remote_root: hostile locators and symbolic links on a real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from archive_core_sftp import _remote, _session, _wire

from archive_core import UnsafeName
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import config_for


@pytest.fixture
def connection(sshd: SshServer, tmp_path: Path) -> Iterator[_wire.Connection]:
    with _session.connect(config_for(sshd), work_dir=tmp_path, askpass=None) as session:
        yield session.connection


@pytest.mark.parametrize("locator", ["../escape", "/etc/passwd", "a/../../b", "", "a//b"])
def test_a_hostile_locator_is_refused_before_the_server_is_asked(locator: str) -> None:
    with pytest.raises(UnsafeName):
        _remote.join("/srv/archive", locator)


def test_missing_directories_are_made_under_the_root(
    connection: _wire.Connection, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = _remote.join(str(root), "2026/12/01/clip.mov")
    _remote.make_parents(connection, str(root), path)
    assert (root / "2026" / "12" / "01").is_dir()
    _remote.make_parents(connection, str(root), path)  # again: nothing to do, no error


def test_a_directory_link_on_the_server_is_never_followed(
    connection: _wire.Connection, tmp_path: Path
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "clip.mov").write_bytes(b"not ours")
    os.symlink(outside, root / "VX-1")
    path = _remote.join(str(root), "VX-1/deeper/clip.mov")
    with pytest.raises(UnsafeName, match="symbolic link on the server"):
        _remote.make_parents(connection, str(root), path)
    with pytest.raises(UnsafeName, match="symbolic link on the server"):
        _remote.lookup(connection, str(root), _remote.join(str(root), "VX-1/clip.mov"))
    assert sorted(os.listdir(outside)) == ["clip.mov"]


def test_a_file_link_on_the_server_is_not_a_copy(
    connection: _wire.Connection, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("x")
    os.symlink(secret, root / "clip.mov")
    with pytest.raises(UnsafeName, match="symbolic link on the server"):
        _remote.lookup(connection, str(root), _remote.join(str(root), "clip.mov"))


def test_a_missing_copy_is_enoent(connection: _wire.Connection, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(_wire.SFTPError) as caught:
        _remote.lookup(connection, str(root), _remote.join(str(root), "gone/clip.mov"))
    assert caught.value.errno == 2
