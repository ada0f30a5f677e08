"""Typed tape errors: one class per failure kind a library, drive or LTFS volume shows.

Every error carries where it happened (barcode, slot, drive, device) and whether trying again
later can help (`retryable`); messages are whole sentences a Portal admin can act on, because
Portal shows them as they are. Both port implementations raise exactly these classes, so the
driver above never needs to know which one it talks to.
"""

from __future__ import annotations

import enum

from archive_core import ArchiveCoreError


class Remedy(enum.Enum):
    """What it takes to get past an error: the operator CLI's exit status follows it."""

    OPERATOR = "operator action needed"  # a cartridge to insert, clean, check or replace
    RETRY = "busy, retry later"  # it passes by itself: a unit attention, a drive still loading
    HARDWARE = "hardware or media error"  # the library, a drive or a cartridge failed


class TapeError(ArchiveCoreError):
    """Root of every tape hardware and LTFS error."""

    _remedy = Remedy.HARDWARE

    def __init__(
        self,
        message: str,
        *,
        barcode: str | None = None,
        slot: int | None = None,
        drive: int | None = None,
        device: str | None = None,
        detail: str | None = None,
        retryable: bool | None = None,
        **fields,
    ) -> None:
        super().__init__(message, retryable=retryable, **fields)
        self.barcode = barcode
        self.slot = slot
        self.drive = drive
        self.device = device
        # The tool's own words (sense codes, LTFS message ids), for logs and support cases.
        self.detail = detail

    @property
    def remedy(self) -> Remedy:
        return Remedy.RETRY if self.retryable else self._remedy

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}"
            for name in ("barcode", "slot", "drive", "device")
            if (value := getattr(self, name)) is not None
        )
        return f"{type(self).__name__}({self.message!r}{', ' if fields else ''}{fields})"


# --- changer ---------------------------------------------------------------------------------


class ChangerError(TapeError):
    """The medium changer (robot) refused or failed a command."""


class SourceEmpty(ChangerError):
    """The element a cartridge should be taken from holds none (sense 3B/0E)."""

    _remedy = Remedy.OPERATOR


class DestinationFull(ChangerError):
    """The element a cartridge should go to already holds one (sense 3B/0D)."""

    _remedy = Remedy.OPERATOR


class UnitAttention(ChangerError):
    """The library was reset, powered on or its door was opened (sense 28/00, 29/00)."""

    retryable = True


class LibraryOffline(ChangerError):
    """The library is offline, not in random-access mode, or still becoming ready (04/xx)."""

    retryable = True


class LibraryBecomingReady(LibraryOffline):
    """The library is still initialising (04/01, e.g. its inventory after the door closed)."""


class UnloadRefused(ChangerError):
    """The drive will not release its cartridge (53/03: a host still prevents removal)."""

    retryable = True


class CartridgeOffline(ChangerError):
    """The cartridge is not in the library (vaulted, or waiting in an import/export slot)."""

    _remedy = Remedy.OPERATOR


class WrongCartridge(ChangerError):
    """A slot or drive holds a different cartridge than the one asked for."""

    _remedy = Remedy.OPERATOR


class BarcodeUnreadable(ChangerError):
    """A slot holds a cartridge whose barcode label the library cannot read."""

    _remedy = Remedy.OPERATOR


class ChangerHardwareError(ChangerError):
    """The robot reported a hardware error (stuck cartridge, gripper, magazine)."""


# --- drive ----------------------------------------------------------------------------------


class DriveError(TapeError):
    """A tape drive refused or failed a command."""


class DriveNotReady(DriveError):
    """The drive did not become ready in time (loading, calibrating, hung, or empty)."""

    retryable = True


class NeedsCleaning(DriveError):
    """The drive asks for a cleaning cartridge (TapeAlert 20 or 21)."""

    _remedy = Remedy.OPERATOR


class CleaningMediaExpired(DriveError):
    """The cleaning cartridge is used up or invalid (TapeAlert 22/23, sense 30/03)."""

    _remedy = Remedy.OPERATOR


class DriveHeldByLtfs(DriveError):
    """An LTFS process holds the drive; touching its tape device now would corrupt the tape."""

    retryable = True


def changed_through_view(what: str, *, drive: int, barcode: str | None) -> DriveHeldByLtfs:
    """The refusal of `LtfsVolume.view`'s mounts, the same words on both backends."""
    return DriveHeldByLtfs(
        f"Cannot {what} through a view of the mount of drive {drive}: only the process that "
        f"owns it may change the volume; adopt the mount once its owner has exited.",
        drive=drive,
        barcode=barcode,
    )


class DriveBusy(DriveError):
    """Another host or a stale SCSI reservation holds the drive."""

    retryable = True


# --- medium and LTFS ---------------------------------------------------------------------------


class MediaError(TapeError):
    """The medium could not be read or written (EIO, permanent read/write error)."""


class WriteProtected(TapeError):
    """The cartridge's write-protect tab is set; it can be read but not written or formatted."""

    _remedy = Remedy.OPERATOR


class NoSpace(TapeError):
    """The volume reached early warning: no new file data fits (ENOSPC)."""

    _remedy = Remedy.OPERATOR


class ReadOnlyVolume(TapeError):
    """LTFS dropped the volume to read-only after a write error; it can never be appended."""

    _remedy = Remedy.OPERATOR


class UnformattedTape(TapeError):
    """The cartridge holds no LTFS volume, or one this library did not write (foreign tape)."""

    _remedy = Remedy.OPERATOR


class AlreadyFormatted(TapeError):
    """mkltfs refused to format over an existing LTFS volume without force (LTFS15047E)."""

    _remedy = Remedy.OPERATOR


class InconsistentIndex(TapeError):
    """The LTFS index does not match the medium (crash, early unload, corruption): run ltfsck."""

    _remedy = Remedy.OPERATOR


# --- tools ------------------------------------------------------------------------------------


class ToolFailed(TapeError):
    """A system tool failed in a way no more specific error describes."""


class ToolMissing(ToolFailed):
    """A system tool the real backend needs is not installed."""

    _remedy = Remedy.OPERATOR


class ToolTimeout(ToolFailed):
    """A system tool did not finish within its timeout."""

    retryable = True
