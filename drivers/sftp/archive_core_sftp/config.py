"""The settings of one SFTP target, checked for shape only: no connection is made here."""

from __future__ import annotations

import base64
import binascii
import posixpath
from pathlib import Path
from typing import Any

import attrs

from archive_core import LAYOUTS, Secret, above, at_least, between, one_of, setting

GiB = 1024**3


def _optional_path(value: Any) -> Path | None:
    if value is None or value == "":
        return None
    path = value if isinstance(value, Path) else Path(value)
    return path.expanduser()


def _remote_root(_instance: Any, _attribute: Any, value: str) -> None:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("must be an absolute path on the server, such as /srv/archive")
    if "\0" in value or any(part in (".", "..") for part in value.split("/")):
        raise ValueError("must be a plain absolute path, without '.', '..' or NUL")


def _normal_root(value: Any) -> Any:
    return posixpath.normpath(value) if isinstance(value, str) and value.startswith("/") else value


def _port(_instance: Any, _attribute: Any, value: int) -> None:
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")


def _fingerprint(_instance: Any, _attribute: Any, value: str) -> None:
    """OpenSSH's form, as `ssh-keygen -lf` and the not-ready message print it."""
    if not value:
        return
    kind, sep, digest = value.partition(":")
    if kind != "SHA256" or not sep:
        raise ValueError("must be a SHA256 fingerprint as ssh-keygen -lf prints it: SHA256:...")
    try:
        raw = base64.b64decode(digest + "=" * (-len(digest) % 4), validate=True)
    except binascii.Error:
        raise ValueError("the part after SHA256: is not base64") from None
    if len(raw) != 32:
        raise ValueError("the part after SHA256: is not a 32-byte SHA-256 digest")


def _command(_instance: Any, _attribute: Any, value: str) -> None:
    if value and (len(value) > 200 or any(c in value for c in "\0\n\r")):
        raise ValueError("must be one line of at most 200 characters")


def _ssh_name(_instance: Any, _attribute: Any, value: str) -> None:
    # ssh parses its arguments after the destination as options too: a name starting with
    # "-" would be read as one (-oProxyCommand=...), not as the host to connect to.
    if value.startswith("-") or any(c.isspace() or c == "\0" for c in value):
        raise ValueError("must be a host name, address or Host alias: no spaces, no leading '-'")


def _user(_instance: Any, _attribute: Any, value: str) -> None:
    if any(c in value for c in "@:/\0 \t\n"):
        raise ValueError("must be a user name only (no '@', ':', '/' or spaces)")


@attrs.frozen(kw_only=True)
class SftpConfig:
    """Settings of one SFTP target."""

    host: str = setting(
        help="Server to archive to: a host name or address. May be left empty when "
        "`ssh_config_alias` names a Host of the OpenSSH config that gives it.",
        default="",
        validator=_ssh_name,
    )
    port: int = setting(help="SSH port of the server.", default=22, validator=_port)
    user: str = setting(
        help="User to log in as; empty: the alias's User, else the user Portal runs as.",
        default="",
        validator=_user,
    )
    remote_root: str = setting(
        help="Directory on the server the copies are written under, as an absolute path. "
        "archive-core never creates, renames or removes it, and never writes outside it.",
        converter=_normal_root,
        validator=_remote_root,
    )
    key_file: Path | None = setting(
        help="Private key to log in with (OpenSSH format); its certificate <key>-cert.pub is "
        "used when present.",
        default=None,
        converter=_optional_path,
    )
    key_passphrase: Secret | None = setting(
        help="Passphrase of key_file, by reference only (env:NAME or file:PATH).",
        default=None,
        secret=True,
    )
    password: Secret | None = setting(
        help="Password to log in with, by reference only (env:NAME or file:PATH). Prefer a key.",
        default=None,
        secret=True,
    )
    use_agent: bool = setting(
        help="Offer the keys of the SSH agent at $SSH_AUTH_SOCK too.",
        default=False,
    )
    known_hosts: Path | None = setting(
        help="known_hosts file the server's host key is checked against; empty: the "
        "user's ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts, as OpenSSH does. An unknown "
        "or changed key makes the target not ready; it is never accepted by itself.",
        default=None,
        converter=_optional_path,
    )
    host_key_fingerprint: str = setting(
        help="Host key pinned by its fingerprint (SHA256:..., as ssh-keygen -lf prints it), "
        "checked besides known_hosts; the not-ready message of an unknown key gives it.",
        default="",
        validator=_fingerprint,
    )
    ssh_config_alias: str = setting(
        help="A Host of the OpenSSH client config (ssh_config_file, else ~/.ssh/config) to "
        "take host, port, user, identity files and ProxyJump from; the settings here take "
        "precedence. Empty: no OpenSSH config file is read.",
        default="",
        validator=_ssh_name,
    )
    ssh_config_file: Path | None = setting(
        help="OpenSSH client config file that defines ssh_config_alias (ssh -F); empty: "
        "OpenSSH's own, ~/.ssh/config in the home directory of the user Portal runs as (from "
        "the password database, not $HOME) and /etc/ssh/ssh_config. The host key, prompt and "
        "forwarding rules of archive-core win over what the file says.",
        default=None,
        converter=_optional_path,
    )
    connect_timeout: float = setting(
        help="Seconds to connect and log in before the server counts as unreachable.",
        default=10.0,
        validator=above(0),
    )
    operation_timeout: float = setting(
        help="Seconds one SFTP request may go unanswered before the connection counts as "
        "dead (its files fail, retryably): a frozen server never holds a worker longer.",
        default=60.0,
        validator=above(0),
    )
    keepalive_interval: float = setting(
        help="Seconds between keepalives on an idle connection (0: none); three unanswered "
        "ones drop it.",
        default=15.0,
        validator=at_least(0),
    )
    files_in_flight: int = setting(
        help="Files transferred at the same time in one batch.",
        default=16,
        validator=between(1, 64),
    )
    connections: int = setting(
        help="SFTP connections a batch's uploads share (at most files_in_flight). The server "
        "makes one connection's copies durable one after another; a server whose disk takes "
        "milliseconds per fsync commits several connections' small files together. Restores, "
        "verifies and deletes use one.",
        default=4,
        validator=between(1, 16),
    )
    bandwidth_limit: float = setting(
        help="Most MB/s (10^6 bytes a second) the target sends or receives in all; 0: no limit.",
        default=0.0,
        validator=at_least(0),
    )
    remote_checksum_command: str = setting(
        help="Command the server runs to hash a published copy (such as `sha1sum` or "
        "`sha256sum`), given the path as its one argument; its first word must be the hex "
        "digest. Empty: no command is ever run on the server.",
        default="",
        validator=_command,
        advanced=True,
    )
    read_back: bool = setting(
        help="Read every published copy back and hash it before reporting it archived "
        "(doubles the traffic; without it the size is checked, and the content when "
        "remote_checksum_command is set).",
        default=False,
    )
    layout: str = setting(
        help="Where a copy goes under remote_root: 'flat' = <name>, 'item' = "
        "<item_id>/<name>, 'date' = YYYY/MM/DD/<name> (UTC date of the archive run).",
        default="flat",
        validator=one_of(LAYOUTS),
    )
    min_free_bytes: int = setting(
        help="The target reports not ready when the server says less than this many bytes "
        "are free under remote_root (where it answers statvfs@openssh.com).",
        default=GiB,
        validator=at_least(0),
    )

    def __attrs_post_init__(self) -> None:
        if not self.host and not self.ssh_config_alias:
            raise ValueError("host is empty: give the server's host name, or ssh_config_alias")
        if self.ssh_config_file is not None and not self.ssh_config_alias:
            raise ValueError(
                "ssh_config_file is set, but ssh_config_alias is not: name the Host of that "
                "file to connect to in ssh_config_alias (without an alias no OpenSSH config "
                "file is read)"
            )
        if self.key_passphrase is not None and self.key_file is None:
            raise ValueError(
                "key_passphrase is set, but key_file is not: the passphrase of which key?"
            )
