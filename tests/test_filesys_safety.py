"""The filesys target through the Portal face: what an admin sees when storage misbehaves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from archive_core import transfer, workers
from archive_core.portal import ArchiveCorePlugin
from archive_core.transfer import _buffers
from tests.sites import POLICY, files_under, filesys_site, media


def everything_under(path: Path) -> set[Path]:
    return set(path.rglob("*"))


def test_archive_works_while_more_copy_buffers_are_out_than_the_pool_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, [root] = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    # As when `parallel` pipelined NAS copies hold more buffers than the pool keeps: they
    # finish while this file is read, and fill the pool before this copy hands its buffer back.
    held = [_buffers.POOL.acquire() for _ in range(32)]
    real_readinto = transfer.RegularFile.readinto

    def others_finish_first(self: transfer.RegularFile, view: Any) -> int:
        while held:
            _buffers.POOL.release(held.pop())
        return real_readinto(self, view)

    monkeypatch.setattr(transfer.RegularFile, "readinto", others_finish_first)
    try:
        fs = media(tmp_path / "online", "clip.mov", b"frames" * 5000)
        archived, not_archived, error, _ = plugin.archive([fs], POLICY, "j")
        assert (not_archived, error) == ([], "")
        assert archived[0].external_ids
        assert [p.read_bytes() for p in files_under(root)] == [b"frames" * 5000]
    finally:
        plugin.site().close()


def test_a_root_missing_at_first_use_fails_files_creates_nothing_and_recovers_once_mounted(
    tmp_path: Path,
) -> None:
    config, [root] = filesys_site(tmp_path)
    root.rmdir()  # the share is not mounted yet when Portal first archives
    plugin = ArchiveCorePlugin(config)
    try:
        fs = media(tmp_path / "online", "clip.mov", b"frames" * 100, item_id="VX-3")
        before = everything_under(tmp_path)
        archived, not_archived, error, _ = plugin.archive([fs], POLICY, "j1")
        assert archived == [] and not_archived == [fs]
        assert (
            f"archive root {root} does not exist (is the share mounted?); nothing was written"
            in error
        )
        assert "misconfigured" not in error
        assert not root.exists()
        new = everything_under(tmp_path) - before
        assert not [p for p in new if "clip" in p.name or p.name.endswith(".partial")], new

        root.mkdir()  # mounted now; Portal keeps the same plugin object
        archived, not_archived, error, _ = plugin.archive([fs], POLICY, "j2")
        assert (not_archived, error) == ([], "")
        assert [archived[0].external_ids[0].startswith("filesys://disk0/")] == [True]
        assert [p.read_bytes() for p in files_under(root)] == [b"frames" * 100]
    finally:
        plugin.site().close()


def test_an_archive_name_holding_other_bytes_is_left_in_place_and_not_archived(
    tmp_path: Path,
) -> None:
    config, [root] = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    try:
        fs = media(tmp_path / "online", "clip.mov", b"the real frames")
        foreign = root / f"clip_VX-1_{fs.sha1}.mov"
        foreign.write_bytes(b"a foreign file!")  # same length, other bytes
        archived, not_archived, error, _ = plugin.archive([fs], POLICY, "j")
        assert archived == [] and not_archived == [fs]
        assert str(foreign) in error
        assert "a different file already exists under this name" in error
        assert "left in place" in error
        assert foreign.read_bytes() == b"a foreign file!"
        assert files_under(root) == {foreign}
    finally:
        plugin.site().close()


def test_restore_leaves_other_hidden_files_in_portals_folder_alone(tmp_path: Path) -> None:
    config, _ = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    try:
        fs = media(tmp_path / "online", "clip.mov", b"frames" * 10)
        [archived], *_ = plugin.archive([fs], POLICY, "j")
        Path(fs.files[0]).unlink()
        child = subprocess.Popen(["true"])
        child.wait()
        host = workers.current().host
        folder = tmp_path / "online"
        strangers = [
            f".clip.mov.{host}.{child.pid}.0a1b2c3d0.partial",  # a dead local process's
            f".other.mov.{host}.{child.pid}.0a1b2c3d0.partial",
            ".clip.mov.other-host.4242.0a1b2c3d0.partial",
            ".old.mov.other-host.4243.0a1b2c3d0.partial",
        ]
        for name in strangers:
            (folder / name).write_bytes(b"someone else's")
        old = os.stat(folder / strangers[-1]).st_mtime - 10 * transfer.STALE_AFTER_SECONDS
        os.utime(folder / strangers[-1], (old, old))
        assert plugin.restore([archived], POLICY) == [archived]
        assert Path(fs.files[0]).read_bytes() == b"frames" * 10
        assert sorted(p.name for p in folder.iterdir()) == sorted([*strangers, "clip.mov"])
    finally:
        plugin.site().close()
