"""The tape port: the three small interfaces the driver reaches hardware through.

Two implementations satisfy them and must behave the same: `real` runs the system tools and
parses their output, `sim` drives a virtual library on a virtual clock. Every method may raise
the typed errors of `errors.py`; none of them makes a policy decision (which cartridge, when to
clean, how to retry a media error): that belongs to the driver above.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from archive_core_tape_ltfs.model import (
    Capacity,
    CapturedIndex,
    CheckRequest,
    CheckResult,
    DriveIdentity,
    DriveStatus,
    FileLocation,
    FormatRequest,
    Inventory,
    LoadRequest,
    MountRecord,
    MountRequest,
    TapeAlerts,
    TransferRequest,
    UnloadRequest,
    VolumeInfo,
    VolumeState,
)


@runtime_checkable
class Clock(Protocol):
    """Time as the library sees it: wall time for real hardware, virtual time in the simulator."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class Changer(Protocol):
    def inventory(self, *, rescan: bool = False) -> Inventory:
        """Drives and slots with barcodes; `rescan` makes the robot re-read every slot first."""

    def load(self, request: LoadRequest) -> None:
        """Move a cartridge from a slot into a drive (the drive may still be loading after)."""

    def unload(self, request: UnloadRequest) -> int:
        """Move a drive's cartridge back to a slot; returns the slot it went to."""

    def transfer(self, request: TransferRequest) -> None:
        """Move a cartridge between two slots (storage or import/export)."""


@runtime_checkable
class Drive(Protocol):
    index: int  # the changer's data transfer element number

    def status(self) -> DriveStatus: ...

    def wait_ready(
        self, timeout: float | None = None, *, new_cartridge: bool = False
    ) -> DriveStatus:
        """Block until the loaded cartridge is ready; DriveNotReady after `timeout` seconds.

        None uses the configured timeout; `new_cartridge` picks the long one that covers a new
        LTO-9 cartridge's media optimisation (up to two hours), which nothing else needs.
        """

    def identity(self) -> DriveIdentity: ...

    def alerts(self) -> TapeAlerts:
        """The TapeAlert flags set now. Reading them must not clear them: a cleaning request
        read by `tape status` is still there for the driver's cleaning decision."""

    def eject(self) -> None:
        """Rewind and unthread the cartridge so the robot can take it; refused while LTFS holds
        the drive (DriveHeldByLtfs)."""


@runtime_checkable
class Mount(Protocol):
    """A mounted LTFS volume. Data moves through `open_write`/`open_read`, whole files at a time."""

    drive: int

    @property
    def read_only(self) -> bool:
        """`state().read_only`: live, so a permanent write error shows at once."""

    def state(self) -> VolumeState:
        """Whether the volume takes writes now, and why not (read again after every error)."""

    def capacity(self) -> Capacity: ...

    def volume(self) -> VolumeInfo: ...

    def sync(self) -> int:
        """Write the index to tape now (`user.ltfs.sync`); returns the new index generation."""

    def location(self, path: str) -> FileLocation | None:
        """Partition and start block of the file's first extent; None for an empty file."""

    def open_write(self, path: str) -> BinaryIO:
        """A new file at `path` (relative to the volume root). How fast the caller feeds it
        decides whether the drive streams or back-hitches; the simulator measures that feed on
        its clock, nobody declares it."""

    def open_read(self, path: str) -> BinaryIO: ...

    def remove(self, path: str) -> None:
        """Drop a file from the index (LTFS never reclaims its space)."""

    def files(self) -> Iterator[tuple[str, int]]:
        """Every regular file as (path, size)."""


@runtime_checkable
class LtfsVolume(Protocol):
    def format(self, request: FormatRequest) -> VolumeInfo: ...

    def mount(self, request: MountRequest) -> Mount: ...

    def unmount(self, mount: Mount, *, eject: bool = False) -> CapturedIndex | None:
        """Unmount and return only once the LTFS process has exited and the index is on tape;
        the index it wrote (all files with all extents), None when it could not be captured."""

    def read_index(self, drive: int) -> CapturedIndex:
        """The latest index of the unmounted volume in `drive`, read from tape."""

    def mounts(self) -> tuple[MountRecord, ...]:
        """Every LTFS mount on this host, whichever process made it, with who is alive."""

    def view(self, drive: int) -> Mount:
        """The mount of `drive` for queries only (capacity, volume, state, files), whichever
        process owns it; writes, removals and syncs through it are refused."""

    def adopt(self, drive: int) -> Mount:
        """Take over the mount of `drive` whose owner died (DriveHeldByLtfs while it lives)."""

    def check(self, request: CheckRequest) -> CheckResult: ...

    def release(self, drive: int) -> None:
        """Clear a stale SCSI reservation left by a crashed LTFS process."""


@runtime_checkable
class Library(Protocol):
    """One tape library: its changer, its drives by changer index, LTFS on them, its clock."""

    changer: Changer
    ltfs: LtfsVolume
    clock: Clock
    # Where this host keeps the library's own files: ltfs logs, captured indexes, the registry
    # of mounts every process sees, the operator's ledger of exported cartridges.
    work_directory: Path

    def drive(self, index: int) -> Drive: ...

    def drive_indexes(self) -> tuple[int, ...]: ...

    def worker(self, name: str) -> Library:
        """This library for one concurrent caller (a thread driving one drive), whose mounts
        are recorded under `name`. Real hardware needs nothing more: the same devices, tools
        and wall clock. The simulator (and the real backend over simulated tools) gives the
        caller its own timeline, so work on two drives overlaps on the virtual clock as it
        does in a real library."""
