"""Host keys: checked by OpenSSH against known_hosts, a pinned fingerprint through a command.

A pinned fingerprint is enforced by ssh itself, through `KnownHostsCommand`: a two-line script
in a private directory prints the offered key as a known_hosts line only when its fingerprint
is the pinned one (and, when a known_hosts file is configured too, only when that file holds
the key as well), and ssh's own known_hosts files are switched off. So the key checked is the
key of the connection itself, also through a ProxyJump, with no separate scan to race.

When ssh refuses the server's key, `offered_keys` reads what the server offered from a
verbose probe, for a not-ready message an admin can act on.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

_PIN_SCRIPT = """#!/bin/sh
# $1 pinned fingerprint, $2 known_hosts file or "", $3 host, $4 key type, $5 key, $6 its fingerprint
[ "$6" = "$1" ] || exit 0
if [ -n "$2" ]; then ssh-keygen -F "$3" -f "$2" 2>/dev/null | grep -qF -- "$5" || exit 0; fi
printf '%s %s %s\\n' "$3" "$4" "$5"
"""

#: ssh -v: "debug1: Server host key: ssh-ed25519 SHA256:..."
_OFFERED = re.compile(r"Server host key: (\S+) (SHA256:[A-Za-z0-9+/=]+)")


def pin_options(directory: Path, *, pin: str, known_hosts: Path | None) -> list[str]:
    """ssh options that accept only the key whose fingerprint is `pin` (script in `directory`)."""
    script = directory / "pinned-host-key"
    if not script.exists():
        script.write_text(_PIN_SCRIPT)
        script.chmod(0o700)
    known = shlex.quote(str(known_hosts)) if known_hosts is not None else '""'
    command = f"{shlex.quote(str(script))} {pin} {known} %H %t %K %f"
    return [
        "-o",
        "UserKnownHostsFile=none",
        "-o",
        "GlobalKnownHostsFile=none",
        "-o",
        f"KnownHostsCommand={command}",
    ]


def offered_keys(stderr: str) -> list[tuple[str, str]]:
    """(key type, SHA256 fingerprint) of every host key a verbose ssh saw offered."""
    return list(dict.fromkeys(_OFFERED.findall(stderr)))


def refused_key_problem(stderr: str) -> str | None:
    """What ssh said about the host key, when it refused it; None when it did not."""
    lowered = stderr.lower()
    if "remote host identification has changed" in lowered:
        return "changed"
    if "no " in lowered and "host key is known" in lowered:
        return "unknown"
    if "host key verification failed" in lowered:
        return "refused"
    return None
