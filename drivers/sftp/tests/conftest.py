"""Fixtures of the sftp driver's tests: a real OpenSSH server on loopback (sshd.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from drivers.sftp.tests.sshd import PasswordUnavailable, SshServer, available

#: The password of the `sshd_password` server's user (only inside that server; see sshd.py).
TEST_PASSWORD = "archive-core-test-password"


def _skip_without_sshd() -> None:
    reason = available()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One sshd (internal-sftp, key authentication) for the whole run; tests must leave it
    running and thawed. A test that stops, kills or restarts a server takes `make_sshd`."""
    _skip_without_sshd()
    with SshServer() as server:
        yield server


@pytest.fixture(scope="session")
def sshd_password() -> Iterator[SshServer]:
    """An sshd that also accepts TEST_PASSWORD for the current user (root and a mount namespace
    needed: skipped with the reason otherwise)."""
    _skip_without_sshd()
    try:
        server = SshServer(password=TEST_PASSWORD)
        server.start()
    except PasswordUnavailable as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def make_sshd() -> Iterator[Callable[..., SshServer]]:
    """A factory of servers of this test's own (`make_sshd(sftp_server="sftp-server")`), all
    closed when the test ends."""
    _skip_without_sshd()
    servers: list[SshServer] = []

    def make(**options: object) -> SshServer:
        server = SshServer(**options)  # type: ignore[arg-type]
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()
