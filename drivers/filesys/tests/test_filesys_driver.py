"""The filesys driver driven directly with request objects, on real files."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import os
import tempfile
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import pytest
from archive_core_filesys.driver import FilesysConfig, FilesysDriver, human_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive_core import transfer
from archive_core.driver import API_VERSION, Capability, DriverContext
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    RestoreItem,
    RestoreRequest,
    VerifyRequest,
)
from archive_core.policies import structure
from drivers.filesys.tests.support import (
    archive,
    everything_under,
    files_under,
    in_child,
    make_driver,
    partials,
    run,
    sha1_of,
    source,
)

# --- declaration -------------------------------------------------------------------------------


def test_driver_is_found_through_its_entry_point_and_declares_itself() -> None:
    (found,) = [ep for ep in entry_points(group="archive_core.drivers") if ep.name == "filesys"]
    driver_class = found.load()
    assert driver_class is FilesysDriver
    assert driver_class.name == "filesys"
    assert driver_class.scheme == "filesys"
    assert driver_class.api_version == API_VERSION
    assert driver_class.capabilities == {
        Capability.ARCHIVE,
        Capability.RESTORE,
        Capability.DELETE,
        Capability.VERIFY,
        Capability.BULK,
        Capability.MANIFEST,
    }
    assert driver_class.Config is FilesysConfig


def test_construction_does_no_io(root: Path) -> None:
    config = FilesysConfig(root=root)
    root.rmdir()  # gone before the driver is built: building must not notice
    driver = FilesysDriver(config, DriverContext(target="vault", state_dir=root.parent))
    assert "vault" in repr(driver)
    assert not root.exists()


# --- configuration -------------------------------------------------------------------------


def test_config_from_toml_settings_gets_defaults(root: Path) -> None:
    config, problems = structure(FilesysConfig, {"root": str(root)}, path="targets.v.settings")
    assert problems == []
    assert config == FilesysConfig(
        root=root, layout="flat", min_free_bytes=1024**3, parallel=4, fsync=True, direct_io=True
    )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"root": "relative/dir"}, "targets.v.settings.root: must be an absolute path"),
        (
            {"root": "{tmp}", "layout": "by-day"},
            "targets.v.settings.layout: must be one of flat, item, date",
        ),
        ({"root": "{tmp}", "parallel": 0}, "targets.v.settings.parallel: must be between 1 and 64"),
        ({"root": "{tmp}", "min_free_bytes": -1}, "targets.v.settings.min_free_bytes: must be 0"),
        ({"root": "{tmp}", "colour": "blue"}, "targets.v.settings: unknown setting (colour)"),
        (
            {"root": "{tmp}", "staging": "forked"},
            "targets.v.settings.staging: must be one of auto, inline, threads, processes",
        ),
    ],
)
def test_config_problems_name_the_setting(
    tmp_path: Path, settings: dict[str, Any], problem: str
) -> None:
    (tmp_path / "file").write_text("not a directory")
    raw = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in settings.items()}
    config, problems = structure(FilesysConfig, raw, path="targets.v.settings")
    assert config is None
    assert any(p.startswith(problem) for p in problems), problems


# --- archive and restore -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["flat", "item", "date"])
def test_archive_then_restore_gives_back_equal_bytes(
    tmp_path: Path, root: Path, layout: str
) -> None:
    driver = make_driver(root, layout=layout)
    data = os.urandom(100_000)
    item = source(tmp_path / "online", "clip one.mov", data, key="a", item_id="VX-7")
    outcome = archive(driver, [item])["a"]
    assert outcome.ok, outcome.error
    expected_locator = {
        "flat": item.name,
        "item": f"VX-7/{item.name}",
        "date": f"{dt.datetime.now(dt.UTC):%Y/%m/%d}/{item.name}",
    }[layout]
    assert outcome.locator == expected_locator
    assert (outcome.size, outcome.sha1) == (len(data), item.sha1)
    assert outcome.sha256 == hashlib.sha256(data).hexdigest()
    assert not outcome.reused
    assert (root / outcome.locator).read_bytes() == data

    destination = tmp_path / "restored" / "deep" / "clip one.mov"
    restored = run(
        driver.restore,
        [
            RestoreItem(
                key="r", locator=outcome.locator, destination=str(destination), sha1=item.sha1
            )
        ],
        RestoreRequest,
    )["r"]
    assert restored.ok, restored.error
    assert restored.sha1 == item.sha1
    assert destination.read_bytes() == data
    assert partials(tmp_path) == []


def test_large_file_round_trip_through_direct_io(tmp_path: Path, root: Path) -> None:
    data = os.urandom(transfer.LARGE_FILE + transfer.CHUNK_SIZE + 999)
    item = source(tmp_path / "online", "master.mxf", data, key="big", size=len(data))
    driver = make_driver(root)
    outcome = archive(driver, [item])["big"]
    assert outcome.ok, outcome.error
    assert (root / outcome.locator).read_bytes() == data
    verified = run(
        driver.verify, [CopyRef(key="v", locator=outcome.locator, sha1=item.sha1)], VerifyRequest
    )["v"]
    assert verified.ok
    assert verified.sha256 == outcome.sha256


def test_fixity_mismatch_is_a_per_file_failure_and_publishes_nothing(
    tmp_path: Path, root: Path
) -> None:
    good = source(tmp_path / "online", "good.wav", b"good audio", key="good")
    bad = source(tmp_path / "online", "bad.wav", b"changed since Vidispine hashed it", key="bad")
    bad = ArchiveItem(
        key="bad", sources=bad.sources, name=bad.name, item_id="VX-1", sha1=sha1_of(b"original")
    )
    outcomes = archive(make_driver(root, layout="item"), [good, bad])
    assert outcomes["good"].ok
    assert not outcomes["bad"].ok
    assert "Checksum mismatch" in outcomes["bad"].error
    assert sha1_of(b"original") in outcomes["bad"].error
    assert "bad.wav" in outcomes["bad"].error
    assert files_under(root) == {outcomes["good"].locator}


def test_rerun_reuses_an_identical_copy_without_writing(tmp_path: Path, root: Path) -> None:
    driver = make_driver(root)
    item = source(tmp_path / "online", "a.mov", os.urandom(5000), key="a")
    first = archive(driver, [item])["a"]
    before = os.stat(root / first.locator)
    again = archive(driver, [item])["a"]
    assert again.ok and again.reused
    assert (again.locator, again.sha1, again.sha256) == (first.locator, first.sha1, first.sha256)
    after = os.stat(root / first.locator)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert files_under(root) == {first.locator}


def test_existing_file_with_other_content_is_left_in_place_neither_replaced_nor_reused(
    tmp_path: Path, root: Path
) -> None:
    data = os.urandom(5000)
    item = source(tmp_path / "online", "a.mov", data, key="a")
    other = os.urandom(5000)  # same size, different bytes
    (root / item.name).write_bytes(other)
    outcome = archive(make_driver(root), [item])["a"]
    assert not outcome.ok and not outcome.reused
    assert "a different file already exists under this name" in outcome.error
    assert f"{root / item.name}" in outcome.error and "left in place" in outcome.error
    assert (root / item.name).read_bytes() == other


def test_first_readable_source_is_read(tmp_path: Path, root: Path) -> None:
    data = b"identical content on two storages"
    (tmp_path / "nas").mkdir()
    (tmp_path / "nas" / "clip.mov").write_bytes(b"the other copy is never opened")
    item = source(tmp_path / "san", "clip.mov", data, key="a")
    item = ArchiveItem(
        key="a",
        sources=[str(tmp_path / "offline" / "clip.mov"), item.sources[0], str(tmp_path / "nas")],
        name=item.name,
        sha1=item.sha1,
    )
    outcome = archive(make_driver(root), [item])["a"]
    assert outcome.ok, outcome.error
    assert (root / outcome.locator).read_bytes() == data


def test_unreadable_sources_fail_with_every_path_and_reason(tmp_path: Path, root: Path) -> None:
    item = ArchiveItem(
        key="a",
        sources=[str(tmp_path / "gone1.mov"), str(tmp_path / "gone2.mov")],
        name="gone_VX-1_" + "a" * 40 + ".mov",
        sha1="a" * 40,
    )
    outcome = archive(make_driver(root), [item])["a"]
    assert not outcome.ok
    assert f"{tmp_path / 'gone1.mov'} (No such file or directory)" in outcome.error
    assert f"{tmp_path / 'gone2.mov'} (No such file or directory)" in outcome.error
    assert everything_under(root) == set()


def test_item_layout_without_item_id_is_a_per_file_error(tmp_path: Path, root: Path) -> None:
    item = source(tmp_path / "online", "a.mov", b"x", key="a", item_id=None)
    outcome = archive(make_driver(root, layout="item"), [item])["a"]
    assert not outcome.ok
    assert "item id" in outcome.error


def test_many_small_files_are_archived_in_chunks_with_progress(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[Path] = []
    real_sync = transfer.sync_filesystem
    monkeypatch.setattr(
        transfer.durability,
        "sync_filesystem",
        lambda path: (syncs.append(Path(path)), real_sync(path)),
    )
    items = [
        source(tmp_path / "online", f"f{i:04d}.bin", os.urandom(i % 2000), key=str(i))
        for i in range(700)
    ]
    progressed: list[int] = []
    outcomes = archive(make_driver(root, parallel=3), items, progress=progressed.append)
    assert all(o.ok for o in outcomes.values())
    assert sum(progressed) == sum(o.size for o in outcomes.values())
    assert len(files_under(root)) == 700
    for item in items[:50]:
        assert (root / outcomes[item.key].locator).read_bytes() == Path(
            item.sources[0]
        ).read_bytes()
    # Small files share their chunk's sync: a few syncs for 700 files, not one per file.
    assert 3 <= len(syncs) <= 20
    assert partials(root) == []


def test_outcomes_stream_before_the_batch_ends(tmp_path: Path, root: Path) -> None:
    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(100), key=str(i)) for i in range(600)
    ]
    stream = make_driver(root).archive(
        ArchiveRequest(policy="p", target="vault", job_id="j", items=items)
    )
    first = next(stream)
    assert first.ok
    stream.close()  # the core stops listening: workers stop, nothing half-done remains
    assert partials(root) == []
    assert 0 < len(files_under(root)) < 600


def storage_holding_opens(monkeypatch: pytest.MonkeyPatch, at_once: int) -> list[str]:
    """Make the first `at_once` source opens wait for each other, as on a NAS that holds
    every open a while: none of them returns before all of them are in flight at once.

    Returns the names of the threads that made those first opens (each one made by a
    different thread, since a thread waiting in one cannot start another). Opens after them
    pass straight through. Should fewer than `at_once` ever be in flight together, the
    waiting ones fail their files (threading.BrokenBarrierError) after a minute.
    """
    together: list[str] = []
    counted = itertools.count()
    barrier = threading.Barrier(at_once, timeout=60)
    real_open = transfer.open_first_readable

    def open_together(sources):
        if next(counted) < at_once:
            together.append(threading.current_thread().name)
            barrier.wait()
        return real_open(sources)

    monkeypatch.setattr(transfer, "open_first_readable", open_together)
    return together


def test_threads_staging_overlaps_the_waits_of_slow_storage(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    together = storage_holding_opens(monkeypatch, 4)
    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(300 + i), key=str(i))
        for i in range(300)
    ]
    outcomes = archive(make_driver(root, parallel=4, staging="threads"), items)
    assert all(o.ok for o in outcomes.values()), {o.error for o in outcomes.values()}
    # Four opens were waited on at the same time, one in each worker thread: one file after
    # another would never have had two in flight.
    assert sorted(together) == [f"filesys-vault-{n}" for n in range(4)]
    for item in items:
        assert (root / outcomes[item.key].locator).read_bytes() == Path(
            item.sources[0]
        ).read_bytes()
    assert partials(root) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("filesys-vault-")]


def test_closing_early_in_parallel_mode_stops_workers_and_cleans_up(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_core.transfer.stager import _threads

    held_from = 700  # the opens of these files wait until the batch is being closed
    closing = threading.Event()
    opened: list[tuple[str, int, bool]] = []  # thread, file number, whether after the close
    real_open = transfer.open_first_readable

    def open_or_hold(sources):
        number = int(Path(sources[0]).stem[1:])
        opened.append((threading.current_thread().name, number, closing.is_set()))
        if number >= held_from:
            assert closing.wait(60), "the batch was never closed"
        return real_open(sources)

    real_stop = _threads.Workers.stop

    def stop(self: Any) -> Any:
        self._stop.set()  # what stop() does first: from now on no worker takes another file
        closing.set()  # ... then the held ones may finish the file they have
        return real_stop(self)

    monkeypatch.setattr(transfer, "open_first_readable", open_or_hold)
    monkeypatch.setattr(_threads.Workers, "stop", stop)
    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(100), key=str(i)) for i in range(800)
    ]
    stream = make_driver(root, parallel=3, staging="threads").archive(
        ArchiveRequest(policy="p", target="vault", job_id="j", items=items)
    )
    seen = 0
    for outcome in stream:
        assert outcome.ok
        seen += 1
        if seen > 300:
            break
    assert not closing.is_set()
    stream.close()
    assert closing.is_set()
    threads = {name for name, _, _ in opened}
    assert threads and all(name.startswith("filesys-vault-") for name in threads), threads
    # Once stopped, a worker takes no more files: at most the one it had taken already.
    after_close = collections.Counter(name for name, _, late in opened if late)
    assert all(count == 1 for count in after_close.values()), after_close
    assert not [t for t in threading.enumerate() if t.name.startswith("filesys-")]
    assert partials(root) == []
    assert seen <= len(files_under(root)) <= held_from


def test_failed_write_leaves_no_temp_file(tmp_path: Path, root: Path) -> None:
    """A file-size limit makes the kernel refuse the write midway, as a full disk would."""
    import resource
    import signal

    small = source(tmp_path / "online", "small.bin", b"fits", key="small")
    big = source(tmp_path / "online", "big.bin", os.urandom(3 * 1024 * 1024), key="big")
    driver = make_driver(root, layout="date")

    def archive_under_limit() -> dict[str, tuple[bool, str | None]]:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, resource.RLIM_INFINITY))
        return {k: (o.ok, o.error) for k, o in archive(driver, [small, big]).items()}

    outcomes = in_child(archive_under_limit)
    assert outcomes["small"] == (True, None)
    ok, error = outcomes["big"]
    assert not ok
    assert "File too large" in error
    assert partials(root) == []
    assert len(files_under(root)) == 1


def test_rerun_after_a_killed_worker_removes_its_temporary_file(tmp_path: Path, root: Path) -> None:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()  # a worker that is gone, as after SIGKILL
    item = source(tmp_path / "online", "a.mov", b"bytes", key="a")
    host = transfer.temporary_name(item.name).split(".")[-4]
    left = root / f".{item.name}.{host}.{child.pid}.00000000.partial"
    left.write_bytes(b"half a copy")
    outcome = archive(make_driver(root), [item])["a"]
    assert outcome.ok
    assert files_under(root) == {item.name}


# --- hostile names -------------------------------------------------------------------------

hostile_text = st.one_of(
    st.sampled_from(
        ["..", ".", "", "/", "../../etc/passwd", "/etc/passwd", "a\0b", "escape", "a b", "x" * 256]
    ),
    st.text(min_size=0, max_size=30),
    st.text(alphabet="./\0 éü名", min_size=0, max_size=12),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=hostile_text,
    item_id=st.one_of(st.none(), hostile_text),
    layout=st.sampled_from(["flat", "item", "date"]),
)
def test_hostile_names_never_write_outside_root(
    name: str, item_id: str | None, layout: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "archive"
        root.mkdir()
        (base / "outside").mkdir()
        (root / "escape").symlink_to(base / "outside")
        (base / "online").mkdir()
        (base / "online" / "src.bin").write_bytes(b"payload")
        before = everything_under(base) - {
            p for p in everything_under(base) if p.startswith("archive/")
        }
        item = ArchiveItem(
            key="k",
            sources=[str(base / "online" / "src.bin")],
            name=name,
            item_id=item_id,
            sha1=sha1_of(b"payload"),
        )
        outcome = archive(make_driver(root, layout=layout), [item])["k"]
        after = {p for p in everything_under(base) if not p.startswith("archive/")}
        assert after == before
        assert os.listdir(base / "outside") == []
        if outcome.ok:
            stored = Path(os.path.realpath(root / outcome.locator))
            assert stored.is_relative_to(root.resolve())
            assert stored.read_bytes() == b"payload"
        else:
            assert outcome.error
            # Refused, or a name taken by something (a planted symlink) that is left alone.
            assert (
                outcome.error.startswith("Refusing")
                or "item id" in outcome.error
                or outcome.error.endswith("It was left in place; nothing was replaced.")
            )
        assert partials(root) == []


def test_symlinked_item_directory_escaping_root_is_refused(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "VX-66").symlink_to(outside)
    item = source(tmp_path / "online", "a.mov", b"x", key="a", item_id="VX-66")
    outcome = archive(make_driver(root, layout="item"), [item])["a"]
    assert not outcome.ok
    assert "'VX-66/" in outcome.error and "symbolic link" in outcome.error
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["Ünïcødé clip.mov", "with spaces  .mov", "名前.mp4", "-dash"])
def test_unusual_but_harmless_names_are_archived(tmp_path: Path, root: Path, name: str) -> None:
    item = source(tmp_path / "online", name, b"ok", key="a", item_id="VX 1")
    outcome = archive(make_driver(root, layout="item"), [item])["a"]
    assert outcome.ok, outcome.error
    assert (root / "VX 1" / item.name).read_bytes() == b"ok"


@pytest.mark.parametrize(
    "locator", ["../outside/x", "/etc/passwd", "a/../../x", "a\0", "", "escape/x"]
)
def test_restore_refuses_locator_escaping_root(tmp_path: Path, root: Path, locator: str) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x").write_bytes(b"secret")
    (root / "escape").symlink_to(tmp_path / "outside")
    destination = tmp_path / "restored" / "x"
    outcome = run(
        make_driver(root).restore,
        [RestoreItem(key="r", locator=locator, destination=str(destination))],
        RestoreRequest,
    )["r"]
    assert not outcome.ok
    assert outcome.error.startswith("Refusing")
    assert not destination.exists()


# --- restore -----------------------------------------------------------------------------------


def test_restore_of_missing_copy_names_locator_and_root(tmp_path: Path, root: Path) -> None:
    outcome = run(
        make_driver(root).restore,
        [RestoreItem(key="r", locator="VX-1/gone.mov", destination=str(tmp_path / "out.mov"))],
        RestoreRequest,
    )["r"]
    assert not outcome.ok
    assert outcome.error == f"archived copy VX-1/gone.mov does not exist in {root}"


def test_restore_of_corrupted_copy_fails_and_leaves_destination_alone(
    tmp_path: Path, root: Path
) -> None:
    driver = make_driver(root)
    item = source(tmp_path / "online", "a.mov", b"original bytes", key="a")
    locator = archive(driver, [item])["a"].locator
    (root / locator).write_bytes(b"bit-rotted bytes")
    destination = tmp_path / "restore" / "a.mov"
    destination.parent.mkdir()
    destination.write_bytes(b"whatever Portal had there")
    outcome = run(
        driver.restore,
        [RestoreItem(key="r", locator=locator, destination=str(destination), sha1=item.sha1)],
        RestoreRequest,
    )["r"]
    assert not outcome.ok
    assert "Checksum mismatch" in outcome.error
    assert destination.read_bytes() == b"whatever Portal had there"
    assert partials(tmp_path) == []


def test_restore_refuses_a_relative_destination(tmp_path: Path, root: Path) -> None:
    (root / "a").write_bytes(b"x")
    outcome = run(
        make_driver(root).restore,
        [RestoreItem(key="r", locator="a", destination="relative/out")],
        RestoreRequest,
    )["r"]
    assert not outcome.ok
    assert "not an absolute path" in outcome.error


# --- delete ------------------------------------------------------------------------------------


def test_delete_removes_copy_and_empty_layout_directories_but_not_root(
    tmp_path: Path, root: Path
) -> None:
    driver = make_driver(root, layout="date")
    a = source(tmp_path / "online", "a.mov", b"a", key="a")
    b = source(tmp_path / "online", "b.mov", b"b", key="b")
    outcomes = archive(driver, [a, b])
    deleted = run(driver.delete, [CopyRef(key="a", locator=outcomes["a"].locator)], DeleteRequest)[
        "a"
    ]
    assert deleted.ok
    assert files_under(root) == {outcomes["b"].locator}  # the shared date directory stays
    run(driver.delete, [CopyRef(key="b", locator=outcomes["b"].locator)], DeleteRequest)
    assert root.is_dir()
    assert everything_under(root) == set()


def test_delete_of_absent_copy_succeeds(root: Path) -> None:
    outcome = run(
        make_driver(root).delete, [CopyRef(key="a", locator="VX-1/never.mov")], DeleteRequest
    )["a"]
    assert outcome.ok


def test_delete_refuses_hostile_locator_and_directories(tmp_path: Path, root: Path) -> None:
    (tmp_path / "precious").write_bytes(b"keep me")
    (root / "VX-1").mkdir()
    outcomes = run(
        make_driver(root).delete,
        [
            CopyRef(key="up", locator="../precious"),
            CopyRef(key="abs", locator=str(tmp_path / "precious")),
            CopyRef(key="dir", locator="VX-1"),
        ],
        DeleteRequest,
    )
    assert outcomes["up"].error.startswith("Refusing")
    assert outcomes["abs"].error.startswith("Refusing")
    assert "is a directory" in outcomes["dir"].error
    assert (tmp_path / "precious").read_bytes() == b"keep me"
    assert (root / "VX-1").is_dir()


# --- verify ------------------------------------------------------------------------------------


def test_verify_reports_good_corrupted_and_missing_copies(tmp_path: Path, root: Path) -> None:
    driver = make_driver(root)
    good = source(tmp_path / "online", "good.mov", b"good", key="good")
    rotten = source(tmp_path / "online", "rot.mov", b"rot!", key="rot")
    outcomes = archive(driver, [good, rotten])
    (root / outcomes["rot"].locator).write_bytes(b"r0t!")
    progressed: list[int] = []
    verified = run(
        driver.verify,
        [
            CopyRef(key="good", locator=outcomes["good"].locator, sha1=good.sha1),
            CopyRef(key="rot", locator=outcomes["rot"].locator, sha1=rotten.sha1),
            CopyRef(key="gone", locator="gone.mov", sha1=good.sha1),
        ],
        VerifyRequest,
        progress=progressed.append,
    )
    assert verified["good"].ok
    assert verified["good"].sha256 == hashlib.sha256(b"good").hexdigest()
    assert not verified["rot"].ok
    assert sha1_of(b"r0t!") in verified["rot"].error and rotten.sha1 in verified["rot"].error
    assert verified["gone"].error == f"archived copy gone.mov does not exist in {root}"
    assert sum(progressed) == 8


# --- readiness ---------------------------------------------------------------------------------


def test_ready_root_reports_writable_and_free_space(root: Path) -> None:
    readiness = make_driver(root).check_ready()
    assert readiness.ok
    assert readiness.reason.startswith(f"root {root} writable, ")
    assert readiness.reason.endswith(" free")
    assert files_under(root) == set()  # the probe file is gone


def test_missing_root_is_not_ready(root: Path) -> None:
    driver = make_driver(root)
    root.rmdir()
    readiness = driver.check_ready()
    assert not readiness.ok
    assert readiness.reason == f"archive root {root} does not exist (is the share mounted?)"


def test_root_that_became_a_file_is_not_ready(root: Path) -> None:
    driver = make_driver(root)
    root.rmdir()
    root.write_text("oops")
    readiness = driver.check_ready()
    assert not readiness.ok
    assert readiness.reason == f"archive root {root} is not a directory"


def test_too_little_free_space_is_not_ready_with_both_numbers(root: Path) -> None:
    readiness = make_driver(root, min_free_bytes=2**60).check_ready()
    assert not readiness.ok
    assert readiness.reason.startswith(f"archive root {root} has ")
    assert readiness.reason.endswith(" free, below the 1024 PiB floor (min_free_bytes)")


def test_unwritable_root_is_not_ready() -> None:
    """Run as an unprivileged user (tests often run as root, which may write anywhere)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "readonly"
        root.mkdir(mode=0o755)
        os.chmod(tmp, 0o755)
        driver = make_driver(root)

        def check_as_nobody() -> tuple[bool, str]:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            else:
                os.chmod(root, 0o555)
            readiness = driver.check_ready()
            return readiness.ok, readiness.reason

        ok, reason = in_child(check_as_nobody)
    assert not ok
    assert reason == f"archive root {root} is not writable: Permission denied"


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KiB"), (120 * 1024**3, "120 GiB")],
)
def test_human_bytes_reads_like_an_admin_expects(count: int, shown: str) -> None:
    assert human_bytes(count) == shown


@pytest.mark.parametrize("resumed", [True, False])
def test_resumed_item_clears_a_dead_attempt_left_by_another_host(tmp_path, resumed):
    root = tmp_path / "root"
    root.mkdir()
    abandoned = ("other-host:4242:0a1b2c-4026531836:77",) if resumed else ()
    item = source(tmp_path / "src", "take.mov", b"take two", key="0", abandoned_by=abandoned)
    leftover = root / f".{item.name}.other-host.4242.1.partial"
    leftover.write_bytes(b"half a t")
    outcomes = archive(make_driver(root), [item])
    assert outcomes["0"].ok
    # Without the journal's word, a fresh temp file from another host may be a live copy.
    assert leftover.exists() is not resumed
    assert (root / item.name).read_bytes() == b"take two"


# --- big batches: staging in worker processes --------------------------------------------------


@pytest.fixture
def small_pool_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make a few dozen files count as a big batch, split into several worker tasks."""
    from archive_core.transfer.stager import _processes, _stager

    monkeypatch.setattr(_stager, "PROCESS_MIN_FILES", 20)
    monkeypatch.setattr(_processes, "TASK_FILES", 7)


def pooled_driver(root: Path, **settings: Any) -> FilesysDriver:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: the driver never stages in worker processes")
    return make_driver(root, **settings)


def child_processes() -> list[int]:
    """The pids of this process's children that are still running."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_worker_processes_archive_a_big_batch_like_the_driver_itself(
    tmp_path: Path, small_pool_batches: None
) -> None:
    datas = [os.urandom(n * 97) for n in range(40)]
    items = [
        source(tmp_path / "online", f"clip{i}.wav", data, key=str(i), item_id=f"VX-{i % 3}")
        for i, data in enumerate(datas)
    ]
    results = {}
    for mode in ("pooled", "in-process"):
        root = tmp_path / mode
        root.mkdir()
        driver = pooled_driver(
            root, layout="item", staging="inline" if mode == "in-process" else "auto"
        )
        progressed: list[int] = []
        outcomes = archive(driver, items, progress=progressed.append)
        driver.close()
        assert sum(progressed) == sum(len(d) for d in datas)
        assert partials(root) == []
        results[mode] = (
            {k: attrs.asdict(o) for k, o in outcomes.items()},
            {name: (root / name).read_bytes() for name in files_under(root)},
        )
    assert results["pooled"] == results["in-process"]
    for item, data in zip(items, datas, strict=True):
        outcome = results["pooled"][0][item.key]
        assert outcome["ok"] and outcome["sha256"] == hashlib.sha256(data).hexdigest()
        assert results["pooled"][1][outcome["locator"]] == data


def test_files_failing_mid_task_in_a_worker_fail_alone(
    tmp_path: Path, root: Path, small_pool_batches: None
) -> None:
    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(300), key=str(i)) for i in range(30)
    ]
    os.unlink(items[3].sources[0])  # unreadable, in the middle of the first task
    items[9] = attrs.evolve(items[9], sha1="0" * 40)  # wrong bytes, in the second task
    items[10] = attrs.evolve(items[10], name="../escape.bin")  # refused before any task
    driver = pooled_driver(root)
    outcomes = archive(driver, items)
    driver.close()
    failed = {k for k, o in outcomes.items() if not o.ok}
    assert failed == {"3", "9", "10"}
    assert "could not be read" in outcomes["3"].error and outcomes["3"].retryable
    assert "0" * 40 in outcomes["9"].error
    assert "'../escape.bin'" in outcomes["10"].error
    assert len(files_under(root)) == 27 and partials(root) == []
    assert not (tmp_path / "escape.bin").exists()


def test_closing_a_pooled_batch_early_stops_its_workers_and_leaves_only_whole_copies(
    tmp_path: Path, root: Path, small_pool_batches: None
) -> None:
    datas = {str(i): os.urandom(5000) for i in range(60)}
    items = [source(tmp_path / "online", f"f{k}.bin", data, key=k) for k, data in datas.items()]
    others = set(child_processes())  # a test server, say
    driver = pooled_driver(root)
    stream = driver.archive(ArchiveRequest(policy="p", target="vault", job_id="j", items=items))
    first = next(stream)  # whichever worker answered first; both have a task now
    stream.close()
    assert first.ok and first.key in datas
    assert set(child_processes()) == others  # the busy workers were stopped
    assert partials(root) == []
    by_name = {item.name: datas[item.key] for item in items}
    for name in files_under(root):  # what a worker had published is a complete, checked copy
        assert (root / name).read_bytes() == by_name[name]
    driver.close()


def test_a_worker_process_dying_fails_its_files_and_the_next_batch_works(
    tmp_path: Path, root: Path, small_pool_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from archive_core.transfer.stager import _processes

    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(100), key=str(i)) for i in range(21)
    ]
    driver = pooled_driver(root)
    real_take = _processes.ProcessPool.take

    def take_a_dying_one(self: Any) -> Any:
        monkeypatch.setattr(_processes.ProcessPool, "take", real_take)
        worker = real_take(self)
        os.kill(worker.pid, signal.SIGKILL)  # before it answers anything, as the OOM killer
        # Until it is dead; WNOWAIT leaves it unreaped, for the stager to find and reap.
        os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)
        return worker

    monkeypatch.setattr(_processes.ProcessPool, "take", take_a_dying_one)
    outcomes = archive(driver, items)
    lost = [o for o in outcomes.values() if not o.ok]
    # Exactly the tasks given to the dead worker: one or both of those it queues.
    assert len(lost) in [7 * n for n in range(1, _processes.TASKS_AHEAD + 1)]
    assert all("stopped unexpectedly" in o.error and o.retryable for o in lost)
    assert "killed by signal 9" in lost[0].error
    again = archive(driver, items)
    driver.close()
    assert all(o.ok for o in again.values())
    assert len(files_under(root)) == 21 and partials(root) == []


def test_when_no_worker_can_start_every_file_fails_with_the_reason(
    tmp_path: Path, root: Path, small_pool_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_core.transfer.stager import _processes

    def cannot_start(self: Any) -> Any:
        raise _processes.WorkerLost("could not start /opt/python/bin/python: No such file")

    monkeypatch.setattr(_processes.ProcessPool, "take", cannot_start)
    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(100), key=str(i)) for i in range(30)
    ]
    outcomes = archive(pooled_driver(root), items)
    assert not any(o.ok for o in outcomes.values())
    assert all("could not start /opt/python/bin/python" in o.error for o in outcomes.values())
    assert all(o.retryable for o in outcomes.values())
    assert files_under(root) == set()


def test_a_script_without_a_main_guard_archives_a_big_batch_once(tmp_path: Path) -> None:
    """Workers never re-import the caller's __main__ (multiprocessing's spawn would)."""
    import subprocess
    import sys

    online = tmp_path / "online"
    online.mkdir()
    for i in range(30):
        (online / f"f{i}.bin").write_bytes(os.urandom(64))
    root = tmp_path / "archive"
    root.mkdir()
    runs = tmp_path / "runs.log"
    script = tmp_path / "adhoc.py"
    script.write_text(
        f"""
import hashlib, os
from pathlib import Path
from archive_core.transfer.stager import _processes, _stager
from archive_core_filesys.driver import FilesysConfig, FilesysDriver
from archive_core.driver import DriverContext
from archive_core.model import ArchiveItem, ArchiveRequest

with open({str(runs)!r}, "a") as log:
    log.write("ran\\n")
_stager.PROCESS_MIN_FILES = 20
_processes.TASK_FILES = 7
driver = FilesysDriver(
    FilesysConfig(root=Path({str(root)!r}), min_free_bytes=0, parallel=2),
    DriverContext(target="vault", state_dir=Path({str(tmp_path)!r})),
)
items = []
for path in sorted(Path({str(online)!r}).iterdir()):
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    items.append(ArchiveItem(key=path.name, sources=[str(path)], name=path.name, sha1=sha1))
outcomes = list(driver.archive(ArchiveRequest(policy="p", target="vault", job_id="j", items=items)))
driver.close()
print(sum(o.ok for o in outcomes), "archived")
"""
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "30 archived"
    assert runs.read_text() == "ran\n"
    assert len(files_under(root)) == 30


def test_closing_while_a_chunk_is_reported_removes_the_next_chunk_staged(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_core.transfer.stager import _chunks

    submitted: list[int] = []
    next_chunk_staged = threading.Event()
    real_submit = _chunks.Publisher.submit
    real_sync = transfer.sync_staged

    def submit(self: Any, chunk: list[Any]) -> Any:
        submitted.append(len(chunk))
        if len(submitted) == 2:
            next_chunk_staged.set()
        return real_submit(self, chunk)

    def sync_once_the_next_chunk_is_staged(staged: Any) -> Any:
        # The first chunk is published only once the next one is staged and handed over:
        # its outcomes come out while that next chunk waits for its publish.
        assert next_chunk_staged.wait(60), "the next chunk was never staged"
        return real_sync(staged)

    monkeypatch.setattr(_chunks, "CHUNK_FILES", 5)
    monkeypatch.setattr(_chunks.Publisher, "submit", submit)
    monkeypatch.setattr(transfer.publish, "sync_staged", sync_once_the_next_chunk_is_staged)
    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(100), key=str(i)) for i in range(12)
    ]
    stream = make_driver(root, parallel=1).archive(
        ArchiveRequest(policy="p", target="vault", job_id="j", items=items)
    )
    first = next(stream)
    assert submitted == [5, 5]  # the first outcome is out; the next chunk is staged, unpublished
    stream.close()
    assert first.ok
    assert partials(root) == []
    assert len(files_under(root)) == 5


def test_staging_processes_run_from_a_big_batch_until_close_and_never_with_parallel_1(
    tmp_path: Path, small_pool_batches: None
) -> None:
    items = [
        source(tmp_path / "online", f"f{i}.bin", os.urandom(50), key=str(i)) for i in range(25)
    ]
    others = set(child_processes())  # a test server, say
    for parallel in (1, 2):
        root = tmp_path / f"parallel-{parallel}"
        root.mkdir()
        driver = make_driver(root, parallel=parallel)
        outcomes = archive(driver, items)
        assert all(o.ok for o in outcomes.values())
        started = set(child_processes()) - others
        driver.close()
        assert set(child_processes()) == others
        workers = min(len(os.sched_getaffinity(0)), parallel)
        assert len(started) == (workers if workers > 1 else 0)


def test_staging_setting_picks_where_copies_are_made_whatever_the_batch(
    tmp_path: Path, small_pool_batches: None
) -> None:
    small = [source(tmp_path / "online", f"s{i}.bin", b"s" * i, key=str(i)) for i in range(5)]
    big = [source(tmp_path / "online", f"b{i}.bin", b"b" * i, key=str(i)) for i in range(25)]
    others = set(child_processes())
    for staging, items, in_processes in (
        ("processes", small, True),  # asked for: even five files go to worker processes
        ("inline", big, False),  # asked for: even a big batch stays in this thread
        ("threads", big, False),
    ):
        root = tmp_path / staging
        root.mkdir()
        driver = pooled_driver(root, staging=staging)
        outcomes = archive(driver, items)
        assert all(o.ok for o in outcomes.values())
        assert bool(set(child_processes()) - others) is in_processes
        driver.close()
        assert len(files_under(root)) == len(items)


def test_auto_staging_copies_in_threads_where_root_is_on_network_storage(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_core_filesys import driver as driver_module

    monkeypatch.setattr(driver_module, "on_remote_storage", lambda path: path == str(root))
    together = storage_holding_opens(monkeypatch, 3)
    items = [source(tmp_path / "online", f"f{i}.bin", b"x" * i, key=str(i)) for i in range(40)]
    outcomes = archive(make_driver(root, parallel=3), items)
    assert all(o.ok for o in outcomes.values()), {o.error for o in outcomes.values()}
    # Three opens in flight at once, one in each worker thread (none in the calling thread).
    assert sorted(together) == ["filesys-vault-0", "filesys-vault-1", "filesys-vault-2"]


def test_network_and_fuse_mounts_count_as_remote_storage_local_disks_do_not(
    tmp_path: Path,
) -> None:
    from archive_core_filesys._root import on_remote_storage

    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "40 22 0:50 /share /mnt/nas\\040archive rw,relatime - nfs4 srv:/share rw\n"
        "41 22 0:51 / /mnt/sshfs rw - fuse.sshfs me@host: rw\n"
        "42 40 8:2 / /mnt/nas\\040archive/local rw - xfs /dev/sdb1 rw\n"
    )
    assert on_remote_storage("/mnt/nas archive/VX-1", mountinfo=str(table))
    assert on_remote_storage("/mnt/sshfs", mountinfo=str(table))
    assert not on_remote_storage("/mnt/nas archive/local/x", mountinfo=str(table))
    assert not on_remote_storage("/srv/archive", mountinfo=str(table))
    assert not on_remote_storage("/mnt/nasty", mountinfo=str(table))
    assert not on_remote_storage("/srv", mountinfo=str(tmp_path / "no-such-table"))


def test_a_big_restore_runs_in_worker_processes_and_brings_every_file_back(
    tmp_path: Path, root: Path, small_pool_batches: None
) -> None:
    datas = {str(i): os.urandom(200 + i) for i in range(30)}
    items = [source(tmp_path / "online", f"f{k}.bin", d, key=k) for k, d in datas.items()]
    driver = pooled_driver(root)
    locators = {k: o.locator for k, o in archive(driver, items).items()}
    back = tmp_path / "back"
    others = set(child_processes())
    driver.close()
    restores = [
        RestoreItem(key=k, locator=locators[k], destination=str(back / f"r{k}.bin"), size=len(d))
        for k, d in datas.items()
    ]
    outcomes = run(driver.restore, restores, RestoreRequest)
    assert all(o.ok for o in outcomes.values())
    assert set(child_processes()) - others  # staged by worker processes
    driver.close()
    for k, data in datas.items():
        assert (back / f"r{k}.bin").read_bytes() == data
    assert sorted(os.listdir(back)) == sorted(f"r{k}.bin" for k in datas)
