"""The library as the planner sees it: what each drive holds, which cartridges are online."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from archive_core_tape_ltfs.model import is_cleaning_barcode
from archive_core_tape_ltfs.port import Library


class Where(enum.Enum):
    """How far a cartridge is from being read, cheapest first."""

    MOUNTED = "mounted"  # in a drive, its LTFS volume mounted: read at once
    LOADED = "loaded"  # in a drive, not mounted: mount first
    ONLINE = "online"  # in a storage slot: the robot fetches it
    OFFLINE = "offline"  # vaulted or in an import/export slot: an operator inserts it


@attrs.frozen(kw_only=True)
class DriveView:
    index: int
    barcode: str | None = None  # the cartridge in the drive, None when empty
    mounted: bool = False


@attrs.frozen(kw_only=True)
class LibraryView:
    """One snapshot of the library for planning (nothing in it moves anything)."""

    drives: tuple[DriveView, ...]
    online: Mapping[str, int] = attrs.field(factory=dict)  # barcode -> storage slot
    # Known to be outside: vaulted or waiting in an import/export slot. Any barcode neither in
    # a drive nor online counts as offline too.
    offline: frozenset[str] = frozenset()
    generation: int = 9  # of the drives, for the cost model
    form: str = "FH"
    # Files on each volume (from the catalog), for the time a mount reads the index.
    volume_files: Mapping[str, int] = attrs.field(factory=dict)

    def drive_holding(self, barcode: str) -> DriveView | None:
        return next((d for d in self.drives if d.barcode == barcode), None)

    def where(self, barcode: str) -> Where:
        drive = self.drive_holding(barcode)
        if drive is not None:
            return Where.MOUNTED if drive.mounted else Where.LOADED
        return Where.ONLINE if barcode in self.online else Where.OFFLINE

    def slot_of(self, barcode: str) -> int | None:
        return self.online.get(barcode)


def read_view(
    library: Library,
    *,
    generation: int,
    form: str = "FH",
    volume_files: Mapping[str, int] | None = None,
) -> LibraryView:
    """The view of a library now: its inventory and the LTFS mounts on this host."""
    inventory = library.changer.inventory()
    mounted = {m.drive for m in library.ltfs.mounts() if m.ltfs_alive}
    drives = tuple(
        DriveView(
            index=bay.index,
            barcode=bay.barcode if bay.full else None,
            mounted=bay.full and bay.index in mounted,
        )
        for bay in inventory.drives
        if bay.index in library.drive_indexes()
    )
    online = {
        s.barcode: s.number
        for s in inventory.storage_slots()
        if s.full and s.barcode and not is_cleaning_barcode(s.barcode)
    }
    waiting = frozenset(s.barcode for s in inventory.import_export_slots() if s.full and s.barcode)
    return LibraryView(
        drives=drives,
        online=online,
        offline=waiting,
        generation=generation,
        form=form,
        volume_files=dict(volume_files or {}),
    )
