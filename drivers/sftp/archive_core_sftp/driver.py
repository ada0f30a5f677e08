"""The SFTP driver: archive, restore, delete and verify copies on any SFTP server.

One ssh process per target (the system OpenSSH: its ciphers, ProxyJump, agent, certificates
and config aliases) carries one SFTP session that `files_in_flight` transfers share, each
with its requests pipelined. Copies are written under remote_root only, to a temporary name,
hashed on the way and checked against Vidispine's sha1 before they are published, and
confirmed after. Locators are relative posix paths under remote_root; external ids are
`sftp://<target>/<locator>`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from archive_core import (
    API_VERSION,
    ArchiveCoreError,
    ArchiveItem,
    ArchiveRequest,
    BaseDriver,
    Capability,
    CopyRef,
    DeleteRequest,
    DriverContext,
    FileOutcome,
    Readiness,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    TransferFailed,
    VerifyRequest,
)
from archive_core_sftp.config import SftpConfig

if TYPE_CHECKING:
    from archive_core.transfer.stager import Plan, Staged, Stager
    from archive_core_sftp import _wire
    from archive_core_sftp._pool import Patience

log = logging.getLogger(__name__)

T = TypeVar("T")


class SftpDriver(BaseDriver):
    """Archives to a directory on an SFTP server, strict on host keys and secrets."""

    name = "sftp"
    api_version = API_VERSION
    capabilities = frozenset(
        {
            Capability.ARCHIVE,
            Capability.RESTORE,
            Capability.DELETE,
            Capability.VERIFY,
            Capability.BULK,
        }
    )
    Config = SftpConfig
    config: SftpConfig

    def __init__(
        self,
        config: SftpConfig,
        context: DriverContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from archive_core_sftp._durable import DirectorySync
        from archive_core_sftp._pool import SessionPool

        super().__init__(config, context)
        self._lock = threading.Lock()
        self._sessions = SessionPool(
            config,
            target=context.target,
            work_dir=context.state_dir / "ssh",
            size=min(config.connections, config.files_in_flight),
            on_connect=self._remove_unremoved,
            sleep=sleep,  # between connection attempts; injected so tests never sleep
            clock=clock,
        )
        self._durable = DirectorySync(context.target)
        self._clock = clock
        self._stager: Stager | None = None
        self._throttle = _Throttle(config.bandwidth_limit * 1e6) if config.bandwidth_limit else None
        # Temporary files a broken connection kept us from removing: removed on the next one.
        # The journal's abandoned_by never names this process (it is alive), so nobody else
        # would remove them.
        self._unremoved: set[str] = set()

    def close(self) -> None:
        if self._stager is not None:
            self._stager.close()
        self._sessions.close()

    # --- the session ---------------------------------------------------------------------------

    def _retrying(
        self,
        work: Callable[[_wire.Connection], T],
        patience: Patience | None = None,
        *,
        spread: bool = False,
    ) -> T:
        """`work` on a connection (this thread's slot with `spread`: see _pool); once more on
        a fresh one when the connection broke.

        A dropped connection (server restarted, network reset, ssh killed by the operation
        timeout) is noticed by the first request after it: every step here may run again
        (a fresh temporary name, an atomic publish, a remove that finds the copy gone), so
        one broken connection costs a reconnect, not the file.
        """
        from archive_core_sftp import _session, _wire

        try:
            return work(self._sessions.connection(patience, spread=spread))
        except _wire.ConnectionLost as exc:
            log.info(
                "target %s: the SFTP connection broke (%s); connecting again",
                self.context.target,
                exc,
            )
            self._sessions.drop(spread=spread)
            try:
                connection = self._sessions.connection(patience, spread=spread)
            except _session.SessionFailed as failed:
                # Both halves matter to an admin: what broke, and why it stays broken.
                broke = exc.strerror or "the SFTP connection broke"
                raise TransferFailed(
                    f"{broke[:1].upper()}{broke[1:]}, and connecting again failed: "
                    f"{failed.message}",
                    retryable=failed.retryable,
                ) from failed
            return work(connection)

    def _patience(self) -> Patience:
        """One job's connection attempts, shared by its threads (see _pool)."""
        return self._sessions.patience()

    def _unremovable(self, path: str) -> None:
        """`_files.upload` could not remove its temporary file `path`: the connection broke."""
        with self._lock:
            self._unremoved.add(path)

    def _remove_unremoved(self, connection: _wire.Connection) -> None:
        """Remove what broken connections left, on a connection just made."""
        from archive_core_sftp import _wire

        with self._lock:
            leftovers = sorted(self._unremoved)
        for path in leftovers:
            try:
                connection.remove(path)
            except _wire.ConnectionLost:
                return  # broke again: the next connection tries
            except _wire.SFTPError as exc:
                if exc.errno != 2:
                    log.warning(
                        "target %s: could not remove the temporary file %s an interrupted "
                        "upload left on the server: %s",
                        self.context.target,
                        path,
                        exc.strerror,
                    )
            else:
                log.info(
                    "target %s: removed %s, left by an upload whose connection broke",
                    self.context.target,
                    path,
                )
            with self._lock:
                self._unremoved.discard(path)

    # --- readiness -----------------------------------------------------------------------------

    def check_ready(self) -> Readiness:
        """Connects, logs in, checks remote_root is a writable directory (a probe written,
        renamed and removed) with min_free_bytes free; bounded by the connect and operation
        timeouts."""
        from archive_core_sftp import _wire

        root = self.config.remote_root
        try:
            return self._retrying(self._probe)
        except ArchiveCoreError as exc:
            return Readiness.not_ready(exc.message)
        except _wire.SFTPError as exc:
            if exc.errno == 2:
                return Readiness.not_ready(f"remote_root {root} does not exist on the server")
            if exc.errno == 13:
                return Readiness.not_ready(f"remote_root {root} is not writable for this user")
            return Readiness.not_ready(f"the server refused the probe in {root}: {exc.strerror}")

    def _probe(self, connection: _wire.Connection) -> Readiness:
        from archive_core_sftp import _wire

        root = self.config.remote_root
        info = connection.stat(root)
        if not info.permissions or (info.permissions & 0o170000) != 0o040000:
            return Readiness.not_ready(f"remote_root {root} is not a directory on the server")
        probe = f"{root}/.archive-core-probe-{os.getpid()}-{time.monotonic_ns()}"
        try:
            handle = connection.open(
                probe + ".partial", _wire.O_WRITE | _wire.O_CREAT | _wire.O_EXCL
            )
        except _wire.SFTPError as exc:
            # OpenSSH's server says only "Failure" for EROFS: the mount flag tells.
            if (
                exc.code == _wire.FAILURE
                and b"statvfs@openssh.com" in connection.extensions
                and connection.statvfs(root).flag & _wire.ST_RDONLY
            ):
                return Readiness.not_ready(
                    f"remote_root {root} is on a file system mounted read-only on the "
                    "server; have it mounted read-write"
                )
            raise
        connection.close_handle(handle)
        connection.rename(probe + ".partial", probe)
        connection.remove(probe)
        free = ""
        if b"statvfs@openssh.com" in connection.extensions:
            vfs = connection.statvfs(root)
            available = vfs.bavail * vfs.frsize
            if available < self.config.min_free_bytes:
                return Readiness.not_ready(
                    f"only {available:,} bytes are free under remote_root {root} on the "
                    f"server; min_free_bytes is {self.config.min_free_bytes:,}"
                )
            free = f", {available / 1e9:.1f} GB free"
        return Readiness.ready(f"{root} on {self._label()} is writable{free}")

    def _label(self) -> str:
        from archive_core_sftp import _session

        return _session.label(self.config)

    # --- archive -------------------------------------------------------------------------------

    def archive(self, request: ArchiveRequest) -> Iterator[FileOutcome]:
        """Small files (up to _pipeline.SMALL_FILE) many at a time by one thread on one
        connection; larger ones, and every file a per-file check must confirm before its
        publish, by the stager's threads. Both publish in chunks (`_publish`)."""
        import attrs

        from archive_core.transfer.stager import Plan

        today = dt.datetime.now(dt.UTC).date()  # one date per batch, even across midnight
        patience = self._patience()
        small, other = self._sort_by_size(request.items)
        if other:
            plan: Plan[ArchiveItem, Any] = Plan(
                prepare=functools.partial(self._locate, today=today),
                stage=functools.partial(self._archive_one, patience=patience),
                describe=_describe_archive,
                publish=functools.partial(self._publish, patience=patience),
            )
            yield from self._run(attrs.evolve(request, items=other), plan)
        if small:
            yield from self._archive_small(request, small, today=today, patience=patience)

    def _sort_by_size(
        self, items: tuple[ArchiveItem, ...]
    ) -> tuple[list[ArchiveItem], list[ArchiveItem]]:
        from archive_core_sftp import _pipeline

        if self.config.read_back or self.config.remote_checksum_command:
            return [], list(items)  # their checks run per file, in the stager's threads
        small: list[ArchiveItem] = []
        other: list[ArchiveItem] = []
        for item in items:
            size = item.size
            if size is None and item.sources:
                try:
                    size = os.stat(item.sources[0]).st_size
                except OSError:
                    size = None  # the threaded path says why it cannot be read
            (small if size is not None and size <= _pipeline.SMALL_FILE else other).append(item)
        return small, other

    def _archive_small(
        self,
        request: ArchiveRequest,
        items: list[ArchiveItem],
        *,
        today: dt.date,
        patience: Patience,
    ) -> Iterator[FileOutcome]:
        """`items` through `_pipeline.upload_small`, one lane per connection (so that the
        server fsyncs several files at once), published in chunks as they arrive."""
        from archive_core.transfer.stager import Staged, failure_outcome
        from archive_core_sftp import _files, _lanes, _pipeline

        def land(upload: _pipeline.SmallUpload) -> Any:
            item, locator = upload.key
            if isinstance(upload.done, _files.RemoteStaged):
                return Staged(key=item.key, locator=locator, staged=upload.done)
            return failure_outcome(item.key, _describe_archive(item), upload.done, request)

        def again(upload: _pipeline.SmallUpload) -> _pipeline.SmallUpload:
            fresh = self._small_upload(upload.key[0], today, request)
            fresh.tries = upload.tries + 1
            return fresh

        def pipeline(connection: _wire.Connection, uploads: Any, files_in_flight: int) -> Any:
            return _pipeline.upload_small(
                connection,
                uploads,
                files_in_flight=files_in_flight,
                forget=self._forget,
                throttle=self._throttle,
                unremoved=self._unremovable,
            )

        uploads = [self._small_upload(item, today, request) for item in items]
        work = _lanes.Work(pipeline=pipeline, land=land, again=again)
        publish = functools.partial(self._publish, patience=patience)
        lanes = self.config.connections
        yield from self._in_lanes(uploads, work, patience, lanes, publish, deferred=[])

    def _in_lanes(
        self,
        tasks: list[Any],
        work: Any,
        patience: Patience,
        lanes: int,
        publish: Callable[..., Any],
        *,
        deferred: list[Any],
    ) -> Iterator[FileOutcome]:
        """`tasks` through `pipeline` on `lanes` connections (see _lanes), published."""
        from archive_core.transfer.stager import CHUNK_FILES
        from archive_core_sftp import _lanes

        running = _lanes.Lanes(
            tasks,
            sessions=self._sessions,
            patience=patience,
            work=work,
            lanes=lanes,
            spread=lanes > 1,
            files_in_flight=self.config.files_in_flight,
            # Two chunks and what is in flight: the lanes never wait on a chunk's publish.
            window=2 * CHUNK_FILES + self.config.files_in_flight,
            name=f"sftp-{self.context.target}",
        )
        return _lanes.published(running, publish, clock=self._clock, deferred=deferred)

    def _progress_of(self, request: Any) -> Any:
        """The request's progress callback, safe to call from several lanes."""
        report = getattr(request, "progress", None)
        if report is None:
            return None

        def progress(count: int) -> None:
            with self._lock:
                report(count)

        return progress

    def _small_upload(self, item: ArchiveItem, today: dt.date, request: ArchiveRequest) -> Any:
        from archive_core import transfer
        from archive_core_sftp import _pipeline

        _, locator = self._locate(item, today=today)
        progress = self._progress_of(request)

        def open_source() -> tuple[Any, Any, int]:
            path, stream = transfer.open_first_readable(item.sources)
            mtime = int(os.fstat(stream.fileno()).st_mtime)
            reader = transfer.HashingReader(
                stream, label=path, expected_sha1=item.sha1, progress=progress
            )
            return stream, reader, mtime

        before = None
        if item.abandoned_by:
            before = functools.partial(
                self._remove_partials, locator=locator, made_by=item.abandoned_by
            )
        return _pipeline.SmallUpload(
            key=(item, locator),
            open_source=open_source,
            root=self.config.remote_root,
            locator=locator,
            before=before,
        )

    def _locate(self, item: ArchiveItem, *, today: dt.date) -> tuple[ArchiveItem, str]:
        from archive_core import transfer

        locator = transfer.layout_locator(
            self.config.layout, name=item.name, item_id=item.item_id, today=today
        )
        return item, locator

    def _archive_one(
        self, task: tuple[ArchiveItem, str], progress: Any, *, patience: Patience
    ) -> Staged:
        item, locator = task
        work = functools.partial(self._archive_to, item, locator, progress)
        return self._retrying(work, patience, spread=True)

    def _archive_to(
        self, item: ArchiveItem, locator: str, progress: Any, connection: _wire.Connection
    ) -> Staged:
        """The copy written under its temporary name, fsynced and confirmed as the settings
        ask; its chunk's publish gives it its name."""
        from archive_core import transfer
        from archive_core.transfer.stager import Staged
        from archive_core_sftp import _files

        if item.abandoned_by:
            self._remove_partials(connection, locator, item.abandoned_by)
        path, stream = transfer.open_first_readable(item.sources)
        with stream:
            mtime = int(os.fstat(stream.fileno()).st_mtime)
            reader = transfer.HashingReader(
                stream, label=path, expected_sha1=item.sha1, progress=progress
            )
            staged = _files.stage(
                connection,
                reader,
                root=self.config.remote_root,
                locator=locator,
                mtime=mtime,
                throttle=self._throttle,
                unremoved=self._unremovable,
                forget=self._forget,
            )
        try:
            # Before the copy has its name: one that fails the check never gets it.
            self._confirm(connection, staged)
        except BaseException:
            staged.discard()
            raise
        return Staged(key=item.key, locator=locator, staged=staged)

    def _publish(
        self, staged: list[Any], *, patience: Patience, stop: Callable[[], bool] | None = None
    ) -> list[TransferFailed | str | None]:
        """A chunk's copies given their names (see `_files.publish`), in the stager's
        publishing thread, on that thread's connection."""
        from archive_core_sftp import _files, _session, _wire

        try:
            connection = self._sessions.connection(patience)
            return _files.publish(
                connection, staged, root=self.config.remote_root, durable=self._durable, stop=stop
            )
        except (_wire.SFTPError, _session.SessionFailed) as exc:
            # The connection broke, or the server refused a directory's fsync. Renamed or
            # not, each copy is safe: a temporary file left is removed on the next
            # connection, a copy already named is found again (the same bytes) by the re-run.
            lost = isinstance(exc, _wire.ConnectionLost | _session.SessionFailed)
            if isinstance(exc, _wire.ConnectionLost):
                self._sessions.drop()
            for copy in staged:
                self._unremovable(copy.temp) if lost else self._forget(copy.temp)
            why = exc.message if isinstance(exc, _session.SessionFailed) else exc.strerror
            return [
                TransferFailed(
                    f"{copy.path} was written but not published: {why}.",
                    paths=(copy.path,),
                    retryable=True,
                )
                for copy in staged
            ]

    def _forget(self, temp: str) -> None:
        """Remove a staged copy's temporary file nobody will publish (now, or once connected
        again)."""
        from archive_core_sftp import _wire

        try:
            self._sessions.connection().remove(temp)
        except _wire.SFTPError as exc:
            if isinstance(exc, _wire.ConnectionLost) or exc.errno != 2:
                self._unremovable(temp)
        except ArchiveCoreError:  # no connection to be had: the next one removes it
            self._unremovable(temp)

    def _confirm(self, connection: _wire.Connection, staged: Any) -> None:
        """The content check the settings ask for, on the copy written (its temporary
        file, so that one failing it never gets its name): read back, a remote command."""
        from archive_core_sftp import _files

        digests = staged.digests
        if self.config.read_back:
            sha1 = _files.remote_digests(
                connection, staged.temp, digests.size, throttle=self._throttle
            ).sha1
            if sha1 != digests.sha1:
                raise TransferFailed(
                    f"{staged.path} reads back from the server as sha1 {sha1}, not "
                    f"{digests.sha1}; it was not published.",
                    paths=(staged.path,),
                    retryable=True,
                )
        if self.config.remote_checksum_command:
            from archive_core_sftp import _checksum

            _checksum.confirm(
                self.config,
                staged.temp,
                digests,
                work_dir=self.context.state_dir / "ssh",
                name=staged.path,
            )

    def _remove_partials(
        self, connection: _wire.Connection, locator: str, made_by: tuple[str, ...]
    ) -> None:
        """What dead workers left for this name: their temporary files beside it."""
        from archive_core_sftp import _remote

        try:
            _remote.remove_partials(connection, self.config.remote_root, locator, made_by)
        except OSError as exc:
            log.warning(
                "target %s: could not remove a dead worker's temporary files for %s: %s",
                self.context.target,
                locator,
                exc,
            )

    # --- restore, verify, stat, delete ---------------------------------------------------------

    def restore(self, request: RestoreRequest) -> Iterator[FileOutcome]:
        return self._read_copies(request, self._land_restore, self._restore_one, _describe_restore)

    def verify(self, request: VerifyRequest) -> Iterator[FileOutcome]:
        """Each copy read back and hashed, as restores read them."""
        return self._read_copies(request, self._land_verify, self._verify_one, _describe_verify)

    def _read_copies(
        self,
        request: RestoreRequest | VerifyRequest,
        land: Callable[..., Any],
        read_one: Callable[..., Any],
        describe: Callable[[Any], str],
    ) -> Iterator[FileOutcome]:
        """Copies up to _pipeline.SMALL_FILE read whole, many at a time on one connection by
        one thread (`_pipeline.download_small`); `land(item, path, data, progress)` turns
        each into its outcome or staged copy, in that thread. Larger ones are read by the
        stager's threads (`read_one`), each with its window of READs."""
        import attrs

        from archive_core import transfer
        from archive_core.transfer.stager import Plan, failure_outcome
        from archive_core_sftp import _lanes, _pipeline

        patience = self._patience()
        progress = self._progress_of(request)

        def again(download: _pipeline.SmallDownload) -> _pipeline.SmallDownload:
            return _pipeline.SmallDownload(
                key=download.key,
                root=download.root,
                locator=download.locator,
                tries=download.tries + 1,
            )

        def pipeline(connection: _wire.Connection, downloads: Any, files_in_flight: int) -> Any:
            return _pipeline.download_small(
                connection, downloads, files_in_flight=files_in_flight, throttle=self._throttle
            )

        downloads = [
            _pipeline.SmallDownload(key=item, root=self.config.remote_root, locator=item.locator)
            for item in request.items
        ]

        def landing(download: _pipeline.SmallDownload) -> Any:
            # In the lane's thread: what it hands over, never an exception.
            item = download.key
            if download.done is _pipeline.LARGE:
                return item  # read by the stager's threads, after
            try:
                if isinstance(download.done, BaseException):
                    raise download.done
                return land(item, download.path, download.done, progress)
            except Exception as exc:
                return failure_outcome(item.key, describe(item), exc, request)

        work = _lanes.Work(pipeline=pipeline, land=landing, again=again)
        larger: list[Any] = []
        # One lane: reads gain nothing from more server processes (see _pool).
        publish = transfer.publish_staged
        yield from self._in_lanes(downloads, work, patience, 1, publish, deferred=larger)
        if larger:
            plan: Plan[Any, Any] = Plan(
                prepare=_as_is,
                stage=functools.partial(read_one, patience=patience),
                describe=describe,
            )
            yield from self._run(attrs.evolve(request, items=tuple(larger)), plan)

    def _land_restore(self, item: RestoreItem, path: str, data: bytes, progress: Any) -> Staged:
        """A copy read whole, staged beside Portal's destination and checked (its chunk's
        one sync and publish follow)."""
        import io

        received = io.BytesIO(data)
        received.name = path  # what a failure names as the source
        return self._restore_into(item, received, len(data), progress)

    def _restore_one(self, item: RestoreItem, progress: Any, *, patience: Patience) -> Staged:
        return self._retrying(functools.partial(self._restore_from, item, progress), patience)

    def _restore_from(
        self, item: RestoreItem, progress: Any, connection: _wire.Connection
    ) -> Staged:
        """A larger copy received through its window of READs, staged and checked."""
        from archive_core_sftp import _files

        path, size = self._existing(connection, locator=item.locator)
        with _files.RemoteReader(connection, path, size, throttle=self._throttle) as remote:
            return self._restore_into(item, remote, size, progress)

    def _restore_into(self, item: RestoreItem, source: Any, size: int, progress: Any) -> Staged:
        """`source` staged beside Portal's destination, its sha1 checked; the chunk's
        publish after one sync follows, as the filesys driver's restores are."""
        from archive_core import transfer
        from archive_core.transfer.stager import Staged

        if item.abandoned_by:
            transfer.remove_partials(
                os.path.dirname(item.destination),
                os.path.basename(item.destination),
                made_by=item.abandoned_by,
            )
        # With its size known, a small file goes through one buffer and the chunk's one
        # sync, a large one through the hashing pipeline.
        staged = transfer.stage_file(
            source,
            item.destination,
            replace=True,
            expected_sha1=item.sha1,
            progress=progress,
            size=size,
        )
        return Staged(key=item.key, locator=item.locator, staged=staged)

    def _land_verify(self, item: CopyRef, path: str, data: bytes, progress: Any) -> FileOutcome:
        import io

        from archive_core import transfer

        return _verified(item, transfer.hash_stream(io.BytesIO(data), progress=progress))

    def _verify_one(self, item: CopyRef, progress: Any, *, patience: Patience) -> FileOutcome:
        return self._retrying(functools.partial(self._verify_on, item, progress), patience)

    def _verify_on(self, item: CopyRef, progress: Any, connection: _wire.Connection) -> FileOutcome:
        from archive_core_sftp import _files

        path, size = self._existing(connection, locator=item.locator)
        digests = _files.remote_digests(
            connection, path, size, progress=progress, throttle=self._throttle
        )
        return _verified(item, digests)

    def stat(self, request: StatRequest) -> Iterator[FileOutcome]:
        """Whether each copy is there and its size, from LSTATs: no bytes are read."""
        patience = self._patience()
        for item in request.items:
            try:
                work = functools.partial(self._existing, locator=item.locator)
                _, size = self._retrying(work, patience)
            except (ArchiveCoreError, OSError) as exc:
                message = exc.message if isinstance(exc, ArchiveCoreError) else str(exc)
                yield FileOutcome.failure(item.key, message, locator=item.locator)
                continue
            yield FileOutcome.success(item.key, locator=item.locator, size=size)

    def delete(self, request: DeleteRequest) -> Iterator[FileOutcome]:
        """Remove each copy; one already gone counts as deleted."""
        from archive_core_sftp import _wire

        patience = self._patience()
        for item in request.items:
            try:
                self._retrying(functools.partial(self._remove, locator=item.locator), patience)
            except _wire.SFTPError as exc:
                yield FileOutcome.failure(
                    item.key,
                    f"could not remove {item.locator} on the server: {exc.strerror}",
                    retryable=isinstance(exc, _wire.ConnectionLost),
                    locator=item.locator,
                )
                continue
            except ArchiveCoreError as exc:
                yield FileOutcome.failure(item.key, exc.message, locator=item.locator)
                continue
            yield FileOutcome.success(item.key, locator=item.locator)

    def _remove(self, connection: _wire.Connection, *, locator: str) -> None:
        from archive_core_sftp import _remote, _wire

        root = self.config.remote_root
        path = _remote.join(root, locator)
        try:
            _remote.lookup(connection, root, path)
            connection.remove(path)
        except _wire.SFTPError as exc:
            if exc.errno != 2 or isinstance(exc, _wire.ConnectionLost):
                raise
            # Gone already (deleted before, or by hand): what delete was asked to make true.

    def _existing(self, connection: _wire.Connection, *, locator: str) -> tuple[str, int]:
        """The path and size of the copy at `locator`; CopyNotFound when it is not there."""
        from archive_core_sftp import _remote, _wire

        root = self.config.remote_root
        path = _remote.join(root, locator)
        try:
            attrs = _remote.lookup(connection, root, path)
        except _wire.SFTPError as exc:
            if exc.errno == 2:
                raise _remote.not_found(locator, root, path) from None
            raise
        return path, attrs.size or 0

    # --- the batch -----------------------------------------------------------------------------

    def _run(self, request: Any, plan: Plan[Any, Any]) -> Iterator[FileOutcome]:
        """Run `plan` over the request's items, `files_in_flight` at a time."""
        from archive_core.transfer.stager import Stager

        if self._stager is None:
            self._stager = Stager(
                name=f"sftp-{self.context.target}", workers=self.config.files_in_flight
            )
        return self._stager.run(
            request.items,
            plan,
            mode="threads" if self.config.files_in_flight > 1 else "inline",
            remote=True,
            request=request,
            progress=request.progress if hasattr(request, "progress") else None,
        )


def _as_is(item: Any) -> Any:
    return item


def _describe_archive(item: ArchiveItem) -> str:
    return f"archiving {item.sources[0] if item.sources else item.key}"


def _verified(item: CopyRef, digests: Any) -> FileOutcome:
    return FileOutcome.success(
        item.key,
        locator=item.locator,
        size=digests.size,
        sha1=digests.sha1,
        sha256=digests.sha256,
    )


def _describe_restore(item: RestoreItem) -> str:
    return f"restoring {item.locator} to {item.destination}"


def _describe_verify(item: CopyRef) -> str:
    return f"verifying {item.locator}"


class _Throttle:
    """bandwidth_limit for the whole target: callers wait their turn for each chunk.

    Each chunk books its share of the rate after the previous booking; a caller whose
    booking starts in the future sleeps until then. `clock` and `sleep` are injected.
    """

    def __init__(
        self,
        bytes_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = bytes_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = clock()

    def __call__(self, count: int) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + count / self._rate
        if start > now:
            self._sleep(start - now)


__all__ = ["SftpConfig", "SftpDriver"]
