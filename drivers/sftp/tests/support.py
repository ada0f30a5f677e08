"""What the sftp tests share: a target's settings for a test server."""

from __future__ import annotations

from archive_core_sftp.config import SftpConfig

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
