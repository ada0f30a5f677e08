"""What a restore batch asks for: the wanted files and the copies on tape each can be read from."""

from __future__ import annotations

import attrs

from archive_core_tape_ltfs.model import FileLocation


@attrs.frozen(kw_only=True)
class TapeCopy:
    """One copy of a file on one LTFS volume, as the catalog records it.

    `partition` and `startblock` locate the file's first extent; both are None when the
    catalog has no start block (the planner then asks a captured index of the volume).
    """

    barcode: str
    volume_uuid: str
    path: str  # relative to the volume root
    size: int
    partition: str | None = None  # "a" (index) or "b" (data)
    startblock: int | None = None

    @property
    def location(self) -> FileLocation | None:
        if self.partition is None or self.startblock is None:
            return None
        return FileLocation(partition=self.partition, startblock=self.startblock)


@attrs.frozen(kw_only=True)
class WantedFile:
    """A file the batch restores: the caller's `key` (its destination is the caller's
    business), its size (None when the catalog does not know it), and the copies it can be
    read from, in the catalog's preference."""

    key: str
    size: int | None
    copies: tuple[TapeCopy, ...] = ()

    @property
    def needs_tape(self) -> bool:
        """An empty file is restored by creating it: no cartridge has to move for it. A file
        of unknown size is read from tape all the same."""
        return self.size != 0
