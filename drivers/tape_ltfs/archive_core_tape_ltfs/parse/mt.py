"""`mt status` (mt-st) output, and what mt's failures mean."""

from __future__ import annotations

import re

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import DriveState, DriveStatus

_POSITION = re.compile(
    r"File number=(?P<file>-?\d+), block number=(?P<block>-?\d+), partition=(?P<part>-?\d+)"
)
_DENSITY = re.compile(r"Density code 0x(?P<code>[0-9a-fA-F]+)")
_BITS = re.compile(r"General status bits on \((?P<hex>[0-9a-fA-F]+)\):\s*\n(?P<names>[^\n]*)")

BOT = 0x40000000
WR_PROT = 0x04000000
ONLINE = 0x01000000
DR_OPEN = 0x00040000

# Density codes of the LTO formats (LinearTapeFileSystem/ltfs src/libltfs/tape_ops.h TC_DC_*;
# mt-st's table agrees up to LTO-9) as the media id of the barcode that format carries: 0x5D is
# an LTO-7 cartridge an LTO-8 drive formatted as M8.
DENSITY_MEDIA = {
    0x58: "L5",
    0x5A: "L6",
    0x5C: "L7",
    0x5D: "M8",
    0x5E: "L8",
    0x60: "L9",
    0x62: "LA",
}

FLAG_NAMES = {
    0x80000000: "EOF",
    BOT: "BOT",
    0x20000000: "EOT",
    0x10000000: "SM",
    0x08000000: "EOD",
    WR_PROT: "WR_PROT",
    ONLINE: "ONLINE",
    0x00800000: "D_6250",
    0x00400000: "D_1600",
    0x00200000: "D_800",
    DR_OPEN: "DR_OPEN",
    0x00010000: "IM_REP_EN",
    0x00008000: "CLN",
}


def parse_status(stdout: str) -> DriveStatus:
    bits_match = _BITS.search(stdout)
    if bits_match is None:
        raise errors.ToolFailed(
            "mt status printed no status bits; is this mt-st (not GNU cpio's mt)?",
            detail=stdout[-500:],
        )
    bits = int(bits_match.group("hex"), 16)
    names = set(bits_match.group("names").split())
    online = bool(bits & ONLINE) or "ONLINE" in names
    if online:
        state = DriveState.READY
    elif bits & DR_OPEN or "DR_OPEN" in names:
        state = DriveState.EMPTY
    else:
        state = DriveState.NOT_READY
    position = _POSITION.search(stdout)
    density = _DENSITY.search(stdout)
    file_number = int(position.group("file")) if position else None
    block_number = int(position.group("block")) if position else None
    return DriveStatus(
        state=state,
        write_protected=bool(bits & WR_PROT) or "WR_PROT" in names,
        at_bot=bool(bits & BOT) or "BOT" in names,
        density_code=int(density.group("code"), 16) if density else None,
        file_number=file_number if file_number is not None and file_number >= 0 else None,
        block_number=block_number if block_number is not None and block_number >= 0 else None,
        partition=int(position.group("part")) if position else None,
    )


def flag_names(bits: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if bits & bit]


def failure(stderr: str, *, device: str, drive: int | None, what: str) -> errors.TapeError:
    where = {"device": device, "drive": drive, "detail": stderr.strip()[-500:]}
    if "No medium found" in stderr or "The device is offline" in stderr:
        return errors.DriveNotReady(
            f"Cannot {what}: drive {drive} ({device}) has no cartridge loaded or is offline.",
            **where,
        )
    if "write-protected" in stderr:
        return errors.WriteProtected(
            f"Cannot {what}: the cartridge in drive {drive} is write-protected.", **where
        )
    if "Device or resource busy" in stderr:
        return errors.DriveBusy(
            f"Cannot {what}: drive {drive} ({device}) is in use by another process.", **where
        )
    if "Input/output error" in stderr:
        return errors.MediaError(
            f"Cannot {what}: drive {drive} ({device}) reported an I/O error.", **where
        )
    return errors.DriveError(
        f"Cannot {what}: mt failed on {device}: {stderr.strip() or 'no message'}.", **where
    )
