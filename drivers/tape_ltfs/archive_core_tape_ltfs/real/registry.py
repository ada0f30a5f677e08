"""The mounts of this host's LTFS drives, kept where every process of the host sees them.

One JSON file per drive under `<work_directory>/mounts/`, written whole to a temporary file
and renamed over the old one, so a reader sees the previous record or the next, never half of
one; removed when the volume is unmounted.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import attrs
import cattrs

_converter = cattrs.Converter()


@attrs.frozen(kw_only=True)
class Registered:
    """What is written down about a mount: enough for another process to judge it."""

    drive: int
    mountpoint: str
    barcode: str | None
    owner_pid: int
    owner_started: float
    ltfs_pid: int
    ltfs_started: float
    host: str
    since: float  # library clock at mount
    owner_name: str = ""  # the caller of the owner process (a worker, a command)


class MountRegistry:
    def __init__(self, work_directory: Path) -> None:
        self.directory = work_directory / "mounts"
        self.host = socket.gethostname()

    def _path(self, drive: int) -> Path:
        return self.directory / f"drive{drive}.json"

    def write(self, record: Registered) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self._path(record.drive)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(_converter.unstructure(record), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)

    def read(self, drive: int) -> Registered | None:
        try:
            raw = json.loads(self._path(drive).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return _converter.structure(raw, Registered)

    def remove(self, drive: int, *, ltfs_pid: int | None = None) -> None:
        """Forget the mount of `drive`; with `ltfs_pid`, only if it is still that mount's."""
        record = self.read(drive)
        if record is None or (ltfs_pid is not None and record.ltfs_pid != ltfs_pid):
            return
        self._path(drive).unlink(missing_ok=True)

    def records(self) -> tuple[Registered, ...]:
        if not self.directory.is_dir():
            return ()
        found = []
        for path in sorted(self.directory.glob("drive*.json")):
            record = self.read(int(path.stem.removeprefix("drive")))
            if record is not None:
                found.append(record)
        return tuple(found)
