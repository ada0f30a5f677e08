"""Logging in to a real sshd: host keys strict, every auth method, failures an admin can act on."""

from __future__ import annotations

from pathlib import Path

import pytest
from archive_core_sftp import _session, _ssh
from archive_core_sftp.config import SftpConfig

from archive_core import Secret
from drivers.sftp.tests.sshd import CLIENT_KEY_PASSPHRASE, SshServer, generate_key
from drivers.sftp.tests.support import config_for


def connect(config: SftpConfig, tmp_path: Path) -> _session.Session:
    askpass = _ssh.askpass_for(config)
    try:
        return _session.connect(config, work_dir=tmp_path, askpass=askpass)
    finally:
        if askpass is not None:
            askpass.close()


def refused(config: SftpConfig, tmp_path: Path) -> _session.SessionFailed:
    with pytest.raises(_session.SessionFailed) as caught:
        connect(config, tmp_path).close()
    return caught.value


def test_a_key_in_authorized_keys_gives_an_sftp_session(sshd: SshServer, tmp_path: Path) -> None:
    with connect(config_for(sshd), tmp_path) as session:
        assert session.connection.realpath(".").startswith(b"/")
        assert b"posix-rename@openssh.com" in session.connection.extensions


def test_an_unknown_host_key_is_refused_with_its_fingerprint_and_the_setting_to_pin_it(
    sshd: SshServer, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    failure = refused(config_for(sshd, known_hosts=empty), tmp_path)
    assert failure.problem == "host-key"
    assert not failure.retryable
    assert "is not known" in failure.message
    assert f'host_key_fingerprint = "{sshd.host_key_fingerprint}"' in failure.message


def test_a_changed_host_key_is_refused_as_changed(sshd: SshServer, tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other")
    kind, blob = Path(f"{other}.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sshd.host}]:{sshd.port} {kind} {blob}\n")
    failure = refused(config_for(sshd, known_hosts=known), tmp_path)
    assert failure.problem == "host-key"
    assert "has CHANGED" in failure.message
    assert sshd.host_key_fingerprint in failure.message


def test_a_pinned_fingerprint_alone_is_enough_and_a_wrong_pin_is_refused(
    sshd: SshServer, tmp_path: Path
) -> None:
    right = config_for(sshd, known_hosts=None, host_key_fingerprint=sshd.host_key_fingerprint)
    with connect(right, tmp_path) as session:
        assert session.connection.version == 3
    wrong_pin = "SHA256:" + "A" * 43
    failure = refused(config_for(sshd, known_hosts=None, host_key_fingerprint=wrong_pin), tmp_path)
    assert failure.problem == "host-key"
    assert "not the pinned one" in failure.message
    assert sshd.host_key_fingerprint in failure.message


def test_a_pin_and_a_known_hosts_file_must_both_hold_the_key(
    sshd: SshServer, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = config_for(sshd, known_hosts=empty, host_key_fingerprint=sshd.host_key_fingerprint)
    assert refused(config, tmp_path).problem == "host-key"


def test_a_key_the_server_does_not_know_is_a_login_failure_naming_the_methods(
    sshd: SshServer, tmp_path: Path
) -> None:
    stranger = generate_key(tmp_path / "stranger")
    failure = refused(config_for(sshd, key_file=stranger), tmp_path)
    assert failure.problem == "login"
    assert f"refused the login of user {sshd.user}" in failure.message
    assert "publickey" in failure.message


def test_a_key_with_a_passphrase_opens_through_the_askpass_channel(
    sshd: SshServer, tmp_path: Path
) -> None:
    config = config_for(
        sshd,
        key_file=sshd.client_key_encrypted,
        key_passphrase=Secret(CLIENT_KEY_PASSPHRASE, reference="env:PASSPHRASE"),
    )
    with connect(config, tmp_path) as session:
        assert session.connection.version == 3


def test_a_wrong_passphrase_names_the_setting_not_the_secret(
    sshd: SshServer, tmp_path: Path
) -> None:
    config = config_for(
        sshd,
        key_file=sshd.client_key_encrypted,
        key_passphrase=Secret("not it", reference="env:PASSPHRASE"),
    )
    failure = refused(config, tmp_path)
    assert failure.problem == "login"
    assert "not it" not in failure.message
    assert "key_passphrase (env:PASSPHRASE) does not open key_file" in failure.message


def test_a_wrong_password_is_a_login_failure(sshd_password: SshServer, tmp_path: Path) -> None:
    config = config_for(sshd_password, key_file=None, password=Secret("wrong password"))
    failure = refused(config, tmp_path)
    assert failure.problem == "login"
    assert "wrong password" not in failure.message


def test_a_closed_port_is_unreachable_and_retryable(sshd: SshServer, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failure = refused(config_for(sshd, port=port), tmp_path)
    assert failure.problem == "unreachable"
    assert failure.retryable
    assert "connection was refused" in failure.message


def test_a_frozen_server_fails_the_login_in_bounded_time(make_sshd, tmp_path: Path) -> None:
    server = make_sshd()
    server.freeze()
    try:
        failure = refused(config_for(server, connect_timeout=1.0), tmp_path)
    finally:
        server.thaw()
    assert failure.problem in ("timeout", "unreachable")
    assert failure.retryable


def test_a_server_frozen_mid_session_fails_the_request_within_operation_timeout(
    make_sshd, tmp_path: Path
) -> None:
    from archive_core_sftp import _wire

    server = make_sshd()
    session = connect(config_for(server, operation_timeout=1.0), tmp_path)
    try:
        session.connection.realpath(".")  # answering
        server.freeze()
        try:
            with pytest.raises(_wire.ConnectionLost, match="operation_timeout"):
                session.connection.stat("/")
            with pytest.raises(_wire.ConnectionLost):
                session.connection.stat("/")  # the connection stays given up
        finally:
            server.thaw()
    finally:
        session.close()
