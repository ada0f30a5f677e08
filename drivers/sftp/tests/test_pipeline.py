"""Small files many at a time on one connection: every upload taken ends, whatever breaks."""

from __future__ import annotations

import collections
import hashlib
import os
from pathlib import Path

import pytest
from archive_core_sftp import _files, _pipeline, _session, _wire

from archive_core.transfer import HashingReader, open_regular
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import config_for


def _upload(tmp_path: Path, root: Path, name: str, before=None) -> _pipeline.SmallUpload:
    path = tmp_path / name
    data = os.urandom(100_000)
    path.write_bytes(data)

    def open_source():
        stream = open_regular(path)
        reader = HashingReader(
            stream, label=str(path), expected_sha1=hashlib.sha1(data).hexdigest()
        )
        return stream, reader, None

    return _pipeline.SmallUpload(
        key=name, open_source=open_source, root=str(root), locator=name, before=before
    )


def test_a_connection_lost_before_an_open_goes_out_fails_that_upload_too(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    with _session.connect(config_for(server), work_dir=tmp_path, askpass=None) as session:
        connection = session.connection
        uploads = collections.deque(
            [
                _upload(tmp_path, root, "a.mov"),
                _upload(tmp_path, root, "b.mov", before=lambda c: c.abandon("cut by the test")),
                _upload(tmp_path, root, "c.mov"),
            ]
        )

        def take():
            while uploads:
                yield uploads.popleft()

        seen = []
        with pytest.raises(_wire.ConnectionLost):
            for upload in _pipeline.upload_small(
                connection, take(), files_in_flight=1, forget=lambda temp: None
            ):
                seen.append((upload.key, type(upload.done).__name__))
    # a.mov may have finished before the cut; b.mov was taken and must come back failed;
    # c.mov was never taken and is still there for the caller's retry.
    assert ("b.mov", "ConnectionLost") in seen
    assert [u.key for u in uploads] == ["c.mov"]
    assert {key for key, _ in seen} == {"a.mov", "b.mov"}


def test_a_bad_sha1_or_unreadable_source_fails_only_itself_among_many(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    good = [_upload(tmp_path, root, f"clip{n}.mov") for n in range(6)]
    wrong = _upload(tmp_path, root, "wrong.mov")
    wrong.open_source = lambda: (  # the bytes do not hash to the sha1 Portal gave
        (s := open_regular(tmp_path / "wrong.mov")),
        HashingReader(s, label="wrong.mov", expected_sha1="0" * 40),
        None,
    )
    gone = _upload(tmp_path, root, "gone.mov")
    (tmp_path / "gone.mov").unlink()
    with _session.connect(config_for(sshd), work_dir=tmp_path, askpass=None) as session:
        done = {
            u.key: u.done
            for u in _pipeline.upload_small(
                session.connection,
                [good[0], wrong, *good[1:3], gone, *good[3:]],
                files_in_flight=4,
                forget=lambda temp: None,
            )
        }
        staged = [done[u.key] for u in good]
        assert all(isinstance(s, _files.RemoteStaged) for s in staged), done
        assert not isinstance(done["wrong.mov"], _files.RemoteStaged)
        assert "sha1" in str(done["wrong.mov"]).lower()
        assert not isinstance(done["gone.mov"], _files.RemoteStaged)
        results = _files.publish(session.connection, staged, root=str(root))
    assert results == [None] * 6
    assert sorted(os.listdir(root)) == sorted(u.key for u in good)  # nothing else, no temps


def test_a_batch_of_small_files_archives_without_removing_anything_afterwards(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only copies nobody will publish are discarded: none, when the batch went well."""
    from archive_core_sftp.driver import SftpDriver

    from archive_core import ArchiveItem, ArchiveRequest
    from drivers.sftp.tests.support import driver_with

    root = tmp_path / "root"
    root.mkdir()
    items = []
    for n in range(5):
        path = tmp_path / f"clip{n}.mov"
        path.write_bytes(os.urandom(50_000))
        sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
        items.append(ArchiveItem(key=str(n), sources=[str(path)], name=path.name, sha1=sha1))
    forgotten: list[str] = []
    monkeypatch.setattr(SftpDriver, "_forget", lambda self, temp: forgotten.append(temp))
    driver = driver_with(config_for(sshd, remote_root=str(root), min_free_bytes=0), tmp_path)
    try:
        request = ArchiveRequest(policy="p", target="offsite", job_id="j", items=items)
        outcomes = list(driver.archive(request))
    finally:
        driver.close()
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert forgotten == []
    assert sorted(os.listdir(root)) == [f"clip{n}.mov" for n in range(5)]
