"""archive_core.transfer never loses a file to its own machinery, never overwrites what it
did not write (unless told to), never creates an archive root, and never removes another
worker's temporary files."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
import threading
from pathlib import Path

import pytest

from archive_core import transfer, workers
from archive_core.errors import FixityMismatch, TransferFailed
from archive_core.transfer import _buffers, _noreplace, _unnamed


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def everything_under(path: Path) -> set[str]:
    found = set()
    for d, dirs, fs in os.walk(path):
        found.update(os.path.relpath(os.path.join(d, n), path) for n in (*dirs, *fs))
    return found


def dead_worker() -> workers.WorkerId:
    """A worker of this host whose process has ended (as after SIGKILL)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return workers.WorkerId(host=workers.current().host, pid=child.pid)


def temp_of(name: str, worker: workers.WorkerId, token: str = "0a1b2c3d0") -> str:
    return f".{name}.{worker.host}.{worker.pid}.{token}.partial"


# --- the buffer pool ---------------------------------------------------------------------------


class GatedSource(io.RawIOBase):
    """A stream of unknown size (so it takes the pipelined path) whose first read waits until
    every copy of the test has taken its buffers, as parallel NAS copies do."""

    def __init__(self, data: bytes, gate: threading.Barrier) -> None:
        self._data = io.BytesIO(data)
        self._gate = gate
        self._opened = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        if not self._opened:
            self._opened = True
            self._gate.wait(timeout=30)
        return self._data.readinto(buffer)


def test_more_copy_buffers_out_at_once_than_the_pool_keeps_never_fail_a_file() -> None:
    copies = 4  # 4 pipelined copies hold 16 buffers; the pool keeps 8
    gate = threading.Barrier(copies)
    datas = [os.urandom(3 * transfer.CHUNK_SIZE // 2 + n) for n in range(copies)]
    results: dict[int, object] = {}

    def copy(index: int) -> None:
        try:
            results[index] = transfer.copy_stream(GatedSource(datas[index], gate), io.BytesIO())
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=copy, args=(n,)) for n in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, data in enumerate(datas):
        result = results[index]
        assert isinstance(result, transfer.Digests), repr(result)
        assert result.sha1 == sha1_of(data)


class OtherCopiesFinishMidway(io.BytesIO):
    """A source during whose copy other copies hand their buffers back, filling the pool."""

    def __init__(self, data: bytes, held: list) -> None:
        super().__init__(data)
        self._held = held

    def readinto(self, buffer) -> int:
        while self._held:
            _buffers.POOL.release(self._held.pop())
        return super().readinto(buffer)


@pytest.mark.parametrize("size", [10_000, transfer.LARGE_FILE + 1], ids=["inline", "pipelined"])
def test_a_copy_succeeds_when_the_pool_filled_up_while_it_ran(size: int) -> None:
    data = os.urandom(size)
    held = [_buffers.POOL.acquire() for _ in range(32)]  # more than the pool ever keeps
    target = io.BytesIO()
    digests = transfer.copy_stream(OtherCopiesFinishMidway(data, held), target)
    assert digests.sha1 == sha1_of(data)
    assert target.getvalue() == data


# --- archive publishing never replaces; restore publishing does --------------------------------


@pytest.fixture(params=["unnamed", "named", "large"])
def staging(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Stage the three ways a file can be: unnamed (O_TMPFILE), named temp (NFS), large."""
    if request.param == "named":
        monkeypatch.setattr(_unnamed, "O_TMPFILE", 0)
    return transfer.LARGE_FILE + 7 if request.param == "large" else 9000


def test_archive_publish_leaves_other_bytes_and_a_planted_symlink_in_place_and_fails_them(
    tmp_path: Path, staging: int
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    good = os.urandom(staging)
    staged = [
        transfer.stage_file(io.BytesIO(good), archive / name, replace=False, root=archive)
        for name in ("damaged.mov", "planted.mov", "folder.mov", "fresh.mov")
    ]
    # Planted after staging: publishing itself must refuse, not an earlier look.
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not ours")
    (archive / "damaged.mov").write_bytes(os.urandom(staging))  # same size, other bytes
    (archive / "planted.mov").symlink_to(outside)
    (archive / "folder.mov").mkdir()
    results = transfer.publish_staged(staged)
    assert results[3] is None
    for result, name, what in zip(
        results,
        ("damaged.mov", "planted.mov", "folder.mov"),
        ("a different file already exists under this name", "a symbolic link", "a directory"),
        strict=False,
    ):
        assert isinstance(result, TransferFailed), result
        assert str(archive / name) in result.message
        assert what in result.message
        assert "left in place" in result.message
        assert not result.retryable
    assert (archive / "damaged.mov").read_bytes() != good
    assert (archive / "planted.mov").is_symlink() and outside.read_bytes() == b"not ours"
    assert (archive / "folder.mov").is_dir()
    assert (archive / "fresh.mov").read_bytes() == good
    assert sorted(os.listdir(archive)) == ["damaged.mov", "folder.mov", "fresh.mov", "planted.mov"]


def test_archive_publish_onto_the_same_bytes_keeps_them_and_says_so(
    tmp_path: Path, staging: int
) -> None:
    data = os.urandom(staging)
    (tmp_path / "clip.mov").write_bytes(data)
    before = os.stat(tmp_path / "clip.mov")
    staged = transfer.stage_file(io.BytesIO(data), tmp_path / "clip.mov", replace=False)
    assert transfer.publish_staged([staged]) == [transfer.ALREADY_PUBLISHED]
    after = os.stat(tmp_path / "clip.mov")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert os.listdir(tmp_path) == ["clip.mov"]


def test_restore_publish_replaces_an_existing_file_and_a_symlink_atomically(
    tmp_path: Path, staging: int
) -> None:
    data = os.urandom(staging)
    (tmp_path / "src").write_bytes(data)
    portal = tmp_path / "portal"
    portal.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not ours")
    (portal / "clip.mov").write_bytes(b"what Portal had there before")
    (portal / "link.mov").symlink_to(outside)
    for name in ("clip.mov", "link.mov"):
        transfer.publish_file(tmp_path / "src", portal / name, replace=True)
        assert not (portal / name).is_symlink()
        assert (portal / name).read_bytes() == data
    assert outside.read_bytes() == b"not ours"
    assert sorted(os.listdir(portal)) == ["clip.mov", "link.mov"]


# --- fixity messages say what happened to the destination ---------------------------------------


def test_fixity_mismatch_on_archive_says_nothing_was_stored_under_the_copy_path(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").write_bytes(b"changed since Vidispine hashed it")
    copy = tmp_path / "archive" / "clip.mov"
    with pytest.raises(FixityMismatch) as caught:
        transfer.publish_file(tmp_path / "src", copy, expected_sha1="0" * 40, replace=False)
    error = caught.value
    assert f"Nothing was stored under {copy}." in error.message
    assert (error.expected, error.actual) == (
        "0" * 40,
        sha1_of(b"changed since Vidispine hashed it"),
    )
    assert str(tmp_path / "src") in error.paths


def test_fixity_mismatch_on_restore_says_the_destination_was_not_written(tmp_path: Path) -> None:
    (tmp_path / "copy").write_bytes(b"bit-rotted")
    destination = tmp_path / "portal" / "clip.mov"
    destination.parent.mkdir()
    destination.write_bytes(b"Portal's file")
    with pytest.raises(FixityMismatch) as caught:
        transfer.publish_file(tmp_path / "copy", destination, expected_sha1="0" * 40, replace=True)
    assert f"{destination} was not written" in caught.value.message
    assert "not stored" not in caught.value.message
    assert destination.read_bytes() == b"Portal's file"


# --- a missing archive root is never created ---------------------------------------------------


@pytest.mark.parametrize("locator", ["clip.mov", "VX-1/clip.mov", "2024/05/06/clip.mov"])
def test_staging_into_a_missing_root_creates_nothing_and_says_so(
    tmp_path: Path, staging: int, locator: str
) -> None:
    root = tmp_path / "mnt" / "archive"  # the mount point itself is missing, as is its parent
    with pytest.raises(TransferFailed) as caught:
        transfer.stage_file(
            io.BytesIO(os.urandom(staging)), root / locator, replace=False, root=root
        )
    assert caught.value.message == (
        f"archive root {root} does not exist (is the share mounted?); nothing was written"
    )
    assert caught.value.retryable
    assert everything_under(tmp_path) == set()


def test_staging_below_an_existing_root_creates_only_directories_below_it(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    staged = transfer.stage_file(
        io.BytesIO(b"x"), root / "2024" / "05" / "clip.mov", replace=False, root=root
    )
    assert transfer.publish_staged([staged]) == [None]
    assert everything_under(tmp_path) == {
        "archive",
        "archive/2024",
        "archive/2024/05",
        "archive/2024/05/clip.mov",
    }


def test_make_directories_with_a_root_refuses_to_create_the_root(tmp_path: Path) -> None:
    with pytest.raises(TransferFailed, match="does not exist"):
        transfer.make_directories(tmp_path / "archive" / "a" / "b", root=tmp_path / "archive")
    assert list(tmp_path.iterdir()) == []


# --- temporary files of other workers ------------------------------------------------------------


def test_temporary_names_carry_this_workers_host_label_and_pid() -> None:
    fields = transfer.temporary_name("clip.mov")[1 : -len(".partial")].rsplit(".", 3)
    me = workers.current()
    assert fields[:3] == ["clip.mov", me.host, str(me.pid)]


def test_remove_partials_removes_only_the_temps_of_the_workers_named(tmp_path: Path) -> None:
    name = "clip_VX-1_" + "a" * 40 + ".mov"
    dead = dead_worker()
    other_host = workers.WorkerId.parse("other-host:77:b00t:5")
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        live = workers.WorkerId(host=dead.host, pid=sleeper.pid)
        gone = [temp_of(name, dead), temp_of(name, other_host, "1"), temp_of(name, dead, "2")]
        kept = [
            temp_of(name, live),  # a live concurrent worker writing the same name
            temp_of(name, workers.WorkerId(host="third-host", pid=77)),
            temp_of("other.mov", dead),  # the same dead worker, another name
            transfer.temporary_name(name),  # this very process
            name,
            ".hidden",
        ]
        for entry in gone + kept:
            (tmp_path / entry).write_bytes(b"x")
        made_by = [str(dead), other_host, str(live), str(workers.current())]
        removed = transfer.remove_partials(tmp_path, name, made_by=made_by)
        sleeper.kill()
    assert sorted(removed) == sorted(gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_remove_partials_with_no_workers_named_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / temp_of("clip.mov", dead_worker())).write_bytes(b"x")
    assert transfer.remove_partials(tmp_path, "clip.mov", made_by=()) == []
    assert len(list(tmp_path.iterdir())) == 1


def test_without_hard_links_a_rename_that_refuses_to_replace_publishes_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hard_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(_unnamed, "O_TMPFILE", 0)  # named temporary files, as on such shares
    monkeypatch.setattr(os, "link", no_hard_links)
    (tmp_path / "taken.mov").write_bytes(b"someone else's")
    fresh, taken = (
        transfer.stage_file(io.BytesIO(b"a copy"), tmp_path / name, replace=False)
        for name in ("fresh.mov", "taken.mov")
    )
    results = transfer.publish_staged([fresh, taken])
    if isinstance(results[0], TransferFailed) and "neither hard links" in results[0].message:
        pytest.skip("this file system has no renameat2(RENAME_NOREPLACE) either")
    assert results[0] is None
    assert isinstance(results[1], TransferFailed) and "left in place" in results[1].message
    assert (tmp_path / "fresh.mov").read_bytes() == b"a copy"
    assert (tmp_path / "taken.mov").read_bytes() == b"someone else's"
    assert sorted(os.listdir(tmp_path)) == ["fresh.mov", "taken.mov"]


def test_without_hard_links_or_a_no_replace_rename_a_copy_fails_and_nothing_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hard_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(_unnamed, "O_TMPFILE", 0)
    monkeypatch.setattr(os, "link", no_hard_links)
    monkeypatch.setattr(
        _noreplace, "_renameat2", lambda: None
    )  # as where libc or the kernel lacks it
    (tmp_path / "clip.mov").write_bytes(b"someone else's")
    staged = transfer.stage_file(io.BytesIO(b"a copy"), tmp_path / "clip.mov", replace=False)
    [result] = transfer.publish_staged([staged])
    assert isinstance(result, TransferFailed)
    assert "supports neither hard links (Operation not supported) nor renames" in result.message
    assert (tmp_path / "clip.mov").read_bytes() == b"someone else's"
    assert os.listdir(tmp_path) == ["clip.mov"]
