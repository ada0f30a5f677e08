"""The configured remote checksum command: run on the server only when an admin asked for it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from archive_core import TransferFailed
from archive_core_sftp import _hostkey, _ssh
from archive_core_sftp.config import SftpConfig


def confirm(
    config: SftpConfig, path: str, digests: Any, *, work_dir: Path, name: str | None = None
) -> None:
    """Run `remote_checksum_command <path>` and compare its digest with the bytes sent.

    `name` is the copy's name for messages, when `path` is its temporary file.

    The command's first word is the hex digest: 40 digits are compared with the sha1, 64
    with the sha256. Anything else, a failure to run, or a different digest raises.
    """
    command = _ssh.command_argv(
        config,
        config.remote_checksum_command,
        path,
        known_hosts=None,
        prompts=_ssh.needs_prompts(config),
    )
    if config.host_key_fingerprint:
        pin = _hostkey.pin_options(
            work_dir, pin=config.host_key_fingerprint, known_hosts=config.known_hosts
        )
        command = [command[0], *pin, *command[1:]]
    askpass = _ssh.askpass_for(config)
    limit = config.operation_timeout + config.connect_timeout
    try:
        process = subprocess.Popen(
            command,
            env=_ssh.child_environment(config, askpass),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if askpass is not None:
            askpass.allow(process.pid)
        try:
            out, err = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise TransferFailed(
                f"remote_checksum_command gave no answer for {name or path} within {limit:g} s.",
                paths=(path,),
                retryable=True,
            ) from None
    finally:
        if askpass is not None:
            askpass.close()
    shown = name or path
    words = out.decode("utf-8", "replace").split()
    digest = words[0].lower() if words else ""
    expected = {40: digests.sha1, 64: digests.sha256}.get(len(digest))
    if process.returncode != 0 or expected is None:
        said = err.decode("utf-8", "replace").strip().splitlines()
        raise TransferFailed(
            f"remote_checksum_command {config.remote_checksum_command!r} did not give a sha1 "
            f"or sha256 for {shown} (exit {process.returncode}"
            + (f": {said[-1]}" if said else "")
            + ").",
            paths=(path,),
        )
    if digest != expected:
        raise TransferFailed(
            f"The server hashes {shown} as {digest}, but the bytes sent hash to {expected}.",
            paths=(shown,),
            retryable=True,
        )
