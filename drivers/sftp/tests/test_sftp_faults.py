"""The sftp driver when things go wrong on a real sshd: a server killed or frozen mid-transfer,
the remote disk full, writing refused, and connections that fail for a while.

Every server here is the test's own (`make_sshd`): the session-wide one is never stopped or
frozen. Faults are timed by the transfer itself (a progress callback that waits until the
temporary file on the server has grown), never by a fixed sleep; the driver's sleep between
connection attempts is injected and records the delays instead of sleeping.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from archive_core_sftp.driver import SftpDriver

from archive_core import (
    ArchiveItem,
    ArchiveRequest,
    DriverContext,
    FileOutcome,
    RestoreItem,
    RestoreRequest,
)
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import config_for

MiB = 1024 * 1024


class Sleeps:
    """The driver's sleep: records each delay and runs `then` (once) instead of sleeping."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self._then = then

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        then, self._then = self._then, None
        if then is not None:
            then()


def make_driver(
    server: SshServer, tmp_path: Path, root: Path, *, sleep: Callable[[float], None], **settings
) -> SftpDriver:
    values: dict[str, object] = {
        "remote_root": str(root),
        "min_free_bytes": 0,
        "files_in_flight": 1,  # inline: the progress callback runs in this thread
    }
    values.update(settings)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    context = DriverContext(target="offsite", state_dir=state)
    return SftpDriver(config_for(server, **values), context, sleep=sleep)


def source(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    path = tmp_path / "sources" / name
    path.parent.mkdir(exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha1(data).hexdigest()


def archive(
    driver: SftpDriver,
    files: list[tuple[Path, str]],
    progress: Callable[[int], None] | None = None,
) -> list[FileOutcome]:
    items = [
        ArchiveItem(key=path.name, sources=[str(path)], name=path.name, sha1=sha1, item_id="VX-1")
        for path, sha1 in files
    ]
    request = ArchiveRequest(
        policy="p", target="offsite", job_id="j", items=items, progress=progress
    )
    return list(driver.archive(request))


def partials(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".partial"))


def once_grown(directory: Path, fault: Callable[[], None], *, at: int = 2 * MiB):
    """A progress callback that, once the upload's temporary file in `directory` holds `at`
    bytes on the server, runs `fault` (kill, freeze) from inside the transfer."""
    state = {"read": 0, "done": False}

    def progress(count: int) -> None:
        sent = state["read"]  # the chunk being read now is not sent yet
        state["read"] += count
        if state["done"] or sent < at:
            return
        deadline = time.monotonic() + 10
        while True:  # the server writes what was sent: wait for it, bounded
            sizes = [(directory / name).stat().st_size for name in partials(directory)]
            if sizes and max(sizes) >= at:
                break
            assert time.monotonic() < deadline, f"the server never wrote {at} bytes: {sizes}"
        state["done"] = True
        fault()

    progress.fired = lambda: state["done"]  # type: ignore[attr-defined]
    return progress


# --- 1. the server killed mid-transfer -------------------------------------------------------


def test_a_server_killed_mid_upload_fails_the_file_retryably_and_the_rerun_removes_its_partial(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    sleeps = Sleeps()
    driver = make_driver(server, tmp_path, root, sleep=sleeps)
    big = source(tmp_path, "big.mov", 24 * MiB)
    try:
        progress = once_grown(root, server.kill)
        [outcome] = archive(driver, [big], progress)
        assert progress.fired()
        assert not outcome.ok
        assert outcome.retryable, outcome.error
        assert "connection was refused" in (outcome.error or "")
        assert not (root / "big.mov").exists()
        # Left while the server was down: nothing could remove it then.
        assert len(partials(root)) == 1
        assert sleeps.delays  # the connection was tried again, with waits between

        server.start()
        [again] = archive(driver, [big])
        assert again.ok, again.error
        assert (root / "big.mov").read_bytes() == big[0].read_bytes()
        assert partials(root) == []  # the first attempt's temporary file is gone too
    finally:
        driver.close()


def test_a_server_killed_mid_upload_and_back_during_the_wait_archives_the_file_in_the_same_call(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    sleeps = Sleeps(then=server.start)
    driver = make_driver(server, tmp_path, root, sleep=sleeps)
    big = source(tmp_path, "big.mov", 24 * MiB)
    try:
        progress = once_grown(root, server.kill)
        [outcome] = archive(driver, [big], progress)
    finally:
        driver.close()
    assert progress.fired()
    assert outcome.ok, outcome.error
    assert sleeps.delays[0] > 0
    assert (root / "big.mov").read_bytes() == big[0].read_bytes()
    assert partials(root) == []


# --- 2. a frozen server mid-transfer -----------------------------------------------------------

# keepalive off: operation_timeout alone must bound a frozen server (ssh's keepalives would
# end it after three intervals, hiding a write that blocks forever).
FROZEN = {"connect_timeout": 1.0, "operation_timeout": 1.0, "keepalive_interval": 0}


def hang_bound(driver: SftpDriver) -> float:
    """The longest the driver may take on a frozen server, from its settings: one request's
    operation_timeout, the connection attempts' budget, the login bound of the last attempt
    begun within it, and generous slack (a hang check, not a measure of speed)."""
    from archive_core_sftp import _pool

    config = driver.config
    login = config.connect_timeout * 2 + 5  # _session.connect's bound on one login
    return config.operation_timeout * (1 + _pool.RECONNECT_BUDGET) + login + 10


def timed(call: Callable[[], list[FileOutcome]], bound: float) -> tuple[list[FileOutcome], float]:
    """`call` in a thread of its own, which must end within `bound` seconds (a hang check)."""
    result: list[list[FileOutcome]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            errors.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, name="fault-test-call", daemon=True)
    worker.start()
    worker.join(bound)
    took = time.monotonic() - started
    assert not worker.is_alive(), f"the driver still hangs after {took:.1f} s (bound {bound} s)"
    if errors:
        raise errors[0]
    return result[0], took


@contextlib.contextmanager
def thawed_at_the_end(server: SshServer) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(RuntimeError):
            server.thaw()


def sftp_readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sftp-reader"]


def test_a_server_frozen_mid_upload_fails_the_file_retryably_in_bounded_time(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    driver = make_driver(server, tmp_path, root, sleep=Sleeps(), **FROZEN)
    big = source(tmp_path, "big.mov", 24 * MiB)
    readers = len(sftp_readers())
    try:
        with thawed_at_the_end(server):
            progress = once_grown(root, server.freeze)
            [outcome], _ = timed(lambda: archive(driver, [big], progress), hang_bound(driver))
            assert progress.fired()
            assert not outcome.ok
            assert outcome.retryable, outcome.error
            assert not (root / "big.mov").exists()
            assert len(sftp_readers()) <= readers  # the frozen session's reader is gone
        [again] = archive(driver, [big])
        assert again.ok, again.error
        assert (root / "big.mov").read_bytes() == big[0].read_bytes()
        assert partials(root) == []
    finally:
        driver.close()


def test_a_server_frozen_mid_restore_fails_the_file_retryably_in_bounded_time(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    driver = make_driver(server, tmp_path, root, sleep=Sleeps(), **FROZEN)
    copy = root / "big.mov"
    # The core's restore reads up to 4 x 8 MiB ahead of what it reports: the file is larger
    # than that and one window of READs, so freezing at the first report is mid-transfer.
    data = os.urandom(64 * MiB)
    copy.write_bytes(data)
    destination = tmp_path / "restored" / "big.mov"
    destination.parent.mkdir()
    state = {"read": 0, "frozen": False}

    def progress(count: int) -> None:
        state["read"] += count
        if not state["frozen"]:
            state["frozen"] = True
            server.freeze()

    def restore(progress: Callable[[int], None] | None) -> list[FileOutcome]:
        item = RestoreItem(
            key="k",
            locator="big.mov",
            destination=str(destination),
            sha1=hashlib.sha1(data).hexdigest(),
        )
        request = RestoreRequest(
            policy="p", target="offsite", job_id="j", items=[item], progress=progress
        )
        return list(driver.restore(request))

    try:
        with thawed_at_the_end(server):
            [outcome], _ = timed(lambda: restore(progress), hang_bound(driver))
            assert state["frozen"]
            assert not outcome.ok
            assert outcome.retryable, outcome.error
            assert not destination.exists()
            assert os.listdir(destination.parent) == []  # no partial restore left beside it
        [again] = restore(None)
        assert again.ok, again.error
        assert destination.read_bytes() == data
    finally:
        driver.close()


# --- 3. the remote disk full -----------------------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {mount.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True, timeout=30)


def test_a_full_remote_disk_fails_that_file_saying_so_and_the_rest_of_the_batch_archives(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    with mounted_tmpfs(tmp_path / "full", "size=2m") as root:
        driver = make_driver(server, tmp_path, root, sleep=Sleeps())
        big = source(tmp_path, "big.mov", 3 * MiB)
        small = [source(tmp_path, f"small{n}.wav", 100_000) for n in range(2)]
        try:
            outcomes = archive(driver, [big, *small])
        finally:
            driver.close()
        by_key = {o.key: o for o in outcomes}
        failed = by_key["big.mov"]
        assert not failed.ok
        assert f"The server's disk is full: {root / 'big.mov'} could not be written" in (
            failed.error or ""
        )
        assert f"bytes are free under {root}" in (failed.error or "")
        for path, _ in small:
            assert by_key[path.name].ok, by_key[path.name].error
            assert (root / path.name).read_bytes() == path.read_bytes()
        assert not (root / "big.mov").exists()
        assert partials(root) == []  # the failed file's temporary file is not left to fill it


# --- 4. writing refused ------------------------------------------------------------------------


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[None]:
    """chattr +i: even root may not create files in it (the test sshd logs in as root, for
    whom permission bits do not apply)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr (e2fsprogs) is not installed")
    made = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this file system has no immutable flag: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    with mounted_tmpfs(directory, "size=1m"):
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(directory)], capture_output=True, text=True
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs read-only: {remount.stderr.strip()}")
        yield


@pytest.mark.parametrize(
    ("refuse", "layout", "why"),
    [
        (immutable, "flat", "permission denied on"),
        (immutable, "item", "permission denied on"),  # the item's directory cannot be made
        (read_only, "flat", "is mounted read-only on the server"),
    ],
    ids=["immutable-root", "immutable-root-item-layout", "read-only-mount"],
)
def test_a_remote_root_the_server_will_not_write_fails_files_for_good_and_is_not_ready(
    make_sshd, tmp_path: Path, refuse, layout: str, why: str
) -> None:
    server = make_sshd()
    root = tmp_path / "root"
    if refuse is immutable:
        root.mkdir()
    file = source(tmp_path, "clip.mov", 100_000)
    with refuse(root):
        driver = make_driver(server, tmp_path, root, sleep=Sleeps(), layout=layout)
        try:
            [outcome] = archive(driver, [file])
            readiness = driver.check_ready()
        finally:
            driver.close()
    assert not outcome.ok
    assert not outcome.retryable, outcome.error
    error = outcome.error or ""
    expected = root / ("VX-1/clip.mov" if layout == "item" else "clip.mov")
    assert f"The server refused writing {expected}: " in error
    assert why in error
    assert not readiness.ok
    assert f"remote_root {root}" in readiness.reason
    assert os.listdir(root) == []


# --- 5. connection attempts retried with backoff -----------------------------------------------


def test_a_server_that_is_back_after_the_first_wait_gets_the_file(
    make_sshd, tmp_path: Path, caplog
) -> None:
    server = make_sshd()
    root = server.data_dir
    server.stop()
    sleeps = Sleeps(then=server.start)
    driver = make_driver(server, tmp_path, root, sleep=sleeps)
    file = source(tmp_path, "clip.mov", 100_000)
    try:
        [outcome] = archive(driver, [file])
    finally:
        driver.close()
    assert outcome.ok, outcome.error
    assert sleeps.delays == [0.5]
    assert (root / "clip.mov").read_bytes() == file[0].read_bytes()
    assert "target offsite: connection attempt 1 of 4 failed (Cannot reach" in caplog.text


def test_a_server_that_stays_down_fails_the_batch_retryably_after_growing_waits(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    server.stop()
    sleeps = Sleeps()
    driver = make_driver(server, tmp_path, root, sleep=sleeps)
    files = [source(tmp_path, f"clip{n}.mov", 1000) for n in range(3)]
    try:
        outcomes = archive(driver, files)
    finally:
        driver.close()
    assert [o.ok for o in outcomes] == [False] * 3
    assert all(o.retryable for o in outcomes)
    assert all("connection was refused" in (o.error or "") for o in outcomes)
    # One round of attempts for the whole batch, each wait longer than the one before.
    assert sleeps.delays == [0.5, 1.0, 2.0]


def test_a_host_key_refused_is_not_tried_again_and_fails_for_good(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    sleeps = Sleeps()
    driver = make_driver(server, tmp_path, server.data_dir, sleep=sleeps, known_hosts=empty)
    try:
        [outcome] = archive(driver, [source(tmp_path, "clip.mov", 1000)])
    finally:
        driver.close()
    assert not outcome.ok
    assert not outcome.retryable
    assert "The host key of" in (outcome.error or "")
    assert f'host_key_fingerprint = "{server.host_key_fingerprint}"' in (outcome.error or "")
    assert sleeps.delays == []


def test_connection_attempts_stop_once_they_would_pass_a_few_operation_timeouts(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    server.stop()
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # every look at the clock: as if each attempt took a second
        return now[0]

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        now[0] += seconds

    sleeps = Sleeps()
    state = tmp_path / "state"
    state.mkdir()
    config = config_for(server, remote_root=str(server.data_dir), operation_timeout=1.0)
    driver = SftpDriver(
        config, DriverContext(target="offsite", state_dir=state), sleep=sleep, clock=clock
    )
    try:
        [outcome] = archive(driver, [source(tmp_path, "clip.mov", 1000)])
    finally:
        driver.close()
    assert not outcome.ok
    assert outcome.retryable
    # Budget 3 operation_timeouts, 3 s: attempt 1 ends at 1 s, the 0.5 s wait fits; attempt 2
    # ends at 2.5 s, and its 1 s wait (capped at operation_timeout) would pass it.
    assert sleeps.delays == [0.5]


# --- 5. the same faults while many small files are in flight (the pipeline) -------------------


def after_bytes(count: int, fault: Callable[[], None]) -> Callable[[int], None]:
    """A progress callback that runs `fault` once `count` bytes of the batch were read."""
    state = {"read": 0, "done": False}

    def progress(read: int) -> None:
        state["read"] += read
        if not state["done"] and state["read"] >= count:
            state["done"] = True
            fault()

    progress.fired = lambda: state["done"]  # type: ignore[attr-defined]
    return progress


def test_sessions_killed_with_small_files_in_flight_cost_them_one_more_try_and_no_partial(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    driver = make_driver(server, tmp_path, root, sleep=Sleeps(), files_in_flight=8, connections=2)
    files = [source(tmp_path, f"clip{n:02}.mov", 300_000) for n in range(30)]
    try:
        progress = after_bytes(3_000_000, server.kill_sessions)  # ten files in
        outcomes = archive(driver, files, progress)
    finally:
        driver.close()
    assert progress.fired()
    assert [o.key for o in outcomes if not o.ok] == [], [o.error for o in outcomes if not o.ok]
    assert sorted(o.key for o in outcomes) == [p.name for p, _ in files]
    for path, _ in files:
        assert (root / path.name).read_bytes() == path.read_bytes()
    assert partials(root) == []  # the killed uploads' temporary files were removed


def test_a_server_frozen_with_small_files_in_flight_fails_them_retryably_in_bounded_time(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    driver = make_driver(
        server, tmp_path, root, sleep=Sleeps(), files_in_flight=8, connections=2, **FROZEN
    )
    files = [source(tmp_path, f"clip{n:02}.mov", 300_000) for n in range(30)]
    try:
        with thawed_at_the_end(server):
            progress = after_bytes(3_000_000, server.freeze)
            outcomes, _ = timed(lambda: archive(driver, files, progress), hang_bound(driver))
            assert progress.fired()
            failed = [o for o in outcomes if not o.ok]
            assert failed and all(o.retryable for o in failed), [o.error for o in failed]
            assert len(outcomes) == len(files)  # one outcome for each, archived or not
            for outcome in failed:
                assert not (root / outcome.key).exists()
        again = archive(driver, files)
        assert all(o.ok for o in again), [o.error for o in again if not o.ok]
        assert partials(root) == []
    finally:
        driver.close()


def restore_all(
    driver: SftpDriver,
    copies: dict[str, bytes],
    destination: Path,
    progress: Callable[[int], None] | None = None,
) -> list[FileOutcome]:
    items = [
        RestoreItem(
            key=name,
            locator=name,
            destination=str(destination / name),
            sha1=hashlib.sha1(data).hexdigest(),
        )
        for name, data in copies.items()
    ]
    request = RestoreRequest(
        policy="p", target="offsite", job_id="j", items=items, progress=progress
    )
    return list(driver.restore(request))


def small_copies(root: Path) -> dict[str, bytes]:
    copies = {f"clip{n:02}.mov": os.urandom(300_000) for n in range(30)}
    for name, data in copies.items():
        (root / name).write_bytes(data)
    return copies


def test_sessions_killed_with_small_restores_in_flight_cost_them_one_more_try(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    copies = small_copies(root)
    destination = tmp_path / "restored"
    destination.mkdir()
    driver = make_driver(server, tmp_path, root, sleep=Sleeps(), files_in_flight=8)
    try:
        progress = after_bytes(3_000_000, server.kill_sessions)  # ten files in
        outcomes = restore_all(driver, copies, destination, progress)
    finally:
        driver.close()
    assert progress.fired()
    assert [o.error for o in outcomes if not o.ok] == []
    assert sorted(o.key for o in outcomes) == sorted(copies)
    for name, data in copies.items():
        assert (destination / name).read_bytes() == data
    assert sorted(os.listdir(destination)) == sorted(copies)  # nothing half-written beside


def test_a_server_frozen_with_small_restores_in_flight_fails_them_retryably_in_bounded_time(
    make_sshd, tmp_path: Path
) -> None:
    server = make_sshd()
    root = server.data_dir
    copies = small_copies(root)
    destination = tmp_path / "restored"
    destination.mkdir()
    driver = make_driver(server, tmp_path, root, sleep=Sleeps(), files_in_flight=8, **FROZEN)
    try:
        with thawed_at_the_end(server):
            progress = after_bytes(3_000_000, server.freeze)
            outcomes, _ = timed(
                lambda: restore_all(driver, copies, destination, progress), hang_bound(driver)
            )
            assert progress.fired()
            failed = [o for o in outcomes if not o.ok]
            assert failed and all(o.retryable for o in failed), [o.error for o in failed]
            assert len(outcomes) == len(copies)  # one outcome for each, restored or not
            for outcome in failed:
                assert not (destination / outcome.key).exists()
        again = restore_all(driver, copies, destination)
        assert all(o.ok for o in again), [o.error for o in again if not o.ok]
        assert sorted(os.listdir(destination)) == sorted(copies)
    finally:
        driver.close()
