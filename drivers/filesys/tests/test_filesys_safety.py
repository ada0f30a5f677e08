"""The filesys driver never loses, replaces or removes what is not its own, and stops when told."""

from __future__ import annotations

import datetime as dt
import errno
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from archive_core_filesys.driver import FilesysConfig

from archive_core import transfer, workers
from archive_core.model import (
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    VerifyRequest,
)
from archive_core.policies import structure
from drivers.filesys.tests.support import (
    dead_worker,
    everything_under,
    make_driver,
    published_under,
    run,
    source,
    temp_of,
)

# --- stat --------------------------------------------------------------------------------------


def test_stat_reports_the_size_of_an_existing_copy_without_reading_it(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "VX-1").mkdir()
    (root / "VX-1" / "clip.mov").write_bytes(b"x" * 1234)
    driver = make_driver(root)

    def no_reading(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("stat opened or read a file")

    with monkeypatch.context() as patched:
        for name in ("open", "read", "readv"):
            patched.setattr(os, name, no_reading)
        outcome = run(driver.stat, [CopyRef(key="a", locator="VX-1/clip.mov")], StatRequest)["a"]
    assert outcome.ok, outcome.error
    assert (outcome.locator, outcome.size, outcome.sha1) == ("VX-1/clip.mov", 1234, None)


def test_stat_fails_a_missing_copy_naming_locator_and_root(root: Path) -> None:
    outcomes = run(
        make_driver(root).stat,
        [CopyRef(key="a", locator="VX-1/gone.mov"), CopyRef(key="b", locator="gone.mov")],
        StatRequest,
    )
    for key, locator in (("a", "VX-1/gone.mov"), ("b", "gone.mov")):
        assert not outcomes[key].ok and not outcomes[key].retryable
        assert outcomes[key].error == f"archived copy {locator} does not exist in {root}"


def test_stat_says_what_is_there_when_it_is_not_a_copy(tmp_path: Path, root: Path) -> None:
    (root / "folder").mkdir()
    (root / "real.mov").write_bytes(b"x")
    (root / "alias.mov").symlink_to(root / "real.mov")
    os.mkfifo(root / "pipe.mov")
    outcomes = run(
        make_driver(root).stat,
        [CopyRef(key=k, locator=k) for k in ("folder", "alias.mov", "pipe.mov")],
        StatRequest,
    )
    assert "folder in " in outcomes["folder"].error and "a directory" in outcomes["folder"].error
    assert "a symbolic link" in outcomes["alias.mov"].error
    assert "not a regular file" in outcomes["pipe.mov"].error
    assert not any(o.ok or o.retryable for o in outcomes.values())


def test_stat_refuses_hostile_locators_per_file(tmp_path: Path, root: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x").write_bytes(b"secret")
    (root / "escape").symlink_to(tmp_path / "outside")
    (root / "ok.mov").write_bytes(b"ok")
    hostile = ["../outside/x", "/etc/passwd", "escape/x", "a\0b"]
    outcomes = run(
        make_driver(root).stat,
        [CopyRef(key=str(n), locator=loc) for n, loc in enumerate(hostile)]
        + [CopyRef(key="ok", locator="ok.mov")],
        StatRequest,
    )
    for n, locator in enumerate(hostile):
        assert not outcomes[str(n)].ok
        assert outcomes[str(n)].error.startswith("Refusing")
        assert repr(locator)[:10] in outcomes[str(n)].error
    assert outcomes["ok"].ok and outcomes["ok"].size == 2


def test_stat_that_cannot_check_is_a_retryable_failure(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "clip.mov").write_bytes(b"x")
    real_lstat = os.lstat

    def failing_lstat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if os.fspath(path).endswith("clip.mov"):
            raise OSError(errno.EIO, "Input/output error", os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", failing_lstat)
    outcome = run(make_driver(root).stat, [CopyRef(key="a", locator="clip.mov")], StatRequest)["a"]
    assert not outcome.ok and outcome.retryable
    assert "clip.mov" in outcome.error and "Input/output error" in outcome.error


# --- a missing root ----------------------------------------------------------------------------


def test_config_validation_does_no_io_but_still_wants_an_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    for root in (tmp_path / "missing", tmp_path / "file"):
        config, problems = structure(FilesysConfig, {"root": str(root)}, path="t.settings")
        assert problems == [] and config is not None and config.root == root
    _, problems = structure(FilesysConfig, {"root": "relative/dir"}, path="t.settings")
    assert problems == ["t.settings.root: must be an absolute path"]


def test_a_missing_root_fails_each_operation_per_file_and_creates_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "mnt" / "archive"
    driver = make_driver(root, layout="date")
    items = [source(tmp_path / "online", f"f{n}.mov", b"x" * n, key=str(n)) for n in range(3)]
    archived = run(driver.archive, items, ArchiveRequest)
    mounted = "(is the share mounted?)"
    for outcome in archived.values():
        assert not outcome.ok and outcome.retryable
        assert outcome.error == f"archive root {root} does not exist {mounted}; nothing was written"
    refs = [CopyRef(key="c", locator="2024/05/06/f1.mov")]
    for operation, request in (
        (driver.stat, StatRequest),
        (driver.verify, VerifyRequest),
        (driver.delete, DeleteRequest),
    ):
        outcome = run(operation, refs, request)["c"]
        assert not outcome.ok and outcome.retryable, (request, outcome)
        assert f"archive root {root} does not exist {mounted}" in outcome.error
    destination = tmp_path / "portal" / "f1.mov"
    restore = [RestoreItem(key="c", locator="2024/05/06/f1.mov", destination=str(destination))]
    outcome = run(driver.restore, restore, RestoreRequest)["c"]
    assert not outcome.ok and outcome.retryable
    assert f"archive root {root} does not exist {mounted}" in outcome.error
    assert not (tmp_path / "mnt").exists()
    assert not (tmp_path / "portal").exists()


# --- an existing copy is never replaced --------------------------------------------------------


@pytest.mark.parametrize("size", [5000, transfer.LARGE_FILE + 3], ids=["small", "large"])
@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_an_archive_name_holding_other_bytes_is_left_in_place_and_the_file_fails(
    tmp_path: Path, root: Path, size: int, resumed: bool
) -> None:
    data = os.urandom(size)
    abandoned = (str(dead_worker()),) if resumed else ()
    item = source(tmp_path / "online", "a.mov", data, key="a", abandoned_by=abandoned)
    other = os.urandom(size)  # same size, other bytes
    (root / item.name).write_bytes(other)
    outcome = run(make_driver(root).archive, [item], ArchiveRequest)["a"]
    assert not outcome.ok and not outcome.retryable
    assert str(root / item.name) in outcome.error
    assert "a different file already exists under this name" in outcome.error
    assert "left in place" in outcome.error
    assert (root / item.name).read_bytes() == other
    assert everything_under(root) == {item.name}


def test_a_symlink_planted_under_an_archive_name_is_never_followed_or_replaced(
    tmp_path: Path, root: Path
) -> None:
    item = source(tmp_path / "online", "a.mov", b"the copy", key="a")
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    (root / item.name).symlink_to(outside)
    outcome = run(make_driver(root).archive, [item], ArchiveRequest)["a"]
    assert not outcome.ok
    assert "a symbolic link" in outcome.error and "left in place" in outcome.error
    assert (root / item.name).is_symlink() and outside.read_bytes() == b"not ours"


def test_restore_replaces_what_portal_had_at_the_destination(tmp_path: Path, root: Path) -> None:
    driver = make_driver(root)
    item = source(tmp_path / "online", "a.mov", b"archived bytes", key="a")
    locator = run(driver.archive, [item], ArchiveRequest)["a"].locator
    destination = tmp_path / "portal" / "a.mov"
    destination.parent.mkdir()
    destination.write_bytes(b"an older file of Portal's")
    outcome = run(
        driver.restore,
        [RestoreItem(key="r", locator=locator, destination=str(destination), sha1=item.sha1)],
        RestoreRequest,
    )["r"]
    assert outcome.ok, outcome.error
    assert destination.read_bytes() == b"archived bytes"
    assert os.listdir(destination.parent) == ["a.mov"]


def test_restore_of_a_corrupted_copy_says_the_destination_was_not_written(
    tmp_path: Path, root: Path
) -> None:
    (root / "a.mov").write_bytes(b"bit-rotted")
    destination = tmp_path / "portal" / "a.mov"
    outcome = run(
        make_driver(root).restore,
        [RestoreItem(key="r", locator="a.mov", destination=str(destination), sha1="0" * 40)],
        RestoreRequest,
    )["r"]
    assert not outcome.ok
    assert f"{destination} was not written" in outcome.error
    assert "not stored" not in outcome.error


# --- temporary files that are not ours ---------------------------------------------------------


def test_restore_never_sweeps_portals_folder(tmp_path: Path, root: Path) -> None:
    (root / "a.mov").write_bytes(b"archived")
    folder = tmp_path / "portal"
    folder.mkdir()
    dead = dead_worker()
    strangers = [
        temp_of("a.mov", dead),  # a dead local process's temp for this very name
        temp_of("other.mov", dead),
        temp_of("a.mov", workers.WorkerId(host="other-host", pid=4242)),
        temp_of("old.mov", workers.WorkerId(host="other-host", pid=4243)),
        ".old.mov.partial",
    ]
    for name in strangers:
        (folder / name).write_bytes(b"someone else's")
    old = time.time() - 10 * transfer.STALE_AFTER_SECONDS
    for name in strangers[3:]:
        os.utime(folder / name, (old, old))
    outcome = run(
        make_driver(root).restore,
        [RestoreItem(key="r", locator="a.mov", destination=str(folder / "a.mov"))],
        RestoreRequest,
    )["r"]
    assert outcome.ok, outcome.error
    assert sorted(os.listdir(folder)) == sorted([*strangers, "a.mov"])


def test_a_restore_resumed_after_a_dead_worker_removes_only_that_workers_temp(
    tmp_path: Path, root: Path
) -> None:
    (root / "a.mov").write_bytes(b"archived")
    folder = tmp_path / "portal"
    folder.mkdir()
    dead, other_dead = dead_worker(), dead_worker()
    mine = temp_of("a.mov", dead)
    kept = [
        temp_of("b.mov", dead),  # the same dead worker, another destination
        temp_of("a.mov", other_dead),  # another dead worker the journal did not name
        temp_of("a.mov", workers.WorkerId(host="other-host", pid=dead.pid)),
    ]
    for name in [mine, *kept]:
        (folder / name).write_bytes(b"half")
    item = RestoreItem(
        key="r", locator="a.mov", destination=str(folder / "a.mov"), abandoned_by=(str(dead),)
    )
    outcome = run(make_driver(root).restore, [item], RestoreRequest)["r"]
    assert outcome.ok, outcome.error
    assert sorted(os.listdir(folder)) == sorted([*kept, "a.mov"])


def test_a_resumed_archive_keeps_the_temp_of_a_live_worker_writing_the_same_name(
    tmp_path: Path, root: Path
) -> None:
    dead = dead_worker()
    item = source(tmp_path / "online", "a.mov", b"the copy", key="a", abandoned_by=(str(dead),))
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        live = temp_of(item.name, workers.WorkerId(host=dead.host, pid=sleeper.pid))
        elsewhere = temp_of(item.name, workers.WorkerId(host="other-host", pid=7))
        (root / live).write_bytes(b"being written")
        (root / elsewhere).write_bytes(b"being written elsewhere")
        (root / temp_of(item.name, dead)).write_bytes(b"abandoned")
        outcome = run(make_driver(root).archive, [item], ArchiveRequest)["a"]
        sleeper.kill()
    assert outcome.ok, outcome.error
    assert everything_under(root) == {item.name, live, elsewhere}


# --- delete ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["item", "date"])
def test_rerun_of_a_killed_delete_removes_the_empty_layout_directories(
    tmp_path: Path, root: Path, layout: str
) -> None:
    driver = make_driver(root, layout=layout)
    item = source(tmp_path / "online", "a.mov", b"a", key="a")
    locator = run(driver.archive, [item], ArchiveRequest)["a"].locator
    os.unlink(root / locator)  # the killed delete got this far
    if layout == "date":  # ... or one directory further
        os.rmdir((root / locator).parent)
    outcome = run(driver.delete, [CopyRef(key="a", locator=locator)], DeleteRequest)["a"]
    assert outcome.ok, outcome.error
    assert root.is_dir()
    assert everything_under(root) == set()


def test_delete_of_an_absent_copy_keeps_directories_that_hold_other_copies(
    tmp_path: Path, root: Path
) -> None:
    driver = make_driver(root, layout="date")
    a = source(tmp_path / "online", "a.mov", b"a", key="a")
    b = source(tmp_path / "online", "b.mov", b"b", key="b")
    locators = {k: o.locator for k, o in run(driver.archive, [a, b], ArchiveRequest).items()}
    os.unlink(root / locators["a"])
    outcome = run(driver.delete, [CopyRef(key="a", locator=locators["a"])], DeleteRequest)["a"]
    assert outcome.ok
    assert published_under(root) == {locators["b"]}
    assert f"{dt.datetime.now(dt.UTC):%Y}" in everything_under(root)


# --- staging workers whose job was killed --------------------------------------------------------

_KILLED_PARENT = """
import hashlib, sys
from pathlib import Path
from archive_core.transfer.stager import _processes
from archive_core_filesys.driver import FilesysConfig, FilesysDriver
from archive_core.driver import DriverContext
from archive_core.model import ArchiveItem, ArchiveRequest

_processes.TASK_FILES = @TASK_FILES@
# Each worker holds the first file of its second task, so a task is under way at the kill.
_SERVE = "from archive_core.transfer.stager._worker import serve"
_processes.BOOT = _processes.BOOT.replace(_SERVE, "\\n" + @HELD_OPEN@ + "\\n" + _SERVE)
root, online = Path(sys.argv[1]), Path(sys.argv[2])
driver = FilesysDriver(
    FilesysConfig(root=root, min_free_bytes=0, parallel=2),
    DriverContext(target="vault", state_dir=root.parent),
)
items = []
for path in sorted(online.iterdir()):
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    items.append(ArchiveItem(key=path.name, sources=[str(path)], name=path.name, sha1=sha1))
request = ArchiveRequest(policy="p", target="vault", job_id="j", items=items)
for outcome in driver.archive(request):
    pass
"""

#: Run in each staging worker before it serves. The files of its first task open at once;
#: every later open first writes the worker's pid to the FIFO $HELD_REPORT, then waits for
#: the end of the FIFO $HELD_GATE (the test closing it). The report FIFO stays open until
#: the worker's process ends: its end tells the test that every worker is gone.
_HELD_OPEN = """
import os
from archive_core import transfer

_real_open, _opened, _fifos = transfer.open_first_readable, [0], []

def _open_or_hold(sources):
    _opened[0] += 1
    if _opened[0] > @TASK_FILES@:
        if not _fifos:
            _fifos.append(os.open(os.environ["HELD_GATE"], os.O_RDONLY))
            _fifos.append(os.open(os.environ["HELD_REPORT"], os.O_WRONLY))
        os.write(_fifos[1], b"%d\\n" % os.getpid())
        os.read(_fifos[0], 1)
    return _real_open(sources)

transfer.open_first_readable = _open_or_hold
"""


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == str(pid):
                found.append(int(entry))
    return found


def fifo_ends(path: Path) -> tuple[int, int]:
    """A new FIFO at `path`, open at both ends here (a read end, then a write end), so that
    neither end is seen by another process until this one closes its side."""
    os.mkfifo(path)
    read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # does not wait for a writer
    write_end = os.open(path, os.O_WRONLY)  # does not wait: there is a reader
    os.set_blocking(read_end, True)
    return read_end, write_end


def read_lines(fd: int, *, count: int | None, seconds: float) -> list[bytes]:
    """`count` lines from the pipe `fd`, or all it gives until its end if `count` is None.

    Blocks until they have come; `seconds` only bounds a hang (the test then fails).
    """
    got = b""
    deadline = time.monotonic() + seconds
    while count is None or got.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the staging workers hung: {seconds} s and only {got!r}"
        data = os.read(fd, 4096)
        if not data:
            break
        got += data
    return got.splitlines()


def test_staging_workers_stop_at_once_when_their_job_is_killed(tmp_path: Path) -> None:
    from archive_core.transfer.stager import _stager

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: the driver never stages in worker processes")
    task_files = 100
    online, root = tmp_path / "online", tmp_path / "archive"
    online.mkdir()
    root.mkdir()
    for n in range(_stager.PROCESS_MIN_FILES + 200):
        (online / f"f{n:05d}.bin").write_bytes(os.urandom(64))
    held_open = _HELD_OPEN.replace("@TASK_FILES@", str(task_files))
    script = tmp_path / "job.py"
    script.write_text(
        _KILLED_PARENT.replace("@TASK_FILES@", str(task_files)).replace(
            "@HELD_OPEN@", repr(held_open)
        )
    )
    report, report_writer = fifo_ends(tmp_path / "report")
    gate_reader, gate = fifo_ends(tmp_path / "gate")
    os.close(gate_reader)  # the workers read it; its end comes when the test closes `gate`
    env = dict(os.environ, HELD_GATE=str(tmp_path / "gate"), HELD_REPORT=str(tmp_path / "report"))
    try:
        job = subprocess.Popen([sys.executable, str(script), str(root), str(online)], env=env)
        try:
            held = read_lines(report, count=2, seconds=120)
            # Both workers are held mid-task now, each having published its first task.
            assert sorted(int(pid) for pid in held) == sorted(children_of(job.pid))
            assert len(published_under(root)) == 2 * task_files
        finally:
            job.send_signal(signal.SIGKILL)
            job.wait()
        published_at_kill = published_under(root)
    finally:
        os.close(gate)  # the held files go on, their job gone
        os.close(report_writer)
    try:
        # Everything the workers report until the last of them has exited.
        late = read_lines(report, count=None, seconds=60)
    finally:
        os.close(report)
    # Each finished the file it held and stopped: it opened no other, and published nothing.
    assert late == [], "a staging worker took another file after its job was killed"
    assert published_under(root) == published_at_kill
    assert [p for p in everything_under(root) if p.endswith(".partial")] == []
