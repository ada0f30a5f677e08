"""How the system `ssh` is run for a target: every safety rule as an option, secrets by askpass.

OpenSSH does the transport (its ciphers, ProxyJump, certificates, agent, config aliases); this
module decides how it is called:

- host keys are checked strictly against the target's known_hosts (never accepted, never
  updated); a pinned fingerprint is checked by the caller before a connection is made;
- no prompt ever waits for a person: BatchMode, unless a passphrase or password is configured,
  and then only the askpass channel answers, one prompt at a time;
- secrets never reach a file, an argument or the environment: the askpass program asks this
  process over a unix socket in a private directory, and only a process of our own user may;
- the child's environment is built, not inherited: Portal's (where `env:` secrets live) is not
  passed on;
- no forwarding, no local command, no control master, no TTY; a dead peer is found by
  ServerAlive* within the keepalive settings.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from archive_core import Secret
from archive_core_sftp._askpass import SOCKET_ENV
from archive_core_sftp.config import SftpConfig

log = logging.getLogger(__name__)

#: AES-GCM first: chacha20-poly1305, OpenSSH's default, costs 40-50% more CPU per byte here.
CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"

#: Environment variables passed on to ssh, when set: what it needs to find its files.
_PASSED_ON = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")


def destination(config: SftpConfig) -> str:
    """What ssh is told to connect to: the config alias when there is one, else the host."""
    return config.ssh_config_alias or config.host


def options(config: SftpConfig, *, known_hosts: Path | None, prompts: bool) -> list[str]:
    """The ssh options for `config`; `known_hosts` overrides the one the config names."""
    opts: list[str] = []

    def o(text: str) -> None:
        opts.extend(("-o", text))

    # For ssh the first value given for an option wins: ours come before any config file's.
    if config.ssh_config_alias:
        if config.ssh_config_file is not None:
            # Only this file then: OpenSSH reads ~/.ssh/config from the passwd entry's home,
            # so a target cannot otherwise say which file defines its alias.
            opts[:0] = ["-F", str(config.ssh_config_file)]
        if config.host:
            o(f"HostName={config.host}")
    else:
        opts[:0] = ["-F", "none"]  # no ~/.ssh/config surprises without an alias asked for
    if config.port != 22 or not config.ssh_config_alias:
        o(f"Port={config.port}")
    if config.user:
        o(f"User={config.user}")
    if config.key_file is not None:
        o(f"IdentityFile={config.key_file}")
        o("IdentitiesOnly=yes")
    o("IdentityAgent=SSH_AUTH_SOCK" if config.use_agent else "IdentityAgent=none")
    methods = []
    if config.key_file is not None or config.use_agent or config.ssh_config_alias:
        methods.append("publickey")
    if config.password is not None:
        methods.append("password")
    if methods:
        o(f"PreferredAuthentications={','.join(methods)}")
    hosts = known_hosts or config.known_hosts
    if hosts is not None:
        o(f"UserKnownHostsFile={hosts}")
        o("GlobalKnownHostsFile=none")
    o("StrictHostKeyChecking=yes")
    o("UpdateHostKeys=no")
    # What else could accept a key by itself, from an alias's config file: a command of its
    # own (a pin's, given before these, wins over this none) or SSHFP records in DNS.
    o("KnownHostsCommand=none")
    o("VerifyHostKeyDNS=no")
    o(f"BatchMode={'no' if prompts else 'yes'}")
    o("NumberOfPasswordPrompts=1")
    o("KbdInteractiveAuthentication=no")
    o(f"ConnectTimeout={max(1, math.ceil(config.connect_timeout))}")
    if config.keepalive_interval > 0:
        o(f"ServerAliveInterval={max(1, math.ceil(config.keepalive_interval))}")
        o("ServerAliveCountMax=3")
    for fixed in (
        f"Ciphers={CIPHERS}",
        "ControlMaster=no",
        "ControlPath=none",
        "PermitLocalCommand=no",
        "ForwardAgent=no",
        "ForwardX11=no",
        "ClearAllForwardings=yes",
        "RequestTTY=no",
        # An alias's config file must not turn the session into something else: a command
        # instead of the subsystem, ssh gone to the background, stdin closed, a tunnel.
        "RemoteCommand=none",
        "ForkAfterAuthentication=no",
        "StdinNull=no",
        "Tunnel=no",
        "EscapeChar=none",
        "IPQoS=throughput",
        "LogLevel=ERROR",
    ):
        o(fixed)
    return opts


def sftp_argv(config: SftpConfig, *, known_hosts: Path | None, prompts: bool) -> list[str]:
    """`ssh ... -s <destination> sftp`: the SFTP subsystem on ssh's stdin and stdout."""
    return [
        "ssh",
        "-x",
        "-T",
        "-a",
        *options(config, known_hosts=known_hosts, prompts=prompts),
        "-s",
        destination(config),
        "sftp",
    ]


def command_argv(
    config: SftpConfig, command: str, path: str, *, known_hosts: Path | None, prompts: bool
) -> list[str]:
    """`ssh ... <destination> -- <command> <path>`: the configured command, the path quoted."""
    return [
        "ssh",
        "-x",
        "-T",
        "-a",
        *options(config, known_hosts=known_hosts, prompts=prompts),
        destination(config),
        "--",
        f"{command} {shlex.quote(path)}",
    ]


def child_environment(config: SftpConfig, askpass: AskpassChannel | None) -> dict[str, str]:
    """ssh's environment: what it needs, the agent when asked for, the askpass channel."""
    env = {name: os.environ[name] for name in _PASSED_ON if name in os.environ}
    if config.use_agent and "SSH_AUTH_SOCK" in os.environ:
        env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
    if askpass is not None:
        env.update(askpass.environment())
    return env


class AskpassChannel:
    """Answers ssh's passphrase and password prompts over a private unix socket.

    The askpass program (`_askpass.py`, run through a two-line wrapper in the channel's own
    0700 directory) connects, sends the prompt and prints what it gets back. Only the ssh
    processes the driver started and `allow`ed, while they log in, are answered: the peer
    (SO_PEERCRED) must be a process of this user whose parent is one of them. So a ProxyJump
    hop (a second ssh, below ours, with our environment) is never given the target's
    secret, nor is any other program that finds the socket. Use as a context manager around
    one ssh start: the directory and socket are removed at exit.
    """

    #: How long a prompt waits for its ssh to be allowed: ssh can ask before Popen returns.
    ALLOW_WAIT = 5.0

    def __init__(self, *, passphrase: Secret | None, password: Secret | None) -> None:
        self._passphrase = passphrase
        self._password = password
        self._dir = Path(tempfile.mkdtemp(prefix="archive-core-askpass-"))
        self.socket_path = self._dir / "s"
        self.program = self._dir / "askpass"
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(os.fspath(self.socket_path))
        self._server.listen(4)
        self._server.settimeout(0.5)
        helper = Path(__file__).with_name("_askpass.py")
        self.program.write_text(
            f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -I {shlex.quote(str(helper))} "$@"\n'
        )
        self.program.chmod(0o700)
        self._allowed: set[int] = set()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sftp-askpass", daemon=True)
        self._thread.start()

    def environment(self) -> dict[str, str]:
        return {
            "SSH_ASKPASS": os.fspath(self.program),
            "SSH_ASKPASS_REQUIRE": "force",
            SOCKET_ENV: os.fspath(self.socket_path),
        }

    def allow(self, pid: int) -> None:
        """Answer the prompts of ssh process `pid` (just started, about to log in)."""
        with self._changed:
            self._allowed.add(pid)
            self._changed.notify_all()

    def forget(self, pid: int) -> None:
        """No more prompts from `pid`: it has logged in, or failed to."""
        with self._changed:
            self._allowed.discard(pid)

    def _asked_by_ours(self, pid: int) -> bool:
        parent = _parent_of(pid)
        with self._changed:
            return (
                self._changed.wait_for(
                    lambda: parent in self._allowed or self._stop.is_set(), timeout=self.ALLOW_WAIT
                )
                and parent in self._allowed
            )

    def answer(self, prompt: str) -> str | None:
        """The secret for ssh's `prompt`, or None: never a guess at another prompt."""
        text = prompt.lower()
        if "passphrase" in text:
            return self._passphrase.reveal() if self._passphrase is not None else None
        if "password" in text:
            return self._password.reveal() if self._password is not None else None
        return None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                peer, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with peer:
                try:
                    self._reply(peer)
                except OSError as exc:
                    log.debug("askpass channel: %s", exc)

    def _reply(self, peer: socket.socket) -> None:
        creds = peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            return
        if not self._asked_by_ours(pid):
            log.warning(
                "askpass channel: a prompt from process %d was not answered: its parent is "
                "not an ssh this target started (a ProxyJump hop asking for a password?)",
                pid,
            )
            peer.sendall(b"-")
            return
        peer.settimeout(5)
        prompt = b""
        while not prompt.endswith(b"\n") and len(prompt) < 4097:
            chunk = peer.recv(4096)
            if not chunk:
                break
            prompt += chunk
        secret = self.answer(prompt.decode("utf-8", "replace"))
        peer.sendall(b"-" if secret is None else b"+" + secret.encode("utf-8"))

    def close(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._server.close()
        self._thread.join(timeout=2)
        for path in (self.socket_path, self.program):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            self._dir.rmdir()

    def __enter__(self) -> AskpassChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _parent_of(pid: int) -> int | None:
    """The parent pid of `pid` (from /proc), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def needs_prompts(config: SftpConfig) -> bool:
    return config.key_passphrase is not None or config.password is not None


def askpass_for(config: SftpConfig) -> AskpassChannel | None:
    if not needs_prompts(config):
        return None
    return AskpassChannel(passphrase=config.key_passphrase, password=config.password)


__all__: Sequence[str] = (
    "CIPHERS",
    "AskpassChannel",
    "askpass_for",
    "child_environment",
    "command_argv",
    "destination",
    "needs_prompts",
    "options",
    "sftp_argv",
)
