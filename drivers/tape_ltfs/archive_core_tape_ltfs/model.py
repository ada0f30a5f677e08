"""Frozen values the tape port speaks in: inventory, drive identity and state, volumes, requests."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator

import attrs

CLEANING_PREFIX = "CLN"

# TapeAlert flag numbers the driver acts on (tape-facts §2.5, PBS classification).
ALERT_CLEANING_MEDIA = 11
ALERT_CLEANING_REQUIRED = 20
ALERT_CLEANING_REQUESTED = 21
ALERT_EXPIRED_CLEANING_MEDIA = 22
ALERT_INVALID_CLEANING_TAPE = 23
CRITICAL_ALERTS = frozenset(
    {4, 5, 6, 9, 14, 16, 22, 23, 30, 31, 33, 38, 41, 45, 52, 53, 54, 55, 56, 57}
)
MEDIA_LIFE_ALERTS = frozenset({7, 19})
CLEANING_ALERTS = frozenset({ALERT_CLEANING_REQUIRED, ALERT_CLEANING_REQUESTED})

_VOLSER = re.compile(r"^[0-9A-Z]{6}$")


def is_cleaning_barcode(barcode: str | None) -> bool:
    """Cleaning cartridges carry the `CLN` barcode prefix in every library studied."""
    return bool(barcode) and barcode.upper().startswith(CLEANING_PREFIX)


def volume_serial_for(barcode: str) -> str | None:
    """The 6-character LTFS volume serial of a barcode (`ABC123L9` -> `ABC123`), or None."""
    serial = barcode.strip().upper()[:6]
    return serial if _VOLSER.match(serial) else None


@attrs.frozen(kw_only=True)
class MediaType:
    """What a cartridge is, from the media id of its barcode (`L9`, WORM `LZ`, `M8`, `LA`).

    The label is the operator's claim; a drive reports what it found (density code, MAM medium
    type), and the two are compared before a write.
    """

    code: str  # the barcode's last two characters
    generation: int  # the LTO generation whose format the cartridge holds
    worm: bool = False

    @property
    def name(self) -> str:
        kind = "WORM" if self.worm else "data"
        return f"LTO-{self.generation} {kind} ({self.code})"


# The media ids of tape-facts §1.3: L5..L9 and LA (LTO-10) data, LV..LZ WORM for LTO-5..9, M8
# an LTO-7 cartridge formatted to 9 TB by an LTO-8 drive.
MEDIA_TYPES: dict[str, MediaType] = {
    **{f"L{g}": MediaType(code=f"L{g}", generation=g) for g in range(5, 10)},
    "LA": MediaType(code="LA", generation=10),
    **{
        code: MediaType(code=code, generation=generation, worm=True)
        for code, generation in (("LV", 5), ("LW", 6), ("LX", 7), ("LY", 8), ("LZ", 9))
    },
    "M8": MediaType(code="M8", generation=8),
}


def media_type_of(generation: int, *, worm: bool = False) -> MediaType | None:
    """The media type of a generation's data or WORM cartridge, as a drive reports it."""
    return next(
        (m for m in MEDIA_TYPES.values() if m.generation == generation and m.worm == worm),
        None,
    )


def media_type_for(barcode: str | None) -> MediaType | None:
    """The media type a barcode declares (`ABC123L9` -> LTO-9 data), None when unknown."""
    if not barcode or is_cleaning_barcode(barcode):
        return None
    return MEDIA_TYPES.get(barcode.strip().upper()[-2:])


class SlotKind(enum.Enum):
    STORAGE = "storage"
    IMPORT_EXPORT = "import/export"


@attrs.frozen(kw_only=True)
class Slot:
    """A storage or import/export element, numbered 1.. as `mtx` numbers them."""

    number: int
    kind: SlotKind = SlotKind.STORAGE
    full: bool = False
    barcode: str | None = None  # None for an empty slot or an unreadable label

    @property
    def is_import_export(self) -> bool:
        return self.kind is SlotKind.IMPORT_EXPORT

    @property
    def holds_cleaning(self) -> bool:
        return self.full and is_cleaning_barcode(self.barcode)


@attrs.frozen(kw_only=True)
class DriveBay:
    """A data transfer element of the changer, numbered 0.. as `mtx` numbers them."""

    index: int
    full: bool = False
    barcode: str | None = None
    # The slot the library will return the cartridge to; None when it does not know
    # (cartridge inserted by hand: `Unknown Storage Element Loaded`).
    source_slot: int | None = None


@attrs.frozen(kw_only=True)
class Inventory:
    """One snapshot of the library: drive bays and slots with the barcodes the robot read."""

    changer: str = ""
    drives: tuple[DriveBay, ...] = ()
    slots: tuple[Slot, ...] = ()

    def slot(self, number: int) -> Slot | None:
        return next((s for s in self.slots if s.number == number), None)

    def drive(self, index: int) -> DriveBay | None:
        return next((d for d in self.drives if d.index == index), None)

    def locate(self, barcode: str) -> Slot | DriveBay | None:
        """Where the cartridge with `barcode` is now (a slot or a drive bay), if in the library."""
        wanted = barcode.strip()
        for element in (*self.drives, *self.slots):
            if element.full and element.barcode == wanted:
                return element
        return None

    def storage_slots(self) -> Iterator[Slot]:
        return (s for s in self.slots if s.kind is SlotKind.STORAGE)

    def import_export_slots(self) -> Iterator[Slot]:
        return (s for s in self.slots if s.kind is SlotKind.IMPORT_EXPORT)

    def free_storage_slots(self) -> tuple[Slot, ...]:
        return tuple(s for s in self.storage_slots() if not s.full)

    def cleaning_slots(self) -> tuple[Slot, ...]:
        """Storage slots holding a cleaning cartridge (never those in I/E slots: offline)."""
        return tuple(s for s in self.storage_slots() if s.holds_cleaning)

    def data_barcodes(self) -> tuple[str, ...]:
        """Barcodes of data cartridges online in the library (storage slots and drives)."""
        found = [d.barcode for d in self.drives if d.full and d.barcode]
        found += [s.barcode for s in self.storage_slots() if s.full and s.barcode]
        return tuple(b for b in found if not is_cleaning_barcode(b))


class DriveState(enum.Enum):
    EMPTY = "empty"
    LOADING = "loading"
    CALIBRATING = "calibrating"  # LTO-9 media optimisation of a new cartridge; cannot cancel
    READY = "ready"
    NOT_READY = "not ready"
    CLEANING = "cleaning"  # a cleaning cartridge is running
    UNLOADING = "unloading"  # rewinding and unthreading
    OUT_OF_SERVICE = "out of service"  # dead, or taken offline at the library

    @property
    def busy(self) -> bool:
        """A state that ends on its own: wait, do not treat it as a failure."""
        return self in (
            DriveState.LOADING,
            DriveState.CALIBRATING,
            DriveState.CLEANING,
            DriveState.UNLOADING,
        )


@attrs.frozen(kw_only=True)
class DriveStatus:
    """What the drive says about itself and its medium right now."""

    state: DriveState
    write_protected: bool = False
    at_bot: bool = False
    density_code: int | None = None
    file_number: int | None = None
    block_number: int | None = None
    partition: int | None = None
    # How long a busy state has still to run, when the drive or the model knows it.
    seconds_left: float | None = None
    media: MediaType | None = None  # what the drive found loaded (density code, MAM)
    detail: str = ""  # the drive's own words (sense text) for a state that is not READY


@attrs.frozen(kw_only=True)
class DriveIdentity:
    vendor: str
    model: str
    serial: str
    revision: str = ""
    generation: int | None = None  # LTO generation, when the model name tells it


_GENERATION = (
    re.compile(r"ULTRIUM[- ]?(?:TD|HH)?(\d{1,2})", re.IGNORECASE),
    re.compile(r"Ultrium (\d{1,2})-", re.IGNORECASE),
    re.compile(r"LTO[- ]?(\d{1,2})", re.IGNORECASE),
    re.compile(r"ULT3580-(?:TD|HH)(\d{1,2})", re.IGNORECASE),
)


def generation_from_model(model: str) -> int | None:
    """LTO generation from a drive's product id (`ULTRIUM-TD5`, `Ultrium 8-SCSI`, `LTO-5 HH`)."""
    for pattern in _GENERATION:
        if match := pattern.search(model):
            return int(match.group(1))
    return None


# TapeAlert flag names in flag-number order (SSC; sg3-utils' wording), so status can name them.
TAPE_ALERT_NAMES: tuple[str, ...] = (
    "Read warning",
    "Write warning",
    "Hard error",
    "Media",
    "Read failure",
    "Write failure",
    "Media life",
    "Not data grade",
    "Write protect",
    "No removal",
    "Cleaning media",
    "Unsupported format",
    "Recoverable mechanical cartridge failure",
    "Unrecoverable mechanical cartridge failure",
    "Memory chip in cartridge failure",
    "Forced eject",
    "Read only format",
    "Tape directory corrupted on load",
    "Nearing media life",
    "Cleaning required",
    "Cleaning requested",
    "Expired cleaning media",
    "Invalid cleaning tape",
    "Retension requested",
    "Dual port interface error",
    "Cooling fan failing",
    "Power supply failure",
    "Power consumption",
    "Drive maintenance",
    "Hardware A",
    "Hardware B",
    "Interface",
    "Eject media",
    "Microcode update fail",
    "Drive humidity",
    "Drive temperature",
    "Drive voltage",
    "Predictive failure",
    "Diagnostics required",
    *(f"Obsolete ({code:X}h)" for code in range(0x28, 0x2F)),
    *(f"Reserved ({code:X}h)" for code in range(0x2F, 0x32)),
    "Lost statistics",
    "Tape directory invalid at unload",
    "Tape system area write failure",
    "Tape system area read failure",
    "No start of data",
    "Loading failure",
    "Unrecoverable unload failure",
    "Automation interface failure",
    "Firmware failure",
    "WORM medium - integrity check failed",
    "WORM medium - overwrite attempted",
    *(f"Reserved parameter code 0x{code:02x}, flag" for code in range(0x3D, 0x41)),
)


def tape_alert_name(flag: int) -> str:
    if 1 <= flag <= len(TAPE_ALERT_NAMES):
        return TAPE_ALERT_NAMES[flag - 1]
    return f"flag {flag}"


@attrs.frozen(kw_only=True)
class TapeAlerts:
    """The TapeAlert flags a drive has set (numbers 1..64)."""

    flags: frozenset[int] = frozenset()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(tape_alert_name(f) for f in sorted(self.flags))

    @property
    def needs_cleaning(self) -> bool:
        return bool(self.flags & CLEANING_ALERTS)

    @property
    def critical(self) -> frozenset[int]:
        return self.flags & CRITICAL_ALERTS

    @property
    def media_end_of_life(self) -> bool:
        return bool(self.flags & MEDIA_LIFE_ALERTS)


@attrs.frozen(kw_only=True)
class Capacity:
    """statvfs of an LTFS mount: bytes in the data partition, total and still writable."""

    block_size: int
    total_bytes: int
    free_bytes: int
    files: int = 0


@attrs.frozen(kw_only=True)
class FileLocation:
    """Where a file's first extent starts on tape; restores sort by (partition, startblock)."""

    partition: str  # "a" index partition, "b" data partition
    startblock: int


@attrs.frozen(kw_only=True)
class Extent:
    """One extent of a file as the LTFS index records it (`extentinfo/extent`)."""

    partition: str  # "a" or "b"
    startblock: int
    byte_offset: int  # into the start block
    byte_count: int
    file_offset: int  # where in the file these bytes belong


@attrs.frozen(kw_only=True)
class IndexedFile:
    path: str  # relative to the volume root, "/" separated
    size: int
    fileuid: int
    extents: tuple[Extent, ...] = ()

    @property
    def location(self) -> FileLocation | None:
        """The first extent's start, what `Mount.location` answers; None for an empty file."""
        if not self.extents:
            return None
        first = min(self.extents, key=lambda e: e.file_offset)
        return FileLocation(partition=first.partition, startblock=first.startblock)


@attrs.frozen(kw_only=True)
class CapturedIndex:
    """A whole LTFS index: every file with all its extents, without a mount to ask.

    Captured when a volume is unmounted, or read from an unmounted volume; a restore planner
    and a catalog check read placements from it.
    """

    volume_uuid: str
    generation: int
    files: tuple[IndexedFile, ...] = ()
    location: str = ""  # where this index lies on tape, `<partition>:<block>`

    def file(self, path: str) -> IndexedFile | None:
        wanted = path.lstrip("/")
        return next((f for f in self.files if f.path == wanted), None)


# Bits of `ltfs.volumeLockState` as LTFS prints them (`0x%08x`, `enum volumelock_status` in
# LinearTapeFileSystem/ltfs src/libltfs/ltfs.h): the cartridge's write protection, then LTFS's
# own locks and the permanent-write-error state it sets when it drops a volume to read-only.
LOCK_UNLOCKED = 0x00
LOCK_LOCKED = 0x01  # advisory lock in the LTFS format
LOCK_PERM_LOCKED = 0x02  # advisory permanent lock
LOCK_PHYSICAL_WP = 0x04  # write-protect tab
LOCK_PERMANENT_WP = 0x08  # permanent write protection of the cartridge
LOCK_PERSISTENT_WP = 0x10  # persistent write protection of the cartridge
LOCK_WRITE_PERM = 0x20  # a permanent write error happened on this volume
LOCK_WRITE_PERM_DP = 0x40  # ... on the data partition
LOCK_WRITE_PERM_IP = 0x80  # ... on the index partition
LOCK_WRITE_PERM_BOTH = LOCK_WRITE_PERM | LOCK_WRITE_PERM_DP | LOCK_WRITE_PERM_IP
LOCK_WRITE_PROTECTED = LOCK_PHYSICAL_WP | LOCK_PERMANENT_WP | LOCK_PERSISTENT_WP


@attrs.frozen(kw_only=True)
class VolumeInfo:
    serial: str
    uuid: str
    generation: int
    lock_state: int = LOCK_UNLOCKED
    name: str = ""
    block_size: int = 524288
    mam_barcode: str = ""  # the barcode LTFS wrote to cartridge memory; "" when unset

    @property
    def write_perm_error(self) -> bool:
        return bool(self.lock_state & LOCK_WRITE_PERM_BOTH)


class ReadOnlyReason(enum.Enum):
    """Why a mounted volume takes no writes (now, not when it was mounted)."""

    WRITE_PROTECTED = "write-protect tab set"
    WRITE_ERROR = "LTFS dropped it to read-only after a write error"
    OLDER_GENERATION = "the drive reads this generation but cannot write it"
    WORM = "WORM cartridge: files cannot be removed or rewritten"
    MOUNTED_READ_ONLY = "mounted read-only"
    FULL = "past early warning: no more file data fits"


@attrs.frozen(kw_only=True)
class VolumeState:
    """A mounted volume's live writability, re-read after every error."""

    lock_state: int = LOCK_UNLOCKED
    reasons: frozenset[ReadOnlyReason] = frozenset()

    @property
    def read_only(self) -> bool:
        """No new file can be written (a WORM volume still takes new files)."""
        return bool(self.reasons - {ReadOnlyReason.WORM})

    @property
    def why(self) -> str:
        return "; ".join(r.value for r in sorted(self.reasons, key=lambda r: r.name))


@attrs.frozen(kw_only=True)
class MountRecord:
    """An LTFS mount on this host, whichever process made it (read from the shared registry).

    `owner_pid` is the worker or command that mounted it; `ltfs_pid` the ltfs process serving
    it. An owner that died leaves a mount to adopt or unmount; an ltfs that died leaves a
    reservation to release and a volume to check.
    """

    drive: int
    mountpoint: str
    barcode: str | None
    owner_pid: int
    ltfs_pid: int
    host: str = ""
    owner_name: str = ""  # which caller of the owner process (a worker, a command), if known
    owner_alive: bool = True
    ltfs_alive: bool = True
    since: float = 0.0  # library clock when it was mounted

    @property
    def orphaned(self) -> bool:
        return self.ltfs_alive and not self.owner_alive

    @property
    def dead(self) -> bool:
        return not self.ltfs_alive


class CheckMode(enum.Enum):
    """ltfsck modes (tape-facts §3.4)."""

    VERIFY = "verify"  # plain ltfsck: check and fix the latest generation
    SALVAGE = "salvage"  # -f: keep data written after the last index in _ltfs_lostandfound
    DEEP = "deep"  # -z: recover a cartridge with a missing EOD
    LIST_ROLLBACK = "list-rollback"  # -l: list generations
    ROLLBACK = "rollback"  # -r -g N: go back to generation N


# ltfsck exit status bits (fsck-like).
CHECK_CORRECTED = 1
CHECK_REBOOT = 2
CHECK_UNCORRECTED = 4
CHECK_OPERATIONAL = 8
CHECK_USAGE = 16
CHECK_CANCELLED = 32
CHECK_LIBRARY = 64


@attrs.frozen(kw_only=True)
class CheckResult:
    exit_code: int
    generations: tuple[int, ...] = ()  # rollback points, for LIST_ROLLBACK
    output: str = ""

    @property
    def clean(self) -> bool:
        return self.exit_code == 0

    @property
    def corrected(self) -> bool:
        return bool(self.exit_code & CHECK_CORRECTED)

    @property
    def uncorrected(self) -> bool:
        return bool(self.exit_code & (CHECK_UNCORRECTED | CHECK_OPERATIONAL))


# --- requests -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LoadRequest:
    """Move the cartridge in `slot` into drive `drive`; `barcode`, if given, must be there."""

    slot: int
    drive: int
    barcode: str | None = None


@attrs.frozen(kw_only=True)
class UnloadRequest:
    """Return drive `drive`'s cartridge to `slot` (None: the slot it came from)."""

    drive: int
    slot: int | None = None


@attrs.frozen(kw_only=True)
class TransferRequest:
    source: int
    destination: int
    barcode: str | None = None


@attrs.frozen(kw_only=True)
class FormatRequest:
    """Format the cartridge in `drive` with LTFS; the serial is the barcode's first 6 characters."""

    drive: int
    barcode: str
    name: str = ""
    force: bool = False
    rules: str | None = None  # index-partition placement (`size=1M/name=*.xml`)

    @property
    def serial(self) -> str | None:
        return volume_serial_for(self.barcode)


@attrs.frozen(kw_only=True)
class MountRequest:
    """Mount the LTFS volume in `drive`; `barcode`, if given, must match the volume serial and
    `volume_uuid`, if given, the volume's UUID (WrongCartridge otherwise, nothing mounted)."""

    drive: int
    barcode: str | None = None
    read_only: bool = False
    volume_uuid: str | None = None


@attrs.frozen(kw_only=True)
class CheckRequest:
    drive: int
    mode: CheckMode = CheckMode.VERIFY
    generation: int | None = None  # for ROLLBACK


# --- the catalog's lease names ---------------------------------------------------------------


def drive_lease(target: str, drive: int) -> str:
    """The lease on a drive of a target's library that jobs and operator commands take."""
    return f"tape_ltfs:{target}/drive{drive}"


def cartridge_lease(target: str, barcode: str) -> str:
    """The lease on a cartridge, taken after its drive's."""
    return f"tape_ltfs:{target}/cartridge/{barcode}"


#: The core's manifests on a volume, at its root: `<prefix><manifest name>` (never a copy's
#: path: archive names never start so). Reconciling a volume passes them over.
MANIFEST_PREFIX = ".archive-core-manifest."
