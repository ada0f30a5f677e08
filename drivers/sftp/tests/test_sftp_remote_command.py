"""No command runs on the server unless remote_checksum_command is configured.

The server's log says what each session asked for: sshd logs "Starting session: subsystem
'sftp' ..." for SFTP and "Starting session: command ..." for an exec request (LogLevel
VERBOSE, the test server's default). A server of the test's own, so every line is ours.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from archive_core_sftp.config import SftpConfig
from archive_core_sftp.driver import SftpDriver

from archive_core import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    DriverContext,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    VerifyRequest,
)
from drivers.sftp.tests.sshd import SshServer

_SESSION = re.compile(r"Starting session: (.*?) for ")


def every_operation(config: SftpConfig, tmp_path: Path) -> None:
    """Readiness, archive, stat, verify, restore and delete of one file, all succeeding."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    driver = SftpDriver(config, DriverContext(target="offsite", state_dir=state))
    data = os.urandom(50_000)
    source = tmp_path / "clip.mov"
    source.write_bytes(data)
    sha1 = hashlib.sha1(data).hexdigest()
    common = {"policy": "p", "target": "offsite", "job_id": "j"}
    try:
        assert driver.check_ready().ok
        item = ArchiveItem(key="k", sources=[str(source)], name="clip.mov", sha1=sha1)
        [archived] = driver.archive(ArchiveRequest(**common, items=[item]))
        assert archived.ok, archived.error
        copy = CopyRef(key="k", locator=archived.locator, sha1=sha1)
        outcomes = [
            *driver.stat(StatRequest(**common, items=[copy])),
            *driver.verify(VerifyRequest(**common, items=[copy])),
            *driver.restore(
                RestoreRequest(
                    **common,
                    items=[
                        RestoreItem(
                            key="k",
                            locator=archived.locator,
                            destination=str(tmp_path / "back.mov"),
                            sha1=sha1,
                        )
                    ],
                )
            ),
            *driver.delete(DeleteRequest(**common, items=[copy])),
        ]
        assert all(outcome.ok for outcome in outcomes), [o.error for o in outcomes]
    finally:
        driver.close()


def sessions(server: SshServer) -> list[str]:
    """What each session on `server` asked for, from its log."""
    return _SESSION.findall(server.log_file.read_text(errors="replace"))


def test_without_remote_checksum_command_only_the_sftp_subsystem_is_asked_for(
    make_sshd: Callable[..., SshServer], tmp_path: Path
) -> None:
    server = make_sshd()
    root = tmp_path / "root"
    root.mkdir()
    config = SftpConfig(
        host=server.host,
        port=server.port,
        user=server.user,
        key_file=server.client_key,
        known_hosts=server.known_hosts,
        remote_root=str(root),
        min_free_bytes=0,
        read_back=True,
    )
    every_operation(config, tmp_path)
    asked = sessions(server)
    assert asked, server.log_tail()
    assert set(asked) == {"subsystem 'sftp'"}, asked


def test_an_alias_whose_config_file_has_a_remote_command_still_runs_only_sftp(
    make_sshd: Callable[..., SshServer], tmp_path: Path
) -> None:
    server = make_sshd()
    root = tmp_path / "root"
    root.mkdir()
    marker = tmp_path / "remote-command-ran"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"Host offsite\n    HostName {server.host}\n    Port {server.port}\n"
        f"    User {server.user}\n    IdentityFile {server.client_key}\n"
        f"    RemoteCommand touch {marker}\n    SessionType default\n"
    )
    config = SftpConfig(
        ssh_config_alias="offsite",
        ssh_config_file=ssh_config,
        known_hosts=server.known_hosts,
        remote_root=str(root),
        min_free_bytes=0,
    )
    every_operation(config, tmp_path)
    assert set(sessions(server)) == {"subsystem 'sftp'"}, sessions(server)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["sha1sum", "sha256sum"])
def test_a_configured_remote_checksum_command_is_the_one_command_run(
    make_sshd: Callable[..., SshServer], tmp_path: Path, command: str
) -> None:
    # The other side of the two tests above: the log does show a command when one runs.
    server = make_sshd()
    root = tmp_path / "root"
    root.mkdir()
    config = SftpConfig(
        host=server.host,
        port=server.port,
        user=server.user,
        key_file=server.client_key,
        known_hosts=server.known_hosts,
        remote_root=str(root),
        min_free_bytes=0,
        remote_checksum_command=command,
    )
    every_operation(config, tmp_path)
    asked = sessions(server)
    assert asked.count("command") == 1, asked  # the one file archived, nothing else
    assert set(asked) == {"subsystem 'sftp'", "command"}, asked
