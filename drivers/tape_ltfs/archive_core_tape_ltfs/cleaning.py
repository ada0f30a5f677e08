"""Cleaning a drive: when TapeAlert asks, from a cleaning cartridge in a storage slot.

The operator's `tape clean` and the driver's automatic cleaning run this one sequence: unload
the data cartridge (never while LTFS holds the drive), load the first cleaning cartridge that
still has uses, let the drive run it, put it back. A used-up cleaning cartridge is moved to a
free import/export slot for the operator to take away, with an error-level log, and the next
one is tried.
"""

from __future__ import annotations

import logging

import attrs

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import (
    ALERT_EXPIRED_CLEANING_MEDIA,
    ALERT_INVALID_CLEANING_TAPE,
    LoadRequest,
    Slot,
    TransferRequest,
    UnloadRequest,
)
from archive_core_tape_ltfs.port import Library

logger = logging.getLogger(__name__)

_SPENT = frozenset({ALERT_EXPIRED_CLEANING_MEDIA, ALERT_INVALID_CLEANING_TAPE})


@attrs.frozen(kw_only=True)
class Cleaning:
    """What cleaning a drive did."""

    drive: int
    cleaned_with: str | None = None  # the cleaning cartridge's barcode; None if not cleaned
    slot: int | None = None  # where that cartridge lives
    unloaded: str | None = None  # the data cartridge taken out first, if any
    unloaded_to: int | None = None
    retired: tuple[str, ...] = ()  # used-up cleaning cartridges moved out for the operator

    @property
    def cleaned(self) -> bool:
        return self.cleaned_with is not None


def needs_cleaning(library: Library, drive: int) -> bool:
    """Whether the drive asks for cleaning (TapeAlert 20 or 21), read without clearing it."""
    return library.drive(drive).alerts().needs_cleaning


def clean_drive(library: Library, drive: int) -> Cleaning:
    """Clean `drive` now with the first usable cleaning cartridge in a storage slot."""
    inventory = library.changer.inventory()
    bay = inventory.drive(drive)
    unloaded = unloaded_to = None
    if bay is not None and bay.full:
        unloaded, unloaded_to = bay.barcode, library.changer.unload(UnloadRequest(drive=drive))
        inventory = library.changer.inventory()
    retired: list[str] = []
    for cleaner in inventory.cleaning_slots():
        if _run_cleaner(library, drive, cleaner):
            return Cleaning(
                drive=drive,
                cleaned_with=cleaner.barcode,
                slot=cleaner.number,
                unloaded=unloaded,
                unloaded_to=unloaded_to,
                retired=tuple(retired),
            )
        retired.append(_retire(library, cleaner))
    raise errors.CleaningMediaExpired(
        f"Cannot clean drive {drive}: "
        + (
            f"every cleaning cartridge is used up ({', '.join(retired)}, now in the "
            f"import/export slots or left in their slots when those are full)"
            if retired
            else "no cleaning cartridge (barcode CLN...) is in a storage slot"
        )
        + ". Insert a new one and import it.",
        drive=drive,
    )


def _run_cleaner(library: Library, drive: int, cleaner: Slot) -> bool:
    """Run one cleaning cartridge in the drive and put it back; False if it is used up."""
    try:
        library.changer.load(LoadRequest(slot=cleaner.number, drive=drive, barcode=cleaner.barcode))
        library.drive(drive).wait_ready()
    except errors.CleaningMediaExpired:
        spent = True
    else:
        spent = bool(library.drive(drive).alerts().flags & _SPENT)
    finally:
        bay = library.changer.inventory().drive(drive)
        if bay is not None and bay.full:
            library.changer.unload(UnloadRequest(drive=drive, slot=cleaner.number))
    return not spent


def _retire(library: Library, cleaner: Slot) -> str:
    """Move a used-up cleaning cartridge to a free import/export slot, if there is one."""
    barcode = cleaner.barcode or f"the cleaning cartridge in slot {cleaner.number}"
    free = [s for s in library.changer.inventory().import_export_slots() if not s.full]
    if free:
        library.changer.transfer(
            TransferRequest(source=cleaner.number, destination=free[0].number, barcode=barcode)
        )
        where = f"moved to import/export slot {free[0].number}"
    else:
        where = f"left in slot {cleaner.number}: every import/export slot is full"
    logger.error("cleaning cartridge %s is used up; %s; replace it", barcode, where)
    return barcode
