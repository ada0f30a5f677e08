"""The file-system calls a real LTFS mount needs, behind one object so tests can stand in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class MountFs:
    """The operating system's view of a FUSE mount: /proc/mounts, statvfs, xattrs, files."""

    def mount_options(self, mountpoint: Path) -> list[str] | None:
        """The options of the mount at `mountpoint` in /proc/mounts, or None if not mounted."""
        try:
            lines = Path("/proc/mounts").read_text().splitlines()
        except OSError:
            return [] if os.path.ismount(mountpoint) else None
        target = str(mountpoint)
        for line in lines:
            fields = line.split()
            if len(fields) >= 4 and fields[1].replace("\\040", " ") == target:
                return fields[3].split(",")
        return None

    def statvfs(self, path: Path) -> os.statvfs_result:
        return os.statvfs(path)

    def getxattr(self, path: Path, name: str) -> bytes:
        return os.getxattr(path, name)

    def setxattr(self, path: Path, name: str, value: bytes) -> None:
        os.setxattr(path, name, value)

    def open(self, path: Path, mode: str) -> Any:
        if "w" in mode or "x" in mode:
            path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, buffering=0)

    def remove(self, path: Path) -> None:
        os.unlink(path)

    def walk(self, root: Path):
        for directory, _dirs, names in os.walk(root):
            for name in names:
                full = Path(directory) / name
                yield full, full.stat().st_size
