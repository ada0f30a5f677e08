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


# --- restores and verifies: small copies read whole, many at a time ---------------------------


def _restore(driver, root: Path, dest: Path, names: list[str], sha1s: dict[str, str]):
    from archive_core import RestoreItem, RestoreRequest

    items = [
        RestoreItem(key=name, locator=name, destination=str(dest / name), sha1=sha1s.get(name))
        for name in names
    ]
    request = RestoreRequest(policy="p", target="offsite", job_id="j", items=items)
    return {o.key: o for o in driver.restore(request)}


def test_small_restores_refuse_links_name_missing_copies_and_keep_wrong_bytes_out(
    sshd: SshServer, tmp_path: Path
) -> None:
    """The pipeline keeps the windowed path's rules: every directory on the way and the
    copy are looked at first, a link is never read through, a sha1 mismatch never lands."""
    from drivers.sftp.tests.support import driver_with

    root = tmp_path / "root"
    (root / "VX-1").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mov").write_bytes(b"not yours")
    contents = {f"VX-1/clip{n}.mov": os.urandom(70_000 + n) for n in range(12)}
    contents["empty.mov"] = b""
    contents["big.mov"] = os.urandom(_pipeline.SMALL_FILE + 1)  # the windowed path's
    for name, data in contents.items():
        (root / name).write_bytes(data)
    sha1s = {name: hashlib.sha1(data).hexdigest() for name, data in contents.items()}
    os.symlink(outside / "secret.mov", root / "linked.mov")
    os.symlink(outside, root / "VX-2")
    (root / "wrong.mov").write_bytes(b"changed on the server")
    sha1s["wrong.mov"] = hashlib.sha1(b"what was archived").hexdigest()
    names = [*contents, "linked.mov", "VX-2/secret.mov", "gone.mov", "wrong.mov"]
    dest = tmp_path / "restored"
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
    driver = driver_with(config_for(sshd, remote_root=str(root), files_in_flight=4), tmp_path)
    try:
        outcomes = _restore(driver, root, dest, names, sha1s)
    finally:
        driver.close()
    assert sorted(outcomes) == sorted(names)  # one outcome each
    for name, data in contents.items():
        assert outcomes[name].ok, outcomes[name].error
        assert outcomes[name].sha1 == sha1s[name]
        assert (dest / name).read_bytes() == data
    assert "symbolic link" in outcomes["linked.mov"].error
    assert "symbolic link" in outcomes["VX-2/secret.mov"].error
    assert "is not on the server" in outcomes["gone.mov"].error
    assert "sha1" in outcomes["wrong.mov"].error.lower()
    for name in ["linked.mov", "VX-2/secret.mov", "gone.mov", "wrong.mov"]:
        assert not outcomes[name].ok
        assert not (dest / name).exists()
    assert [n for n in os.listdir(dest) if n.endswith(".partial")] == []


def test_small_verifies_hash_what_the_server_holds(sshd: SshServer, tmp_path: Path) -> None:
    from archive_core import CopyRef, VerifyRequest
    from drivers.sftp.tests.support import driver_with

    root = tmp_path / "root"
    root.mkdir()
    contents = {f"clip{n}.mov": os.urandom(50_000 * (n + 1)) for n in range(6)}
    contents["big.mov"] = os.urandom(_pipeline.SMALL_FILE + 100)
    for name, data in contents.items():
        (root / name).write_bytes(data)
    driver = driver_with(config_for(sshd, remote_root=str(root)), tmp_path)
    items = [CopyRef(key=name, locator=name) for name in [*contents, "gone.mov"]]
    try:
        request = VerifyRequest(policy="p", target="offsite", job_id="j", items=items)
        outcomes = {o.key: o for o in driver.verify(request)}
    finally:
        driver.close()
    for name, data in contents.items():
        assert outcomes[name].ok, outcomes[name].error
        assert outcomes[name].size == len(data)
        assert outcomes[name].sha1 == hashlib.sha1(data).hexdigest()
        assert outcomes[name].sha256 == hashlib.sha256(data).hexdigest()
    assert not outcomes["gone.mov"].ok
    assert "is not on the server" in outcomes["gone.mov"].error


def test_a_short_read_is_asked_again_for_the_rest(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for more than it sends at once (OpenSSH's sftp-server caps a READ at 255 KiB),
    the server answers short: the pipeline asks for the rest instead of losing it."""
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(1_500_000)
    (root / "clip.mov").write_bytes(data)
    monkeypatch.setattr(_wire, "MAX_CHUNK", 400 * 1024)
    download = _pipeline.SmallDownload(key="clip", root=str(root), locator="clip.mov")
    reads = []
    with _session.connect(config_for(sshd), work_dir=tmp_path, askpass=None) as session:
        connection = session.connection
        submit = connection.submit

        def counted(ptype, *args, **kwargs):
            reads.append(ptype) if ptype == _wire.READ else None
            return submit(ptype, *args, **kwargs)

        monkeypatch.setattr(connection, "submit", counted)
        [done] = _pipeline.download_small(connection, [download], files_in_flight=2)
    assert done.done == data
    assert len(reads) > 4  # 4 asked at first (400 KiB each), the rest asked again
