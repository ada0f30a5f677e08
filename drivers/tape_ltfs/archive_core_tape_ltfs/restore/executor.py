"""Runs a restore plan on a library: one worker thread per drive, each on its own caller.

A drive's worker takes its cartridge runs in order. Its *hands* get each run's volume mounted
and let it go again: `PortHands` (the default) speak the port directly: eject and unload what
the drive holds (the robot is asked for once the tape is rewound), load the cartridge, wait
until it is ready, mount it (checking barcode and volume UUID), and unmount after the reads;
the tape driver's hands go through its loader (leases, identity against its media store,
cleaning, drives taken out of service). Between the two, the worker reads the run's files in
the plan's order, one at a time, handing each open reader to the caller's `read`.
A cartridge is in one run of one drive only, so no two workers ever touch it; robot moves go
through the changer, which serialises them. A read that fails with a media error, a checksum
mismatch the callback raises (`FixityMismatch`) or a file missing from the volume fails that
copy only; a cartridge that cannot be loaded or mounted fails the copies of its run; another
admin-readable error of the callback (the destination cannot be written) fails the file, which
another copy would not help. Failed copies are returned for the batch to read again from the
files' next copies.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO, Protocol, TypeVar

import attrs

from archive_core import ArchiveCoreError, CopyNotFound, FixityMismatch
from archive_core_tape_ltfs.errors import DriveNotReady, MediaError, TapeError
from archive_core_tape_ltfs.model import LoadRequest, MountRequest, Slot, UnloadRequest
from archive_core_tape_ltfs.port import Library, Mount
from archive_core_tape_ltfs.restore.plan import CartridgeRun, DrivePlan, ReadStep, RestorePlan
from archive_core_tape_ltfs.restore.request import TapeCopy, WantedFile
from archive_core_tape_ltfs.restore.turns import ClockTurns, FreeTurns

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: What the caller does with each file: read `reader` to the end (write the destination, hash
#: it) and raise `FixityMismatch` when the bytes are not the archived ones. `copy` is None for
#: an empty file, whose reader is empty.
ReadFile = Callable[[WantedFile, TapeCopy | None, BinaryIO], None]

#: Failures of one copy of one file: its other copies may be fine.
COPY_FAILURES = (MediaError, FixityMismatch, CopyNotFound)


@attrs.frozen(kw_only=True)
class FileRestored:
    file: WantedFile
    copy: TapeCopy | None  # None for an empty file
    drive: int | None = None


@attrs.frozen(kw_only=True)
class FailedRead:
    """One copy of one file that could not be read, and why (the error's admin message)."""

    file: WantedFile
    copy: TapeCopy
    reason: str
    final: bool = False  # not the copy's fault (the destination): another copy fails alike
    retryable: bool = False  # the error may pass (a drive busy, a lease not granted)


@attrs.frozen(kw_only=True)
class RunResult:
    restored: tuple[FileRestored, ...] = ()
    failed: tuple[FailedRead, ...] = ()


#: Runs one library call in the calling worker's turn (see `turns`).
Turn = Callable[[Callable[[], T]], T]


class DriveHands(Protocol):
    """How one drive's worker gets its runs' volumes mounted and lets them go."""

    def ready(self, run: CartridgeRun) -> Mount:
        """The run's volume mounted in the drive (or a TapeError failing the run's reads)."""
        ...

    def done(self, run: CartridgeRun) -> None:
        """After the run's reads, also after a crash: let the volume go."""
        ...

    def read_failed(self, run: CartridgeRun, error: MediaError) -> None:
        """A media error while the run's volume was mounted (for the drive's record)."""
        ...


#: Makes one drive's hands: its plan, its caller of the library, the turn its calls take.
Hands = Callable[[DrivePlan, Library, Turn], DriveHands]


def drive_workers(library: Library, plan: RestorePlan) -> dict[int, Library]:
    """One caller of the library per drive of the plan, named `restore-drive<N>`."""
    return {d.drive: library.worker(f"restore-drive{d.drive}") for d in plan.drives}


def run_plan(
    plan: RestorePlan,
    library: Library,
    *,
    read: ReadFile,
    workers: Mapping[int, Library] | None = None,
    mounts: Mapping[int, Mount] | None = None,
    virtual_time: bool = False,
    hands: Hands | None = None,
    context: str = "restore",
) -> RunResult:
    """Restore what `plan` says, one thread per drive with runs, and return what was restored
    and which copies failed.

    `workers` are the drives' callers (default: `drive_workers`); `hands` how each drive gets
    its volumes mounted (default: `PortHands`, given `mounts`, the volumes this process already
    has mounted, by drive; a mounted volume of a process that has exited is adopted).
    `virtual_time` (the simulator) makes the workers call one at a time in the order of their
    clocks, so the simulated drives and robot are booked as in real time. `context` starts
    every log line ("policy P job J").
    """
    for file in plan.no_tape:
        read(file, None, io.BytesIO())
    restored = [FileRestored(file=f, copy=None) for f in plan.no_tape]
    workers = dict(workers) if workers is not None else drive_workers(library, plan)
    busy = [d for d in plan.drives if d.runs]
    turns = (
        ClockTurns({d.drive: workers[d.drive].clock for d in busy}) if virtual_time else FreeTurns()
    )
    make = hands or PortHands.given(mounts or {})
    drivers = [
        _DriveWorker(d, turns, read, make(d, workers[d.drive], turns.call(d.drive)), context)
        for d in busy
    ]
    threads = [
        threading.Thread(target=w.run, name=f"restore-drive{w.drive}", daemon=True) for w in drivers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in drivers:
        if worker.crashed is not None:
            raise worker.crashed
    failed = []
    for worker in drivers:
        restored += worker.restored
        failed += worker.failed
    return RunResult(restored=tuple(restored), failed=tuple(failed))


class _DriveWorker:
    """One drive's runs, in order, through its hands."""

    def __init__(
        self,
        plan: DrivePlan,
        turns: ClockTurns | FreeTurns,
        read: ReadFile,
        hands: DriveHands,
        context: str,
    ) -> None:
        self.drive = plan.drive
        self.context = context
        self.runs = plan.runs
        self.turns = turns
        self.read = read
        self.hands = hands
        self.restored: list[FileRestored] = []
        self.failed: list[FailedRead] = []
        self.crashed: BaseException | None = None

    def run(self) -> None:
        try:
            for run in self.runs:
                try:
                    mount = self.hands.ready(run)
                except ArchiveCoreError as error:  # a tape error, a drive not granted
                    logger.warning("%s: drive %s: %s", self.context, self.drive, error)
                    self._fail(run.reads, error)
                    continue
                try:
                    self._read_all(run, mount)
                finally:
                    self.hands.done(run)
        except BaseException as error:  # re-raised by run_plan in the caller's thread
            self.crashed = error
        finally:
            self.turns.leave(self.drive)

    def _read_all(self, run: CartridgeRun, mount: Mount) -> None:
        for n, step in enumerate(run.reads):
            try:
                with self.turns.turn(self.drive):
                    self._read_one(mount, step)
            except COPY_FAILURES as error:
                logger.warning("%s: %s", self.context, error)
                if isinstance(error, MediaError):
                    self.hands.read_failed(run, error)
                self.failed.append(_failed(step, error))
            except TapeError as error:  # the drive or the volume, not the file
                logger.warning("%s: drive %s: %s", self.context, self.drive, error)
                self._fail(run.reads[n:], error)
                return
            except ArchiveCoreError as error:  # the destination: another copy fails alike
                logger.warning("%s: %s", self.context, error)
                self.failed.append(_failed(step, error, final=True))
            else:
                self.restored.append(FileRestored(file=step.file, copy=step.copy, drive=self.drive))

    def _read_one(self, mount: Mount, step: ReadStep) -> None:
        with mount.open_read(step.copy.path) as reader:
            self.read(step.file, step.copy, reader)

    def _fail(self, reads: Sequence[ReadStep], error: ArchiveCoreError) -> None:
        self.failed += [_failed(r, error) for r in reads]


def _failed(step: ReadStep, error: ArchiveCoreError, *, final: bool = False) -> FailedRead:
    return FailedRead(
        file=step.file, copy=step.copy, reason=str(error), final=final, retryable=error.retryable
    )


class PortHands:
    """A drive's hands on the port itself: what the drive holds is unloaded when the next
    run needs it, the run's cartridge loaded, mounted, and unmounted after its reads (left in
    the drive, where the next batch may find it). After a failed unmount the drive's state is
    unknown: its remaining runs fail."""

    def __init__(self, plan: DrivePlan, library: Library, call: Turn, mount: Mount | None) -> None:
        self.drive = plan.drive
        self.library = library
        self._call = call
        self.holding = plan.holds
        self.mount = mount
        self.adopt = plan.holds_mounted and mount is None
        self.broken: TapeError | None = None

    @classmethod
    def given(cls, mounts: Mapping[int, Mount]) -> Hands:
        """The hands of each drive, with the volumes this process has mounted already."""
        return lambda plan, library, call: cls(plan, library, call, mounts.get(plan.drive))

    def ready(self, run: CartridgeRun) -> Mount:
        if self.broken is not None:
            raise self.broken
        library, n = self.library, self.drive
        if self.adopt:
            self.mount = self._call(lambda: library.ltfs.adopt(n))
            self.adopt = False
        if self.holding is not None and self.holding != run.barcode:
            if self.mount is not None:
                self.done(run)
                if self.broken is not None:
                    raise self.broken
            self._eject()
            self._call(lambda: library.changer.unload(UnloadRequest(drive=n)))
            self.holding = None
        if self.holding is None:
            slot = run.slot if run.slot is not None else self._slot_of(run.barcode)
            self._call(
                lambda: library.changer.load(LoadRequest(slot=slot, drive=n, barcode=run.barcode))
            )
            self.holding = run.barcode
            self._call(lambda: library.drive(n).wait_ready())
        if self.mount is None:
            request = MountRequest(
                drive=n, barcode=run.barcode, volume_uuid=run.volume_uuid, read_only=True
            )
            self.mount = self._call(lambda: library.ltfs.mount(request))
        assert self.mount is not None
        return self.mount

    def done(self, run: CartridgeRun) -> None:
        mount = self.mount
        if mount is None:
            return
        try:
            self._call(lambda: self.library.ltfs.unmount(mount))
        except TapeError as error:
            logger.warning("restore: drive %s: %s", self.drive, error)
            self.broken = error
        self.mount = None

    def read_failed(self, run: CartridgeRun, error: MediaError) -> None:
        return None

    def _eject(self) -> None:
        """Rewind and unthread before asking for the robot, so the robot is asked for when
        the cartridge can be taken, and serves the other drives meanwhile."""
        with contextlib.suppress(DriveNotReady):  # not threaded: the robot can take it as is
            self._call(lambda: self.library.drive(self.drive).eject())

    def _slot_of(self, barcode: str) -> int:
        """Where a cartridge the plan thought was in a drive is now (the library changed)."""
        found = self._call(lambda: self.library.changer.inventory().locate(barcode))
        if not isinstance(found, Slot):
            raise TapeError(
                f"Cannot load cartridge {barcode} into drive {self.drive}: it is not in a "
                f"storage slot of the library any more.",
                barcode=barcode,
                drive=self.drive,
            )
        return found.number
