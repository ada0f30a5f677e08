"""ObjectStoreDriver: what it does around a subclass's put / get / remove, called directly."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from archive_core import workers
from archive_core.driver import DriverContext
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    FileOutcome,
    RestoreItem,
    RestoreRequest,
)
from archive_core.testing import MemoryDriver, bucket_contents, create_bucket, memory
from archive_core.testing.memory import MemoryConfig, drop_bucket

DEAD = "otherhost:4242:0a1b2c3d4e5f-4026531836:77"


@pytest.fixture
def bucket() -> Any:
    name = create_bucket()
    yield name
    drop_bucket(name)


def _driver(cls: type, bucket: str, tmp_path: Path) -> Any:
    return cls(MemoryConfig(bucket=bucket), DriverContext(target="vault", state_dir=tmp_path))


def _item(tmp_path: Path, content: bytes, *, sha1: str | None = None, **fields: Any) -> ArchiveItem:
    source = tmp_path / "clip.mov"
    source.write_bytes(content)
    sha1 = sha1 or hashlib.sha1(content).hexdigest()
    return ArchiveItem(
        key="0", sources=[str(source)], name=f"clip_VX-1_{sha1}.mov", sha1=sha1, **fields
    )


def _archive(driver: Any, item: ArchiveItem) -> FileOutcome:
    request = ArchiveRequest(policy="p", target="vault", job_id="j", items=[item])
    [outcome] = driver.archive(request)
    return outcome


class Swallowing(MemoryDriver):
    name = "swallowing"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        upload = io.BytesIO()
        # The mistake: the upload goes on as if the stream had ended.
        with contextlib.suppress(Exception):
            shutil.copyfileobj(stream, upload)
        with memory._lock:
            self._objects()[key] = upload.getvalue()


def test_a_put_that_returns_after_its_stream_raised_fails_the_file_with_that_error(
    tmp_path: Path, bucket: str
) -> None:
    item = _item(tmp_path, b"bytes Portal did not hash", sha1="0" * 40)
    outcome = _archive(_driver(Swallowing, bucket, tmp_path), item)
    assert not outcome.ok
    assert outcome.error.startswith("Checksum mismatch for ")
    assert "Swallowing.put() went on after this error and returned normally" in outcome.error
    assert f"What it stored under {item.name} was removed." in outcome.error
    assert bucket_contents(bucket) == {}


def test_put_gets_a_stream_that_says_it_cannot_seek(tmp_path: Path, bucket: str) -> None:
    seen: dict[str, Any] = {}

    class Looking(MemoryDriver):
        name = "looking"

        def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
            seen.update(seekable=stream.seekable(), seek=hasattr(stream, "seek"), size=size)
            super().put(key, stream, size)

    assert _archive(_driver(Looking, bucket, tmp_path), _item(tmp_path, b"x" * 5000)).ok
    assert seen == {"seekable": False, "seek": False, "size": 5000}


class Recording(MemoryDriver):
    name = "recording"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[tuple[str, Any]] = []

    def remove_leftovers(self, key: str, made_by: tuple[str, ...]) -> None:
        self.calls.append(("remove_leftovers", (key, made_by)))

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        self.calls.append(("put", key))
        super().put(key, stream, size)


def test_a_resumed_item_has_the_dead_workers_leftovers_removed_before_it_is_put(
    tmp_path: Path, bucket: str
) -> None:
    driver = _driver(Recording, bucket, tmp_path)
    item = _item(tmp_path, b"resumed bytes", abandoned_by=[DEAD])
    assert _archive(driver, item).ok
    assert driver.calls == [("remove_leftovers", (item.name, (DEAD,))), ("put", item.name)]


def test_an_item_nobody_tried_before_has_no_leftovers_to_remove(
    tmp_path: Path, bucket: str
) -> None:
    driver = _driver(Recording, bucket, tmp_path)
    item = _item(tmp_path, b"first attempt")
    assert _archive(driver, item).ok
    assert driver.calls == [("put", item.name)]


def test_leftovers_that_cannot_be_removed_are_logged_and_the_file_is_archived(
    tmp_path: Path, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Stubborn(MemoryDriver):
        name = "stubborn"

        def remove_leftovers(self, key: str, made_by: tuple[str, ...]) -> None:
            raise PermissionError(13, "Access Denied")

    item = _item(tmp_path, b"archived anyway", abandoned_by=[DEAD])
    with caplog.at_level(logging.WARNING, logger="archive_core.objectstore"):
        outcome = _archive(_driver(Stubborn, bucket, tmp_path), item)
    assert outcome.ok and item.name in bucket_contents(bucket)
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"target vault: could not remove what the interrupted upload of {item.name} left "
        f"(workers {DEAD}):"
    )


def test_worker_id_is_this_process_as_the_journal_names_it(tmp_path: Path, bucket: str) -> None:
    driver = _driver(MemoryDriver, bucket, tmp_path)
    assert driver.worker_id == str(workers.current())
    assert workers.WorkerId.parse(driver.worker_id) == workers.current()


def test_a_resumed_restore_removes_only_the_dead_workers_partial_files(
    tmp_path: Path, bucket: str
) -> None:
    driver = _driver(MemoryDriver, bucket, tmp_path)
    content = b"restored again"
    item = _item(tmp_path, content)
    assert _archive(driver, item).ok
    folder = tmp_path / "portal"
    folder.mkdir()
    theirs = folder / ".clip.mov.otherhost.4242.9.partial"
    live = folder / ".clip.mov.otherhost.4243.9.partial"
    for path in (theirs, live):
        path.write_bytes(b"half")
    restore = RestoreItem(
        key="0",
        locator=item.name,
        destination=str(folder / "clip.mov"),
        sha1=item.sha1,
        abandoned_by=[DEAD],
    )
    [outcome] = driver.restore(
        RestoreRequest(policy="p", target="vault", job_id="j", items=[restore])
    )
    assert outcome.ok
    assert sorted(p.name for p in folder.iterdir()) == sorted(["clip.mov", live.name])
    assert (folder / "clip.mov").read_bytes() == content
