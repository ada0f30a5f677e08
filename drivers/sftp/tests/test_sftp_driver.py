"""The sftp driver's own behaviour beyond the kit: readiness reasons, links and settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from archive_core_sftp.driver import SftpDriver

from archive_core import ArchiveItem, ArchiveRequest, FileOutcome
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import config_for, driver_with, readiness_of


def driver_for(server: SshServer, tmp_path: Path, **settings: object) -> SftpDriver:
    return driver_with(config_for(server, **settings), tmp_path)


def test_ready_says_where_and_how_much_is_free(sshd: SshServer, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    readiness = readiness_of(config_for(sshd, remote_root=str(root), min_free_bytes=0), tmp_path)
    assert readiness.ok, readiness.reason
    assert f"{root} on {sshd.user}@{sshd.host}:{sshd.port} is writable" in readiness.reason
    assert os.listdir(root) == []  # the probe is gone


def test_an_unknown_host_key_makes_the_target_not_ready_with_the_pin_to_set(
    sshd: SshServer, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    readiness = readiness_of(
        config_for(sshd, remote_root=str(tmp_path), known_hosts=empty), tmp_path
    )
    assert not readiness.ok
    assert f'host_key_fingerprint = "{sshd.host_key_fingerprint}"' in readiness.reason


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda root: None, "does not exist on the server"),
        (lambda root: root.write_text("a file"), "is not a directory on the server"),
    ],
)
def test_a_missing_or_wrong_remote_root_is_not_ready(
    sshd: SshServer, tmp_path: Path, make, reason: str
) -> None:
    root = tmp_path / "root"
    make(root)
    readiness = readiness_of(config_for(sshd, remote_root=str(root)), tmp_path)
    assert not readiness.ok
    assert reason in readiness.reason


def test_too_little_free_space_is_not_ready(sshd: SshServer, tmp_path: Path) -> None:
    readiness = readiness_of(
        config_for(sshd, remote_root=str(tmp_path), min_free_bytes=10**18), tmp_path
    )
    assert not readiness.ok
    assert "bytes are free under remote_root" in readiness.reason


def test_a_dropped_connection_is_made_again_for_the_next_call(make_sshd, tmp_path: Path) -> None:
    server = make_sshd()
    driver = driver_for(server, tmp_path, remote_root=str(tmp_path), min_free_bytes=0)
    try:
        assert driver.check_ready().ok
        server.kill_sessions()
        assert driver.check_ready().ok  # a fresh session, not the dead one
    finally:
        driver.close()


def test_the_bandwidth_limit_spaces_chunks_by_their_size_at_the_rate() -> None:
    from archive_core_sftp.driver import _Throttle

    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = _Throttle(1_000_000, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        throttle(250_000)  # a quarter of a second's worth each
    assert slept == [0.25, 0.25]  # the first goes at once; the next two wait their turn
    now[0] += 10  # idle a while: no credit is saved up beyond the rate
    throttle(500_000)
    assert slept == [0.25, 0.25]
    throttle(500_000)
    assert slept[-1] == 0.5


def _archive_one(driver: SftpDriver, tmp_path: Path) -> FileOutcome:
    import hashlib

    data = os.urandom(70_000)
    source = tmp_path / "clip.mov"
    source.write_bytes(data)
    item = ArchiveItem(
        key="k", sources=[str(source)], name="clip.mov", sha1=hashlib.sha1(data).hexdigest()
    )
    request = ArchiveRequest(policy="p", target="offsite", job_id="j", items=[item])
    [outcome] = list(driver.archive(request))
    return outcome


@pytest.mark.parametrize(
    "settings",
    [
        {"remote_checksum_command": "sha1sum"},
        {"remote_checksum_command": "sha256sum"},
        {"read_back": True},
    ],
)
def test_a_copy_confirmed_by_the_server_or_read_back_is_archived(
    sshd: SshServer, tmp_path: Path, settings: dict[str, object]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    driver = driver_for(sshd, tmp_path, remote_root=str(root), **settings)
    try:
        outcome = _archive_one(driver, tmp_path)
    finally:
        driver.close()
    assert outcome.ok, outcome.error
    assert (root / "clip.mov").read_bytes() == (tmp_path / "clip.mov").read_bytes()


def test_a_checksum_command_that_gives_no_digest_fails_the_file(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    driver = driver_for(sshd, tmp_path, remote_root=str(root), remote_checksum_command="true")
    try:
        outcome = _archive_one(driver, tmp_path)
    finally:
        driver.close()
    assert not outcome.ok
    assert "remote_checksum_command 'true' did not give a sha1 or sha256" in (outcome.error or "")


def test_a_checksum_the_server_gives_for_other_bytes_fails_the_file(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wrong = "echo " + "0" * 40  # the path it is given follows: "000...0 <path>"
    driver = driver_for(sshd, tmp_path, remote_root=str(root), remote_checksum_command=wrong)
    try:
        outcome = _archive_one(driver, tmp_path)
    finally:
        driver.close()
    assert not outcome.ok
    assert f"The server hashes {root / 'clip.mov'} as {'0' * 40}" in (outcome.error or "")
    assert outcome.retryable


def test_upload_threads_share_connections_round_robin_and_one_broken_reconnects_alone(
    sshd: SshServer, tmp_path: Path
) -> None:
    import threading

    from archive_core_sftp._pool import SessionPool

    pool = SessionPool(config_for(sshd), target="offsite", work_dir=tmp_path / "ssh", size=2)
    got: dict[int, object] = {}
    shared: dict[int, object] = {}
    again: dict[int, object] = {}
    asked = threading.Barrier(4)
    dropped = threading.Event()

    def transfer(n: int) -> None:
        got[n] = pool.connection(spread=True)
        shared[n] = pool.connection()
        asked.wait()
        if n == 0:
            pool.drop(spread=True)  # as after a ConnectionLost on thread 0's upload connection
            dropped.set()
        dropped.wait()
        again[n] = pool.connection(spread=True)

    threads = [threading.Thread(target=transfer, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len({id(c) for c in got.values()}) == 2  # four upload threads, two connections
        assert len({id(c) for c in shared.values()}) == 1  # reads and the rest share one
        mates = [n for n in got if got[n] is got[0]]
        others = [n for n in got if got[n] is not got[0]]
        assert len(mates) == len(others) == 2
        assert all(again[n] is again[0] for n in mates) and again[0] is not got[0]
        assert all(again[n] is got[n] for n in others)  # untouched by the other's reconnect
        assert again[0].stat("/").permissions  # the new one works
    finally:
        pool.close()


def test_the_bandwidth_limit_holds_for_restores_and_verifies_as_for_archives(
    sshd: SshServer, tmp_path: Path
) -> None:
    from archive_core import CopyRef, RestoreItem, RestoreRequest, VerifyRequest

    root = tmp_path / "root"
    root.mkdir()
    driver = driver_for(sshd, tmp_path, remote_root=str(root), bandwidth_limit=1000.0)
    booked: list[int] = []
    driver._throttle = booked.append  # what each transfer books against the limit
    try:
        archived = _archive_one(driver, tmp_path)
        assert archived.ok, archived.error
        sent, booked[:] = sum(booked), []
        restore = RestoreItem(
            key="k",
            locator="clip.mov",
            destination=str(tmp_path / "back.mov"),
            sha1=archived.sha1,
        )
        request = RestoreRequest(policy="p", target="offsite", job_id="j", items=[restore])
        [restored] = list(driver.restore(request))
        received, booked[:] = sum(booked), []
        verify = VerifyRequest(
            policy="p", target="offsite", job_id="j", items=[CopyRef(key="k", locator="clip.mov")]
        )
        [verified] = list(driver.verify(verify))
    finally:
        driver.close()
    assert restored.ok and verified.ok, (restored.error, verified.error)
    assert sent == received == sum(booked) == 70_000
