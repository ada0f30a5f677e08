"""Reading copies back (restore, verify) with the restore scheduler, through the job's loader.

A batch is planned once on the library as it is (`plan_restore`: which copy, which cartridge
in which drive, in on-tape order), before anything moves, so a batch needing cartridges that
are not inside raises one error naming them. The plan then runs with one thread per drive,
each with a sibling of the job's loader as its hands: drives leased, each volume's identity
checked against the media store, drives cleaned when they ask, media errors recorded. Files
are reported as they are consumed; a failed copy is read again from the file's next copy.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import attrs

from archive_core import ArchiveCoreError
from archive_core.transfer import Digests
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.driver import placement
from archive_core_tape_ltfs.driver.loader import Loader, Mounted
from archive_core_tape_ltfs.driver.media import Cartridge, CartridgeState, MediaStore
from archive_core_tape_ltfs.driver.wear import note_failure
from archive_core_tape_ltfs.health import MediaFailure
from archive_core_tape_ltfs.model import MEDIA_TYPES, volume_serial_for
from archive_core_tape_ltfs.port import Library, Mount
from archive_core_tape_ltfs.restore import (
    CartridgeRun,
    DrivePlan,
    FileFailed,
    LibraryView,
    RestorePlan,
    TapeCopy,
    WantedFile,
    plan_restore,
    read_view,
    restore_files,
)
from archive_core_tape_ltfs.restore.executor import Turn

logger = logging.getLogger(__name__)

#: What happens to a copy's bytes, in a drive's thread: restored to a destination, or hashed.
Consume = Callable[[WantedFile, BinaryIO], Digests]


@attrs.frozen(kw_only=True)
class Consumed:
    """A file read whole from one of its copies."""

    key: str
    copy: TapeCopy | None  # None for an empty file
    digests: Digests


@attrs.frozen(kw_only=True)
class Unread:
    """A file none of whose copies could be read, each copy's reason in the order tried."""

    key: str
    reasons: tuple[str, ...]
    retryable: bool

    @property
    def message(self) -> str:
        if len(self.reasons) == 1:
            return self.reasons[0]
        return "no copy could be read: " + "; ".join(self.reasons)


@attrs.frozen(kw_only=True)
class ReadBatch:
    """A planned batch, moving nothing yet: `plan.describe()` shows what it will do."""

    files: tuple[WantedFile, ...]
    plan: RestorePlan
    generation: int


def wanted(
    key: str, copies: Sequence[placement.TapeCopy], store: MediaStore, size: int | None
) -> WantedFile:
    """A file to read and its copies, located from the placement or else the media store."""
    known = [store.file(c.barcode, c.path) for c in copies]
    if size is None:
        size = next((k.size for k in known if k is not None), None)
    found = []
    for copy, row in zip(copies, known, strict=True):
        partition, block = copy.partition, copy.block
        if block is None and row is not None:
            partition, block = row.partition, row.block
        cartridge = store.cartridge(copy.barcode) if not copy.volume else None
        found.append(
            TapeCopy(
                barcode=copy.barcode,
                volume_uuid=copy.volume or (cartridge.volume_uuid if cartridge else ""),
                path=copy.path,
                size=size or 0,
                partition=partition,
                startblock=block,
            )
        )
    return WantedFile(key=key, size=size, copies=tuple(found))


def library_view(library: Library, store: MediaStore, files: Sequence[WantedFile]) -> LibraryView:
    """The library now, with the drives' generation and each needed volume's file count
    (how long its mount reads the index) for the cost model."""
    barcodes = {c.barcode for f in files for c in f.copies}
    generation, form = _drive_kind(library, barcodes)
    counts = {b: c.files for b in barcodes if (c := store.cartridge(b)) is not None}
    return read_view(library, generation=generation, form=form, volume_files=counts)


def _drive_kind(library: Library, barcodes: set[str]) -> tuple[int, str]:
    """The LTO generation and form factor of the library's first drive that tells them; else
    the newest generation of the cartridges read (the drives read it, so are at least that)."""
    for index in library.drive_indexes():
        try:
            identity = library.drive(index).identity()
        except errors.TapeError:
            continue
        if identity.generation is not None:
            return identity.generation, "HH" if "HH" in identity.model.upper() else "FH"
    media = [m.generation for b in barcodes if (m := MEDIA_TYPES.get(b[-2:])) is not None]
    if media:
        return max(media), "FH"
    raise errors.TapeError(
        "No drive of the tape library tells its LTO generation (SCSI inquiry failed or named "
        "none) and no cartridge's barcode names its media, so the restore cannot be planned; "
        "check the drives with `archive-core tape status`."
    )


def plan_batch(
    files: Sequence[WantedFile],
    *,
    library: Library,
    store: MediaStore,
    context: str,
    view: LibraryView | None = None,
) -> ReadBatch:
    """The plan of a batch on `view` (default: the library now); CartridgesOffline (naming
    what to insert) before anything moves."""
    view = view or library_view(library, store, files)
    plan = plan_restore(files, view)
    for warning in plan.warnings:
        logger.warning("%s: %s", context, warning)
    return ReadBatch(files=tuple(files), plan=plan, generation=view.generation)


class _Stopped(Exception):
    """The caller stopped reading the batch's results: drive threads finish their file."""


def read_batch(
    batch: ReadBatch,
    consume: Consume,
    *,
    loader: Loader,
    store: MediaStore,
    context: str,
) -> Iterator[Consumed | Unread]:
    """Run the batch's plan; each file as soon as it is consumed, then those no copy of which
    could be read. Closing the iterator early lets each drive finish its file, puts the
    cartridges back and returns."""
    results: queue.Queue[Consumed | Unread | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def read(file: WantedFile, copy: TapeCopy | None, stream: BinaryIO) -> None:
        if stop.is_set():
            raise _Stopped
        results.put(Consumed(key=file.key, copy=copy, digests=consume(file, stream)))

    def hands(plan: DrivePlan, library: Library, call: Turn) -> LoaderHands:
        return LoaderHands(loader.sibling(library), store, plan.drive, context)

    def run() -> None:
        try:
            outcome = restore_files(
                batch.files,
                loader.library,
                read=read,
                generation=batch.generation,
                plan=batch.plan,
                workers={
                    d.drive: loader.library.worker(f"{context} drive {d.drive}")
                    for d in batch.plan.drives
                },
                hands=hands,
                context=context,
            )
            for failed in outcome.failed:
                results.put(_unread(failed))
            results.put(None)
        except _Stopped:
            results.put(None)
        except BaseException as exc:  # re-raised in the caller's thread
            results.put(exc)

    worker = threading.Thread(target=run, name=f"{context} reads", daemon=True)
    worker.start()
    try:
        while (item := results.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _unread(failed: FileFailed) -> Unread:
    return Unread(key=failed.file.key, reasons=failed.reasons, retryable=failed.retryable)


class LoaderHands:
    """A drive's hands through a sibling of the job's loader: the run's cartridge mounted
    (its drive leased, its identity checked, the drive cleaned if it asks), preferably in
    the planned drive; unmounted and put back after the run; media errors recorded."""

    def __init__(self, loader: Loader, store: MediaStore, drive: int, context: str) -> None:
        self._loader = loader
        self._store = store
        self._drive = drive
        self._context = context
        self._mounted: Mounted | None = None

    def ready(self, run: CartridgeRun) -> Mount:
        cartridge = self._store.cartridge(run.barcode) or _unknown(run)
        try:
            self._mounted = self._loader.mount(cartridge, read_only=True, prefer=self._drive)
        except ArchiveCoreError as exc:
            logger.warning(
                "%s: cartridge %s cannot be read: %s", self._context, run.barcode, exc.message
            )
            raise
        return self._mounted.mount

    def done(self, run: CartridgeRun) -> None:
        mounted, self._mounted = self._mounted, None
        if mounted is None:
            return
        try:
            self._loader.release(mounted)
        except ArchiveCoreError as exc:  # what was read is read; the drive's next job sees it
            logger.warning(
                "%s: cartridge %s could not be put back from drive %d: %s",
                self._context,
                mounted.barcode,
                mounted.drive,
                exc.message,
            )

    def read_failed(self, run: CartridgeRun, error: errors.MediaError) -> None:
        mounted = self._mounted
        if mounted is None:
            return
        failure = MediaFailure(
            drive=mounted.drive,
            barcode=mounted.barcode,
            at=self._loader.library.clock.now(),
            kind="read error",
        )
        note_failure(self._store, failure, context=self._context)


def _unknown(run: CartridgeRun) -> Cartridge:
    """A cartridge the media store does not know (lost, or another host's): its volume is
    only checked against its barcode; the UUID, when the placement gives it, must match."""
    return Cartridge(
        barcode=run.barcode,
        pool="",
        state=CartridgeState.READ_ONLY,
        volume_serial=volume_serial_for(run.barcode) or "",
        volume_uuid=run.volume_uuid,
        generation=0,
        free_bytes=0,
        total_bytes=0,
        files=0,
        worm=False,
    )
