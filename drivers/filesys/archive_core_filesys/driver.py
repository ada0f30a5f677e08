"""The filesys driver: archived copies as plain files under one directory (local disk or NAS)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from archive_core import (
    API_VERSION,
    LAYOUTS,
    ArchiveCoreError,
    ArchiveItem,
    ArchiveRequest,
    BaseDriver,
    Capability,
    CopyRef,
    DeleteRequest,
    DriverContext,
    FileOutcome,
    ManifestRequest,
    Readiness,
    RestoreRequest,
    StatRequest,
    StoredCopy,
    StoredManifest,
    VerifyRequest,
    at_least,
    between,
    one_of,
    setting,
)
from archive_core_filesys._root import not_there, on_remote_storage, root_problem

# archive_core.transfer and the modules doing the copies are imported where used: listing
# drivers (`archive-core drivers`, Portal's start) loads this module, and must not pay for
# the copy machinery.
if TYPE_CHECKING:
    from archive_core.transfer.stager import Plan, Stager

log = logging.getLogger(__name__)

GiB = 1024**3

#: Where a batch's copies are made (`archive_core.transfer.stager.Mode`).
STAGING = ("auto", "inline", "threads", "processes")

#: A directory is swept for stale temporary files at most this often per process.
_SWEEP_EVERY_SECONDS = 3600.0

#: Deletes are reported in chunks, each after one fsync of the directories it touched.
_DELETE_CHUNK = 256

#: check_ready() gives up after this long; a hung NFS mount must not hang Portal's is_ready().
READY_TIMEOUT_SECONDS = 5.0


# --- configuration -------------------------------------------------------------------------


def _to_path(value: Any) -> Path:
    return value if isinstance(value, Path) else Path(value)


def _archive_root(_instance: Any, _attribute: Any, value: Path) -> None:
    # Shape only, never I/O: a share not mounted yet must not make the target misconfigured
    # (the core keeps that verdict until Portal restarts). Whether root is there is asked by
    # check_ready() and by every operation, file by file.
    if not isinstance(value, Path):
        raise TypeError("expected a path")
    if not value.is_absolute():
        raise ValueError("must be an absolute path")


@attrs.frozen(kw_only=True)
class FilesysConfig:
    """Settings of one filesys target."""

    root: Path = setting(
        help="Directory the archived copies are written under (local disk or mounted share), "
        "as an absolute path. archive-core never creates or removes it: while it is missing "
        "(a share not mounted yet) the target is not ready and its files fail, retryably.",
        converter=_to_path,
        validator=_archive_root,
        confined=True,
    )
    layout: str = setting(
        help="Where a copy goes under root: 'flat' = <name>, 'item' = <item_id>/<name>, "
        "'date' = YYYY/MM/DD/<name> (UTC date of the archive run).",
        default="flat",
        validator=one_of(LAYOUTS),
    )
    min_free_bytes: int = setting(
        help="The target reports not ready when less than this many bytes are free under root.",
        default=GiB,
        validator=at_least(0),
    )
    parallel: int = setting(
        help="Files copied at the same time in one batch (worker threads or processes; "
        "processes also no more than there are cores).",
        default=4,
        validator=between(1, 64),
    )
    staging: str = setting(
        help="Where a batch's copies are made: 'inline' = one after another in Portal's "
        "process (quickest on a local disk), 'threads' = up to `parallel` at once in threads "
        "(overlaps the waits of a NAS or a slow disk), 'processes' = in up to `parallel` "
        "worker processes (every core for many small files), 'auto' = processes for a "
        "batch of 2,000 files or more, mostly under 1 MiB; threads when root is on a "
        "network or FUSE file system; inline otherwise.",
        default="auto",
        validator=one_of(STAGING),
        advanced=True,
    )
    fsync: bool = setting(
        help="Make every copy durable before reporting it archived (fsync, syncfs). Turn off "
        "only for scratch targets: a crash may then lose copies Portal believes archived.",
        default=True,
        advanced=True,
    )
    direct_io: bool = setting(
        help="Write large files (16 MiB and more) with O_DIRECT, bypassing the page cache; "
        "falls back to buffered writes where the file system refuses it.",
        default=True,
        advanced=True,
    )


#: Where the core's manifests are kept under root (a dot directory: never a copy's locator).
MANIFESTS = ".archive-core/manifests"


class FilesysDriver(BaseDriver):
    """Archives to a directory: one plain file per copy, hashed while copied, published atomically.

    Locators are relative posix paths under root, e.g. `VX-12/clip_VX-12_<sha1>.mov` with the
    'item' layout; they never lead outside root, whatever Portal or an external id says.
    """

    name = "filesys"
    api_version = API_VERSION
    capabilities = frozenset(
        {
            Capability.ARCHIVE,
            Capability.RESTORE,
            Capability.DELETE,
            Capability.VERIFY,
            Capability.BULK,
            Capability.MANIFEST,
        }
    )
    Config = FilesysConfig
    config: FilesysConfig

    def __init__(self, config: FilesysConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        # directory -> when stale temporary files were last swept from it (no I/O here)
        self._swept: dict[str, float] = {}
        self._root = os.fspath(config.root)
        # Made at the first batch (the stager's import is not paid by listing drivers); its
        # worker processes, if a batch starts them, are kept until close().
        self._stager: Stager | None = None

    def close(self) -> None:
        """Stop the staging processes, if a batch started them."""
        if self._stager is not None:
            self._stager.close()

    # --- readiness ---------------------------------------------------------------------------

    def check_ready(self) -> Readiness:
        """Root exists, is a writable directory and has `min_free_bytes` free; bounded in time."""
        answer: list[Readiness] = []
        probe = threading.Thread(
            target=lambda: answer.append(self._probe_root()),
            name=f"filesys-ready-{self.context.target}",
            daemon=True,  # a hung mount keeps this thread, never the process
        )
        probe.start()
        probe.join(READY_TIMEOUT_SECONDS)
        if not answer:
            return Readiness.not_ready(
                f"archive root {self.config.root} did not answer within "
                f"{READY_TIMEOUT_SECONDS:g} s (a hung network mount?)"
            )
        return answer[0]

    def _probe_root(self) -> Readiness:
        root = self.config.root
        problem = root_problem(root)
        if problem is not None:
            return Readiness.not_ready(problem)
        probe = root / f".archive-core-ready.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            return Readiness.not_ready(f"archive root {root} is not writable: {_reason(exc)}")
        try:
            fs = os.statvfs(root)
        except OSError as exc:
            return Readiness.not_ready(f"free space of {root} is unknown: {_reason(exc)}")
        free = fs.f_bavail * fs.f_frsize
        if free < self.config.min_free_bytes:
            return Readiness.not_ready(
                f"archive root {root} has {human_bytes(free)} free, below the "
                f"{human_bytes(self.config.min_free_bytes)} floor (min_free_bytes)"
            )
        return Readiness.ready(f"root {root} writable, {human_bytes(free)} free")

    # --- manifests ---------------------------------------------------------------------------

    def write_manifest(self, request: ManifestRequest) -> None:
        """Publish the manifest under `.archive-core/manifests/` in root, as a copy is
        published (temporary name, fsync, rename without replacing, fsync of the directory)."""
        import io

        from archive_core import transfer

        directory = os.path.join(self._root, MANIFESTS)
        transfer.make_directories(directory, root=self._root)
        transfer.sweep_partials(directory)  # what a worker killed mid-manifest left
        transfer.publish_file(
            io.BytesIO(request.text.encode("utf-8")),
            os.path.join(directory, request.name),
            replace=False,
            root=self._root,
        )

    def read_manifests(self) -> Iterator[StoredManifest]:
        """Every manifest kept in root, unchecked (the core checks each one whole)."""
        directory = Path(self._root) / MANIFESTS
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                yield StoredManifest(name=path.name, text=path.read_text(encoding="utf-8"))

    def list_copies(self) -> Iterator[StoredCopy]:
        """Every file under root that is a copy: not the manifests, no temporary file."""
        from archive_core.transfer import PartialName

        root = self._root
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != ".archive-core")
            for name in sorted(files):
                # A copy's name may start with a dot (a source named ".bashrc"): only the
                # core's own files are passed over, temporary ones and readiness probes.
                if name.startswith(".archive-core") or PartialName.parse(name) is not None:
                    continue
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    locator = os.path.relpath(path, root).replace(os.sep, "/")
                    yield StoredCopy(locator=locator, size=info.st_size)

    # --- stat --------------------------------------------------------------------------------

    def stat(self, request: StatRequest) -> Iterator[FileOutcome]:
        """Whether each copy is there, and its size, from one lstat each: no bytes are read."""
        for item in request.items:
            yield self._stat_one(item)

    def _stat_one(self, item: CopyRef) -> FileOutcome:
        from archive_core import UnsafeName, transfer

        root = self.config.root
        try:
            path, info = transfer.safe_lookup(root, item.locator, what="locator")
        except UnsafeName as exc:
            return FileOutcome.failure(item.key, exc.message, locator=item.locator)
        if info is None:  # absent, or the look failed: ask again to know which
            try:
                info = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return not_there(
                    root, item.key, item.locator, consequence=f"{item.locator} cannot be checked"
                )
            except OSError as exc:
                return FileOutcome.failure(
                    item.key,
                    f"archived copy {item.locator} in {root} cannot be checked: {_reason(exc)}",
                    locator=item.locator,
                    retryable=True,
                )
        if stat.S_ISREG(info.st_mode):
            return FileOutcome.success(item.key, locator=item.locator, size=info.st_size)
        return FileOutcome.failure(
            item.key,
            f"{item.locator} in {root} is {_kind(info.st_mode)}, not a regular file: it is "
            "not an archived copy",
            locator=item.locator,
        )

    # --- archive -----------------------------------------------------------------------------

    def locator(self, item: ArchiveItem, *, today: dt.date) -> str:
        """Where `item` is stored under root; raises UnsafeName for a hostile name or item id."""
        from archive_core import transfer

        return transfer.layout_locator(
            self.config.layout, name=item.name, item_id=item.item_id, today=today
        )

    def archive(self, request: ArchiveRequest) -> Iterator[FileOutcome]:
        from archive_core.transfer.stager import Plan
        from archive_core_filesys import _copies

        today = dt.datetime.now(dt.UTC).date()  # one date per batch, even across midnight
        plan: Plan[ArchiveItem, _copies.ArchiveTask] = Plan(
            prepare=lambda item: (item, self._locate(item, today)),
            stage=functools.partial(
                _copies.stage_archive,
                root=self._root,
                fsync=self.config.fsync,
                direct_io=self.config.direct_io,
            ),
            describe=lambda item: f"archiving {item.name}",
            publish=self._publish(),
            abandon=functools.partial(_copies.sweep_archive_directories, root=self._root),
        )
        yield from self._stage(request, plan)

    def _locate(self, item: ArchiveItem, today: dt.date) -> str:
        """The item's locator, its directory swept of stale temporary files first."""
        locator = self.locator(item, today=today)
        self._sweep(os.path.dirname(os.path.join(self._root, locator)))
        return locator

    def _sweep(self, directory: str) -> None:
        """Remove temporary files stopped workers left in `directory`, at most once an hour.

        Only ever a directory under root, which holds nothing but ours (never Portal's
        folders: a restore removes only its own dead attempt's file there). A worker killed
        mid-batch cannot clean up after itself; the next one to write into the same
        directory does, so a re-run leaves nothing behind. Listing a directory costs
        in proportion to its size, hence once per hour per directory and process.
        """
        from archive_core import transfer

        now = time.monotonic()
        last = self._swept.get(directory)
        if last is not None and now - last < _SWEEP_EVERY_SECONDS:
            return
        self._swept[directory] = now
        try:
            removed = transfer.sweep_partials(directory)
        except OSError as exc:
            log.warning("target %s: could not sweep %s: %s", self.context.target, directory, exc)
            return
        if removed:
            log.info(
                "target %s: removed %d temporary file%s left by stopped workers in %s",
                self.context.target,
                len(removed),
                "" if len(removed) == 1 else "s",
                directory,
            )

    # --- restore -----------------------------------------------------------------------------

    def restore(self, request: RestoreRequest) -> Iterator[FileOutcome]:
        from archive_core.transfer.stager import Plan
        from archive_core_filesys import _copies

        plan = Plan(
            prepare=_as_is,
            stage=functools.partial(
                _copies.stage_restore,
                root=self._root,
                fsync=self.config.fsync,
                direct_io=self.config.direct_io,
            ),
            describe=lambda item: f"restoring {item.locator}",
            publish=self._publish(),
            abandon=_copies.remove_restore_leftovers,
        )
        yield from self._stage(request, plan)

    # --- verify ------------------------------------------------------------------------------

    def verify(self, request: VerifyRequest) -> Iterator[FileOutcome]:
        from archive_core.transfer.stager import Plan
        from archive_core_filesys import _copies

        plan = Plan(
            prepare=_as_is,
            stage=functools.partial(_copies.verify_copy, root=self._root),
            describe=lambda item: f"verifying {item.locator}",
        )
        yield from self._stage(request, plan)

    # --- the batch machinery -----------------------------------------------------------------

    def _stage(
        self, request: ArchiveRequest | RestoreRequest | VerifyRequest, plan: Plan[Any, Any]
    ) -> Iterator[FileOutcome]:
        """Run `plan` over the request's items with this target's stager."""
        from archive_core.transfer.stager import Stager

        if self._stager is None:
            self._stager = Stager(
                name=f"filesys-{self.context.target}", workers=self.config.parallel
            )
        remote = self.config.staging == "auto" and on_remote_storage(self._root)
        return self._stager.run(
            request.items,
            plan,
            mode=self.config.staging,
            remote=remote,
            request=request,
            progress=request.progress,
        )

    def _publish(self) -> Any:
        """How a chunk is published: durably, unless `fsync` is off (scratch targets)."""
        from archive_core import transfer

        return functools.partial(transfer.publish_staged, sync=self.config.fsync)

    # --- delete ------------------------------------------------------------------------------

    def delete(self, request: DeleteRequest) -> Iterator[FileOutcome]:
        """Remove copies and the layout directories they leave empty; absent copies are fine.

        Unlinks are cheap, so they run in this thread; the directories touched are fsynced
        once per chunk before the chunk's outcomes are reported.
        """
        from archive_core.transfer.stager import failure_outcome

        outcomes: list[FileOutcome] = []
        touched: dict[Path, list[int]] = {}
        for item in request.items:
            try:
                dirs = self._delete_one(item)
                outcome = FileOutcome.success(item.key, locator=item.locator)
            except Exception as exc:
                dirs = ()
                outcome = failure_outcome(item.key, f"deleting {item.locator}", exc, request)
            for directory in dirs:
                touched.setdefault(directory, []).append(len(outcomes))
            outcomes.append(outcome)
            if len(outcomes) >= _DELETE_CHUNK:
                yield from self._settle_deletes(outcomes, touched)
                outcomes, touched = [], {}
        yield from self._settle_deletes(outcomes, touched)

    def _delete_one(self, item: CopyRef) -> tuple[Path, ...]:
        """Delete one copy; return the directories whose entries changed."""
        from archive_core import transfer

        root = Path(self.config.root)
        path = transfer.safe_join(root, item.locator, what="locator")
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return self._already_gone(item, path)
        if stat.S_ISDIR(info.st_mode):
            raise ArchiveCoreError(
                f"{item.locator} in {root} is a directory, not an archived copy; left in place"
            )
        try:
            os.unlink(path)
        except FileNotFoundError:
            return self._already_gone(item, path)
        return (path.parent, *self._prune(path.parent))

    def _already_gone(self, item: CopyRef, path: Path) -> tuple[Path, ...]:
        """Deleting is idempotent, but a delete killed after its unlink left the layout
        directories it was about to prune: they go now. A missing root is no proof that
        the copy is gone (a share not mounted), so that fails, retryably."""
        problem = root_problem(self._root)
        if problem is not None:
            raise ArchiveCoreError(
                f"{problem}; {item.locator} was not deleted", paths=(item.locator,), retryable=True
            )
        return tuple(self._prune(path.parent))

    def _prune(self, directory: Path) -> list[Path]:
        """Remove `directory` and its parents while they are empty, up to (never including)
        root; return the directories whose entries changed."""
        root = Path(self.config.root)
        touched = []
        while directory != root and directory.is_relative_to(root):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass  # removed by the killed delete already; its parent may be empty too
            except OSError:
                break  # not empty (or not ours to remove): stop climbing
            else:
                touched.append(directory.parent)
            directory = directory.parent
        return touched

    def _settle_deletes(
        self, outcomes: list[FileOutcome], touched: dict[Path, list[int]]
    ) -> Iterator[FileOutcome]:
        from archive_core import transfer

        if self.config.fsync:
            for directory, indexes in touched.items():
                try:
                    transfer.fsync_directory(directory)
                except FileNotFoundError:
                    continue  # removed itself as empty; its parent is in the set
                except OSError as exc:
                    for index in indexes:
                        outcomes[index] = FileOutcome.failure(
                            outcomes[index].key,
                            f"removed {outcomes[index].locator}, but {directory} could not be "
                            f"synced ({_reason(exc)}); the copy may reappear after a crash",
                            locator=outcomes[index].locator,
                            retryable=True,
                        )
        yield from outcomes


# --- helpers -----------------------------------------------------------------------------------


def _as_is(item: Any) -> Any:
    """The task of an item that needs no placing: the item itself."""
    return item


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _kind(mode: int) -> str:
    """What a file of `mode` is, as an admin would name it."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def human_bytes(count: int) -> str:
    """`count` bytes in binary units as an admin reads them: "512 bytes", "1.5 GiB", "120 GiB"."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            break
        value /= 1024
    if unit == "bytes":
        return f"{count} bytes"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


__all__ = ["LAYOUTS", "STAGING", "FilesysConfig", "FilesysDriver", "human_bytes"]
