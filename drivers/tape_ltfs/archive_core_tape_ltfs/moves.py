"""Checks a robot move against a fresh inventory before the library is asked to make it."""

from __future__ import annotations

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import DriveBay, Inventory, Slot


def bay(inventory: Inventory, index: int) -> DriveBay:
    found = inventory.drive(index)
    if found is None:
        raise errors.ChangerError(
            f"The library has no drive {index} (it has {len(inventory.drives)}).", drive=index
        )
    return found


def full_slot(inventory: Inventory, number: int, barcode: str | None, *, what: str) -> Slot:
    """The slot `number`, checked to hold the cartridge `barcode` (if given)."""
    slot = inventory.slot(number)
    if slot is None:
        raise errors.ChangerError(
            f"Cannot {what} from slot {number}: the library has no such slot.", slot=number
        )
    if not slot.full:
        if barcode is not None:
            where = inventory.locate(barcode)
            if where is None:
                raise errors.CartridgeOffline(
                    f"Cartridge {barcode} is not in the library (slot {number} is empty). "
                    f"Insert it through an import/export slot and import it.",
                    slot=number,
                    barcode=barcode,
                )
            if isinstance(where, Slot) and where.is_import_export:
                raise errors.CartridgeOffline(
                    f"Cartridge {barcode} is waiting in import/export slot {where.number}, not "
                    f"in slot {number}. Import it first.",
                    slot=where.number,
                    barcode=barcode,
                )
            raise errors.SourceEmpty(
                f"Cannot {what} {barcode} from slot {number}: the slot is empty; the cartridge "
                f"is {describe(where)}.",
                slot=number,
                barcode=barcode,
            )
        raise errors.SourceEmpty(f"Cannot {what} from slot {number}: it is empty.", slot=number)
    if barcode is not None:
        if slot.barcode is None:
            raise errors.BarcodeUnreadable(
                f"Cannot {what} {barcode} from slot {number}: the library cannot read the "
                f"barcode of the cartridge there. Check its label, or load it and read its "
                f"LTFS volume serial.",
                slot=number,
                barcode=barcode,
            )
        if slot.barcode != barcode:
            raise errors.WrongCartridge(
                f"Cannot {what} {barcode} from slot {number}: the slot holds {slot.barcode}. "
                f"Cartridges were moved by hand; read the inventory again.",
                slot=number,
                barcode=barcode,
            )
    return slot


def free_slot(inventory: Inventory, number: int, *, what: str) -> Slot:
    slot = inventory.slot(number)
    if slot is None:
        raise errors.ChangerError(
            f"Cannot {what} slot {number}: the library has no such slot.", slot=number
        )
    if slot.full:
        raise errors.DestinationFull(
            f"Cannot {what} slot {number}: it holds "
            f"{slot.barcode or 'a cartridge without a readable barcode'}.",
            slot=number,
            barcode=slot.barcode,
        )
    return slot


def empty_bay(inventory: Inventory, index: int, *, loading: int) -> DriveBay:
    """Drive `index`, checked to be empty before slot `loading` is loaded into it."""
    target = bay(inventory, index)
    if target.full:
        raise errors.DestinationFull(
            f"Cannot load slot {loading} into drive {index}: the drive already holds "
            f"{target.barcode or 'a cartridge without barcode'}.",
            drive=index,
            barcode=target.barcode,
        )
    return target


def unload_target(inventory: Inventory, index: int, slot: int | None) -> int:
    """The free slot drive `index`'s cartridge goes to: `slot`, or the one it came from."""
    source = bay(inventory, index)
    if not source.full:
        raise errors.SourceEmpty(
            f"Cannot unload drive {index}: it holds no cartridge.", drive=index
        )
    target = slot if slot is not None else source.source_slot
    if target is None:
        raise errors.ChangerError(
            f"Cannot unload drive {index}: the library does not know which "
            f"slot {source.barcode or 'its cartridge'} came from. Name a free slot.",
            drive=index,
            barcode=source.barcode,
        )
    free_slot(inventory, target, what=f"unload drive {index} into")
    return target


def describe(element: Slot | DriveBay | None) -> str:
    if isinstance(element, DriveBay):
        return f"in drive {element.index}"
    if isinstance(element, Slot):
        return f"in {'import/export ' if element.is_import_export else ''}slot {element.number}"
    return "not in the library"
