"""OpenSSH's own client config and agent, used by the driver against a real sshd.

`ssh_config_alias` takes host, port, user and identity files from a Host of an OpenSSH
config file; `ssh_config_file` says which file, so these tests never read or write the real
user's ~/.ssh. `use_agent` offers the keys of a real ssh-agent, and without it no agent is
offered even when one is running.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from archive_core_sftp.config import SftpConfig
from archive_core_sftp.driver import SftpDriver

from archive_core import ArchiveItem, ArchiveRequest, RestoreItem, RestoreRequest
from drivers.sftp.tests.sshd import SshServer
from drivers.sftp.tests.support import driver_with, readiness_of


def ssh_config(path: Path, host: str, **options: object) -> Path:
    """An OpenSSH client config with one `Host host` block of `options`."""
    lines = [f"Host {host}"] + [f"    {name} {value}" for name, value in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def alias_to(server: SshServer, path: Path, **more: object) -> Path:
    """A config whose Host `offsite` is `server`, its user and its client key."""
    return ssh_config(
        path,
        "offsite",
        HostName=server.host,
        Port=server.port,
        User=server.user,
        IdentityFile=server.client_key,
        IdentitiesOnly="yes",
        **more,
    )


def round_trip(driver: SftpDriver, tmp_path: Path) -> bytes:
    """Archive a file through `driver`, restore it elsewhere; the bytes restored."""
    data = os.urandom(100_000)
    source = tmp_path / "clip.mov"
    source.write_bytes(data)
    sha1 = hashlib.sha1(data).hexdigest()
    item = ArchiveItem(key="k", sources=[str(source)], name="clip.mov", sha1=sha1)
    [archived] = list(
        driver.archive(ArchiveRequest(policy="p", target="offsite", job_id="a", items=[item]))
    )
    assert archived.ok, archived.error
    back = tmp_path / "restored.mov"
    restore = RestoreItem(key="k", locator=archived.locator, destination=str(back), sha1=sha1)
    [restored] = list(
        driver.restore(RestoreRequest(policy="p", target="offsite", job_id="r", items=[restore]))
    )
    assert restored.ok, restored.error
    return back.read_bytes()


# --- ssh_config_alias and ssh_config_file --------------------------------------------------------


def test_an_alias_of_the_ssh_config_file_gives_host_port_user_and_key(
    sshd: SshServer, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    config = SftpConfig(
        ssh_config_alias="offsite",
        ssh_config_file=alias_to(sshd, tmp_path / "ssh_config"),
        known_hosts=sshd.known_hosts,
        remote_root=str(root),
        connect_timeout=5,
    )
    driver = driver_with(config, tmp_path)
    try:
        assert round_trip(driver, tmp_path) == (tmp_path / "clip.mov").read_bytes()
    finally:
        driver.close()
    assert (root / "clip.mov").read_bytes() == (tmp_path / "clip.mov").read_bytes()


def test_an_ssh_config_file_that_cannot_be_read_is_named_in_the_reason(
    sshd: SshServer, tmp_path: Path
) -> None:
    missing = tmp_path / "missing_config"
    config = SftpConfig(
        ssh_config_alias="offsite",
        ssh_config_file=missing,
        known_hosts=sshd.known_hosts,
        remote_root="/",
        connect_timeout=2,
    )
    readiness = readiness_of(config, tmp_path)
    assert not readiness.ok
    assert f"ssh_config_file {missing} cannot be read (No such file or directory)" in (
        readiness.reason
    )


def test_an_alias_the_config_file_does_not_define_says_where_it_was_looked_for(
    sshd: SshServer, tmp_path: Path
) -> None:
    # ssh takes an alias it has no Host for as a host name: .invalid never resolves.
    other = alias_to(sshd, tmp_path / "ssh_config")
    config = SftpConfig(
        ssh_config_alias="nowhere.invalid",
        ssh_config_file=other,
        known_hosts=sshd.known_hosts,
        remote_root="/",
        connect_timeout=2,
    )
    readiness = readiness_of(config, tmp_path)
    assert not readiness.ok
    assert "Cannot reach ssh alias 'nowhere.invalid': the host name does not resolve" in (
        readiness.reason
    )
    assert f"is there a Host nowhere.invalid with a HostName in {other}?" in readiness.reason


@pytest.mark.parametrize("known_hosts", ["empty file", "not set"])
def test_the_config_file_cannot_turn_off_strict_host_key_checking(
    sshd: SshServer, tmp_path: Path, known_hosts: str
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    # Everything an admin's config might say to accept any key, or to find it elsewhere.
    lenient = alias_to(
        sshd,
        tmp_path / "ssh_config",
        StrictHostKeyChecking="no",
        UserKnownHostsFile="/dev/null",
        GlobalKnownHostsFile="/dev/null",
        KnownHostsCommand="/bin/echo %H %t %K",
        VerifyHostKeyDNS="yes",
    )
    config = SftpConfig(
        ssh_config_alias="offsite",
        ssh_config_file=lenient,
        known_hosts=empty if known_hosts == "empty file" else None,
        remote_root=str(tmp_path),
        connect_timeout=5,
    )
    readiness = readiness_of(config, tmp_path)
    assert not readiness.ok
    assert "The host key of ssh alias 'offsite' is not known" in readiness.reason
    assert f'host_key_fingerprint = "{sshd.host_key_fingerprint}"' in readiness.reason


def test_a_proxyjump_of_the_config_file_reaches_the_server_through_the_jump_host(
    make_sshd: Callable[..., SshServer], tmp_path: Path
) -> None:
    # One server is both the jump host (it must allow the TCP forwarding -W asks for) and
    # the target: the target's key is checked by our ssh, end to end through the jump.
    server = make_sshd(log_level="DEBUG", extra_config={"AllowTcpForwarding": "yes"})
    root = tmp_path / "root"
    root.mkdir()
    common = {
        "HostName": server.host,
        "Port": server.port,
        "User": server.user,
        "IdentityFile": server.client_key,
        "IdentitiesOnly": "yes",
    }
    jump = {
        **common,
        "UserKnownHostsFile": server.known_hosts,
        "StrictHostKeyChecking": "yes",
        "BatchMode": "yes",
    }
    path = tmp_path / "ssh_config"
    blocks = [("jump", jump), ("offsite", {**common, "ProxyJump": "jump"})]
    path.write_text(
        "".join(
            f"Host {host}\n" + "".join(f"    {k} {v}\n" for k, v in options.items())
            for host, options in blocks
        )
    )
    config = SftpConfig(
        ssh_config_alias="offsite",
        ssh_config_file=path,
        known_hosts=server.known_hosts,
        remote_root=str(root),
        connect_timeout=5,
    )
    driver = driver_with(config, tmp_path)
    try:
        assert round_trip(driver, tmp_path) == (tmp_path / "clip.mov").read_bytes()
    finally:
        driver.close()
    # The jump host forwarded the connection to the server: it really went through the jump.
    log = server.log_file.read_text(errors="replace")
    forwarded = (
        f"server_request_direct_tcpip: originator 127.0.0.1 port 65535, target {server.host}"
    )
    assert f"{forwarded} port {server.port}" in log


def test_ssh_config_file_without_an_alias_is_refused_naming_both_settings() -> None:
    with pytest.raises(ValueError, match="ssh_config_file is set, but ssh_config_alias is not"):
        SftpConfig(host="example.net", ssh_config_file="/etc/ssh/offsite", remote_root="/srv")


@pytest.mark.parametrize("name", ["-oProxyCommand=true", "two words"])
def test_a_host_or_alias_that_ssh_would_read_as_an_option_is_refused(name: str) -> None:
    for setting in ("host", "ssh_config_alias"):
        with pytest.raises(ValueError, match="no spaces, no leading '-'"):
            SftpConfig(**{setting: name, "remote_root": "/srv"})  # type: ignore[arg-type]


# --- use_agent -----------------------------------------------------------------------------------


@contextlib.contextmanager
def running_agent(tmp_path: Path, key: Path) -> Iterator[Path]:
    """A real ssh-agent on a socket in tmp_path holding `key`; its socket path."""
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"]},
    )
    try:
        assert agent.stdout is not None
        # ssh-agent prints "SSH_AUTH_SOCK=...; export ..." once it listens on the socket.
        first = agent.stdout.readline().decode()
        assert f"SSH_AUTH_SOCK={socket_path}" in first, first
        subprocess.run(
            ["ssh-add", str(key)],
            env={"PATH": os.environ["PATH"], "SSH_AUTH_SOCK": str(socket_path)},
            check=True,
            capture_output=True,
            timeout=10,
        )
        yield socket_path
    finally:
        agent.kill()
        agent.wait()


def test_use_agent_logs_in_with_the_agents_key(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SftpConfig(
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        use_agent=True,
        known_hosts=sshd.known_hosts,
        remote_root=str(tmp_path),
        min_free_bytes=0,
        connect_timeout=5,
    )
    with running_agent(tmp_path, sshd.client_key) as socket_path:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        readiness = readiness_of(config, tmp_path)
    assert readiness.ok, readiness.reason


def test_without_use_agent_a_running_agent_is_not_offered(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SftpConfig(
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        known_hosts=sshd.known_hosts,
        remote_root=str(tmp_path),
        connect_timeout=5,
    )
    with running_agent(tmp_path, sshd.client_key) as socket_path:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        readiness = readiness_of(config, tmp_path)
    assert not readiness.ok
    assert f"refused the login of user {sshd.user}" in readiness.reason
    assert "the server allows publickey" in readiness.reason


def test_use_agent_without_an_agent_says_ssh_auth_sock_is_not_set(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    config = SftpConfig(
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        use_agent=True,
        known_hosts=sshd.known_hosts,
        remote_root=str(tmp_path),
        connect_timeout=5,
    )
    readiness = readiness_of(config, tmp_path)
    assert not readiness.ok
    assert "use_agent is on, but SSH_AUTH_SOCK is not set" in readiness.reason
