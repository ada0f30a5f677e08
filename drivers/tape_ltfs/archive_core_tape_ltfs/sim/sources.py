"""Archive sources slower than the local disk, paced on the reading caller's clock.

The stand-in for an HDD array or a NAS in front of the tape driver: each open costs
`open_seconds` and each stream delivers `rate` bytes per second, independently of the others
(several streams at once each get `rate`, as on an array serving several readers). The bytes
are the local files' own; only the clock of whoever opens or reads is moved on, so on the
simulator the timeline shows whether the drive was kept streaming. Give one as the tape
driver's `source_opener`.
"""

from __future__ import annotations

from typing import Any

import attrs

from archive_core import ArchiveItem
from archive_core.transfer import RegularFile, open_first_readable


@attrs.frozen(kw_only=True)
class PacedOpener:
    rate: float  # bytes per second, per stream
    open_seconds: float = 0.0

    def __call__(self, item: ArchiveItem, clock: Any) -> tuple[str, PacedSource]:
        path, file = open_first_readable(item.sources)
        clock.sleep(self.open_seconds)
        return path, PacedSource(file, self.rate)


class PacedSource:
    def __init__(self, file: RegularFile, rate: float) -> None:
        self._file = file
        self._rate = rate
        self.size = file.size

    def readinto_at(self, view: memoryview, offset: int, clock: Any) -> int:
        count = self._file.readinto_at(view, offset)
        clock.sleep(count / self._rate)
        return count

    def close(self) -> None:
        self._file.close()
