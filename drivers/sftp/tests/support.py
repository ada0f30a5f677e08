"""What the sftp tests share: a target's settings for a test server, a driver for them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import BinaryIO

import attrs
from archive_core_sftp import _files, _wire
from archive_core_sftp._durable import DirectorySync
from archive_core_sftp.config import SftpConfig
from archive_core_sftp.driver import SftpDriver

from archive_core import DriverContext, Readiness, TransferFailed
from drivers.sftp.tests.sshd import SshServer


def config_for(server: SshServer, **settings: object) -> SftpConfig:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "remote_root": "/",
        "key_file": server.client_key,
        "known_hosts": server.known_hosts,
        "connect_timeout": 2.0,
    }
    values.update(settings)
    return SftpConfig(**values)  # type: ignore[arg-type]


def driver_with(config: SftpConfig, tmp_path: Path) -> SftpDriver:
    """A driver of target "offsite" with these settings, its state under tmp_path."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return SftpDriver(config, DriverContext(target="offsite", state_dir=state))


def readiness_of(config: SftpConfig, tmp_path: Path) -> Readiness:
    """What a fresh driver with these settings says of the target; the driver closed."""
    driver = driver_with(config, tmp_path)
    try:
        return driver.check_ready()
    finally:
        driver.close()


@attrs.frozen(kw_only=True)
class Uploaded:
    path: str
    size: int
    reused: bool  # the name already held these bytes


def upload(
    connection: _wire.Connection,
    source: BinaryIO,
    *,
    root: str,
    locator: str,
    mtime: int | None = None,
    durable: DirectorySync | None = None,
) -> Uploaded:
    """One file staged and published, as the driver does a chunk of them; raises
    TransferFailed (or SFTPError) when it is not there."""

    def forget(temp: str) -> None:
        with contextlib.suppress(_wire.SFTPError):
            connection.remove(temp)

    staged = _files.stage(
        connection, source, root=root, locator=locator, mtime=mtime, forget=forget
    )
    result = _files.publish(connection, [staged], root=root, durable=durable)[0]
    if isinstance(result, TransferFailed):
        raise result
    return Uploaded(path=staged.path, size=staged.digests.size, reused=result is not None)
