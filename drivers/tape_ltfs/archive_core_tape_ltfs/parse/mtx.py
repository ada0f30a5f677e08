"""`mtx status` and `mtx inquiry` output, and mtx failures turned into typed errors."""

from __future__ import annotations

import re

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import DriveBay, Inventory, Slot, SlotKind
from archive_core_tape_ltfs.parse import sense as sk

_HEADER = re.compile(
    r"^\s*Storage Changer (?P<device>.*?):(?P<drives>\d+) Drives, (?P<slots>\d+) Slots"
    r" \( (?P<ie>\d+) Import/Export \)\s*$"
)
_DRIVE = re.compile(
    r"^Data Transfer Element (?P<index>\d+):(?P<state>Empty|Full)"
    r"(?: \((?:Storage Element (?P<source>\d+)|Unknown Storage Element) Loaded\))?(?P<tail>.*)$"
)
_SLOT = re.compile(
    r"^\s+Storage Element (?P<number>\d+)(?P<ie> IMPORT/EXPORT)?:(?P<state>Empty|Full)(?P<tail>.*)$"
)
# The colon in front keeps `:AlternateVolumeTag = X` from being read as the volume tag.
_TAG = re.compile(r":VolumeTag\s*=\s*(?P<tag>[^:]*)")


def _tag(tail: str) -> str | None:
    match = _TAG.search(tail)
    if not match:
        return None
    return match.group("tag").strip() or None


def parse_status(stdout: str) -> Inventory:
    """An Inventory from `mtx status` stdout; sense noise belongs on stderr and is ignored here."""
    changer = ""
    drives: list[DriveBay] = []
    slots: list[Slot] = []
    for line in stdout.splitlines():
        line = line.rstrip("\r\n")
        if header := _HEADER.match(line):
            changer = header.group("device")
        elif drive := _DRIVE.match(line):
            full = drive.group("state") == "Full"
            source = drive.group("source")
            drives.append(
                DriveBay(
                    index=int(drive.group("index")),
                    full=full,
                    barcode=_tag(drive.group("tail")) if full else None,
                    source_slot=int(source) if source else None,
                )
            )
        elif slot := _SLOT.match(line):
            full = slot.group("state") == "Full"
            slots.append(
                Slot(
                    number=int(slot.group("number")),
                    kind=SlotKind.IMPORT_EXPORT if slot.group("ie") else SlotKind.STORAGE,
                    full=full,
                    barcode=_tag(slot.group("tail")) if full else None,
                )
            )
    if not drives and not slots:
        raise errors.ToolFailed(
            "mtx status printed no drive or slot lines; the changer device may be wrong or the "
            "library may not be answering.",
            detail=stdout[-500:],
        )
    return Inventory(changer=changer, drives=tuple(drives), slots=tuple(slots))


_INQUIRY = re.compile(r"^(?P<key>Product Type|Vendor ID|Product ID|Revision):\s*'?(?P<v>[^']*)'?")


def parse_inquiry(stdout: str) -> dict[str, str]:
    """`mtx inquiry`: Product Type, Vendor ID, Product ID and Revision, padding stripped."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        if match := _INQUIRY.match(line.strip()):
            found[match.group("key")] = match.group("v").strip()
    return found


# Pre-checks mtx makes itself before sending a MOVE MEDIUM (mtx.c), then sense-based ones.
_DRIVE_FULL = re.compile(r"Drive (?P<d>\d+) Full \(Storage Element (?P<s>\d+) loaded\)")
_DRIVE_EMPTY = re.compile(r"Data Transfer Element (?P<d>\d+) is Empty")
_SLOT_FULL = re.compile(r"Storage Element (?P<s>\d+) is Already Full")
_SOURCE_EMPTY = re.compile(r"Source Element Address (?P<a>\d+) is Empty")
_DEST_FULL = re.compile(r"Destination Element Address (?P<a>\d+) is Already Full")
_NO_SOURCE = re.compile(r"No Source for tape in drive (?P<d>\d+)|Do not know which slot")


def failure(
    stderr: str, *, device: str, what: str, slot: int | None = None, drive: int | None = None
) -> errors.TapeError:
    """The typed error for a failed mtx command; `what` says what was asked, for the message."""
    where = {"device": device, "slot": slot, "drive": drive, "detail": stderr.strip()[-800:]}
    if m := _DRIVE_FULL.search(stderr):
        return errors.DestinationFull(
            f"Cannot {what}: drive {m.group('d')} already holds the cartridge from slot "
            f"{m.group('s')}. Unload it first.",
            **{**where, "drive": int(m.group("d"))},
        )
    if m := _DRIVE_EMPTY.search(stderr):
        return errors.SourceEmpty(
            f"Cannot {what}: drive {m.group('d')} holds no cartridge.",
            **{**where, "drive": int(m.group("d"))},
        )
    if m := _SLOT_FULL.search(stderr):
        return errors.DestinationFull(
            f"Cannot {what}: slot {m.group('s')} already holds a cartridge. Re-read the "
            f"inventory and choose an empty slot.",
            **{**where, "slot": int(m.group("s"))},
        )
    if _NO_SOURCE.search(stderr):
        return errors.ChangerError(
            f"Cannot {what}: the library does not know which slot the cartridge came from "
            f"(it was inserted by hand). Name a free slot explicitly.",
            **where,
        )
    if "cannot open SCSI device" in stderr or "is not an sg device" in stderr:
        return errors.ToolFailed(
            f"Cannot {what}: the changer device {device} cannot be opened. Check the library "
            f"config's changer device and that the library is powered and cabled.",
            **where,
        )
    found = sk.parse_sense(stderr)
    if found is not None:
        error = from_sense(found, where=where, what=what)
        if error is not None:
            return error
    if _SOURCE_EMPTY.search(stderr):
        return errors.SourceEmpty(f"Cannot {what}: the source element is empty.", **where)
    if _DEST_FULL.search(stderr):
        return errors.DestinationFull(f"Cannot {what}: the destination is full.", **where)
    if "Cleaning Cartridge Installed and Ejected" in stderr:
        return errors.CleaningMediaExpired(
            f"Cannot {what}: the drive ejected the cleaning cartridge (used up or invalid).",
            **where,
        )
    if "Drive needs offline before move" in stderr:
        return errors.UnloadRefused(
            f"Cannot {what}: the drive must be taken offline (rewound and unthreaded) first.",
            **where,
        )
    return errors.ChangerError(
        f"Cannot {what}: mtx failed: {_last_line(stderr) or 'no message'}.", **where
    )


def from_sense(sense: sk.Sense, *, where: dict, what: str) -> errors.TapeError | None:
    code = sense.code
    # Before the unit attention: a library reports the ejected cleaning cartridge with that
    # sense key, and retrying the load would only find the cartridge in the drive.
    if code == sk.CLEANING_CARTRIDGE:
        return errors.CleaningMediaExpired(
            f"Cannot {what}: the drive ejected the cleaning cartridge (used up or invalid).",
            **where,
        )
    if sense.key == sk.UNIT_ATTENTION or code in (sk.NOT_READY_TO_READY, sk.POWER_ON_RESET):
        return errors.UnitAttention(
            f"Cannot {what}: the library reports a unit attention ({sense}): it was reset or "
            f"its door was opened. The inventory must be read again.",
            **where,
        )
    if code == sk.SOURCE_EMPTY:
        return errors.SourceEmpty(f"Cannot {what}: the source element is empty.", **where)
    if code == sk.DESTINATION_FULL:
        return errors.DestinationFull(f"Cannot {what}: the destination is full.", **where)
    if code == sk.REMOVAL_PREVENTED:
        return errors.UnloadRefused(
            f"Cannot {what}: the drive refuses to release the cartridge (medium removal "
            f"prevented). An LTFS process may still hold it; wait for it to exit or release "
            f"the drive. Do not power-cycle the library.",
            **where,
        )
    if code == sk.MEDIUM_NOT_PRESENT and sense.key == sk.NOT_READY:
        return errors.UnloadRefused(
            f"Cannot {what}: the drive must be taken offline (rewound and unthreaded) first.",
            **where,
        )
    if sense.key == sk.NOT_READY and code == sk.BECOMING_READY:
        return errors.LibraryBecomingReady(
            f"Cannot {what}: the library is still becoming ready ({sense}); it is probably "
            f"scanning its slots. Try again in a few minutes.",
            **where,
        )
    if sense.key == sk.NOT_READY:
        return errors.LibraryOffline(
            f"Cannot {what}: the library is offline ({sense}). Check the library's front "
            f"panel: it must be online and in random-access mode.",
            **where,
        )
    if sense.key == sk.HARDWARE_ERROR:
        return errors.ChangerHardwareError(
            f"Cannot {what}: the library reports a hardware error ({sense}). Check the "
            f"library's front panel or event log.",
            **where,
        )
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
