"""Checking a cartridge's volume against the media store (`archive-core tape scan`).

The volume is mounted read-only through the job's loader (drive and cartridge leased, identity
checked), its index listed and compared with what the store says the driver wrote there. A
cartridge whose index differs is marked read-only with the differences as its reason: nothing
more is written to it until an operator has looked.
"""

from __future__ import annotations

import logging

from archive_core import ArchiveCoreError
from archive_core_tape_ltfs.driver.loader import Loader
from archive_core_tape_ltfs.driver.media import CartridgeState, MediaStore
from archive_core_tape_ltfs.model import CapturedIndex, IndexedFile
from archive_core_tape_ltfs.reconcile import Catalogued, Drift, compare

logger = logging.getLogger(__name__)

#: States a drift does not change: they are never written to anyway.
_UNWRITTEN = (CartridgeState.READ_ONLY, CartridgeState.DAMAGED, CartridgeState.RETIRED)


def scan_cartridge(barcode: str, *, loader: Loader, store: MediaStore, context: str) -> Drift:
    """The differences between the cartridge's volume and the store's record of it."""
    cartridge = store.cartridge(barcode)
    if cartridge is None:
        raise ArchiveCoreError(
            f"Cartridge {barcode} is not in this target's media store: the driver never "
            f"recorded it, so there is nothing to compare its volume with."
        )
    mounted = loader.mount(cartridge, read_only=True)
    try:
        listed = tuple(
            IndexedFile(path=path, size=size, fileuid=0) for path, size in mounted.mount.files()
        )
        index = CapturedIndex(
            volume_uuid=mounted.volume.uuid, generation=mounted.volume.generation, files=listed
        )
    finally:
        loader.release(mounted)
    recorded = [Catalogued(path=f.path, size=f.size) for f in store.files_on(barcode)]
    drift = compare(barcode, recorded, index)
    if drift.clean:
        logger.info("%s: %s", context, drift.describe())
    else:
        logger.error("%s: %s", context, drift.describe())
        if cartridge.state not in _UNWRITTEN:
            store.mark(barcode, CartridgeState.READ_ONLY, drift.describe())
    return drift
