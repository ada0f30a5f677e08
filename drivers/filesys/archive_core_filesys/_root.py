"""The archive root's state: whether it can hold copies now, and what kind of storage holds it."""

from __future__ import annotations

import os
import stat

from archive_core import FileOutcome

#: File system types whose every call waits on a server or a daemon: copies there overlap
#: best in threads. FUSE file systems (sshfs, s3fs, rclone, ntfs-3g) show as "fuse.<name>".
_REMOTE_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs"}
    | {"afs", "9p", "davfs", "fuse", "fuseblk"}
)


def root_problem(root: str | os.PathLike[str]) -> str | None:
    """Why root cannot hold copies right now (missing, unreachable, not a directory)."""
    try:
        info = os.stat(root)
    except FileNotFoundError:
        return f"archive root {os.fspath(root)} does not exist (is the share mounted?)"
    except OSError as exc:
        return f"archive root {os.fspath(root)} cannot be reached: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"archive root {os.fspath(root)} is not a directory"
    return None


def not_there(
    root: str | os.PathLike[str], key: str, locator: str, *, consequence: str
) -> FileOutcome:
    """The outcome for a copy that was not found: gone, or its whole root is missing.

    A missing root (a share not mounted) says nothing about the copy, so it is a
    retryable failure, never "does not exist" and never a delete that succeeded.
    """
    problem = root_problem(root)
    if problem is not None:
        return FileOutcome.failure(
            key, f"{problem}; {consequence}", locator=locator, retryable=True
        )
    return FileOutcome.failure(
        key, f"archived copy {locator} does not exist in {os.fspath(root)}", locator=locator
    )


def on_remote_storage(
    root: str | os.PathLike[str], mountinfo: str = "/proc/self/mountinfo"
) -> bool:
    """Whether root's file system answers over a network or through a FUSE daemon.

    Read from the mount table each time it is asked: a share mounted after Portal started
    counts from then on. False where the table cannot be read (not Linux).
    """
    path = os.path.realpath(root)
    best, kind = "", ""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as table:
            for line in table:
                # "36 35 98:0 /share /mnt/archive rw,noatime shared:1 - nfs4 srv:/share rw"
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                point = _unescape(fields[4])
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, right.split()[0]
    except OSError:
        return False
    return kind in _REMOTE_TYPES or kind.startswith("fuse.")


def _unescape(field: str) -> str:
    """A mount point as the table writes it: space, tab, newline and backslash octal-escaped."""
    if "\\" not in field:
        return field
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field
