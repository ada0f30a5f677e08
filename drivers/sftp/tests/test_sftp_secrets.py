"""A password or key passphrase never shows: not in logs, messages, reprs, the ssh child's
arguments or environment (nor the askpass program's), nor the `archive-core` command's output.

Every secret here is read as an admin would give it, from an environment variable
(`env:NAME`), so these tests also see that the variable itself is not passed on to ssh.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from archive_core_sftp import _askpass, _session, _ssh
from archive_core_sftp.config import SftpConfig

from archive_core import ArchiveItem, ArchiveRequest
from archive_core.secret import resolve_secret
from archive_core.testing.siteconfig import write_config
from drivers.sftp.tests.conftest import TEST_PASSWORD
from drivers.sftp.tests.sshd import CLIENT_KEY_PASSPHRASE, SshServer
from drivers.sftp.tests.support import config_for, driver_with

#: Wrong secrets, distinctive enough that finding one anywhere is no coincidence.
WRONG_PASSWORD = "wrong-password-4c1d9e"
WRONG_PASSPHRASE = "wrong-passphrase-8b27f0"
SECRETS = (TEST_PASSWORD, CLIENT_KEY_PASSPHRASE, WRONG_PASSWORD, WRONG_PASSPHRASE)

#: What ssh's environment may hold: what it needs to find its files, and the askpass channel.
ALLOWED_ENVIRONMENT = {*_ssh._PASSED_ON, "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", _askpass.SOCKET_ENV}


def secret_from_env(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> Any:
    """The Secret an admin's `env:NAME` gives, with NAME set in this (Portal's) process."""
    monkeypatch.setenv(name, value)
    return resolve_secret(f"env:{name}")


def password_config(server: SshServer, monkeypatch: pytest.MonkeyPatch, value: str) -> SftpConfig:
    secret = secret_from_env(monkeypatch, "PORTAL_SFTP_PASSWORD", value)
    return config_for(server, key_file=None, password=secret, remote_root="/")


def passphrase_config(server: SshServer, monkeypatch: pytest.MonkeyPatch, value: str) -> SftpConfig:
    secret = secret_from_env(monkeypatch, "PORTAL_SFTP_PASSPHRASE", value)
    return config_for(
        server, key_file=server.client_key_encrypted, key_passphrase=secret, remote_root="/"
    )


def shown(value: object) -> str:
    """Every way a value is shown to a person or a log: str, repr, and an exception's args."""
    parts = [str(value), repr(value)]
    if isinstance(value, BaseException):
        parts += [repr(arg) for arg in value.args]
        parts += [repr(v) for v in vars(value).values()]
    if attrs.has(type(value)):
        parts += [repr(v) for v in attrs.asdict(value, recurse=False).values() if v is not None]
    return "\n".join(parts)


def assert_no_secret(text: str) -> None:
    # Not `assert secret not in text`: pytest would print the text, secret and all.
    found = [n for n, secret in enumerate(SECRETS) if secret in text]
    assert not found, f"SECRETS{found} shown"


# --- logs, messages and reprs ---------------------------------------------------------------


def test_no_secret_in_logs_messages_or_reprs_across_logins_and_their_failures(
    sshd: SshServer,
    sshd_password: SshServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cases = [
        ("password", password_config(sshd_password, monkeypatch, TEST_PASSWORD), True),
        ("wrong password", password_config(sshd_password, monkeypatch, WRONG_PASSWORD), False),
        ("passphrase", passphrase_config(sshd, monkeypatch, CLIENT_KEY_PASSPHRASE), True),
        ("wrong passphrase", passphrase_config(sshd, monkeypatch, WRONG_PASSPHRASE), False),
    ]
    seen: list[str] = []
    for case, config, logs_in in cases:
        root = tmp_path / case.replace(" ", "-")
        root.mkdir()
        config = attrs.evolve(config, remote_root=str(root), min_free_bytes=0)
        driver = driver_with(config, tmp_path)
        try:
            readiness = driver.check_ready()
            assert readiness.ok is logs_in, (case, readiness.reason)
            if logs_in:  # a whole session: archive a file over it too
                source = tmp_path / f"{root.name}.mov"
                source.write_bytes(b"x" * 1000)
                item = ArchiveItem(key="k", sources=[str(source)], name=source.name)
                request = ArchiveRequest(policy="p", target="offsite", job_id="j", items=[item])
                [outcome] = list(driver.archive(request))
                assert outcome.ok, outcome.error
            seen += [readiness.reason, shown(config), shown(driver)]
        finally:
            driver.close()
        # The exception itself, as the driver's caller (and the core's log) would get it.
        askpass = _ssh.askpass_for(config)
        assert askpass is not None
        try:
            if logs_in:
                _session.connect(config, work_dir=tmp_path, askpass=askpass).close()
            else:
                with pytest.raises(_session.SessionFailed) as failed:
                    _session.connect(config, work_dir=tmp_path, askpass=askpass)
                assert failed.value.problem == "login", failed.value.message
                seen.append(shown(failed.value))
        finally:
            seen.append(shown(askpass))
            askpass.close()
    assert any("does not open key_file" in text for text in seen)  # the failures were seen
    assert any("refused the login" in text for text in seen)
    records = [
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    ]
    assert_no_secret("\n".join([*seen, caplog.text, *records]))


# --- the ssh child and the askpass program ----------------------------------------------------


def _process(pid: int) -> dict[str, Any]:
    """What /proc shows of a process: its arguments, environment and parent."""
    proc = Path(f"/proc/{pid}")
    environ = proc.joinpath("environ").read_bytes()
    stat = proc.joinpath("stat").read_bytes()
    return {
        "cmdline": proc.joinpath("cmdline").read_bytes(),
        "environ": environ,
        "names": {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry},
        "ppid": int(stat.rsplit(b")", 1)[1].split()[1]),
    }


def _askpass_helpers(program: Path) -> Iterator[int]:
    """Pids of the askpass programs of the channel whose wrapper is `program` running now."""
    helper = os.fspath(Path(_askpass.__file__)).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if helper in cmdline and os.fspath(program).encode() in environ:
            yield int(entry)


@pytest.mark.parametrize("secret", ["password", "passphrase"])
def test_the_ssh_child_and_askpass_program_get_no_secret_and_no_portal_environment(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> None:
    # Portal's environment: the secret's own variable, an agent, and something of Portal's.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "portal.settings")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent"))
    if secret == "password":
        server = request.getfixturevalue("sshd_password")
        config = password_config(server, monkeypatch, TEST_PASSWORD)
        value, variable = TEST_PASSWORD, "PORTAL_SFTP_PASSWORD"
    else:
        config = passphrase_config(
            request.getfixturevalue("sshd"), monkeypatch, CLIENT_KEY_PASSPHRASE
        )
        value, variable = CLIENT_KEY_PASSPHRASE, "PORTAL_SFTP_PASSPHRASE"

    caught: list[dict[str, Any]] = []
    answer = _ssh.AskpassChannel.answer

    def answer_and_look(channel: _ssh.AskpassChannel, prompt: str) -> str | None:
        # The askpass program is blocked reading this answer: it and its ssh are there to see.
        for pid in _askpass_helpers(channel.program):
            helper = _process(pid)
            caught.append(helper)
            caught.append(_process(helper["ppid"]))
        return answer(channel, prompt)

    monkeypatch.setattr(_ssh.AskpassChannel, "answer", answer_and_look)
    askpass = _ssh.askpass_for(config)
    assert askpass is not None
    try:
        with _session.connect(config, work_dir=tmp_path, askpass=askpass) as session:
            assert session.connection.version == 3
            process = session.connection.process
            assert process is not None
            ssh = _process(process.pid)  # the running ssh, logged in
    finally:
        askpass.close()

    assert caught, "the askpass program was never asked"
    helper, parent = caught[0], caught[1]
    assert parent["cmdline"].startswith(b"ssh\0") and b"\0sftp" in parent["cmdline"]
    for seen in (ssh, helper, parent):
        assert value.encode() not in seen["cmdline"]
        assert value.encode() not in seen["environ"]
        assert variable not in seen["names"]
        assert "DJANGO_SETTINGS_MODULE" not in seen["names"]
        assert "SSH_AUTH_SOCK" not in seen["names"]  # use_agent is off
    assert ssh["names"] <= ALLOWED_ENVIRONMENT, ssh["names"] - ALLOWED_ENVIRONMENT
    assert parent["names"] <= ALLOWED_ENVIRONMENT, parent["names"] - ALLOWED_ENVIRONMENT
    # The askpass wrapper is a /bin/sh script, and sh exports the directory it runs in.
    assert helper["names"] <= {*ALLOWED_ENVIRONMENT, "PWD"}, helper["names"] - ALLOWED_ENVIRONMENT


# --- the archive-core command -------------------------------------------------------------------


def test_the_archive_core_command_never_prints_a_secret(
    sshd: SshServer, sshd_password: SshServer, tmp_path: Path
) -> None:
    def target(server: SshServer, **settings: object) -> dict[str, object]:
        return {
            "driver": "sftp",
            "settings": {
                "host": server.host,
                "port": server.port,
                "user": server.user,
                "remote_root": str(tmp_path),
                "known_hosts": str(server.known_hosts),
                "min_free_bytes": 0,
                "connect_timeout": 5,
                **settings,
            },
        }

    inline = "inline-secret-value-5e61"
    targets = {
        "by-password": target(sshd_password, password="env:SFTP_TEST_PASSWORD"),
        "wrong-password": target(sshd_password, password="env:SFTP_TEST_WRONG_PASSWORD"),
        "wrong-passphrase": target(
            sshd,
            key_file=str(sshd.client_key_encrypted),
            key_passphrase="env:SFTP_TEST_WRONG_PASSPHRASE",
        ),
        "inline": target(sshd, password=inline),
    }
    policies = {
        f"00000000-0000-4000-8000-00000000000{n}": {"name": name, "targets": [name]}
        for n, name in enumerate(targets)
    }
    config = write_config(
        tmp_path / "archive-core.toml",
        targets=targets,
        policies=policies,
        catalog_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
    )
    env = {
        **os.environ,
        "SFTP_TEST_PASSWORD": TEST_PASSWORD,
        "SFTP_TEST_WRONG_PASSWORD": WRONG_PASSWORD,
        "SFTP_TEST_WRONG_PASSPHRASE": WRONG_PASSPHRASE,
        "ARCHIVE_CORE_CONFIG": str(config),
    }
    outputs: dict[str, str] = {}
    for command in (["-vv", "check"], ["-vv", "check", "--json"], ["policies"], ["drivers"]):
        done = subprocess.run(
            [sys.executable, "-m", "archive_core.cli", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        outputs[" ".join(command)] = done.stdout + done.stderr
    checked = outputs["-vv check"]
    # The four states were reached: ready, both refused logins, the inline secret refused.
    assert "by-password: ready" in checked, checked
    assert "wrong-password: NOT READY" in checked and "refused the login" in checked
    assert "does not open key_file" in checked
    assert "secrets must be given by reference" in checked
    for command, output in outputs.items():
        assert inline not in output, command
        for secret in (TEST_PASSWORD, WRONG_PASSWORD, WRONG_PASSPHRASE):
            assert secret not in output, command


def test_the_askpass_channel_answers_only_the_ssh_it_was_told_to_and_only_while_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A program that finds the socket (a ProxyJump hop, below our ssh, with its
    environment) is not given the secret: only the child of an ssh the driver started."""
    password = secret_from_env(monkeypatch, "PORTAL_SFTP_PASSWORD", "not-for-a-hop")
    channel = _ssh.AskpassChannel(passphrase=None, password=password)
    channel.ALLOW_WAIT = 0.5
    # A stand-in for ssh: a shell that runs the askpass program as its child once told to.
    ask = f"read go; {sys.executable} -I {_askpass.__file__} 'Password: '"
    env = {**channel.environment(), "PATH": "/usr/bin:/bin"}
    answers = []
    try:
        for allowed in (False, True):
            shell = subprocess.Popen(
                ["sh", "-c", ask], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            if allowed:
                channel.allow(shell.pid)
            out, _ = shell.communicate(b"go\n", timeout=10)
            channel.forget(shell.pid)
            answers.append((shell.returncode, out))
    finally:
        channel.close()
    assert answers[0] == (1, b"")  # its parent was never allowed: no answer
    assert answers[1] == (0, b"not-for-a-hop\n")
    assert "was not answered: its parent is not an ssh this target started" in caplog.text
