"""The loopback sshd of the sftp tests works as the driver's tests need it to (sshd.py)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.sftp.tests.conftest import TEST_PASSWORD
from drivers.sftp.tests.sshd import SshServer, fingerprint, generate_key


def sftp_batch(
    server: SshServer, commands: str, tmp_path: Path, *, known_hosts: Path | None = None
) -> subprocess.CompletedProcess[str]:
    batch = tmp_path / "batch"
    batch.write_text(commands)
    return subprocess.run(
        ["sftp", "-b", str(batch), *server.ssh_options(known_hosts=known_hosts), server.host],
        capture_output=True,
        text=True,
        timeout=60,
    )


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()[0].decode()


def banner(server: SshServer, timeout: float) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout) as connection:
        return connection.recv(64)


def test_sftp_puts_and_gets_a_file_with_strict_host_key_checking(
    sshd: SshServer, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(300_000))
    remote = sshd.data_dir / "put-get.bin"
    back = tmp_path / "back.bin"
    result = sftp_batch(sshd, f"put {source} {remote}\nget {remote} {back}\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert remote.read_bytes() == source.read_bytes()
    assert back.read_bytes() == source.read_bytes()


def test_the_host_key_fingerprint_is_the_one_in_known_hosts(
    sshd: SshServer, tmp_path: Path
) -> None:
    ed25519 = next(line for line in sshd.known_hosts_lines() if " ssh-ed25519 " in line)
    public = tmp_path / "host.pub"
    public.write_text(" ".join(ed25519.split()[1:]) + "\n")
    assert sshd.host_key_fingerprint.startswith("SHA256:")
    assert fingerprint(public) == sshd.host_key_fingerprint


def test_a_wrong_or_empty_known_hosts_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other_host").with_suffix(".pub").read_text().split()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {other[0]} {other[1]}\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    source = tmp_path / "never.bin"
    source.write_bytes(b"must not arrive")
    for known_hosts in (wrong, empty):
        remote = sshd.data_dir / f"refused-{known_hosts.name}"
        result = sftp_batch(sshd, f"put {source} {remote}\n", tmp_path, known_hosts=known_hosts)
        assert result.returncode != 0
        assert "Host key verification failed" in result.stderr
        assert not remote.exists()


def test_freeze_stops_every_server_process_and_thaw_lets_a_session_go_on(
    make_sshd: Callable[..., SshServer], tmp_path: Path
) -> None:
    # A server of its own: sessions other tests closed may still be exiting on the shared one,
    # and a process on its way out does not stop.
    sshd = make_sshd()
    source = tmp_path / "frozen.bin"
    source.write_bytes(os.urandom(100_000))
    remote = sshd.data_dir / "frozen.bin"
    # An sftp session that reads its commands from a pipe: connected before the freeze.
    session = subprocess.Popen(
        ["sftp", "-b", "-", *sshd.ssh_options(), sshd.host],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdin is not None and session.stdout is not None
        session.stdin.write("pwd\n")
        session.stdin.flush()
        assert session.stdout.readline().startswith("sftp> pwd")  # connected and answering
        sshd.freeze()
        try:
            pids = [sshd.pid, *sshd.session_pids()]
            assert len(pids) >= 3  # listener, the connection's processes, the sftp session
            assert {process_state(pid) for pid in pids if pid is not None} == {"T"}
            # The kernel still accepts the TCP connection; the frozen listener never greets it.
            with pytest.raises(TimeoutError):
                banner(sshd, timeout=0.5)
            session.stdin.write(f"put {source} {remote}\n")
            session.stdin.flush()
        finally:
            sshd.thaw()
        assert banner(sshd, timeout=10).startswith(b"SSH-2.0-")
        session.stdin.close()
        assert session.wait(60) == 0, session.stderr.read() if session.stderr else ""
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert remote.read_bytes() == source.read_bytes()


def test_restart_keeps_port_and_host_keys_and_kill_ends_the_sessions(
    make_sshd: Callable[..., SshServer], tmp_path: Path
) -> None:
    server = make_sshd(sftp_server="sftp-server")
    port, keys = server.port, server.known_hosts_lines()
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(50_000))
    assert sftp_batch(server, f"put {source} {server.data_dir}/a\n", tmp_path).returncode == 0
    server.kill()
    assert server.pid is None
    with pytest.raises(ConnectionRefusedError):
        banner(server, timeout=5)
    server.restart()
    assert (server.port, server.known_hosts_lines()) == (port, keys)
    result = sftp_batch(server, f"get {server.data_dir}/a {tmp_path}/b\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b").read_bytes() == source.read_bytes()


def test_the_password_server_takes_its_password_and_refuses_another(
    sshd_password: SshServer, tmp_path: Path
) -> None:
    def ssh_with_password(password: str) -> subprocess.CompletedProcess[str]:
        askpass = tmp_path / "askpass"
        askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
        askpass.chmod(0o700)
        return subprocess.run(
            [
                "ssh",
                *sshd_password.ssh_options(key=False, batch=False),
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "NumberOfPasswordPrompts=1",
                sshd_password.host,
                "echo authenticated",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"},
        )

    good = ssh_with_password(TEST_PASSWORD)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "authenticated"
    bad = ssh_with_password("not the password")
    assert bad.returncode == 255
    assert "Permission denied" in bad.stderr
