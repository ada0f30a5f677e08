"""SCSI sense dumps as `mtx` prints them on stderr, and what each one means for the port."""

from __future__ import annotations

import re

import attrs

_KEY = re.compile(r"Sense Key=(?P<key>[A-Za-z ]+?)\s*$", re.MULTILINE)
_ASC = re.compile(r"Additional Sense Code = (?P<v>[0-9A-Fa-f]{2})\b")
_ASCQ = re.compile(r"Additional Sense Qualifier = (?P<v>[0-9A-Fa-f]{2})\b")


@attrs.frozen(kw_only=True)
class Sense:
    key: str | None = None
    asc: int | None = None
    ascq: int | None = None

    @property
    def code(self) -> tuple[int | None, int | None]:
        return (self.asc, self.ascq)

    def __str__(self) -> str:
        parts = [self.key or "no sense key"]
        if self.asc is not None:
            parts.append(f"ASC {self.asc:02X}h")
        if self.ascq is not None:
            parts.append(f"ASCQ {self.ascq:02X}h")
        return ", ".join(parts)


def parse_sense(text: str) -> Sense | None:
    """The last complete sense report in `text` (mtx may print one per retry), or None."""
    keys = list(_KEY.finditer(text))
    if not keys:
        return None
    tail = text[keys[-1].start() :]
    asc = _ASC.search(tail)
    ascq = _ASCQ.search(tail)
    return Sense(
        key=keys[-1].group("key").strip(),
        asc=int(asc.group("v"), 16) if asc else None,
        ascq=int(ascq.group("v"), 16) if ascq else None,
    )


UNIT_ATTENTION = "Unit Attention"
NOT_READY = "Not Ready"
HARDWARE_ERROR = "Hardware Error"
ILLEGAL_REQUEST = "Illegal Request"
MEDIUM_ERROR = "Medium Error"
DATA_PROTECT = "Data Protect"

BECOMING_READY = (0x04, 0x01)
OFFLINE = (0x04, 0x12)
NOT_READY_TO_READY = (0x28, 0x00)
POWER_ON_RESET = (0x29, 0x00)
MEDIUM_NOT_PRESENT = (0x3A, 0x00)
DESTINATION_FULL = (0x3B, 0x0D)
SOURCE_EMPTY = (0x3B, 0x0E)
CLEANING_CARTRIDGE = (0x30, 0x03)
REMOVAL_PREVENTED = (0x53, 0x03)
