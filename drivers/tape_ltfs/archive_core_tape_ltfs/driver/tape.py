"""The tape_ltfs driver: pools of an LTO library as archive policies, behind the port.

Capabilities: archive, restore, verify, stat, bulk, plan (restores read each cartridge once,
in on-tape order) and placement (each copy's barcode, volume, partition and start block).
Delete only *forgets* a copy in the media store: LTFS frees no space when a file is removed,
so the bytes stay on tape until the cartridge is reformatted; a WORM pool refuses it.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO, ClassVar, TypeVar

import attrs

from archive_core import (
    PRIORITY_ARCHIVE,
    PRIORITY_RESTORE,
    ArchiveCoreError,
    ArchiveRequest,
    BaseDriver,
    Capability,
    CopyRef,
    DeleteRequest,
    DriverContext,
    FileOutcome,
    ManifestRequest,
    OfferedPolicy,
    Readiness,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    StoredCopy,
    StoredManifest,
    VerifyRequest,
)
from archive_core.transfer import (
    Digests,
    hash_stream,
    publish_file,
    remove_partials,
    serialized_progress,
)
from archive_core_tape_ltfs.driver.archiving import archive_batch
from archive_core_tape_ltfs.driver.feeding import SourceOpener, open_source
from archive_core_tape_ltfs.driver.loader import Loader, Mounted
from archive_core_tape_ltfs.driver.media import Cartridge, CartridgeState, MediaStore
from archive_core_tape_ltfs.driver.placement import TapeCopy, copies_from, missing, parse_locator
from archive_core_tape_ltfs.driver.pools import CopyPlan, Pool
from archive_core_tape_ltfs.driver.reading import (
    Unread,
    library_view,
    plan_batch,
    read_batch,
    wanted,
)
from archive_core_tape_ltfs.driver.scanning import scan_cartridge
from archive_core_tape_ltfs.driver.selection import room_for
from archive_core_tape_ltfs.driver.settings import TapeLtfsConfig
from archive_core_tape_ltfs.factory import open_library
from archive_core_tape_ltfs.model import MANIFEST_PREFIX
from archive_core_tape_ltfs.port import Library
from archive_core_tape_ltfs.reconcile import Drift
from archive_core_tape_ltfs.restore import RestorePlan, WantedFile, Where

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Files per Portal call of a bulk policy when the pool does not say.
DEFAULT_MAX_FILES = 1000


class TapeLtfsDriver(BaseDriver):
    name: ClassVar[str] = "tape_ltfs"
    scheme: ClassVar[str] = "ltfs"
    capabilities = frozenset(
        {
            Capability.ARCHIVE,
            Capability.RESTORE,
            Capability.DELETE,
            Capability.VERIFY,
            Capability.BULK,
            Capability.PLAN,
            Capability.PLACEMENT,
            Capability.MANIFEST,
        }
    )
    Config = TapeLtfsConfig

    def __init__(self, config: TapeLtfsConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: TapeLtfsConfig = config
        self._plans = config.plans(context.target)
        self._store = MediaStore(context.state_dir)
        self._library: Library | None = None
        # How a source is opened and read: the local file system, or (the archive bench,
        # tests) a slower storage simulated on the port's clock.
        self.source_opener: SourceOpener = open_source

    # --- what it offers --------------------------------------------------------------------

    def policies(self) -> Iterable[OfferedPolicy]:
        for plan in self._plans.values():
            yield OfferedPolicy(
                uuid=plan.uuid,
                name=plan.name,
                max_files=plan.max_files or DEFAULT_MAX_FILES,
                max_bytes=self._max_bytes(plan),
            )

    def _max_bytes(self, plan: CopyPlan) -> int | None:
        """The configured limit, bounded by the room the pools' known cartridges have left
        (a pool with scratch cartridges is not bounded by them: it can format more)."""
        limits = [plan.max_bytes] if plan.max_bytes else []
        for pool in plan.pools:
            if pool.scratch:
                continue
            room = sum(
                room_for(c, self.config.headroom_bytes)
                for c in self._store.cartridges(pool.name)
                if c.state is CartridgeState.APPENDABLE
            )
            if room:
                limits.append(room)
        return min(limits) if limits else None

    def _plan(self, policy: str) -> CopyPlan:
        for plan in self._plans.values():
            if plan.uuid == policy:
                return plan
        key = self.config.default_plan_key()
        if key is None:
            raise ArchiveCoreError(
                f"Policy {policy} names target {self.context.target}, which has several pools "
                f"({', '.join(sorted(self._plans))}); set default_policy in its settings to "
                f"say which one such policies write to.",
                policy=policy,
            )
        return self._plans[key]

    def _pool_of(self, barcode: str) -> Pool | None:
        return next(
            (p for plan in self._plans.values() for p in plan.pools if p.holds(barcode)), None
        )

    # --- the library -----------------------------------------------------------------------

    def _port(self) -> Library:
        if self._library is None:
            self._library = open_library(self.config.library)
        return self._library

    def _loader(
        self, operation: str, policy: str, job_id: str | None, *, purpose: str | None = None
    ) -> Loader:
        """The library for one job: a caller of its own (its mounts are recorded under the
        job's name; in the simulator it has a timeline of its own), drives leased for it. A
        restore someone waits on is served a drive before archive and verify work waiting."""
        return Loader(
            self._port().worker(purpose or f"{operation} job {job_id}"),
            target=self.context.target,
            leases=self.context.leases,
            lease_seconds=self.config.lease_seconds,
            wait_seconds=self.config.drive_wait_seconds,
            purpose=purpose or f"{operation} job {job_id} of policy {policy}",
            store=self._store,
            priority=PRIORITY_RESTORE if operation == "restore" else PRIORITY_ARCHIVE,
        )

    def check_ready(self) -> Readiness:
        try:
            inventory = self._port().changer.inventory()
        except ArchiveCoreError as exc:
            return Readiness.not_ready(f"the tape library does not answer: {exc.message}")
        online = set(inventory.data_barcodes())
        pools = {p.name: p for plan in self._plans.values() for p in plan.pools}
        counts = ", ".join(
            f"pool {name}: {sum(1 for b in online if pool.holds(b))} cartridges online"
            for name, pool in sorted(pools.items())
        )
        return Readiness.ready(f"library with {len(inventory.drives)} drives; {counts}")

    # --- archive ---------------------------------------------------------------------------

    def archive(self, request: ArchiveRequest) -> Iterator[FileOutcome]:
        try:
            plan = self._plan(request.policy)
        except ArchiveCoreError as exc:
            for item in request.items:
                yield FileOutcome.failure(item.key, exc.message)
            return
        logger.info(
            "policy %s job %s: archiving %d files to pools %s",
            request.policy,
            request.job_id,
            len(request.items),
            ", ".join(p.name for p in plan.pools),
        )
        yield from archive_batch(
            request,
            plan,
            loader=self._loader("archive", request.policy, request.job_id),
            store=self._store,
            headroom_bytes=self.config.headroom_bytes,
            sync_every_files=self.config.sync_every_files,
            read_ahead=self.config.read_ahead,
            opener=self.source_opener,
        )

    # --- reading copies back ---------------------------------------------------------------

    def _readable(
        self, items: Sequence[RestoreItem | CopyRef]
    ) -> tuple[dict[str, list[TapeCopy]], list[FileOutcome]]:
        """Each item's copies that may still be read, and the failures of items without any.

        A copy is readable unless the media store knows its cartridge and has it forgotten
        (deleted) or never saw it there; on a cartridge the store does not know (its rows
        lost, another host's) it is tried as the request names it.
        """
        readable: dict[str, list[TapeCopy]] = {}
        failures = []
        for item in items:
            try:
                named = copies_from(item.locator, item.placement)
            except ArchiveCoreError as exc:
                failures.append(FileOutcome.failure(item.key, exc.message))
                continue
            found = [copy for copy in named if self._may_read(copy)]
            if found:
                readable[item.key] = found
            else:
                failures.append(FileOutcome.failure(item.key, missing(named[0]).message))
        return readable, failures

    def _may_read(self, copy: TapeCopy) -> bool:
        known = self._store.file(copy.barcode, copy.path)
        if known is None:
            return self._store.cartridge(copy.barcode) is None
        return not known.forgotten

    def plan_restore(
        self, refs: Sequence[CopyRef], *, job: str = "plan"
    ) -> tuple[RestorePlan, list[FileOutcome]]:
        """The plan capability: how a restore of these copies would run on the library as it
        is now (per drive the cartridges in order, files, bytes, estimated start and end), and
        the copies it could not include; moves nothing. CartridgesOffline when files have no
        copy inside the library, naming the cartridges to insert."""
        candidates, failures = self._readable(refs)
        sizes = {ref.key: ref.size for ref in refs}
        files = [wanted(key, copies, self._store, sizes[key]) for key, copies in candidates.items()]
        library = self._port().worker(job)
        batch = plan_batch(files, library=library, store=self._store, context=job)
        return batch.plan, failures

    def restore(self, request: RestoreRequest) -> Iterator[FileOutcome]:
        items = {item.key: item for item in request.items}
        candidates, failures = self._readable(request.items)
        yield from failures
        if not candidates:
            return
        context = f"policy {request.policy} job {request.job_id}"
        loader = self._loader("restore", request.policy, request.job_id)
        files = [
            wanted(key, copies, self._store, items[key].size) for key, copies in candidates.items()
        ]
        batch = plan_batch(files, library=loader.library, store=self._store, context=context)
        logger.info("%s: %s", context, batch.plan.summary())
        progress = serialized_progress(request.progress)

        def restore_one(file: WantedFile, stream: BinaryIO) -> Digests:
            item = items[file.key]
            if item.abandoned_by:  # what workers that died restoring it left beside it
                remove_partials(
                    os.path.dirname(item.destination),
                    os.path.basename(item.destination),
                    made_by=item.abandoned_by,
                )
            return publish_file(
                stream,
                item.destination,
                replace=True,
                expected_sha1=item.sha1,
                progress=progress,
            )

        for result in read_batch(
            batch, restore_one, loader=loader, store=self._store, context=context
        ):
            if isinstance(result, Unread):
                yield FileOutcome.failure(result.key, result.message, retryable=result.retryable)
                continue
            found = result.digests
            yield FileOutcome.success(
                result.key,
                locator=items[result.key].locator,
                size=found.size,
                sha1=found.sha1,
                sha256=found.sha256,
            )

    def verify(self, request: VerifyRequest) -> Iterator[FileOutcome]:
        refs = {ref.key: ref for ref in request.items}
        readable, failures = self._readable(request.items)
        yield from failures
        if not readable:
            return
        context = f"policy {request.policy} job {request.job_id}"
        loader = self._loader("verify", request.policy, request.job_id)
        # Every copy is read: one file of the batch per copy, each with that copy alone.
        copies: dict[str, tuple[str, TapeCopy]] = {}
        files = []
        for key, named in readable.items():
            for n, copy in enumerate(named):
                copies[f"{key}#{n}"] = (key, copy)
                files.append(wanted(f"{key}#{n}", [copy], self._store, refs[key].size))
        view = library_view(loader.library, self._store, files)
        problems: dict[str, list[str]] = {key: [] for key in readable}
        inside: list[WantedFile] = []
        for file in files:
            key, copy = copies[file.key]
            if view.where(copy.barcode) is Where.OFFLINE:
                problems[key].append(
                    f"the copy on cartridge {copy.barcode} was not read: the cartridge is not in "
                    f"the library (vaulted, or waiting in an import/export slot)"
                )
            else:
                inside.append(file)
        left = collections.Counter(key for key, _ in copies.values())
        digests: dict[str, Digests] = {}
        progress = serialized_progress(request.progress)

        def hash_one(file: WantedFile, stream: BinaryIO) -> Digests:
            return hash_stream(stream, progress=progress)

        def finished(key: str) -> Iterator[FileOutcome]:
            left[key] -= 1
            if left[key]:
                return
            if problems[key]:
                yield FileOutcome.failure(key, "; ".join(problems[key]) + ".")
                return
            found = digests[key]
            yield FileOutcome.success(
                key,
                locator=refs[key].locator,
                size=found.size,
                sha1=found.sha1,
                sha256=found.sha256,
            )

        planned = {f.key for f in inside}
        for file in files:
            if file.key not in planned:
                yield from finished(copies[file.key][0])
        if not inside:
            return
        batch = plan_batch(
            inside, library=loader.library, store=self._store, context=context, view=view
        )
        for result in read_batch(
            batch, hash_one, loader=loader, store=self._store, context=context
        ):
            key, copy = copies[result.key]
            if isinstance(result, Unread):
                problems[key].append(
                    f"the copy on cartridge {copy.barcode} could not be read: {result.message}"
                )
            else:
                expected = refs[key].sha1
                if expected and result.digests.sha1 != expected:
                    problems[key].append(
                        f"the copy on cartridge {copy.barcode} hashes to {result.digests.sha1}, "
                        f"not {expected}"
                    )
                digests[key] = result.digests
            yield from finished(key)

    # --- an operator's work (`archive-core tape ... --target`) ------------------------------

    @property
    def media(self) -> MediaStore:
        """What the driver knows of its cartridges and the files it wrote to them."""
        return self._store

    def scan(self, barcode: str) -> Drift:
        """Compare the cartridge's volume with the media store (a drift marks it read-only)."""
        purpose = f"operator command `tape scan {barcode}`"
        loader = self._loader("scan", "", None, purpose=purpose)
        return scan_cartridge(barcode, loader=loader, store=self._store, context=purpose)

    def retire(self, barcode: str, reason: str) -> Cartridge:
        """Take a recorded cartridge out of service for good: it is read, never written."""
        cartridge = self._store.cartridge(barcode)
        if cartridge is None:
            raise ArchiveCoreError(
                f"Cartridge {barcode} is not in the media store of target "
                f"{self.context.target}; only a cartridge the driver recorded can be retired."
            )
        self._store.mark(barcode, CartridgeState.RETIRED, reason)
        logger.warning("target %s: cartridge %s retired: %s", self.context.target, barcode, reason)
        return attrs.evolve(cartridge, state=CartridgeState.RETIRED, reason=reason)

    # --- without loading a cartridge -------------------------------------------------------

    # --- manifests --------------------------------------------------------------------------

    def write_manifest(self, request: ManifestRequest) -> None:
        """The manifest onto every cartridge holding a copy it describes, at the volume's
        root, synced: each cartridge describes itself. A cartridge that cannot take it (read
        only, full, not in the library) is named in the error; the others have it."""
        barcodes = sorted({parse_locator(loc).barcode for loc in request.locators})
        loader = self._loader("manifest", request.policy, None, purpose=f"manifest {request.name}")
        data = request.text.encode("utf-8")
        failed = []
        for barcode in barcodes:
            cartridge = self._store.cartridge(barcode)
            if cartridge is None:
                failed.append(f"{barcode} (not in the media store)")
                continue
            try:
                mounted = loader.mount(cartridge, waits=True)
            except ArchiveCoreError as exc:
                failed.append(f"{barcode} ({exc.message})")
                continue
            try:
                with mounted.mount.open_write(MANIFEST_PREFIX + request.name) as out:
                    out.write(data)
                mounted.mount.sync()
            except ArchiveCoreError as exc:
                failed.append(f"{barcode} ({exc.message})")
            finally:
                loader.release(mounted)
        if failed:
            raise ArchiveCoreError(
                f"Manifest {request.name} could not be written to cartridge(s) {'; '.join(failed)}."
            )

    def read_manifests(self) -> Iterator[StoredManifest]:
        """Every manifest on every cartridge of the target's pools in the library (each one
        mounted, read only): the way back when the catalog is lost."""

        def manifests_on(mounted: Mounted) -> list[StoredManifest]:
            found = []
            for path, _size in mounted.mount.files():
                if path.startswith(MANIFEST_PREFIX):
                    with mounted.mount.open_read(path) as fh:
                        text = fh.read().decode("utf-8", errors="replace")
                    found.append(StoredManifest(name=path.removeprefix(MANIFEST_PREFIX), text=text))
            return found

        yield from self._on_each_volume("read manifests", manifests_on)

    def list_copies(self) -> Iterator[StoredCopy]:
        """Every file on every cartridge of the target's pools in the library, but manifests."""

        def copies_on(mounted: Mounted) -> list[StoredCopy]:
            return [
                StoredCopy(locator=f"{mounted.barcode}/{path}", size=size)
                for path, size in mounted.mount.files()
                if not path.startswith(MANIFEST_PREFIX)
            ]

        yield from self._on_each_volume("list copies", copies_on)

    def _on_each_volume(self, what: str, visit: Callable[[Mounted], list[T]]) -> Iterator[T]:
        """`visit` each cartridge of the pools that is in the library, mounted read-only in
        turn (one the media store lost is taken by its volume, when this driver wrote it)."""
        loader = self._loader("scan", "", None, purpose=f"{what} of the target")
        online = set(self._port().changer.inventory().data_barcodes())
        pools = [p for plan in self._plans.values() for p in plan.pools]
        for barcode in sorted(online):
            pool = next((p for p in pools if p.holds(barcode)), None)
            if pool is None:
                continue
            cartridge = self._store.cartridge(barcode)
            name = f"archive-core {pool.name}"
            try:
                if cartridge is not None:
                    mounted = loader.mount(cartridge, read_only=True)
                else:
                    mounted = loader.open_unrecorded(barcode, name=name, may_format=False)
            except ArchiveCoreError as exc:
                logger.warning("%s: cartridge %s skipped: %s", what, barcode, exc.message)
                continue
            try:
                found = visit(mounted) if mounted.volume.name == name or cartridge else []
            finally:
                loader.release(mounted)
            yield from found

    def stat(self, request: StatRequest) -> Iterator[FileOutcome]:
        for ref in request.items:
            yield self._stat_one(ref)

    def _stat_one(self, ref: CopyRef) -> FileOutcome:
        try:
            copies = copies_from(ref.locator, ref.placement)
        except ArchiveCoreError as exc:
            return FileOutcome.failure(ref.key, exc.message)
        size = None
        for copy in copies:
            known = self._store.file(copy.barcode, copy.path)
            if known is None or known.forgotten:
                return FileOutcome.failure(ref.key, missing(copy).message)
            size = known.size
        return FileOutcome.success(ref.key, locator=ref.locator, size=size)

    def delete(self, request: DeleteRequest) -> Iterator[FileOutcome]:
        for ref in request.items:
            try:
                copies = copies_from(ref.locator, ref.placement)
            except ArchiveCoreError as exc:
                yield FileOutcome.failure(ref.key, exc.message)
                continue
            worm = [c.barcode for c in copies if (pool := self._pool_of(c.barcode)) and pool.worm]
            if worm:
                yield FileOutcome.failure(
                    ref.key,
                    f"the copy is on WORM cartridge {', '.join(worm)}, where files can never be "
                    f"removed; it is kept.",
                )
                continue
            for copy in copies:
                if self._store.forget(copy.barcode, copy.path):
                    logger.info(
                        "policy %s job %s: forgot %s on cartridge %s (its bytes stay on tape "
                        "until the cartridge is reformatted)",
                        request.policy,
                        request.job_id,
                        copy.path,
                        copy.barcode,
                    )
            yield FileOutcome.success(ref.key, locator=ref.locator)
