"""A base for drivers whose storage keeps each archived copy as one object under a key.

Object stores, key-value services, a vendor's archive API: anything that can store a stream
under a key, open it again, and remove it. A subclass fills in `put`, `get` and `remove`
(and `probe` for readiness); this base does the rest of the contract the same way for all of
them: keys checked against hostile names, bytes hashed while they move, Portal's sha1
checked before an upload may complete, restores published atomically and verified, one
outcome per file with a message an admin can act on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

from archive_core.driver import BaseDriver, Capability
from archive_core.errors import ArchiveCoreError, CopyNotFound
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    FileOutcome,
    Readiness,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    VerifyRequest,
)

log = logging.getLogger(__name__)


class ObjectStoreDriver(BaseDriver):
    """Archive, restore, delete and verify over `put` / `get` / `remove` of whole objects.

    The contract for the three methods a subclass fills in:

    - `put(key, stream, size)` stores every byte read from `stream` under `key`, reading it to
      its end. If reading raises (the sha1 did not match, the source changed), `put` must let
      the exception out and leave nothing under `key`: upload to a temporary key and rename,
      or use an upload that only completes when the stream ended (S3 multipart, a PUT with
      a body). An object already under `key` is replaced. The stream reads forwards only
      (`read`, `readinto`; `seekable()` is False): stream it in bounded parts, never read it
      whole, and pass `size` (the source's size) to an SDK that wants a length.
    - `get(key)` returns a binary stream of the object (closed by the caller); raises
      `CopyNotFound` (or `FileNotFoundError`, `KeyError`) when there is none.
    - `remove(key)` deletes the object; an absent object is not an error.
    - `size_of(key)` (optional) returns the object's size, or None when there is none, without
      reading it (a HEAD request, a stat). The default opens the object with `get` and
      measures it, which is correct but reads what it cannot seek: override it when the
      storage can tell a size cheaply. The core asks it before it counts a copy the catalog
      remembers, and archive asks it before `put`, so an object with other bytes under a key
      is never replaced.

    - `remove_leftovers(key, made_by)` (optional) removes what the dead workers `made_by` left
      while storing `key` (an unfinished multipart upload, a temporary object). It is called
      before an item the journal shows as interrupted (`item.resumed`) is stored again. The
      default removes nothing. Mark what an upload leaves with `worker_id` to find it again.

    Anything else they raise fails that one file: `ArchiveCoreError` with its message,
    `OSError` as retryable, other exceptions logged and reported with their type. A `put`
    that returns normally after reading its stream raised fails the file too, saying so,
    and what it stored is removed.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ARCHIVE, Capability.RESTORE, Capability.DELETE, Capability.VERIFY}
    )

    # --- what a subclass fills in ------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        """Store all of `stream` under `key`, atomically (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__}.put() is not written yet")

    def get(self, key: str) -> BinaryIO:
        """Open the object under `key` for reading; CopyNotFound when there is none."""
        raise NotImplementedError(f"{type(self).__name__}.get() is not written yet")

    def remove(self, key: str) -> None:
        """Delete the object under `key`; nothing to do when it is absent."""
        raise NotImplementedError(f"{type(self).__name__}.remove() is not written yet")

    def probe(self) -> Readiness:
        """Whether the storage answers now, and why not; keep it quick (Portal waits)."""
        return Readiness.ready()

    def size_of(self, key: str) -> int | None:
        """The size of the object under `key`, None when there is none (see the class doc)."""
        try:
            stream = self.get(key)
        except (CopyNotFound, FileNotFoundError, KeyError):
            return None
        with stream:
            try:
                return stream.seek(0, os.SEEK_END)
            except (AttributeError, OSError, ValueError):
                size = 0
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                return size

    def remove_leftovers(self, key: str, made_by: tuple[str, ...]) -> None:
        """Remove what the workers `made_by`, all dead, left while storing `key`.

        Called before a resumed item (one whose earlier attempt died mid-transfer) is stored
        again. Remove only what those workers made for this key: another worker, alive, may
        be storing the same key right now. The default removes nothing; a storage whose
        interrupted uploads cost space (S3 multipart parts) overrides it.
        """

    # --- what a subclass may change or use -----------------------------------------------------

    def key_for(self, item: ArchiveItem) -> str:
        """The key a file is stored under: Portal's file name by default."""
        return item.name

    @property
    def worker_id(self) -> str:
        """This process as the journal names it, and as `remove_leftovers` gets it in `made_by`.

        Put it in what an upload leaves behind until it completes (a temporary key, a marker),
        so that leftovers can be told apart by the worker that made them.
        """
        from archive_core import workers

        return str(workers.current())

    # --- the contract, done once -------------------------------------------------------------

    def check_ready(self) -> Readiness:
        return self.probe()

    def stat(self, request: StatRequest) -> Iterator[FileOutcome]:
        for item in request.items:
            yield self._each(item.key, f"looking for {item.locator}", self._stat_one, item, None)

    def archive(self, request: ArchiveRequest) -> Iterator[FileOutcome]:
        for item in request.items:
            yield self._each(item.key, f"archiving {item.name}", self._archive_one, item, request)

    def restore(self, request: RestoreRequest) -> Iterator[FileOutcome]:
        for item in request.items:
            yield self._each(
                item.key, f"restoring {item.locator}", self._restore_one, item, request
            )

    def delete(self, request: DeleteRequest) -> Iterator[FileOutcome]:
        for item in request.items:
            yield self._each(item.key, f"deleting {item.locator}", self._delete_one, item, None)

    def verify(self, request: VerifyRequest) -> Iterator[FileOutcome]:
        for item in request.items:
            yield self._each(item.key, f"verifying {item.locator}", self._verify_one, item, request)

    def _stat_one(self, item: CopyRef, _request: None) -> FileOutcome:
        from archive_core import transfer

        key = transfer.check_locator(item.locator)
        size = self.size_of(key)
        if size is None:
            return FileOutcome.failure(item.key, f"archived copy {key} does not exist")
        return FileOutcome.success(item.key, locator=key, size=size)

    def _archive_one(self, item: ArchiveItem, request: ArchiveRequest) -> FileOutcome:
        from archive_core import transfer

        key = transfer.check_locator(self.key_for(item), what="object key")
        if item.resumed:
            self._remove_leftovers_quietly(key, item.abandoned_by)
        if self.size_of(key) is not None:
            # Found after a crash between put and the journal, or after the catalog was lost:
            # kept when it holds these very bytes, never replaced when it holds others.
            return self._existing(item, key, request)
        path, source = transfer.open_first_readable(item.sources)
        with source:
            reader = _UploadStream(
                transfer.HashingReader(
                    source,
                    label=path,
                    expected_sha1=item.sha1,
                    expected_size=source.size,
                    progress=request.progress,
                )
            )
            self.put(key, reader, source.size)
        if reader.raised is not None:
            # The upload may have completed with bytes that failed the sha1 check, or with
            # part of them: nothing of it may stay under the final key.
            self._remove_quietly(key)
            raise _swallowed(type(self).__name__, key, reader.raised)
        if reader.digests is None:
            # The upload stopped before the end, so the sha1 was never checked: whatever it
            # stored must not stay under the final key.
            self._remove_quietly(key)
            raise ArchiveCoreError(
                f"{type(self).__name__}.put() returned before reading all of {path}; "
                "the copy was removed."
            )
        digests = reader.digests
        return FileOutcome.success(
            item.key, locator=key, size=digests.size, sha1=digests.sha1, sha256=digests.sha256
        )

    def _existing(self, item: ArchiveItem, key: str, request: ArchiveRequest) -> FileOutcome:
        from archive_core import transfer

        with self._open(key) as stream:
            digests = transfer.hash_stream(stream, progress=request.progress)
        if item.sha1 and digests.sha1 == item.sha1.strip().lower():
            return FileOutcome.success(
                item.key,
                locator=key,
                size=digests.size,
                sha1=digests.sha1,
                sha256=digests.sha256,
                reused=True,
            )
        return FileOutcome.failure(
            item.key,
            f"a different object already exists under {key} (sha1 {digests.sha1}); it was left "
            "in place and nothing was stored",
        )

    def _restore_one(self, item: RestoreItem, request: RestoreRequest) -> FileOutcome:
        from archive_core import transfer

        key = transfer.check_locator(item.locator)
        destination = item.destination
        if not destination or not os.path.isabs(destination) or "\0" in destination:
            raise ArchiveCoreError(f"restore destination {destination!r} is not an absolute path")
        if item.resumed:
            # Only the dead workers' temporary files for this destination: Portal's folder
            # holds other files, and perhaps a live worker's restore of this one.
            transfer.remove_partials(
                os.path.dirname(destination),
                os.path.basename(destination),
                made_by=item.abandoned_by,
            )
        with self._open(key) as stream:
            digests = transfer.publish_file(
                stream,
                destination,
                replace=True,  # Portal's destination: a file already there is replaced
                expected_sha1=item.sha1,
                progress=request.progress,
            )
        return FileOutcome.success(
            item.key, locator=key, size=digests.size, sha1=digests.sha1, sha256=digests.sha256
        )

    def _verify_one(self, item: CopyRef, request: VerifyRequest) -> FileOutcome:
        from archive_core import transfer

        key = transfer.check_locator(item.locator)
        with self._open(key) as stream:
            digests = transfer.hash_stream(stream, progress=request.progress)
        found = {"locator": key, "size": digests.size, "sha1": digests.sha1}
        expected = item.sha1.strip().lower() if item.sha1 else None
        if expected and digests.sha1 != expected:
            return FileOutcome.failure(
                item.key,
                f"archived copy {key} hashes to sha1 {digests.sha1}, expected {expected}",
                **found,
            )
        return FileOutcome.success(item.key, sha256=digests.sha256, **found)

    def _delete_one(self, item: CopyRef, _request: None) -> FileOutcome:
        from archive_core import transfer

        key = transfer.check_locator(item.locator)
        with contextlib.suppress(CopyNotFound, FileNotFoundError, KeyError):
            self.remove(key)  # an object already gone counts as deleted
        return FileOutcome.success(item.key, locator=key)

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.get(key)
        except (FileNotFoundError, KeyError):
            raise CopyNotFound(f"archived copy {key} does not exist") from None

    def _remove_leftovers_quietly(self, key: str, made_by: tuple[str, ...]) -> None:
        # Leftovers cost space, not correctness: failing the file for them would keep it
        # from being archived at all, so a failure here is logged and the upload goes on.
        try:
            self.remove_leftovers(key, made_by)
        except Exception as exc:
            log.warning(
                "target %s: could not remove what the interrupted upload of %s left (workers %s): "
                "%s",
                self.context.target,
                key,
                ", ".join(made_by),
                exc,
            )

    def _remove_quietly(self, key: str) -> None:
        try:
            self.remove(key)
        except Exception as exc:
            log.warning("target %s: could not remove %s: %s", self.context.target, key, exc)

    def _each(self, key: str, what: str, work: Any, item: Any, request: Any) -> FileOutcome:
        """One file's work, its failure turned into that file's outcome."""
        try:
            return work(item, request)
        except ArchiveCoreError as exc:
            return FileOutcome.failure(key, exc.message, retryable=exc.retryable)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            return FileOutcome.failure(
                key, f"{what} failed: {exc.strerror or exc}{where}", retryable=True
            )
        except NotImplementedError as exc:
            return FileOutcome.failure(key, f"{what} failed: {exc}")
        except Exception as exc:
            log.exception(
                "policy=%s job=%s target %s: %s failed",
                getattr(request, "policy", None),
                getattr(request, "job_id", None),
                self.context.target,
                what,
            )
            return FileOutcome.failure(key, f"{what} failed: {type(exc).__name__}: {exc}")


class _UploadStream:
    """The stream `put()` reads: a forward-only reader that remembers what reading raised.

    So that a `put` which catches that error and returns normally is seen: its upload may
    have completed, and the base must not report the file archived.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.name = reader.name
        self.raised: BaseException | None = None

    @property
    def digests(self) -> Any:
        return self._reader.digests

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False  # SDKs ask; the bytes are hashed as they pass, once

    def read(self, count: int = -1) -> bytes:
        try:
            return self._reader.read(count)
        except BaseException as exc:
            self.raised = self.raised or exc
            raise

    def readinto(self, view: Any) -> int:
        try:
            return self._reader.readinto(view)
        except BaseException as exc:
            self.raised = self.raised or exc
            raise


def _swallowed(driver: str, key: str, raised: BaseException) -> ArchiveCoreError:
    """The error of a `put` that returned normally although reading its stream raised."""
    detail = raised.message if isinstance(raised, ArchiveCoreError) else f"{raised}"
    retryable = getattr(raised, "retryable", isinstance(raised, OSError))
    return ArchiveCoreError(
        f"{detail} ({driver}.put() went on after this error and returned normally; it must "
        f"let the error out and store nothing. What it stored under {key} was removed.)",
        retryable=retryable,
    )
