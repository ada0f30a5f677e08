"""Writing one copy of each file to the cartridges of one pool, through the port only.

Each file goes whole onto one cartridge. A file that meets early warning (ENOSPC) is removed
again and written to the next cartridge; after any write error the volume's live state is
read again, a read-only cartridge is marked so and its unfinished files go elsewhere. A file
counts as written only once an index sync returned a generation that includes it, and only
then is it recorded in the media store; a cartridge is marked full only after a clean unmount.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

import attrs

from archive_core import ArchiveCoreError, ArchiveItem, FixityMismatch, LeaseTimeout, TransferFailed
from archive_core.transfer import CHUNK_SIZE, Digests, HashingReader, hash_stream
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.driver.feeding import (
    FedFile,
    Feed,
    ReadAhead,
    SourceOpener,
    SourceStream,
)
from archive_core_tape_ltfs.driver.loader import IdentityMismatch, Loader, Mounted
from archive_core_tape_ltfs.driver.media import Cartridge, CartridgeState, MediaStore, VolumeFile
from archive_core_tape_ltfs.driver.placement import TapeCopy
from archive_core_tape_ltfs.driver.pools import Pool
from archive_core_tape_ltfs.driver.selection import appendable, headroom, unrecorded
from archive_core_tape_ltfs.driver.wear import note_failure
from archive_core_tape_ltfs.health import MediaFailure
from archive_core_tape_ltfs.model import FileLocation, ReadOnlyReason

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Written:
    """One copy of one file, durable on tape (synced), or found there already (`reused`)."""

    key: str
    copy: TapeCopy
    size: int
    sha1: str
    generation: int
    digests: Digests | None = None
    reused: bool = False


class FileFailed(Exception):
    """This file cannot be written to the pool (its source, or no cartridge has room)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class _Spill(Exception):
    """This cartridge cannot take the file: write it to another one."""

    def __init__(self, reason: str, *, full: bool = False, media: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.full = full
        self.media = media  # a read or write error of the medium (or the drive)


@attrs.define
class _Session:
    """A cartridge mounted for writing, with the files written since the last sync."""

    mounted: Mounted
    cartridge: Cartridge
    mark: int  # the index generation before the unsynced files were written
    pending: list[Written] = attrs.Factory(list)
    full: bool = False

    @property
    def barcode(self) -> str:
        return self.cartridge.barcode


class PoolWriter:
    """Writes copies to one pool for one job; `flush()` syncs and says what is durable."""

    def __init__(
        self,
        pool: Pool,
        *,
        loader: Loader,
        store: MediaStore,
        headroom_bytes: int,
        read_ahead: ReadAhead,
        opener: SourceOpener,
        context: str,
    ) -> None:
        self.pool = pool
        self._loader = loader
        self._store = store
        self._headroom = headroom_bytes
        self._read_ahead = read_ahead
        self._opener = opener
        self._feed: Feed | None = None
        self._context = context  # "policy X job Y", for log lines
        self._session: _Session | None = None
        self._confirmed: list[Written] = []
        self._lost: list[str] = []
        self._yielded: set[str] = set()  # released for a restore: not taken again by this job

    # --- one file --------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading_ahead(self, items: Sequence[ArchiveItem]) -> Iterator[None]:
        """While inside, the sources of `items` that need writing are read ahead, to be
        written in this order."""
        todo = [item for item in items if self._synced(item) is None]
        if not todo or self._read_ahead.readers == 0:
            yield
            return
        library = self._loader.library
        self._feed = Feed(
            todo,
            opener=self._opener,
            writer_clock=library.clock,
            clocks=lambda name: library.worker(name).clock,
            settings=self._read_ahead,
            context=self._context,
        )
        try:
            yield
        finally:
            feed, self._feed = self._feed, None
            feed.close()

    def _source(self, item: ArchiveItem, *, fed: bool) -> tuple[str, FedFile | SourceStream]:
        """The item's path and bytes: from the feed the first time, when it holds them."""
        if fed and self._feed is not None:
            taken = self._feed.take(item)
            if taken is not None:
                return taken.path, taken
        clock = self._loader.library.clock
        path, source = self._opener(item, clock)
        return path, SourceStream(source, clock)

    def write(self, item: ArchiveItem, progress: Callable[[int], None] | None) -> Written | None:
        """Write the item's copy (None: it waits for the next sync), or the copy already
        synced on a cartridge of the pool (reused). FileFailed when it cannot be written."""
        found = self._synced(item)
        if found is not None:
            return found
        tried: set[str] = set()
        while True:
            try:
                # A second attempt (after a spill) reads the source again, itself.
                source_path, source = self._source(item, fed=not tried)
            except TransferFailed as exc:
                raise FileFailed(exc.message, retryable=exc.retryable) from exc
            with source:
                session = self._session_for(source.size, tried)
                try:
                    return self._write_on(session, item, source_path, source, progress)
                except _Spill as spill:
                    tried.add(session.barcode)
                    logger.warning(
                        "%s: %s goes to another cartridge of pool %s: %s",
                        self._context,
                        item.name,
                        self.pool.name,
                        spill.reason,
                    )
                    self._after_error(session, spill)

    def _synced(self, item: ArchiveItem) -> Written | None:
        for known in self._store.copies_of(item.name):
            cartridge = self._store.cartridge(known.barcode)
            if (
                cartridge is not None
                and cartridge.pool == self.pool.name
                and known.sha1 == item.sha1
            ):
                return Written(
                    key=item.key,
                    copy=TapeCopy(
                        barcode=known.barcode,
                        path=known.path,
                        volume=cartridge.volume_uuid,
                        partition=known.partition,
                        block=known.block,
                    ),
                    size=known.size,
                    sha1=known.sha1,
                    generation=known.generation,
                    reused=True,
                )
        return None

    def _write_on(
        self,
        session: _Session,
        item: ArchiveItem,
        source_path: str,
        source,
        progress: Callable[[int], None] | None,
    ) -> Written | None:
        """Write the file on the session's cartridge (None: it waits for the sync), or the
        copy found there already."""
        found = self._existing(session, item)
        if found is not None:
            return found
        mount = session.mounted.mount
        path = item.name
        reader = HashingReader(
            source,
            label=source_path,
            expected_sha1=item.sha1,
            expected_size=source.size,
            progress=progress,
        )
        try:
            out = mount.open_write(path)
        except errors.TapeError as exc:
            raise _Spill(exc.message) from exc
        try:
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
            out.close()
        except errors.NoSpace as exc:
            self._discard(session, out, path)
            raise _Spill(exc.message, full=True) from exc
        except (errors.TapeError, OSError) as exc:  # the source's errors are TransferFailed
            with contextlib.suppress(Exception):
                out.close()
            media = isinstance(exc, errors.MediaError)
            raise _Spill(getattr(exc, "message", None) or str(exc), media=media) from exc
        except (FixityMismatch, TransferFailed) as exc:
            self._discard(session, out, path)
            raise FileFailed(exc.message, retryable=exc.retryable) from exc
        assert reader.digests is not None
        written = Written(
            key=item.key,
            copy=self._copy(session, path, mount.location(path)),
            size=reader.digests.size,
            sha1=reader.digests.sha1,
            generation=session.mark,
            digests=reader.digests,
        )
        session.pending.append(written)
        return None

    def _existing(self, session: _Session, item: ArchiveItem) -> Written | None:
        """What already sits under the item's name on the volume. A copy this driver forgot
        (a delete) is dropped from the index to make room (LTFS frees nothing); one the store
        does not know (a sync whose record was lost) is read back and kept when it holds the
        very same bytes; anything else is left in place and the file goes elsewhere."""
        mount, path = session.mounted.mount, item.name
        try:
            location = mount.location(path)
        except ArchiveCoreError:
            return None  # not on the volume
        known = self._store.file(session.barcode, path)
        if known is not None and known.forgotten:
            if self.pool.worm:
                raise _Spill(f"{path} is already on WORM cartridge {session.barcode}")
            try:
                mount.remove(path)
            except errors.TapeError as exc:
                raise _Spill(exc.message) from exc
            self._store.drop(session.barcode, path)
            return None
        try:
            with mount.open_read(path) as stream:
                digests = hash_stream(stream)
        except (ArchiveCoreError, OSError) as exc:
            raise _Spill(
                f"{path} is already on cartridge {session.barcode} and could not be read back"
            ) from exc
        if digests.sha1 != item.sha1:
            raise _Spill(
                f"another file sits under {path} on cartridge {session.barcode}; it is left "
                f"in place"
            )
        found = Written(
            key=item.key,
            copy=self._copy(session, path, location),
            size=digests.size,
            sha1=digests.sha1,
            generation=session.mark,
            digests=digests,
            reused=True,
        )
        self._store.record([_volume_file(found)])
        return found

    def _copy(self, session: _Session, path: str, location: FileLocation | None) -> TapeCopy:
        return TapeCopy(
            barcode=session.barcode,
            path=path,
            volume=session.cartridge.volume_uuid,
            partition=location.partition if location else None,
            block=location.startblock if location else None,
        )

    def _discard(self, session: _Session, out, path: str) -> None:
        """Drop a partial file from the index (LTFS frees no space); WORM keeps it."""
        with contextlib.suppress(Exception):
            out.close()
        if self.pool.worm:
            return
        with contextlib.suppress(ArchiveCoreError):
            session.mounted.mount.remove(path)

    # --- cartridges ------------------------------------------------------------------------

    def _room(self, session: _Session) -> int:
        capacity = session.mounted.mount.capacity()
        keep = headroom(self._headroom, total_bytes=capacity.total_bytes, files=capacity.files)
        return max(0, capacity.free_bytes - keep)

    def _session_for(self, size: int, tried: set[str]) -> _Session:
        current = self._session
        if current is not None and self._loader.restore_waits_for(current.mounted):
            # Between two files: sync what is written and hand the cartridge over.
            logger.info(
                "%s: releasing cartridge %s for a restore that waits for it",
                self._context,
                current.barcode,
            )
            self._yielded.add(current.barcode)
            self._close(current)
            current = None
        if current is not None:
            if current.barcode not in tried and self._room(current) >= size:
                return current
            self._close(current)
        tried.update(self._yielded)
        known = self._store.cartridges(self.pool.name)
        inventory = self._loader.library.changer.inventory()
        for cartridge in appendable(
            self.pool,
            known,
            inventory,
            size=size,
            configured_headroom=self._headroom,
            exclude=tried,
        ):
            try:
                mounted = self._loader.mount(cartridge)
            except (IdentityMismatch, errors.NeedsCleaning):
                raise  # for an operator: another cartridge would not help
            except errors.TapeError as exc:
                tried.add(cartridge.barcode)
                logger.warning(
                    "%s: cartridge %s cannot be used now: %s",
                    self._context,
                    cartridge.barcode,
                    exc.message,
                )
                continue
            return self._open(mounted, cartridge, size, tried)
        for barcode in unrecorded(self.pool, known, inventory, exclude=tried):
            tried.add(barcode)
            taken = self._take_unrecorded(barcode)
            if taken is not None:
                return self._open(*taken, size, tried)
        waited = self._after_restore(size, tried)
        if waited is not None:
            return waited
        raise FileFailed(
            f"No cartridge of pool {self.pool.name} can take a file of {size} bytes now: none "
            f"online is appendable with room, and no blank scratch cartridge is left. Insert "
            f"scratch cartridges or extend the pool.",
            retryable=True,
        )

    def _after_restore(self, size: int, tried: set[str]) -> _Session | None:
        """A cartridge this job handed to a restore, once the restore is done with it: when
        no other has room, the job waits for it (holding no drive, so nobody waits on it)."""
        for cartridge in appendable(
            self.pool,
            self._store.cartridges(self.pool.name),
            self._loader.library.changer.inventory(),
            size=size,
            configured_headroom=self._headroom,
            exclude=tried - self._yielded,
        ):
            if cartridge.barcode not in self._yielded:
                continue
            try:
                mounted = self._loader.mount(cartridge, waits=True)
            except (errors.TapeError, LeaseTimeout) as exc:
                logger.warning(
                    "%s: cartridge %s is still not free: %s",
                    self._context,
                    cartridge.barcode,
                    exc.message,
                )
                continue
            self._yielded.discard(cartridge.barcode)
            return self._open(mounted, cartridge, size, tried)
        return None

    def _open(self, mounted: Mounted, cartridge: Cartridge, size: int, tried: set[str]) -> _Session:
        session = _Session(mounted=mounted, cartridge=cartridge, mark=mounted.volume.generation)
        self._session = session
        if self._room(session) >= size:
            return session
        capacity = mounted.mount.capacity()
        whole = capacity.total_bytes - headroom(
            self._headroom, total_bytes=capacity.total_bytes, files=0
        )
        if size > whole:
            self._close(session)
            raise FileFailed(
                f"The file ({size} bytes) is larger than what a whole cartridge of pool "
                f"{self.pool.name} holds ({max(whole, 0)} bytes); LTFS cannot spread a file "
                f"over cartridges."
            )
        # The store was behind the volume: it learns what the volume says, and the file
        # goes elsewhere.
        self._store.update_usage(
            cartridge.barcode,
            generation=mounted.volume.generation,
            free_bytes=capacity.free_bytes,
            total_bytes=capacity.total_bytes,
            files=capacity.files,
        )
        tried.add(cartridge.barcode)
        return self._session_for(size, tried)

    def _take_unrecorded(self, barcode: str) -> tuple[Mounted, Cartridge] | None:
        """Mount a cartridge of the pool the store has no row for and record it: a blank
        scratch cartridge is formatted; a volume this driver wrote for the pool (its name
        says so, its serial and cartridge memory match the barcode) is taken back; anything
        else (a foreign volume, a blank cartridge outside the scratch range) is never written.
        A writable one is returned mounted."""
        name = f"archive-core {self.pool.name}"
        try:
            mounted = self._loader.open_unrecorded(
                barcode, name=name, may_format=self.pool.is_scratch(barcode)
            )
        except (IdentityMismatch, errors.NeedsCleaning):
            raise  # for an operator: another cartridge would not help
        except errors.TapeError as exc:
            logger.warning(
                "%s: cartridge %s of pool %s cannot be used: %s",
                self._context,
                barcode,
                self.pool.name,
                exc.message,
            )
            return None
        if mounted.volume.name != name:
            self._loader.release(mounted, unload=True)
            logger.warning(
                "%s: cartridge %s holds LTFS volume %r, which this driver did not write for "
                "pool %s; it is never written",
                self._context,
                barcode,
                mounted.volume.name,
                self.pool.name,
            )
            return None
        state = mounted.mount.state()
        capacity = mounted.mount.capacity()
        writable = not (state.reasons - {ReadOnlyReason.WORM})
        cartridge = Cartridge(
            barcode=barcode,
            pool=self.pool.name,
            state=CartridgeState.APPENDABLE if writable else CartridgeState.READ_ONLY,
            volume_serial=mounted.volume.serial,
            volume_uuid=mounted.volume.uuid,
            generation=mounted.volume.generation,
            free_bytes=capacity.free_bytes,
            total_bytes=capacity.total_bytes,
            files=capacity.files,
            worm=self.pool.worm,
            reason="" if writable else state.why,
        )
        self._store.save(cartridge)
        logger.info(
            "%s: recorded cartridge %s of pool %s (volume %s, %s)",
            self._context,
            barcode,
            self.pool.name,
            cartridge.volume_uuid,
            cartridge.state.value,
        )
        if not writable:
            self._loader.release(mounted, unload=True)
            return None
        return mounted, cartridge

    def _after_error(self, session: _Session, spill: _Spill) -> None:
        """Read the volume's live state; a read-only one is marked so; close the session."""
        session.full = session.full or spill.full
        if spill.media:
            failure = MediaFailure(
                drive=session.mounted.drive,
                barcode=session.barcode,
                at=self._loader.library.clock.now(),
                kind="write error",
            )
            note_failure(self._store, failure, context=self._context)
        unusable = True  # for writing: put back in its slot rather than left in the drive
        try:
            state = session.mounted.mount.state()
        except errors.TapeError as exc:
            self._store.mark(session.barcode, CartridgeState.DAMAGED, exc.message)
        else:
            reasons = state.reasons - {ReadOnlyReason.WORM, ReadOnlyReason.FULL}
            unusable = bool(reasons)
            if reasons:
                self._store.mark(session.barcode, CartridgeState.READ_ONLY, state.why)
                logger.warning(
                    "%s: cartridge %s is read-only now (%s)",
                    self._context,
                    session.barcode,
                    state.why,
                )
            elif ReadOnlyReason.FULL in state.reasons:
                session.full = True
        self._close(session, unload=unusable)

    def _sync(self, session: _Session) -> None:
        if not session.pending:
            return
        try:
            generation = session.mounted.mount.sync()
        except errors.TapeError as exc:
            logger.warning(
                "%s: index sync of %s failed: %s", self._context, session.barcode, exc.message
            )
            generation = session.mark
        pending, session.pending = session.pending, []
        if generation <= session.mark:
            self._lost.extend(w.key for w in pending)
            return
        confirmed = [attrs.evolve(w, generation=generation) for w in pending]
        self._store.record([_volume_file(w) for w in confirmed])
        session.mark = generation
        self._confirmed.extend(confirmed)
        try:
            capacity = session.mounted.mount.capacity()
        except errors.TapeError:
            return
        self._store.update_usage(
            session.barcode,
            generation=generation,
            free_bytes=capacity.free_bytes,
            total_bytes=capacity.total_bytes,
            files=capacity.files,
        )

    def _close(self, session: _Session, *, unload: bool = False) -> None:
        """Sync and unmount (LTFS writes its index); the cartridge stays in the drive unless
        `unload`."""
        self._session = None
        self._sync(session)
        try:
            self._loader.release(session.mounted, unload=unload)
        except errors.TapeError as exc:
            self._store.mark(session.barcode, CartridgeState.DAMAGED, exc.message)
            logger.error(
                "%s: cartridge %s did not unmount cleanly: %s",
                self._context,
                session.barcode,
                exc.message,
            )
            return
        if session.full:
            self._store.mark(session.barcode, CartridgeState.FULL, "past early warning")
            logger.info("%s: cartridge %s is full", self._context, session.barcode)

    # --- the batch -------------------------------------------------------------------------

    def flush(self) -> tuple[list[Written], list[str]]:
        """Sync the open cartridge; the copies now durable, and the keys whose copy was lost
        (to write again)."""
        if self._session is not None:
            self._sync(self._session)
        confirmed, lost = self._confirmed, self._lost
        self._confirmed, self._lost = [], []
        return confirmed, lost

    def close(self) -> None:
        if self._session is not None:
            self._close(self._session)


def _volume_file(written: Written) -> VolumeFile:
    return VolumeFile(
        barcode=written.copy.barcode,
        path=written.copy.path,
        size=written.size,
        partition=written.copy.partition,
        block=written.copy.block,
        generation=written.generation,
        sha1=written.sha1,
    )
