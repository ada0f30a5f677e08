"""LTFS tool output: `ltfs -o device_list`, mkltfs/ltfs/ltfsck messages and exit codes, xattrs."""

from __future__ import annotations

import re

import attrs

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import ReadOnlyReason

_DEVICE = re.compile(
    r"^Device Name = (?P<device>\S+)(?: \((?P<hctl>[\d.]+)\))?, "
    r"Vend[eo]r ID = (?P<vendor>[^,]*), Product ID = (?P<product>[^,]*), "
    r"Serial Number = (?P<serial>[^,]*), Product Name =\s*\[(?P<name>[^\]]*)\]"
)


@attrs.frozen(kw_only=True)
class ListedDevice:
    device: str
    vendor: str
    product: str
    serial: str
    hctl: str | None = None


def parse_device_list(stdout: str) -> tuple[ListedDevice, ...]:
    """Drives from `ltfs -o device_list` (both the `Vender` and `Vendor` spellings)."""
    found = []
    for line in stdout.splitlines():
        if match := _DEVICE.match(line.strip()):
            found.append(
                ListedDevice(
                    device=match.group("device"),
                    vendor=match.group("vendor").strip(),
                    product=match.group("product").strip(),
                    serial=match.group("serial").strip(),
                    hctl=match.group("hctl"),
                )
            )
    return tuple(found)


_UUID = re.compile(r"LTFS15013I Volume UUID is: (?P<uuid>[0-9a-fA-F-]{36})")
_MOUNTED = re.compile(
    r"LTFS11031I Volume mounted successfully\. (?P<barcode>\S*) : Gen = (?P<gen>\d+)"
)
_GENERATION = re.compile(r"\bGen(?:eration)?\s*[=:]\s*(?P<gen>\d+)")

# mkltfs exit status (bit flags, src/libltfs/ltfs_error.h)
MKLTFS_OK = 0
MKLTFS_UNFORMATTED = 1
MKLTFS_OPERATIONAL = 8
MKLTFS_USAGE = 16
MKLTFS_CANCELLED = 32


def volume_uuid(output: str) -> str | None:
    match = _UUID.search(output)
    return match.group("uuid").lower() if match else None


def mounted_generation(output: str) -> int | None:
    match = _MOUNTED.search(output)
    return int(match.group("gen")) if match else None


# What ltfs prints when it finds at mount time that the medium takes no (more) file data
# (src/main.c, after ltfs_mount): it then adds `ro` itself, except at programmable early warning
# (14071I), where it mounts read-write so metadata can still change. 14019I is printed for a
# write-protected cartridge and for one with an earlier permanent write error alike; the lock
# state tells the two apart.
_READ_ONLY_AT_MOUNT = {
    "LTFS14019I": ReadOnlyReason.WRITE_PROTECTED,
    "LTFS14071I": ReadOnlyReason.FULL,
    "LTFS14073I": ReadOnlyReason.FULL,
    "LTFS14074I": ReadOnlyReason.FULL,
    "LTFS14078I": ReadOnlyReason.OLDER_GENERATION,
}


def read_only_at_mount(log: str) -> frozenset[ReadOnlyReason]:
    """Why ltfs's mount messages say the volume takes no file data."""
    return frozenset(reason for id_, reason in _READ_ONLY_AT_MOUNT.items() if id_ in log)


def rollback_generations(output: str) -> tuple[int, ...]:
    """Generation numbers `ltfsck -l` lists (any `Gen = N` / `Generation: N` mention)."""
    seen: list[int] = []
    for match in _GENERATION.finditer(output):
        gen = int(match.group("gen"))
        if gen not in seen:
            seen.append(gen)
    return tuple(sorted(seen))


def failure(
    output: str,
    *,
    what: str,
    drive: int | None,
    device: str | None,
    barcode: str | None = None,
) -> errors.TapeError:
    """The typed error for an LTFS tool failure, from the LTFS message ids in its output."""
    where = {
        "drive": drive,
        "device": device,
        "barcode": barcode,
        "detail": output.strip()[-800:],
    }
    tape = f"the cartridge {barcode}" if barcode else f"the cartridge in drive {drive}"

    def has(*ids: str) -> bool:
        return any(i in output for i in ids)

    if has("LTFS15047E"):
        return errors.AlreadyFormatted(
            f"Cannot {what}: {tape} already holds an LTFS volume. Formatting it would destroy "
            f"its files; force the format only for a cartridge the catalog does not know.",
            **where,
        )
    if has("LTFS11095E", "LTFS14019I") and "format" in what:
        return errors.WriteProtected(
            f"Cannot {what}: {tape} is write-protected. Slide its write-protect tab to format it.",
            **where,
        )
    if has("LTFS11009E", "LTFS17168E"):
        return errors.UnformattedTape(
            f"Cannot {what}: {tape} holds no LTFS volume (unformatted or written by other "
            f"software). Format it only if it belongs to a scratch pool.",
            **where,
        )
    if has("LTFS11299E", "LTFS14078I"):
        return errors.MediaError(
            f"Cannot {what}: {tape} is a medium generation this drive cannot write.",
            **where,
        )
    if has("LTFS11027E", "LTFS11220E", "LTFS17131I", "index is invalid", "INDEX_INVALID"):
        return errors.InconsistentIndex(
            f"Cannot {what}: the LTFS index of {tape} does not match the medium (the volume "
            f"was not unmounted cleanly). Run a check (ltfsck) on it before using it again.",
            **where,
        )
    if has("LTFS12045E", "LTFS12047E", "Dropping to read-only"):
        return errors.ReadOnlyVolume(
            f"Cannot {what}: LTFS dropped {tape} to read-only after a write error; it can be "
            f"read but never appended again.",
            **where,
        )
    if has("LTFS12064E", "no space left"):
        return errors.NoSpace(f"Cannot {what}: {tape} is full.", **where)
    if has("reservation conflict", "Reservation Conflict", "RESERVATION_CONFLICT"):
        return errors.DriveBusy(
            f"Cannot {what}: drive {drive} is reserved by another host or by an LTFS process "
            f"that crashed; release the drive and try again.",
            **where,
        )
    if has("LTFS11006E", "not ready", "NOT_READY"):
        return errors.DriveNotReady(
            f"Cannot {what}: drive {drive} could not load or ready the cartridge.",
            **where,
        )
    if has("cleaning", "CLEANING_REQUIRED"):
        return errors.NeedsCleaning(f"Cannot {what}: drive {drive} needs cleaning.", **where)
    return errors.ToolFailed(
        f"Cannot {what}: LTFS failed on drive {drive}: {_last(output) or 'no message'}.",
        **where,
    )


def _last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
