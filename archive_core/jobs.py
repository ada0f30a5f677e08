"""One operation of one policy over a batch of files: journal, driver, fixity check, hooks.

This is where the core's guarantees are kept for every driver alike: intent is journaled
before a transfer and the result after it; a copy is recorded only when the driver reports the
sha1 of the bytes it stored and that sha1 matches Portal's; a copy the catalog remembers counts
only once its target confirms it is there; restore, delete and verify touch only copies that
belong to the named policy; and one outcome per file always exists, whatever the driver does
(raises midway, forgets a file, reports a stranger) or the catalog does (fails mid-batch).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs

from archive_core.catalog import CopyRecord, JournalEntry, JournalResult
from archive_core.driver import Capability
from archive_core.errors import ArchiveCoreError, CatalogError, DriverUnavailable
from archive_core.externalid import ExternalId
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    FileOutcome,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    VerifyRequest,
)
from archive_core.naming import archive_name
from archive_core.policies import Policy
from archive_core.site import Site, TargetHandle

log = logging.getLogger(__name__)

#: The capability each operation needs of a target's driver.
_CAPABILITY = {
    "archive": Capability.ARCHIVE,
    "restore": Capability.RESTORE,
    "delete": Capability.DELETE,
    "verify": Capability.VERIFY,
}

_FLUSH_EVERY = 256  # results per journal transaction
_FLUSH_SECONDS = 1.0  # ...or this long, whichever comes first

#: Operations whose results must reach the catalog before they are reported: an archived
#: copy nobody recorded, or a deletion that left its row, must not be reported done. Restore
#: and verify only read copies, so their journal is best effort: they go on, with a warning,
#: when the catalog cannot be written (a restore must work from Portal's external ids alone).
_JOURNAL_REQUIRED = frozenset({"archive", "delete"})


@attrs.frozen(kw_only=True)
class FileJob:
    """One Portal FileSet as the core sees it."""

    key: str
    files: tuple[str, ...] = attrs.field(converter=tuple)
    external_ids: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    item_id: str | None = None
    sha1: str | None = None  # Portal's, as 40 lowercase hex digits (checked at the boundary)
    problem: str | None = None  # what makes the FileSet unusable as Portal passed it

    @property
    def label(self) -> str:
        """How to name this file to an admin."""
        if self.files:
            return self.files[0]
        if self.external_ids:
            return self.external_ids[0]
        return f"item {self.item_id or '?'} (file set {self.key})"


@attrs.frozen(kw_only=True)
class FileResult:
    key: str
    ok: bool
    external_ids: tuple[str, ...] = ()
    error: str | None = None


@attrs.frozen(kw_only=True)
class JobReport:
    operation: str
    policy: str
    job_id: str | None
    results: tuple[FileResult, ...]
    labels: dict[str, str] = attrs.field(factory=dict, repr=False)
    # Why targets the call needed could not be used (a driver not installed or its settings
    # refused): a configuration problem rather than a file's fate.
    unusable: tuple[str, ...] = ()

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    def error_text(self) -> str:
        """One admin-readable message for all failures ("" when none)."""
        failed = self.failed
        if not failed:
            return ""
        head = f"{len(failed)} of {len(self.results)} files could not be {_PAST[self.operation]}"
        lines = [f"{self.labels.get(r.key, r.key)}: {r.error}" for r in failed]
        return head + ":\n" + "\n".join(lines)


_PAST = {"archive": "archived", "restore": "restored", "delete": "deleted", "verify": "verified"}


class JobObserver(Protocol):
    """Progress for an interactive caller (the CLI's progress bar)."""

    def started(self, operation: str, files: int, total_bytes: int | None) -> None: ...

    def advanced(self, nbytes: int) -> None: ...

    def file_finished(self, outcome: FileOutcome) -> None: ...


@attrs.frozen(kw_only=True)
class _Copy:
    """Where one archived copy of a file is: a target and the driver's locator there."""

    target: str
    locator: str
    external_id: str
    sha1: str | None = None


@attrs.frozen(kw_only=True)
class _Batch:
    """What one operation hands the shared loop for one target.

    `prepare` builds the driver's request once the journal said which names a dead worker
    left unfinished; `check` applies the core's own checks to each outcome; `record` says
    what the journal keeps of it.
    """

    entries: list[JournalEntry]
    prepare: Callable[[Mapping[str, tuple[str, ...]]], tuple[Any, dict[str, Any]]]
    call: Callable[[Any], Iterable[FileOutcome]]
    check: Callable[[FileOutcome, Any], FileOutcome]
    record: Callable[[FileOutcome, Any], JournalResult]


class JobRunner:
    """Runs archive/restore/delete/verify for a Site; one instance per call."""

    def __init__(
        self,
        site: Site,
        *,
        policy_uuid: str,
        job_id: str | None,
        operation: str,
        observer: JobObserver | None = None,
    ) -> None:
        self.site = site
        self.policy: Policy = site.policy(policy_uuid)
        # Portal gives restore and delete no job id: a run id of our own ties their journal
        # rows and log lines together instead.
        self.job_id = job_id or f"{operation}-{uuid.uuid4().hex[:12]}"
        self.operation = operation
        self.observer = observer
        self._bytes = 0
        self._started = time.monotonic()
        self._labels: dict[str, str] = {}
        self._unusable: tuple[str, ...] = ()

    # --- the operations ------------------------------------------------------------------------

    def run(self, jobs: Sequence[FileJob]) -> JobReport:
        """Run this runner's operation over `jobs`; one result per job, in order.

        Everything that can refuse the whole call (an unknown operation, a driver that does
        not declare the capability) is settled before the job is reported started, so
        observers never see a job that started and never finished.
        """
        try:
            capability = _CAPABILITY[self.operation]
        except KeyError:
            raise ArchiveCoreError(f"archive-core has no operation {self.operation!r}.") from None
        errors: dict[str, list[str]] = {j.key: [j.problem] if j.problem else [] for j in jobs}
        located: dict[str, list[_Copy]] = {}
        if capability is Capability.ARCHIVE:
            targets: Iterable[str] = self.policy.targets
        else:
            for job in jobs:
                if errors[job.key]:
                    continue
                if capability is Capability.RESTORE and not job.files:
                    errors[job.key].append("Portal gave no destination path for this file")
                    continue
                located[job.key] = self._copies_of(job, errors[job.key])
                if not located[job.key] and not errors[job.key]:
                    errors[job.key].append("no archived copy is known for this file")
            targets = dict.fromkeys(c.target for found in located.values() for c in found)
        handles = {name: self._handle(name, capability) for name in targets}
        self._begin(jobs, total_bytes=_total_size(jobs) if self.observer else None)
        step = {
            Capability.ARCHIVE: self._archive,
            Capability.RESTORE: self._restore,
            Capability.DELETE: self._each_copy,
            Capability.VERIFY: self._each_copy,
        }[capability]
        done = step(jobs, handles, located, errors)
        self._unusable = tuple(
            h.message for h in handles.values() if isinstance(h, DriverUnavailable)
        )
        results = [
            FileResult(key=j.key, ok=True, external_ids=done[j.key])
            if j.key in done and not errors[j.key]
            else FileResult(key=j.key, ok=False, error="; ".join(errors[j.key]) or None)
            for j in jobs
        ]
        return self._finish(jobs, results)

    def _archive(
        self,
        jobs: Sequence[FileJob],
        handles: Mapping[str, TargetHandle | DriverUnavailable],
        _located: Mapping[str, list[_Copy]],
        errors: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        """Archive each file to every target of the policy; the external ids of the copies."""
        items: list[ArchiveItem] = []
        hashed: set[str] = set()  # keys whose sha1 we computed: Portal gave none
        for job in jobs:
            if errors[job.key]:
                continue
            if not job.files:
                errors[job.key].append("Portal gave no source path for this file")
                continue
            sha1 = job.sha1
            if sha1 is None:
                try:
                    sha1 = _content_sha1(job.files)
                except ArchiveCoreError as exc:
                    errors[job.key].append(exc.message)
                    continue
                hashed.add(job.key)
            items.append(
                ArchiveItem(
                    key=job.key,
                    sources=job.files,
                    # The name always carries the content's sha1: two different files can
                    # then never share a name, with or without Portal's hash.
                    name=archive_name(job.files[0], item_id=job.item_id, sha1=sha1),
                    item_id=job.item_id,
                    sha1=sha1,
                )
            )
        copies: dict[str, list[str]] = {item.key: [] for item in items}
        for handle in handles.values():
            pending = [i for i in items if not errors[i.key]]
            if isinstance(handle, DriverUnavailable):
                for item in pending:
                    errors[item.key].append(handle.message)
                continue
            for key, (outcome, external_id) in self._archive_to(handle, pending, hashed).items():
                if outcome.ok and external_id:
                    copies[key].append(external_id)
                else:
                    errors[key].append(f"target {handle.name}: {outcome.error}")
        return {key: tuple(ids) for key, ids in copies.items()}

    def _restore(
        self,
        jobs: Sequence[FileJob],
        handles: Mapping[str, TargetHandle | DriverUnavailable],
        located: Mapping[str, list[_Copy]],
        errors: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        """Restore each file from its first copy that works; the failures of the others are
        kept only for the files that could not be restored at all."""
        by_key = {job.key: job for job in jobs}
        candidates = {key: found for key, found in located.items() if found}
        failures: dict[str, list[str]] = {key: [] for key in candidates}
        done: dict[str, tuple[str, ...]] = {}
        # Each round restores every pending file from its next copy, one driver call per
        # target, so a batch fails over to a second copy only for the files that need it.
        while candidates:
            round_: dict[str, list[tuple[FileJob, _Copy]]] = {}
            for key, copies in candidates.items():
                round_.setdefault(copies[0].target, []).append((by_key[key], copies[0]))
            for target, pairs in round_.items():
                handle = handles[target]
                if isinstance(handle, DriverUnavailable):
                    outcomes = {j.key: FileOutcome.failure(j.key, handle.message) for j, _ in pairs}
                else:
                    outcomes = self._restore_from(handle, pairs)
                for job, copy in pairs:
                    outcome = outcomes[job.key]
                    if outcome.ok:
                        done[job.key] = job.external_ids
                    else:
                        failures[job.key].append(f"copy {copy.external_id}: {outcome.error}")
            candidates = {k: c[1:] for k, c in candidates.items() if k not in done and len(c) > 1}
        for key, reasons in failures.items():
            if key in done:
                # Restored from a good copy: ids refused or copies that failed on the way
                # are worth a log line, not a failed restore.
                if errors[key] or reasons:
                    log.info(
                        "policy=%s job=%s %s restored; passed over: %s",
                        self.policy.uuid,
                        self.job_id,
                        self._labels.get(key, key),
                        "; ".join(errors[key] + reasons),
                    )
                errors[key].clear()
            else:
                errors[key].extend(reasons)
        return done

    # --- per target ----------------------------------------------------------------------------

    def _archive_to(
        self, handle: TargetHandle, items: list[ArchiveItem], hashed: set[str]
    ) -> dict[str, tuple[FileOutcome, str | None]]:
        """Archive `items` to one target: each key's outcome and, when ok, its external id."""
        results: dict[str, tuple[FileOutcome, str | None]] = {}
        try:
            known = self.site.catalog.find_copies(handle.name, [(i.name, i.sha1) for i in items])
        except CatalogError as exc:
            failure = f"not archived: the catalog cannot be read ({exc.message})"
            return {
                i.key: (FileOutcome.failure(i.key, failure, retryable=True), None) for i in items
            }
        confirmed = self._confirm(handle, [(i, known[i.name]) for i in items if i.name in known])
        todo = []
        for item in items:
            record = confirmed.get(item.key)
            if record is None:
                todo.append(item)
                continue
            outcome = FileOutcome.success(
                item.key,
                locator=record.locator,
                size=record.size,
                sha1=record.sha1,
                sha256=record.sha256,
                reused=True,
            )
            results[item.key] = (outcome, record.external_id)
            self._file_done(outcome)
        if not todo:
            return results
        log.info(
            "policy=%s job=%s archiving %d files to target %s (%d already archived there)",
            self.policy.uuid,
            self.job_id,
            len(todo),
            handle.name,
            len(results),
        )
        by_key = {i.key: i for i in todo}
        id_of = ExternalId.formatter(scheme=handle.scheme, target=handle.name)
        created = _utcnow()

        def prepare(abandoned: Mapping[str, tuple[str, ...]]):
            # evolve() costs more than the rest of a small file's core work: only where needed.
            items = [
                attrs.evolve(i, abandoned_by=abandoned[i.name]) if i.name in abandoned else i
                for i in todo
            ]
            request = ArchiveRequest(
                policy=self.policy.uuid,
                target=handle.name,
                job_id=self.job_id,
                items=items,
                progress=self._progress,
            )
            return request, {i.key: i for i in items}

        def check(outcome: FileOutcome, item: ArchiveItem) -> FileOutcome:
            checked = _check_archived(outcome, item)
            if not checked.ok and item.key in hashed and item.sha1 in (checked.error or ""):
                return FileOutcome.failure(
                    item.key,
                    f"{item.sources[0]} changed while it was being archived: Portal gave no "
                    f"sha1, so archive-core hashed the file first (sha1 {item.sha1}), and the "
                    "bytes read to copy it were different. Nothing was stored; archive it "
                    "again once nothing writes to it.",
                    retryable=True,
                )
            return checked

        external_ids: dict[str, str] = {}

        def record(outcome: FileOutcome, item: ArchiveItem) -> JournalResult:
            copy = None
            if outcome.ok:
                locator = outcome.locator or ""
                external_ids[outcome.key] = external_id = id_of(locator)
                copy = CopyRecord(
                    policy=self.policy.uuid,
                    target=handle.name,
                    external_id=external_id,
                    locator=locator,
                    name=item.name,
                    item_id=item.item_id,
                    sha1=outcome.sha1,
                    sha256=outcome.sha256,
                    size=outcome.size,
                    created=created,
                )
            return JournalResult(key=outcome.key, ok=outcome.ok, error=outcome.error, copy=copy)

        batch = _Batch(
            entries=[
                JournalEntry(key=i.key, name=i.name, item_id=i.item_id, sha1=i.sha1) for i in todo
            ],
            prepare=prepare,
            call=handle.instance.archive,
            check=check,
            record=record,
        )
        for key, outcome in self._run_batch(handle, batch, by_key).items():
            results[key] = (outcome, external_ids.get(key) if outcome.ok else None)
        return results

    def _confirm(
        self, handle: TargetHandle, known: list[tuple[ArchiveItem, CopyRecord]]
    ) -> dict[str, CopyRecord]:
        """The remembered copies the target says are there, whole: item key -> record.

        Portal purges the original once a file is reported archived, so a record alone is
        never enough: the copy must exist with the recorded size (and the recorded sha1,
        where the target keeps one). Anything else is written again.
        """
        if not known:
            return {}
        stat = getattr(handle.instance, "stat", None)
        if stat is None:
            log.warning(
                "policy=%s job=%s driver %s has no stat(): %d copies the catalog remembers on "
                "target %s are written again",
                self.policy.uuid,
                self.job_id,
                handle.driver_name,
                len(known),
                handle.name,
            )
            return {}
        refs = {
            item.key: CopyRef(key=item.key, locator=rec.locator, sha1=rec.sha1, size=rec.size)
            for item, rec in known
        }
        records = {item.key: rec for item, rec in known}
        request = StatRequest(
            policy=self.policy.uuid, target=handle.name, job_id=self.job_id, items=refs.values()
        )
        confirmed: dict[str, CopyRecord] = {}
        missing = 0
        for outcome in self._drive(handle, stat, request, refs):
            rec = records[outcome.key]
            same_sha1 = not outcome.sha1 or outcome.sha1.lower() == rec.sha1
            if outcome.ok and rec.size is not None and outcome.size == rec.size and same_sha1:
                confirmed[outcome.key] = rec
                continue
            missing += 1
            log.info(
                "policy=%s job=%s target %s: the catalog's copy %s is not confirmed (%s); "
                "writing it again",
                self.policy.uuid,
                self.job_id,
                handle.name,
                rec.locator,
                outcome.error
                or f"the target has {outcome.size} bytes there, the catalog {rec.size}",
            )
        if missing:
            log.warning(
                "policy=%s job=%s target %s: %d copies the catalog remembers are missing or "
                "differ on the target; they are written again",
                self.policy.uuid,
                self.job_id,
                handle.name,
                missing,
            )
        return confirmed

    def _restore_from(
        self, handle: TargetHandle, pairs: list[tuple[FileJob, _Copy]]
    ) -> dict[str, FileOutcome]:
        items = {
            job.key: RestoreItem(
                key=job.key,
                locator=copy.locator,
                destination=job.files[0],
                sha1=job.sha1 or copy.sha1,
            )
            for job, copy in pairs
        }

        def prepare(abandoned: Mapping[str, tuple[str, ...]]):
            ready = {
                k: attrs.evolve(i, abandoned_by=abandoned[i.destination])
                if i.destination in abandoned
                else i
                for k, i in items.items()
            }
            request = RestoreRequest(
                policy=self.policy.uuid,
                target=handle.name,
                job_id=self.job_id,
                items=ready.values(),
                progress=self._progress,
            )
            return request, ready

        batch = _Batch(
            # Journaled by destination: a restore killed mid-file is found again by the next
            # restore to the same path, whose driver may then clear what it left there.
            entries=[
                JournalEntry(key=i.key, name=i.destination, sha1=i.sha1) for i in items.values()
            ],
            prepare=prepare,
            call=handle.instance.restore,
            check=lambda outcome, item: _check_sha1(outcome, item.sha1, "restored"),
            record=lambda outcome, _: JournalResult(
                key=outcome.key, ok=outcome.ok, error=outcome.error
            ),
        )
        return self._run_batch(handle, batch, items)

    def _each_copy(
        self,
        jobs: Sequence[FileJob],
        handles: Mapping[str, TargetHandle | DriverUnavailable],
        located: Mapping[str, list[_Copy]],
        errors: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        """Delete or verify every known copy of every file: done when all of its copies are."""
        deleting = self.operation == "delete"
        by_key = {job.key: job for job in jobs}
        per_target: dict[str, list[tuple[FileJob, _Copy]]] = {}
        for key, found in located.items():
            for copy in found:
                per_target.setdefault(copy.target, []).append((by_key[key], copy))
        for target, pairs in per_target.items():
            handle = handles[target]
            if isinstance(handle, DriverUnavailable):
                for job, copy in pairs:
                    errors[job.key].append(f"copy {copy.external_id}: {handle.message}")
                continue
            refs = {f"{i}": (job, copy) for i, (job, copy) in enumerate(pairs)}
            items = {
                key: CopyRef(key=key, locator=copy.locator, sha1=job.sha1 or copy.sha1)
                for key, (job, copy) in refs.items()
            }
            batch = self._copy_batch(handle, refs, items, deleting=deleting)
            job_of = {key: job.key for key, (job, _) in refs.items()}
            outcomes = self._run_batch(handle, batch, items, report_as=job_of.__getitem__)
            verified = []
            for key, outcome in outcomes.items():
                job, copy = refs[key]
                if outcome.ok:
                    verified.append(copy.external_id)
                else:
                    errors[job.key].append(f"copy {copy.external_id}: {outcome.error}")
            if not deleting and verified:
                try:
                    self.site.catalog.mark_verified(verified)
                except CatalogError as exc:
                    log.warning(
                        "policy=%s job=%s the catalog could not record when %d copies were "
                        "verified: %s",
                        self.policy.uuid,
                        self.job_id,
                        len(verified),
                        exc.message,
                    )
        return {key: by_key[key].external_ids for key in located if not errors[key]}

    def _copy_batch(
        self,
        handle: TargetHandle,
        refs: dict[str, tuple[FileJob, _Copy]],
        items: dict[str, CopyRef],
        *,
        deleting: bool,
    ) -> _Batch:
        """What delete (or verify) hands the shared loop for the copies on one target."""
        fields = {"policy": self.policy.uuid, "target": handle.name, "job_id": self.job_id}

        def prepare(_abandoned: Mapping[str, tuple[str, ...]]):
            if deleting:
                return DeleteRequest(**fields, items=items.values()), items
            return VerifyRequest(**fields, items=items.values(), progress=self._progress), items

        def check(outcome: FileOutcome, item: CopyRef) -> FileOutcome:
            return outcome if deleting else _check_sha1(outcome, item.sha1, "read back")

        def record(outcome: FileOutcome, _item: CopyRef) -> JournalResult:
            removed = refs[outcome.key][1].external_id if outcome.ok and deleting else None
            return JournalResult(
                key=outcome.key, ok=outcome.ok, error=outcome.error, removed=removed
            )

        return _Batch(
            entries=[
                JournalEntry(key=k, name=i.locator, item_id=refs[k][0].item_id, sha1=i.sha1)
                for k, i in items.items()
            ],
            prepare=prepare,
            call=handle.instance.delete if deleting else handle.instance.verify,
            check=check,
            record=record,
        )

    # --- the loop every operation shares -------------------------------------------------------

    def _run_batch(
        self,
        handle: TargetHandle,
        batch: _Batch,
        items: dict[str, Any],
        *,
        report_as: Callable[[str], str] | None = None,
    ) -> dict[str, FileOutcome]:
        """Journal the intent, drive the driver, check and record each outcome.

        The result is one outcome per key of `items`. An outcome counts only once the journal
        holds it (for the operations that need the journal): a result the catalog failed to
        record is turned into a failure saying so, and the rest of the batch is stopped,
        since nothing more could be recorded either.
        """
        required = self.operation in _JOURNAL_REQUIRED
        writer = self._journal(handle, batch.entries, required=required, report_as=report_as)
        if isinstance(writer, CatalogError):
            reason = (
                f"nothing was done: the catalog, which must record this {self.operation}, "
                f"cannot be written ({writer.message})"
            )
            outcomes = {k: FileOutcome.failure(k, reason, retryable=True) for k in items}
            for outcome in outcomes.values():
                self._file_done(outcome, report_as)
            return outcomes
        with writer:
            request, ready = batch.prepare(writer.abandoned)
            stream = self._drive(handle, batch.call, request, ready)
            try:
                for outcome in stream:
                    item = ready[outcome.key]
                    outcome = batch.check(outcome, item)
                    writer.add(batch.record(outcome, item), outcome)
                    if writer.stopped:
                        break
            finally:
                stream.close()  # stops the driver when the catalog stopped the batch
        outcomes = dict(writer.outcomes)
        for key in items:
            if key not in outcomes:
                outcome = FileOutcome.failure(
                    key,
                    f"not {_PAST[self.operation]}: the batch was stopped because the catalog "
                    f"could not record results ({writer.error_message})",
                    retryable=True,
                )
                outcomes[key] = outcome
                self._file_done(outcome, report_as)
        return outcomes

    def _handle(self, name: str, capability: Capability) -> TargetHandle | DriverUnavailable:
        """The target's driver, or the reason it cannot be used (kept per file, not raised).

        An undeclared capability is raised: it is a policy design error, not a file's fate.
        """
        try:
            handle = self.site.target(name)
        except DriverUnavailable as exc:
            return exc
        handle.require(capability, policy=self.policy.uuid)
        return handle

    def _copies_of(self, job: FileJob, errors: list[str]) -> list[_Copy]:
        """Copies named by the FileSet's external ids; the catalog when Portal has none.

        Only copies of this policy count: on one of its targets, or recorded in the catalog
        as made for it (a policy moved to a new target keeps its old copies). Any other id
        is refused with the reason, and nothing is done with it.
        """
        copies: list[_Copy] = []
        for text in job.external_ids:
            try:
                ext = ExternalId.parse(text)
            except ArchiveCoreError as exc:
                errors.append(exc.message)
                continue
            problem = self._foreign(ext, text)
            if problem:
                errors.append(problem)
                continue
            copies.append(_Copy(target=ext.target, locator=ext.locator, external_id=text))
        if copies or job.external_ids or not job.files:
            return copies
        if not job.sha1:
            return copies
        name = archive_name(job.files[0], item_id=job.item_id, sha1=job.sha1)
        for target in self.policy.targets:
            try:
                found = self.site.catalog.find_copies(target, [(name, job.sha1)])
            except CatalogError as exc:
                errors.append(
                    f"Portal gave no external id for this file, and the catalog, the only other "
                    f"place that knows its copies, cannot be read: {exc.message}"
                )
                return []
            for record in found.values():
                copies.append(
                    _Copy(
                        target=target,
                        locator=record.locator,
                        external_id=record.external_id,
                        sha1=record.sha1,
                    )
                )
        return copies

    def _foreign(self, ext: ExternalId, text: str) -> str | None:
        """Why the copy `text` names is not this policy's to touch; None when it is."""
        policy = f"policy {self.policy.uuid} ({self.policy.name})"
        if ext.target not in self.site.config.targets:
            return f"copy {text}: target {ext.target!r} is not configured"
        try:
            handle = self.site.target(ext.target)
        except DriverUnavailable as exc:
            return f"copy {text}: {exc.message}"
        if handle.scheme != ext.scheme:
            return (
                f"copy {text}: its scheme {ext.scheme!r} is not that of target {ext.target!r} "
                f"(driver {handle.driver_name!r}, scheme {handle.scheme!r}); nothing was done "
                "with it"
            )
        if ext.target in self.policy.targets:
            return None
        try:
            record = self.site.catalog.copy(text)
        except CatalogError as exc:
            return (
                f"copy {text} is on target {ext.target!r}, which {policy} does not use; "
                f"whether it was made for this policy is in the catalog, which cannot be read "
                f"({exc.message}). Nothing was done with it."
            )
        if record is not None and record.policy == self.policy.uuid:
            return None
        return (
            f"copy {text} is on target {ext.target!r}, which {policy} does not use, and the "
            "catalog does not record it as made for this policy. Nothing was done with it."
        )

    def _drive(
        self,
        handle: TargetHandle,
        operation: Callable[[Any], Iterable[FileOutcome]],
        request: Any,
        expected: Mapping[str, Any],
    ) -> Iterator[FileOutcome]:
        """The driver's outcomes, made total: exactly one per expected key, never a raise."""
        pending = dict.fromkeys(expected)
        stream = None
        try:
            stream = iter(operation(request))
            for outcome in stream:
                if not isinstance(outcome, FileOutcome) or outcome.key not in pending:
                    log.warning(
                        "policy=%s job=%s driver %s reported an unknown or repeated file %r; "
                        "ignored",
                        self.policy.uuid,
                        self.job_id,
                        handle.driver_name,
                        getattr(outcome, "key", outcome),
                    )
                    continue
                del pending[outcome.key]
                if not outcome.ok and not outcome.error:
                    outcome = attrs.evolve(
                        outcome, error="the driver reported a failure without a reason"
                    )
                yield outcome
        except Exception as exc:
            if isinstance(exc, ArchiveCoreError):
                reason = exc.message
            else:
                log.exception(
                    "policy=%s job=%s driver %s raised",
                    self.policy.uuid,
                    self.job_id,
                    handle.driver_name,
                )
                reason = f"driver {handle.driver_name!r} failed: {type(exc).__name__}: {exc}"
            # Like a file's own failure: an OSError (a connection reset, a full disk) may pass.
            retryable = (
                exc.retryable if isinstance(exc, ArchiveCoreError) else isinstance(exc, OSError)
            )
            for key in list(pending):
                del pending[key]
                yield FileOutcome.failure(key, reason, retryable=retryable)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # a driver stopped early cleans up now, not whenever it is collected
        for key in pending:
            yield FileOutcome.failure(
                key, f"driver {handle.driver_name!r} did not report on this file"
            )

    def _journal(
        self,
        handle: TargetHandle,
        entries: list[JournalEntry],
        *,
        required: bool,
        report_as: Callable[[str], str] | None,
    ) -> _JournalWriter | CatalogError:
        """A writer for the batch's results, or the reason a required journal cannot be kept."""
        catalog = self.site.catalog
        try:
            batch = catalog.begin(
                job_id=self.job_id,
                policy=self.policy.uuid,
                target=handle.name,
                operation=self.operation,
                entries=entries,
            )
        except CatalogError as exc:
            if required:
                return exc
            log.warning(
                "policy=%s job=%s the catalog cannot be written (%s); the %s of %d files goes "
                "on without its journal",
                self.policy.uuid,
                self.job_id,
                exc.message,
                self.operation,
                len(entries),
            )
            return _JournalWriter(self, None, {}, required=False, report_as=report_as)
        return _JournalWriter(
            self, batch.id, batch.abandoned, required=required, report_as=report_as
        )

    def _progress(self, nbytes: int) -> None:
        self._bytes += nbytes
        if self.observer is not None:
            self.observer.advanced(nbytes)

    def _job_info(self, count: int):
        from archive_core.hooks import JobInfo

        return JobInfo(
            job_id=self.job_id, policy=self.policy.uuid, operation=self.operation, file_count=count
        )

    def _begin(self, jobs: Sequence[FileJob], *, total_bytes: int | None) -> None:
        self._info = self._job_info(len(jobs))
        self._labels = {j.key: j.label for j in jobs}
        log.info(
            "policy=%s job=%s %s of %d files started",
            self.policy.uuid,
            self.job_id,
            self.operation,
            len(jobs),
        )
        self.site.hooks.notify("archive_core_job_started", job=self._info)
        if self.observer is not None:
            self.observer.started(self.operation, len(jobs), total_bytes)

    def _file_done(
        self, outcome: FileOutcome, report_as: Callable[[str], str] | None = None
    ) -> None:
        if report_as is not None:
            outcome = attrs.evolve(outcome, key=report_as(outcome.key))
        hook = "archive_core_file_done" if outcome.ok else "archive_core_file_failed"
        self.site.hooks.notify(hook, job=self._info, outcome=outcome)
        if not outcome.ok:
            log.warning(
                "policy=%s job=%s %s failed for %s: %s",
                self.policy.uuid,
                self.job_id,
                self.operation,
                self._labels.get(outcome.key, outcome.key),
                outcome.error,
            )
        if self.observer is not None:
            self.observer.file_finished(outcome)

    def _finish(self, jobs: Sequence[FileJob], results: list[FileResult]) -> JobReport:
        from archive_core.hooks import JobSummary

        report = JobReport(
            operation=self.operation,
            policy=self.policy.uuid,
            job_id=self.job_id,
            results=tuple(results),
            labels=self._labels,
            unusable=self._unusable,
        )
        failed = len(report.failed)
        summary = JobSummary(
            succeeded=len(results) - failed,
            failed=failed,
            bytes=self._bytes,
            seconds=time.monotonic() - self._started,
        )
        self.site.hooks.notify("archive_core_job_finished", job=self._info, summary=summary)
        log.info(
            "policy=%s job=%s %s finished: %d ok, %d failed, %d bytes in %.1f s",
            self.policy.uuid,
            self.job_id,
            self.operation,
            summary.succeeded,
            failed,
            summary.bytes,
            summary.seconds,
        )
        return report


class _JournalWriter:
    """Group-commits results; an outcome is final only once its group is in the catalog.

    A crash loses at most the last group, which a re-run redoes safely. When the catalog
    refuses a group, its outcomes become failures that say the result was not recorded, and
    `stopped` tells the loop to end the batch (for operations whose journal is required;
    otherwise the refusal is logged once and the outcomes stand).
    """

    def __init__(
        self,
        runner: JobRunner,
        batch: str | None,
        abandoned: Mapping[str, tuple[str, ...]],
        *,
        required: bool,
        report_as: Callable[[str], str] | None,
    ) -> None:
        self._runner = runner
        self._catalog = runner.site.catalog
        self._batch = batch
        self._required = required
        self._report_as = report_as
        self.abandoned = abandoned
        self.outcomes: dict[str, FileOutcome] = {}
        self.error: CatalogError | None = None
        self._buffer: list[tuple[JournalResult, FileOutcome]] = []
        self._last = time.monotonic()

    @property
    def stopped(self) -> bool:
        return self._required and self.error is not None

    @property
    def error_message(self) -> str:
        return self.error.message if self.error is not None else "unknown"

    def add(self, result: JournalResult, outcome: FileOutcome) -> None:
        self._buffer.append((result, outcome))
        if len(self._buffer) >= _FLUSH_EVERY or time.monotonic() - self._last > _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        group, self._buffer = self._buffer, []
        self._last = time.monotonic()
        if not group:
            return
        if self._batch is not None and self.error is None:
            try:
                self._catalog.finish(self._batch, [result for result, _ in group])
            except CatalogError as exc:
                self.error = exc
                self._log_refusal(exc, len(group))
        if self.error is not None and self._required:
            group = [(r, _unrecorded(o, self._runner.operation, self.error)) for r, o in group]
        for _, outcome in group:
            self.outcomes[outcome.key] = outcome
            self._runner._file_done(outcome, self._report_as)

    def _log_refusal(self, exc: CatalogError, count: int) -> None:
        runner = self._runner
        log.log(
            logging.ERROR if self._required else logging.WARNING,
            "policy=%s job=%s the catalog refused the results of %d files of this %s (%s)%s",
            runner.policy.uuid,
            runner.job_id,
            count,
            runner.operation,
            exc.message,
            "; the batch is stopped" if self._required else "; going on without the journal",
        )

    def __enter__(self) -> _JournalWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        # Flush even when unwinding: results already known are true and worth keeping.
        try:
            self.flush()
        finally:
            if self._batch is not None:
                self._catalog.end(self._batch)


def _unrecorded(outcome: FileOutcome, operation: str, error: CatalogError) -> FileOutcome:
    """A result the catalog could not keep: never reported done, and the reason told."""
    if not outcome.ok:
        return outcome
    if operation == "archive":
        what = (
            f"the copy was written ({outcome.locator}), but the catalog could not record it "
            f"({error.message}), so it is not reported archived; archiving it again finds "
            "the copy and records it"
        )
    else:
        what = (
            f"the copy {outcome.locator} was deleted, but the catalog could not record that "
            f"({error.message}); deleting it again finishes the job"
        )
    return FileOutcome.failure(outcome.key, what, retryable=True, locator=outcome.locator)


def _content_sha1(sources: Sequence[str]) -> str:
    """The sha1 of the first readable source, for a file Portal gave no sha1 for.

    The one read that exists only to hash: the name of a copy carries its content's sha1
    (so different files never share one), and the copy is then checked against it, which
    also catches a file that changes while it is archived.
    """
    from archive_core import transfer

    _, stream = transfer.open_first_readable(sources)
    with stream:
        return transfer.hash_stream(stream).sha1


def _check_archived(outcome: FileOutcome, item: ArchiveItem) -> FileOutcome:
    if not outcome.ok:
        return outcome
    if not outcome.locator:
        return FileOutcome.failure(outcome.key, "the driver reported success without a location")
    return _check_sha1(outcome, item.sha1, "stored")


def _check_sha1(outcome: FileOutcome, expected: str | None, verb: str) -> FileOutcome:
    """The core's own fixity check, whatever the driver claims to have checked."""
    if not outcome.ok or not expected:
        return outcome
    if not outcome.sha1:
        return FileOutcome.failure(
            outcome.key,
            f"the driver did not report the sha1 of the bytes it {verb}, so they cannot be "
            f"checked against the expected sha1 {expected}",
        )
    if outcome.sha1.lower() != expected:
        return FileOutcome.failure(
            outcome.key,
            f"checksum mismatch: the bytes {verb} hash to sha1 {outcome.sha1}, "
            f"the expected sha1 is {expected}",
        )
    return outcome


def _total_size(jobs: Sequence[FileJob]) -> int | None:
    import os

    total = 0
    for job in jobs:
        for path in job.files:
            try:
                total += os.stat(path).st_size
                break
            except (OSError, ValueError):
                continue
    return total


def _utcnow():
    import datetime as dt

    return dt.datetime.now(dt.UTC)
