"""Tests of archive_core.transfer: hash-while-copy, atomic publish, safe paths, sources."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive_core import transfer
from archive_core.errors import FixityMismatch, TransferFailed, UnsafeName
from archive_core.transfer import _unnamed

MiB = 1024 * 1024


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def files_under(path: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs}


def partials_under(path: Path) -> list[str]:
    return [name for name in files_under(path) if name.endswith(".partial")]


class FailingReader(io.RawIOBase):
    """A source that yields `good` bytes and then fails the way a dying disk or NAS does."""

    name = "/mnt/flaky/source.mov"

    def __init__(self, good: bytes) -> None:
        self._good = good
        self._sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._sent:
            self._sent = True
            buffer[: len(self._good)] = self._good
            return len(self._good)
        raise OSError(errno.EIO, "Input/output error")


# --- hashing while copying ---------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=70_000))
def test_copy_stream_moves_every_byte_and_reports_both_digests(data: bytes) -> None:
    target = io.BytesIO()
    digests = transfer.copy_stream(io.BytesIO(data), target)
    assert target.getvalue() == data
    assert digests == transfer.Digests(
        size=len(data), sha1=sha1_of(data), sha256=hashlib.sha256(data).hexdigest()
    )


@pytest.mark.parametrize(
    "size",
    [0, 1, 4095, 4096, transfer.CHUNK_SIZE - 1, transfer.CHUNK_SIZE + 1],
    ids=["empty", "one-byte", "below-block", "one-block", "below-chunk", "above-chunk"],
)
def test_copy_between_files_keeps_bytes_and_hashes_at_chunk_edges(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    source = tmp_path / "source"
    source.write_bytes(data)
    with open(source, "rb", buffering=0) as src, open(tmp_path / "copy", "wb") as dst:
        digests = transfer.copy_stream(src, dst)
    assert (tmp_path / "copy").read_bytes() == data
    assert digests.size == size
    assert digests.sha1 == sha1_of(data)


def test_large_file_goes_through_parallel_hashing_and_direct_io_with_unaligned_tail(
    tmp_path: Path,
) -> None:
    data = os.urandom(transfer.LARGE_FILE + 2 * transfer.CHUNK_SIZE + 12345)
    source = tmp_path / "big.mxf"
    source.write_bytes(data)
    reported: list[int] = []
    digests = transfer.publish_file(
        source, tmp_path / "out" / "big.mxf", replace=False, progress=reported.append
    )
    assert (tmp_path / "out" / "big.mxf").read_bytes() == data
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.sha1 == sha1_of(data)
    assert sum(reported) == len(data)
    assert len(reported) > 1  # progress arrives chunk by chunk, not once at the end


def test_direct_write_that_the_kernel_refuses_falls_back_to_buffered(tmp_path: Path) -> None:
    if not getattr(os, "O_DIRECT", 0):
        pytest.skip("this platform has no O_DIRECT")
    data = os.urandom(transfer.LARGE_FILE + 100)
    source = tmp_path / "source"
    source.write_bytes(data)
    target = tmp_path / "target"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x")  # an offset of 1 makes every O_DIRECT write misaligned
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
        except OSError:
            pytest.skip("this file system does not take O_DIRECT")
        with open(source, "rb", buffering=0) as src:
            digests = transfer.copy_stream(src, fd)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"x" + data
    assert digests.sha1 == sha1_of(data)


def test_progress_reports_bytes_since_previous_call_and_adds_up(tmp_path: Path) -> None:
    data = os.urandom(3 * transfer.CHUNK_SIZE // 2)
    reported: list[int] = []
    transfer.copy_stream(io.BytesIO(data), None, progress=reported.append)
    assert sum(reported) == len(data)
    assert all(count > 0 for count in reported)


def test_hash_file_reads_without_writing_anything(tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "a").write_bytes(data)
    assert transfer.hash_file(tmp_path / "a").sha1 == sha1_of(data)
    assert files_under(tmp_path) == {"a"}


def test_read_error_names_the_source_and_is_retryable() -> None:
    with pytest.raises(TransferFailed) as caught:
        transfer.copy_stream(FailingReader(b"abc"), io.BytesIO())
    assert "/mnt/flaky/source.mov" in caught.value.message
    assert "Input/output error" in caught.value.message
    assert caught.value.retryable


# --- atomic publish ------------------------------------------------------------------------


def test_publish_file_writes_final_name_only_with_matching_sha1(tmp_path: Path) -> None:
    data = b"frame data" * 1000
    (tmp_path / "src").write_bytes(data)
    digests = transfer.publish_file(
        tmp_path / "src",
        tmp_path / "archive" / "clip.mov",
        replace=False,
        expected_sha1=sha1_of(data).upper(),
    )
    assert (tmp_path / "archive" / "clip.mov").read_bytes() == data
    assert digests.size == len(data)
    assert files_under(tmp_path / "archive") == {"clip.mov"}


def test_fixity_mismatch_publishes_nothing_and_removes_temp_and_new_dirs(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"the real bytes")
    archive = tmp_path / "archive"
    archive.mkdir()
    with pytest.raises(FixityMismatch) as caught:
        transfer.publish_file(
            tmp_path / "src",
            archive / "2024" / "05" / "clip.mov",
            replace=False,
            expected_sha1="0" * 40,
        )
    assert "0" * 40 in caught.value.message
    assert str(tmp_path / "src") in caught.value.message
    assert list(archive.iterdir()) == []  # no file, no temp, no empty layout directory


def test_restore_publish_replaces_an_existing_file_atomically(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"new content")
    (tmp_path / "dst").write_bytes(b"old content that is longer")
    transfer.publish_file(tmp_path / "src", tmp_path / "dst", replace=True)
    assert (tmp_path / "dst").read_bytes() == b"new content"
    assert partials_under(tmp_path) == []


def test_archive_publish_leaves_an_existing_file_in_place(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"new content")
    (tmp_path / "dst").write_bytes(b"old content that is longer")
    with pytest.raises(TransferFailed) as caught:
        transfer.publish_file(tmp_path / "src", tmp_path / "dst", replace=False)
    assert f"Could not publish {tmp_path / 'dst'}: a different file" in caught.value.message
    assert "left in place; nothing was replaced" in caught.value.message
    assert (tmp_path / "dst").read_bytes() == b"old content that is longer"
    assert partials_under(tmp_path) == []


def test_failed_read_leaves_no_partial_file(tmp_path: Path) -> None:
    with pytest.raises(TransferFailed):
        transfer.publish_file(FailingReader(b"x" * 100), tmp_path / "dst", replace=False)
    assert files_under(tmp_path) == set()


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """A file-size limit makes the kernel refuse the write midway (EFBIG), as a full disk would."""
    import resource
    import signal

    data = os.urandom(3 * MiB)
    (tmp_path / "src").write_bytes(data)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, resource.RLIM_INFINITY))
            try:
                transfer.publish_file(tmp_path / "src", tmp_path / "out" / "dst", replace=False)
            except TransferFailed as exc:
                os.write(write_end, exc.message.encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the write did not fail as it should"
    assert "File too large" in message
    assert str(tmp_path / "out" / "dst") in message
    assert files_under(tmp_path) == {"src"}


def test_temporary_name_is_hidden_unique_and_fits_name_max() -> None:
    long_name = "é" * 127 + "x"  # 255 bytes
    names = {transfer.temporary_name(long_name) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.startswith(".")
        assert name.endswith(".partial")
        assert len(os.fsencode(name)) <= 255
        assert str(os.getpid()) in name


def test_batch_publish_makes_many_files_durable_with_one_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[Path] = []
    real_sync = transfer.sync_filesystem
    monkeypatch.setattr(
        transfer.durability,
        "sync_filesystem",
        lambda path: (syncs.append(Path(path)), real_sync(path)),
    )
    staged = []
    payloads = {}
    for i in range(300):
        data = os.urandom(i * 7)
        payloads[f"d{i % 3}/f{i}"] = data
        staged.append(
            transfer.stage_file(
                io.BytesIO(data),
                tmp_path / f"d{i % 3}" / f"f{i}",
                replace=False,
                expected_sha1=sha1_of(data),
                root=tmp_path,
            )
        )
    assert not any((tmp_path / name).exists() for name in payloads)  # nothing visible yet
    assert transfer.publish_staged(staged) == [None] * 300
    assert len(syncs) == 1
    assert {name: (tmp_path / name).read_bytes() for name in payloads} == payloads
    assert partials_under(tmp_path) == []


def test_batch_publish_reports_the_file_it_could_not_rename_and_keeps_the_others(
    tmp_path: Path,
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "inside").write_bytes(b"")
    good = transfer.stage_file(io.BytesIO(b"good"), tmp_path / "good", replace=False)
    blocked = transfer.stage_file(io.BytesIO(b"blocked"), tmp_path / "taken", replace=False)
    results = transfer.publish_staged([good, blocked])
    assert results[0] is None
    assert isinstance(results[1], TransferFailed)
    assert str(tmp_path / "taken") in results[1].message
    assert (tmp_path / "good").read_bytes() == b"good"
    assert partials_under(tmp_path) == []


def test_a_staged_small_file_has_no_name_until_it_is_published(tmp_path: Path) -> None:
    staged = transfer.stage_file(io.BytesIO(b"clip"), tmp_path / "clip.mov", replace=False)
    assert staged.unnamed is not None and staged.temp is None
    assert os.listdir(tmp_path) == []  # no temporary name either
    assert transfer.publish_staged([staged]) == [None]
    assert os.listdir(tmp_path) == ["clip.mov"]
    dropped = transfer.stage_file(io.BytesIO(b"never"), tmp_path / "never.mov", replace=False)
    dropped.discard()
    dropped.discard()  # twice is harmless: the descriptor is closed once
    assert os.listdir(tmp_path) == ["clip.mov"]


def test_a_process_killed_while_holding_staged_files_leaves_nothing(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    hold, _release = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            for n in range(20):
                transfer.stage_file(io.BytesIO(b"x" * 1000), tmp_path / f"f{n}", replace=False)
            os.write(write_end, b"staged")
            os.read(hold, 1)  # wait to be killed
        finally:
            os._exit(1)
    os.close(write_end)
    assert os.read(read_end, 6) == b"staged"
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    assert os.listdir(tmp_path) == []


def test_where_unnamed_files_are_refused_temporary_names_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_unnamed, "O_TMPFILE", 0)  # as on NFS, or a kernel without it
    staged = transfer.stage_file(io.BytesIO(b"clip"), tmp_path / "clip.mov", replace=False)
    assert staged.unnamed is None and staged.temp is not None
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(staged.temp)]
    assert transfer.publish_staged([staged]) == [None]
    assert os.listdir(tmp_path) == ["clip.mov"]


def refusing_o_tmpfile(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every O_TMPFILE open fail as NFS does; returns the directories it was tried in."""
    tried: list[str] = []
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if _unnamed.O_TMPFILE and flags & _unnamed.O_TMPFILE == _unnamed.O_TMPFILE:
            tried.append(os.fspath(path))
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(_unnamed, "REFUSED", _unnamed._Refusals())
    return tried


def test_a_root_that_refused_unnamed_files_is_not_asked_again_for_each_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = refusing_o_tmpfile(monkeypatch)
    for n in range(5):  # one layout directory per item, as with layout = "item"
        staged = transfer.stage_file(
            io.BytesIO(b"clip"), tmp_path / f"VX-{n}" / "clip.mov", replace=False, root=tmp_path
        )
        assert staged.unnamed is None and staged.temp is not None
        assert transfer.publish_staged([staged]) == [None]
    assert tried == [str(tmp_path / "VX-0")]  # once for the whole root
    assert len(_unnamed.REFUSED) == 1


def test_directories_that_refused_unnamed_files_are_remembered_boundedly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = refusing_o_tmpfile(monkeypatch)
    monkeypatch.setattr(_unnamed._Refusals, "LIMIT", 3)
    for n in range(5):  # restores into Portal's folders: no root to key by
        folder = tmp_path / f"portal-{n}"
        transfer.publish_file(io.BytesIO(b"x"), folder / "f.mov", replace=True)
    assert len(tried) == 5 and len(_unnamed.REFUSED) == 3
    assert str(tmp_path / "portal-4") in _unnamed.REFUSED
    assert str(tmp_path / "portal-0") not in _unnamed.REFUSED  # the oldest forgotten
    transfer.publish_file(io.BytesIO(b"x"), tmp_path / "portal-4" / "g.mov", replace=True)
    assert len(tried) == 5  # a folder still remembered is not asked again


def test_a_forked_child_links_its_own_unnamed_files(tmp_path: Path) -> None:
    # The parent links first, so it holds its /proc/self/fd open when it forks.
    transfer.publish_file(io.BytesIO(b"parent"), tmp_path / "parent.mov", replace=False)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child = tmp_path / "child.mov"
            staged = transfer.stage_file(io.BytesIO(b"child"), child, replace=False)
            os.write(write_end, b"1" if staged.unnamed is not None else b"0")
            transfer.publish_staged([staged])
        finally:
            os._exit(0)
    os.close(write_end)
    unnamed = os.read(read_end, 1)
    os.waitpid(pid, 0)
    assert unnamed == b"1"
    assert (tmp_path / "child.mov").read_bytes() == b"child"
    assert sorted(os.listdir(tmp_path)) == ["child.mov", "parent.mov"]


def test_publishing_onto_the_same_bytes_keeps_the_existing_copy(tmp_path: Path) -> None:
    (tmp_path / "clip.mov").write_bytes(b"same bytes")
    before = os.stat(tmp_path / "clip.mov")
    staged = transfer.stage_file(io.BytesIO(b"same bytes"), tmp_path / "clip.mov", replace=False)
    assert transfer.publish_staged([staged]) == [transfer.ALREADY_PUBLISHED]
    after = os.stat(tmp_path / "clip.mov")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_archive_publishing_leaves_other_bytes_and_a_planted_symlink_in_place(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not ours")
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "damaged.mov").write_bytes(b"damaged copy")
    (tmp_path / "archive" / "planted.mov").symlink_to(outside)
    staged = [
        transfer.stage_file(io.BytesIO(b"good copy"), tmp_path / "archive" / name, replace=False)
        for name in ("damaged.mov", "planted.mov")
    ]
    damaged, planted = transfer.publish_staged(staged)
    assert isinstance(damaged, TransferFailed) and isinstance(planted, TransferFailed)
    assert "a different file already exists under this name" in damaged.message
    assert f"a symbolic link (to {outside})" in planted.message
    assert (tmp_path / "archive" / "damaged.mov").read_bytes() == b"damaged copy"
    assert (tmp_path / "archive" / "planted.mov").is_symlink()
    assert outside.read_bytes() == b"not ours"
    assert sorted(os.listdir(tmp_path / "archive")) == ["damaged.mov", "planted.mov"]


def test_restore_publishing_replaces_other_bytes_and_a_planted_symlink_without_following_it(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not ours")
    (tmp_path / "portal").mkdir()
    (tmp_path / "portal" / "older.mov").write_bytes(b"an older file")
    (tmp_path / "portal" / "planted.mov").symlink_to(outside)
    staged = [
        transfer.stage_file(io.BytesIO(b"good copy"), tmp_path / "portal" / name, replace=True)
        for name in ("older.mov", "planted.mov")
    ]
    assert transfer.publish_staged(staged) == [None, None]
    for name in ("older.mov", "planted.mov"):
        path = tmp_path / "portal" / name
        assert not path.is_symlink() and path.read_bytes() == b"good copy"
    assert outside.read_bytes() == b"not ours"
    assert sorted(os.listdir(tmp_path / "portal")) == ["older.mov", "planted.mov"]


def test_sync_primitives_accept_a_real_directory(tmp_path: Path) -> None:
    transfer.sync_filesystem(tmp_path)
    transfer.fsync_directory(tmp_path)
    with pytest.raises(FileNotFoundError):
        transfer.fsync_directory(tmp_path / "missing")


def test_make_directories_returns_only_what_it_created(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    created = transfer.make_directories(tmp_path / "a" / "b" / "c")
    assert created == (str(tmp_path / "a" / "b"), str(tmp_path / "a" / "b" / "c"))
    assert transfer.make_directories(tmp_path / "a" / "b" / "c") == ()


# --- names and locators from outside -------------------------------------------------------


@pytest.mark.parametrize(
    ("locator", "reason"),
    [
        ("../etc/passwd", "'..' component"),
        ("a/../../b", "'..' component"),
        ("/etc/passwd", "absolute path"),
        ("a\0b", "NUL byte"),
        ("", "empty"),
        ("a//b", "empty path component"),
        ("a/", "empty path component"),
        ("./a", "'.' component"),
        ("ok/" + "x" * 256, "256 bytes long"),
        ("é" * 128, "256 bytes long"),
    ],
)
def test_safe_join_refuses_hostile_locators_naming_them(
    tmp_path: Path, locator: str, reason: str
) -> None:
    with pytest.raises(UnsafeName) as caught:
        transfer.safe_join(tmp_path, locator, what="locator")
    assert reason in caught.value.message
    if locator:
        assert repr(locator)[:40] in caught.value.message


def test_safe_join_accepts_plain_unicode_and_spaces(tmp_path: Path) -> None:
    assert transfer.safe_join(tmp_path, "VX-1/Ünïcødé clip 1.mov") == (
        tmp_path / "VX-1" / "Ünïcødé clip 1.mov"
    )
    assert transfer.safe_join(tmp_path, "x" * 255) == tmp_path / ("x" * 255)


def test_safe_join_refuses_a_directory_symlink_that_leaves_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    with pytest.raises(UnsafeName) as caught:
        transfer.safe_join(root, "escape/file.mov")
    assert "'escape' is a symbolic link" in caught.value.message
    assert str(outside) in caught.value.message


def test_safe_join_refuses_a_final_symlink_that_leaves_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeName):
        transfer.safe_join(root, "passwd")


def test_safe_join_allows_symlinks_that_stay_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "alias").symlink_to(root / "real")
    assert transfer.safe_join(root, "alias/x") == root / "alias" / "x"


def test_safe_join_follows_a_symlinked_root_itself(tmp_path: Path) -> None:
    (tmp_path / "disk").mkdir()
    (tmp_path / "archive").symlink_to(tmp_path / "disk")
    (tmp_path / "disk" / "inner").mkdir()
    (tmp_path / "disk" / "link").symlink_to(tmp_path / "disk" / "inner")
    assert transfer.safe_join(tmp_path / "archive", "link/x") == tmp_path / "archive/link/x"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    locator=st.lists(
        st.one_of(
            st.sampled_from(["..", ".", "", "/", "escape", "inside", "a b", "\0", "é" * 130]),
            st.text(min_size=0, max_size=20),
        ),
        min_size=1,
        max_size=5,
    ).map("/".join)
)
def test_safe_join_result_always_resolves_inside_root(locator: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        (root / "inside").mkdir(parents=True)
        (base / "outside").mkdir()
        (root / "escape").symlink_to(base / "outside")
        try:
            path = transfer.safe_join(root, locator)
        except UnsafeName as exc:
            assert exc.message.startswith("Refusing")
            return
        resolved = Path(os.path.realpath(path))
        assert resolved.is_relative_to(root.resolve())


@pytest.mark.parametrize("name", ["a/b", "..", ".", "", "a\0", "x" * 256])
def test_check_name_refuses_anything_but_one_plain_component(name: str) -> None:
    with pytest.raises(UnsafeName) as caught:
        transfer.check_name(name, what="archive name")
    assert "archive name" in caught.value.message


def test_check_name_accepts_portal_style_names() -> None:
    name = "my clip_VX-12_" + "a" * 40 + ".mov"
    assert transfer.check_name(name) == name


# --- the first readable source -------------------------------------------------------------


def test_first_readable_source_is_chosen_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"B")
    (tmp_path / "c").write_bytes(b"C")
    (tmp_path / "dir").mkdir()
    path, stream = transfer.open_first_readable(
        [tmp_path / "missing", tmp_path / "dir", tmp_path / "b", tmp_path / "c"]
    )
    with stream:
        assert path == str(tmp_path / "b")
        assert stream.read() == b"B"


def test_no_readable_source_lists_each_path_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")  # must be refused, not block waiting for a writer
    with pytest.raises(TransferFailed) as caught:
        transfer.open_first_readable(
            [tmp_path / "missing", tmp_path / "dir", tmp_path / "fifo", "bad\0path"]
        )
    message = caught.value.message
    assert f"{tmp_path / 'missing'} (No such file or directory)" in message
    assert f"{tmp_path / 'dir'} (is a directory)" in message
    assert f"{tmp_path / 'fifo'} (is not a regular file)" in message
    assert "(contains a NUL byte)" in message
    assert "None of the 4 sources" in message


def test_no_source_at_all_is_an_error() -> None:
    with pytest.raises(TransferFailed, match="No source path"):
        transfer.open_first_readable([])


def test_open_regular_names_the_stream_after_its_path(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with transfer.open_regular(tmp_path / "f") as stream:
        assert stream.name == str(tmp_path / "f")
        assert stat.S_ISREG(os.fstat(stream.fileno()).st_mode)


# --- temporary files stopped workers left behind ---------------------------------------------


def dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_sweep_removes_what_stopped_workers_left_and_keeps_live_copies(tmp_path: Path) -> None:
    import subprocess

    mine = transfer.temporary_name("clip.mov")
    host = mine.split(".")[-4]
    dead = f".clip.mov.{host}.{dead_pid()}.0a1b2c3d0.partial"
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        alive = f".clip.mov.{host}.{sleeper.pid}.0a1b2c3d0.partial"
        elsewhere = ".clip.mov.other-host.1.0a1b2c3d0.partial"
        abandoned = ".clip.mov.other-host.2.0a1b2c3d0.partial"
        for name in (mine, dead, alive, elsewhere, abandoned, "clip.mov", ".hidden"):
            (tmp_path / name).write_bytes(b"x")
        old = os.stat(tmp_path / abandoned).st_mtime - transfer.STALE_AFTER_SECONDS - 60
        os.utime(tmp_path / abandoned, (old, old))
        removed = transfer.sweep_partials(tmp_path)
        sleeper.kill()
    assert sorted(removed) == sorted([dead, abandoned])
    assert {p.name for p in tmp_path.iterdir()} == {mine, alive, elsewhere, "clip.mov", ".hidden"}


def test_sweep_of_a_missing_directory_removes_nothing(tmp_path: Path) -> None:
    assert transfer.sweep_partials(tmp_path / "missing") == []


def test_remove_partials_clears_the_named_workers_attempts_at_one_name_and_nothing_else(tmp_path):
    from archive_core.transfer import remove_partials

    name = "clip_VX-1_" + "a" * 40 + ".mov"
    theirs = [f".{name}.otherhost.77.9.partial", f".{name}.otherhost.77.a.partial"]
    others = [".other.mov.otherhost.77.9.partial", f".{name}.otherhost.78.9.partial", name]
    for entry in theirs + others:
        (tmp_path / entry).write_bytes(b"x")
    assert sorted(remove_partials(tmp_path, name, made_by=["otherhost:77"])) == sorted(theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def test_remove_partials_matches_a_name_cut_to_fit_name_max(tmp_path):
    from archive_core import workers
    from archive_core.transfer import remove_partials, temporary_name

    long_name = "é" * 120 + "_VX-1.mov"  # 249 bytes: its temporary name must be cut
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a worker that leaves its temporary file and dies
        try:
            (tmp_path / temporary_name(long_name)).write_bytes(b"x")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    made_by = [workers.WorkerId(host=workers.current().host, pid=pid)]
    assert len(remove_partials(tmp_path, long_name, made_by=made_by)) == 1
    assert list(tmp_path.iterdir()) == []


class _CountingSource(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def readinto(self, view: Any) -> int:
        self.asked.append(len(view))
        return super().readinto(view)


def test_a_hashing_reader_of_known_size_asks_its_source_for_no_more_than_is_left() -> None:
    data = os.urandom(1000)
    source = _CountingSource(data)
    reader = transfer.HashingReader(
        source, label="clip.mov", expected_sha1=hashlib.sha1(data).hexdigest(), expected_size=1000
    )
    got = reader.read(1024 * 1024)  # what an upload asks for at a time
    assert got == data and reader.read(1024 * 1024) == b""
    assert source.asked == [1001, 1]  # the byte over is how a file that grew is seen
    assert reader.digests is not None and reader.digests.sha256 == hashlib.sha256(data).hexdigest()


def test_a_hashing_reader_refuses_a_source_longer_than_said_at_the_first_byte_over() -> None:
    source = _CountingSource(os.urandom(1000 + 1024 * 1024))
    reader = transfer.HashingReader(source, label="clip.mov", expected_size=1000)
    with pytest.raises(TransferFailed, match=r"clip\.mov has more than the 1000 bytes expected"):
        while reader.read(1024 * 1024):
            pass
    assert sum(source.asked) == 1001


def test_a_hashing_reader_refuses_a_source_shorter_than_said() -> None:
    reader = transfer.HashingReader(io.BytesIO(b"x" * 900), label="clip.mov", expected_size=1000)
    with pytest.raises(TransferFailed, match="ended after 900 bytes, not the 1000 bytes expected"):
        while reader.read(1024 * 1024):
            pass
