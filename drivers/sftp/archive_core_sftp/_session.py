"""One logged-in SFTP session to a target: the system ssh started safely, its failures explained.

`connect()` starts `ssh -s <destination> sftp` with the options of `_ssh` (and a pinned host
key's, `_hostkey`), speaks SFTP over its pipes (`_wire`), and gives a `Session` once the
server answered SFTP's INIT, or raises `SessionFailed` with what an admin can act on: the
host key offered and the setting that pins it, the login refused and the methods tried, the
server not reachable, or no answer in time. ssh runs verbose; its stderr is kept (the last
64 KiB, never logged as a whole) only to explain a failure.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import re
import subprocess
import threading
from pathlib import Path

from archive_core import ArchiveCoreError
from archive_core_sftp import _hostkey, _ssh, _wire
from archive_core_sftp.config import SftpConfig

log = logging.getLogger(__name__)

_STDERR_KEEP = 64 * 1024


class SessionFailed(ArchiveCoreError):
    """No SFTP session: `problem` is host-key, login, unreachable, timeout or ssh."""

    def __init__(self, message: str, *, problem: str, offered: tuple[str, ...] = ()) -> None:
        super().__init__(message, retryable=problem in ("unreachable", "timeout", "ssh"))
        self.problem = problem
        self.offered = offered  # the host key fingerprints the server offered, if seen


class _Stderr:
    """ssh's stderr, drained by a thread so ssh never blocks on it; the tail kept."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="sftp-ssh-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while chunk := os.read(self._fd, 65536):
                with self._lock:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    while self._size > _STDERR_KEEP and len(self._chunks) > 1:
                        self._size -= len(self._chunks.popleft())
        except OSError:
            pass
        finally:
            os.close(self._fd)

    def text(self, *, wait: float = 0.0) -> str:
        if wait:
            self._thread.join(wait)
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", "replace")


class Session:
    """An SFTP connection and the ssh process under it; `close()` ends both."""

    def __init__(self, connection: _wire.Connection, stderr: _Stderr, label: str) -> None:
        self.connection = connection
        self._stderr = stderr
        self.label = label

    @property
    def alive(self) -> bool:
        """Whether requests can still be sent: ssh runs and the connection was not lost."""
        process = self.connection.process
        return self.connection.lost is None and (process is None or process.poll() is None)

    def close(self) -> None:
        self.connection.close()

    def kill(self) -> None:
        """End ssh at once (a frozen server): outstanding requests fail with ConnectionLost."""
        process = self.connection.process
        if process is not None and process.poll() is None:
            process.kill()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def label(config: SftpConfig) -> str:
    """How to name the server to an admin: user@host:port (or the alias)."""
    if config.ssh_config_alias and not config.host:
        return f"ssh alias {config.ssh_config_alias!r}"
    user = f"{config.user}@" if config.user else ""
    return f"{user}{config.host}:{config.port}"


def argv(config: SftpConfig, *, work_dir: Path, prompts: bool) -> list[str]:
    """The ssh command of one SFTP session (verbose, for the host key and methods offered)."""
    command = _ssh.sftp_argv(config, known_hosts=None, prompts=prompts)
    extra = ["-v"]
    if config.host_key_fingerprint:
        extra += _hostkey.pin_options(
            work_dir, pin=config.host_key_fingerprint, known_hosts=config.known_hosts
        )
    # For ssh the first value of an option wins: the pin's known_hosts settings go first.
    return [command[0], *extra, *command[1:]]


def connect(config: SftpConfig, *, work_dir: Path, askpass: _ssh.AskpassChannel | None) -> Session:
    """A logged-in session, or SessionFailed saying why (never a prompt, never a hang)."""
    if _ssh.needs_prompts(config) and askpass is None:
        raise ValueError("a target with a passphrase or password needs its askpass channel")
    command = argv(config, work_dir=work_dir, prompts=askpass is not None)
    to_ssh_r, to_ssh_w = os.pipe()
    from_ssh_r, from_ssh_w = os.pipe()
    err_r, err_w = os.pipe()
    for fd in (to_ssh_w, from_ssh_r):
        with contextlib.suppress(OSError):  # larger pipes: fewer wake-ups per MiB
            fcntl.fcntl(fd, _wire.F_SETPIPE_SZ, 1 << 20)
    try:
        process = subprocess.Popen(
            command,
            stdin=to_ssh_r,
            stdout=from_ssh_w,
            stderr=err_w,
            env=_ssh.child_environment(config, askpass),
            start_new_session=True,  # no terminal: ssh can never prompt on Portal's tty
        )
    except OSError as exc:
        for fd in (to_ssh_r, to_ssh_w, from_ssh_r, from_ssh_w, err_r, err_w):
            os.close(fd)
        raise SessionFailed(
            f"Cannot run the ssh client ({exc.strerror}): install OpenSSH's client.",
            problem="ssh",
        ) from None
    for fd in (to_ssh_r, from_ssh_w, err_w):
        os.close(fd)
    if askpass is not None:
        askpass.allow(process.pid)  # its prompts are answered while it logs in, no longer
    stderr = _Stderr(err_r)
    # ssh's own ConnectTimeout covers the TCP connection; the rest of the login is ours.
    timeout = config.connect_timeout * 2 + 5
    try:
        try:
            connection = _wire.Connection(from_ssh_r, to_ssh_w, process, handshake_timeout=timeout)
        finally:
            if askpass is not None:
                askpass.forget(process.pid)
    except OSError as exc:  # ConnectionLost, or EPIPE: ssh exited before it read INIT
        process.kill()
        process.wait()
        for fd in (from_ssh_r, to_ssh_w):
            os.close(fd)
        raise _explain(config, stderr.text(wait=2.0), exc, timeout) from None
    connection.operation_timeout = config.operation_timeout
    return Session(connection, stderr, label(config))


_PERMISSION = re.compile(r"Permission denied \(([^)]*)\)")
#: ssh -F <missing file>: "Can't open user config file /etc/x: No such file or directory"
_CONFIG_FILE = re.compile(r"Can't open user config file (.*): ([^:\r\n]*)", re.M)


def _explain(config: SftpConfig, stderr: str, exc: OSError, timeout: float) -> SessionFailed:
    """The admin's reading of why ssh gave no session, from its verbose stderr."""
    where = label(config)
    offered = tuple(f"{kind} {fp}" for kind, fp in _hostkey.offered_keys(stderr))
    key = _hostkey.refused_key_problem(stderr)
    if key is not None:
        return SessionFailed(
            _host_key_message(config, key, offered), problem="host-key", offered=offered
        )
    if isinstance(exc, _wire.HandshakeTimeout):
        return SessionFailed(
            f"{where} did not complete the SSH login and SFTP start within {timeout:.0f} s "
            "(connect_timeout); the server or the network hangs.",
            problem="timeout",
            offered=offered,
        )
    lowered = stderr.lower()
    # The server took the public key, ssh asked for the passphrase, and no signature came:
    # the passphrase did not open the key.
    wrong_passphrase = config.key_passphrase is not None and (
        "server accepts key" in lowered and "read_passphrase" in lowered
    )
    if wrong_passphrase or "incorrect passphrase" in lowered:
        return SessionFailed(
            f"The passphrase given by key_passphrase ({_reference(config.key_passphrase)}) "
            f"does not open key_file {config.key_file}.",
            problem="login",
            offered=offered,
        )
    if unreadable := _CONFIG_FILE.search(stderr):
        return SessionFailed(
            f"ssh_config_file {unreadable.group(1)} cannot be read ({unreadable.group(2)}), "
            f"so ssh does not know ssh_config_alias {config.ssh_config_alias!r}.",
            problem="ssh",
            offered=offered,
        )
    if denied := _PERMISSION.search(stderr):
        user = config.user or "(the default user)"
        # An agent asked for but not there is the likeliest reason; ssh does not say so.
        agent = (
            " use_agent is on, but SSH_AUTH_SOCK is not set in the environment of Portal's "
            "worker, so no agent was asked."
            if config.use_agent and not os.environ.get("SSH_AUTH_SOCK")
            else ""
        )
        return SessionFailed(
            f"{where} refused the login of user {user}; the server allows "
            f"{denied.group(1)}.{agent} Check key_file, key_passphrase or password, and that "
            "the key is in the user's authorized_keys on the server.",
            problem="login",
            offered=offered,
        )
    for text, why in (
        ("connection refused", "the connection was refused (is sshd running on that port?)"),
        ("connection timed out", f"no answer within connect_timeout ({config.connect_timeout} s)"),
        ("no route to host", "there is no route to the host"),
        ("could not resolve hostname", "the host name does not resolve"),
        ("name or service not known", "the host name does not resolve"),
        ("temporary failure in name resolution", "the host name does not resolve (for now)"),
        ("network is unreachable", "the network is unreachable"),
    ):
        if text in lowered:
            if "resolve" in why and config.ssh_config_alias and not config.host:
                file = config.ssh_config_file or "~/.ssh/config"
                why += f" (is there a Host {config.ssh_config_alias} with a HostName in {file}?)"
            return SessionFailed(
                f"Cannot reach {where}: {why}.", problem="unreachable", offered=offered
            )
    last = next(
        (line for line in reversed(stderr.splitlines()) if not line.startswith("debug")), ""
    )
    return SessionFailed(
        f"ssh to {where} gave no SFTP session: {last or exc}",
        problem="ssh",
        offered=offered,
    )


def _reference(secret: object) -> str:
    return getattr(secret, "reference", None) or "given"


def _host_key_message(config: SftpConfig, problem: str, offered: tuple[str, ...]) -> str:
    where = label(config)
    shown = ", ".join(offered) or "a key ssh did not show"
    pin = offered[0].split(" ", 1)[1] if offered else "SHA256:..."
    if config.known_hosts:
        known = str(config.known_hosts)
    elif config.ssh_config_alias:  # its config file may name other known_hosts files
        known = "the known_hosts file of the OpenSSH config"
    else:
        known = "~/.ssh/known_hosts"
    if config.host_key_fingerprint:
        also = f" and held by {known}" if config.known_hosts else ""
        return (
            f"The host key of {where} is not the pinned one: the server offered {shown}, "
            f"host_key_fingerprint is {config.host_key_fingerprint}{also}. Nothing was sent. "
            f"If the server's key really changed, check it with its admin and set "
            f'host_key_fingerprint = "{pin}".'
        )
    if problem == "changed":
        return (
            f"The host key of {where} has CHANGED: the server offered {shown}, but {known} "
            "holds another key for it. This may be an attack; nothing was sent. If the server "
            "was reinstalled, check the new key with its admin, then replace its line in "
            f'{known} or pin it: host_key_fingerprint = "{pin}".'
        )
    return (
        f"The host key of {where} is not known: the server offered {shown}, which {known} "
        "does not hold, and archive-core never accepts a key by itself. Check it with the "
        f'server\'s admin, then pin it: host_key_fingerprint = "{pin}" (or add it to {known}).'
    )
