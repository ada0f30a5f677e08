"""A restore plan: per drive, the cartridges in order, each with its reads in tape order."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from archive_core_tape_ltfs.model import FileLocation
from archive_core_tape_ltfs.restore.request import TapeCopy, WantedFile


@attrs.frozen(kw_only=True)
class ReadStep:
    """One file read from one copy; `start`/`end` are estimates, seconds from the plan's start."""

    file: WantedFile
    copy: TapeCopy
    location: FileLocation | None  # None when neither the catalog nor an index knew it
    start: float
    end: float


@attrs.frozen(kw_only=True)
class CartridgeRun:
    """One cartridge in one drive: got ready (exchange), read in order, unmounted.

    `slot` is where the robot fetches it from, None when it is in the drive already.
    """

    barcode: str
    volume_uuid: str
    drive: int
    slot: int | None
    mounted: bool  # mounted in its drive when the plan was made
    reads: tuple[ReadStep, ...]
    start: float  # the drive starts on it (unloading what it held)
    ready: float  # mounted, first read may start
    end: float  # unmounted after the last read

    @property
    def files(self) -> int:
        return len(self.reads)

    @property
    def bytes(self) -> int:
        return sum(r.copy.size for r in self.reads)


@attrs.frozen(kw_only=True)
class DrivePlan:
    drive: int
    runs: tuple[CartridgeRun, ...] = ()
    holds: str | None = None  # the cartridge in the drive when the plan was made
    holds_mounted: bool = False


@attrs.frozen(kw_only=True)
class RestorePlan:
    """What a batch will do, before anything moves. `makespan` and `lower_bound` are
    estimates of the cost model, in seconds; `no_tape` are the empty files (nothing to read)."""

    drives: tuple[DrivePlan, ...]
    no_tape: tuple[WantedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    makespan: float = 0.0
    lower_bound: float = 0.0

    def runs(self) -> Iterator[CartridgeRun]:
        for drive in self.drives:
            yield from drive.runs

    @property
    def files(self) -> int:
        return sum(r.files for r in self.runs()) + len(self.no_tape)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.runs())

    @property
    def exchanges(self) -> int:
        """Cartridges the robot has to bring to a drive."""
        return sum(1 for r in self.runs() if r.slot is not None)

    def summary(self) -> str:
        """The plan in one line: files, bytes, cartridges, drives, the estimates."""
        cartridges = sum(1 for _ in self.runs())
        return (
            f"Restore of {self.files} file{'' if self.files == 1 else 's'} "
            f"({_bytes(self.bytes)}) from {cartridges} cartridge{'' if cartridges == 1 else 's'} "
            f"on {len(self.drives)} drive{'' if len(self.drives) == 1 else 's'}: estimated "
            f"{_clock(self.makespan)} (lower bound {_clock(self.lower_bound)}), "
            f"{self.exchanges} cartridge{'' if self.exchanges == 1 else 's'} to fetch."
        )

    def describe(self) -> str:
        """The plan as an admin reads it: per drive the cartridges in order, their files and
        bytes, estimated start and end (from the start of the batch)."""
        lines = [self.summary()]
        for drive in self.drives:
            lines.append(f"drive {drive.drive}:")
            if not drive.runs:
                lines.append("  (idle)")
            for run in drive.runs:
                source = f"slot {run.slot}" if run.slot is not None else "in the drive"
                if run.mounted:
                    source = "mounted"
                lines.append(
                    f"  {run.barcode}  {run.files:>6} files  {_bytes(run.bytes):>10}  "
                    f"{_clock(run.start)} - {_clock(run.end)}  ({source})"
                )
        if self.no_tape:
            empty = len(self.no_tape)
            lines.append(
                f"{empty} empty file{' is' if empty == 1 else 's are'} created without "
                f"reading tape."
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _bytes(n: int) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
