"""Which cartridge of a pool takes the next file: appendable ones with room, mounted first.

Never an offline cartridge (vaulted, or in an import/export slot), never a read-only,
damaged or full one, never one whose WORM-ness differs from the pool's. A cartridge of the pool
the media store does not know is mounted to see what it holds first (`unrecorded`).
"""

from __future__ import annotations

from archive_core_tape_ltfs.cost import INDEX_BYTES_PER_FILE
from archive_core_tape_ltfs.driver.media import Cartridge, CartridgeState
from archive_core_tape_ltfs.driver.pools import Pool
from archive_core_tape_ltfs.model import DriveBay, Inventory, Slot


def headroom(configured: int, *, total_bytes: int, files: int) -> int:
    """Space kept free on a cartridge: the configured amount, 1% of the cartridge, or twice
    the estimated index (with one more file), whichever is most."""
    return max(configured, total_bytes // 100, 2 * (files + 1) * INDEX_BYTES_PER_FILE)


def room_for(cartridge: Cartridge, configured_headroom: int) -> int:
    """Bytes of file data the cartridge may still take, as the media store last saw it."""
    keep = headroom(configured_headroom, total_bytes=cartridge.total_bytes, files=cartridge.files)
    return max(0, cartridge.free_bytes - keep)


def _online(inventory: Inventory, barcode: str) -> int | None:
    """0 when the cartridge is in a drive, 1 in a storage slot, None when not online."""
    found = inventory.locate(barcode)
    if isinstance(found, DriveBay):
        return 0
    if isinstance(found, Slot) and not found.is_import_export:
        return 1
    return None


def appendable(
    pool: Pool,
    known: list[Cartridge],
    inventory: Inventory,
    *,
    size: int,
    configured_headroom: int,
    exclude: set[str],
) -> list[Cartridge]:
    """The pool's cartridges that may take a file of `size`, best first: mounted or loaded
    before those in slots, then the fullest (so cartridges fill one after another)."""
    ranked = []
    for cartridge in known:
        if (
            cartridge.pool != pool.name
            or cartridge.barcode in exclude
            or cartridge.state is not CartridgeState.APPENDABLE
            or cartridge.worm != pool.worm
            or not pool.holds(cartridge.barcode)
            or room_for(cartridge, configured_headroom) < size
        ):
            continue
        where = _online(inventory, cartridge.barcode)
        if where is not None:
            ranked.append((where, cartridge.free_bytes, cartridge.barcode, cartridge))
    ranked.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in ranked]


def unrecorded(
    pool: Pool, known: list[Cartridge], inventory: Inventory, *, exclude: set[str]
) -> list[str]:
    """Barcodes of the pool's cartridges online that the media store has no row for (blank
    scratch cartridges, or volumes it lost track of), those in a drive first."""
    recorded = {c.barcode for c in known}
    found = []
    for barcode in inventory.data_barcodes():
        if barcode in recorded or barcode in exclude or not pool.holds(barcode):
            continue
        where = _online(inventory, barcode)
        if where is not None:
            found.append((where, barcode))
    return [barcode for _where, barcode in sorted(found)]
