"""One operation of one policy over a batch of files: journal, driver, fixity check, hooks.

This is where the core's guarantees are kept for every driver alike: intent is journaled
before a transfer and the result after it; a copy is recorded only when the driver reports the
sha1 of the bytes it stored and that sha1 matches Portal's; one outcome per file always exists,
whatever the driver does (raises midway, forgets a file, reports a stranger).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs

from archive_core.catalog import CopyRecord, JournalEntry, JournalResult
from archive_core.driver import Capability
from archive_core.errors import ArchiveCoreError, DriverUnavailable
from archive_core.externalid import ExternalId
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    FileOutcome,
    RestoreItem,
    RestoreRequest,
    VerifyRequest,
)
from archive_core.naming import archive_name
from archive_core.policies import Policy
from archive_core.site import Site, TargetHandle

log = logging.getLogger(__name__)

_FLUSH_EVERY = 256  # results per journal transaction
_FLUSH_SECONDS = 1.0  # ...or this long, whichever comes first
_HEX = frozenset("0123456789abcdef")


@attrs.frozen(kw_only=True)
class FileJob:
    """One Portal FileSet as the core sees it."""

    key: str
    files: tuple[str, ...] = attrs.field(converter=tuple)
    external_ids: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    item_id: str | None = None
    sha1: str | None = None

    @property
    def label(self) -> str:
        """How to name this file to an admin."""
        if self.files:
            return self.files[0]
        if self.external_ids:
            return self.external_ids[0]
        return f"item {self.item_id or '?'} ({self.key})"


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
    scheme: str
    locator: str
    external_id: str
    sha1: str | None = None


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
        self.job_id = job_id
        self.operation = operation
        self.observer = observer
        self._bytes = 0
        self._started = time.monotonic()

    # --- the four operations -------------------------------------------------------------------

    def archive(self, jobs: Sequence[FileJob]) -> JobReport:
        handles = [self._handle(name, Capability.ARCHIVE) for name in self.policy.targets]
        self._begin(jobs, total_bytes=_total_size(jobs) if self.observer else None)
        errors: dict[str, str] = {}
        items: list[ArchiveItem] = []
        for job in jobs:
            problem = _archive_problem(job)
            if problem:
                errors[job.key] = problem
                continue
            items.append(
                ArchiveItem(
                    key=job.key,
                    sources=job.files,
                    name=archive_name(job.files[0], item_id=job.item_id, sha1=job.sha1),
                    item_id=job.item_id,
                    sha1=job.sha1.lower() if job.sha1 else None,
                )
            )
        copies: dict[str, list[str]] = {job.key: [] for job in jobs}
        for handle in handles:
            if isinstance(handle, DriverUnavailable):
                for item in items:
                    errors.setdefault(item.key, handle.message)
                continue
            outcomes = self._archive_to(handle, [i for i in items if i.key not in errors])
            for key, (outcome, external_id) in outcomes.items():
                if outcome.ok:
                    copies[key].append(external_id)
                else:
                    errors.setdefault(key, _on_target(handle, outcome.error))
        results = [
            FileResult(key=j.key, ok=False, error=errors[j.key])
            if j.key in errors
            else FileResult(key=j.key, ok=True, external_ids=tuple(copies[j.key]))
            for j in jobs
        ]
        return self._finish(jobs, results)

    def restore(self, jobs: Sequence[FileJob]) -> JobReport:
        self._begin(jobs, total_bytes=None)
        errors: dict[str, list[str]] = {job.key: [] for job in jobs}
        candidates: dict[str, list[_Copy]] = {}
        for job in jobs:
            if not job.files:
                errors[job.key].append("Portal gave no destination path for this file")
                continue
            found = self._copies_of(job, errors[job.key])
            if found:
                candidates[job.key] = found
            elif not errors[job.key]:
                errors[job.key].append("no archived copy is known for this file")
        by_key = {job.key: job for job in jobs}
        done: set[str] = set()
        # Each round restores every pending file from its next copy, one driver call per
        # target, so a batch fails over to a second copy only for the files that need it.
        while candidates:
            round_: dict[str, list[tuple[FileJob, _Copy]]] = {}
            for key, copies in candidates.items():
                round_.setdefault(copies[0].target, []).append((by_key[key], copies[0]))
            for target, pairs in round_.items():
                handle = self._handle(target, Capability.RESTORE)
                if isinstance(handle, DriverUnavailable):
                    outcomes = {j.key: FileOutcome.failure(j.key, handle.message) for j, _ in pairs}
                else:
                    outcomes = self._restore_from(handle, pairs)
                for job, copy in pairs:
                    outcome = outcomes[job.key]
                    if outcome.ok:
                        done.add(job.key)
                    else:
                        errors[job.key].append(f"copy {copy.external_id}: {outcome.error}")
            candidates = {k: c[1:] for k, c in candidates.items() if k not in done and len(c) > 1}
        results = [
            FileResult(key=j.key, ok=True, external_ids=j.external_ids)
            if j.key in done
            else FileResult(key=j.key, ok=False, error="; ".join(errors[j.key]))
            for j in jobs
        ]
        return self._finish(jobs, results)

    def delete(self, jobs: Sequence[FileJob]) -> JobReport:
        return self._each_copy(jobs, Capability.DELETE)

    def verify(self, jobs: Sequence[FileJob]) -> JobReport:
        return self._each_copy(jobs, Capability.VERIFY)

    # --- per target ----------------------------------------------------------------------------

    def _archive_to(
        self, handle: TargetHandle, items: list[ArchiveItem]
    ) -> dict[str, tuple[FileOutcome, str | None]]:
        """Archive `items` to one target: each key's outcome and, when ok, its external id."""
        catalog = self.site.catalog
        known = catalog.find_copies(handle.name, [(i.name, i.sha1) for i in items if i.sha1])
        results: dict[str, tuple[FileOutcome, str | None]] = {}
        todo = []
        for item in items:
            record = known.get(item.name)
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
            "policy=%s job=%s archiving %d files to target %s (%d already archived)",
            self.policy.uuid,
            self.job_id,
            len(todo),
            handle.name,
            len(results),
        )
        journal = self._journal(
            handle,
            [JournalEntry(key=i.key, name=i.name, item_id=i.item_id, sha1=i.sha1) for i in todo],
        )
        if journal.abandoned:
            todo = [
                attrs.evolve(i, resumed=True) if i.name in journal.abandoned else i for i in todo
            ]
        request = ArchiveRequest(
            policy=self.policy.uuid,
            target=handle.name,
            job_id=self.job_id,
            items=todo,
            progress=self._progress,
        )
        by_key = {i.key: i for i in todo}
        created = _utcnow()
        id_of = ExternalId.formatter(scheme=handle.scheme, target=handle.name)
        with journal:
            for outcome in self._drive(handle, handle.instance.archive, request, by_key):
                item = by_key[outcome.key]
                outcome = _check_archived(outcome, item)
                copy = external_id = None
                if outcome.ok:
                    locator = outcome.locator or ""
                    external_id = id_of(locator)
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
                journal.add(
                    JournalResult(key=outcome.key, ok=outcome.ok, error=outcome.error, copy=copy)
                )
                results[outcome.key] = (outcome, external_id)
                self._file_done(outcome)
        return results

    def _restore_from(
        self, handle: TargetHandle, pairs: list[tuple[FileJob, _Copy]]
    ) -> dict[str, FileOutcome]:
        items = {
            job.key: RestoreItem(
                key=job.key,
                locator=copy.locator,
                destination=job.files[0],
                sha1=(job.sha1 or copy.sha1 or "").lower() or None,
            )
            for job, copy in pairs
        }
        request = RestoreRequest(
            policy=self.policy.uuid,
            target=handle.name,
            job_id=self.job_id,
            items=list(items.values()),
            progress=self._progress,
        )
        outcomes: dict[str, FileOutcome] = {}
        journal = self._journal(
            handle, [JournalEntry(key=i.key, name=i.locator, sha1=i.sha1) for i in items.values()]
        )
        with journal:
            for outcome in self._drive(handle, handle.instance.restore, request, items):
                outcome = _check_sha1(outcome, items[outcome.key].sha1, "restored")
                journal.add(
                    JournalResult(
                        key=outcome.key,
                        ok=outcome.ok,
                        error=outcome.error,
                    )
                )
                outcomes[outcome.key] = outcome
                self._file_done(outcome)
        return outcomes

    def _each_copy(self, jobs: Sequence[FileJob], capability: Capability) -> JobReport:
        """Delete or verify every known copy of every file."""
        self._begin(jobs, total_bytes=None)
        errors: dict[str, list[str]] = {job.key: [] for job in jobs}
        per_target: dict[str, list[tuple[FileJob, _Copy]]] = {}
        for job in jobs:
            found = self._copies_of(job, errors[job.key])
            if not found and not errors[job.key]:
                errors[job.key].append("no archived copy is known for this file")
            for copy in found:
                per_target.setdefault(copy.target, []).append((job, copy))
        for target, pairs in per_target.items():
            handle = self._handle(target, capability)
            if isinstance(handle, DriverUnavailable):
                for job, copy in pairs:
                    errors[job.key].append(f"copy {copy.external_id}: {handle.message}")
                continue
            refs = {f"{i}": (job, copy) for i, (job, copy) in enumerate(pairs)}
            items = {
                key: CopyRef(
                    key=key,
                    locator=copy.locator,
                    sha1=(job.sha1 or copy.sha1 or "").lower() or None,
                )
                for key, (job, copy) in refs.items()
            }
            if capability is Capability.DELETE:
                request: Any = DeleteRequest(
                    policy=self.policy.uuid,
                    target=target,
                    job_id=self.job_id,
                    items=list(items.values()),
                )
                operation = handle.instance.delete
            else:
                request = VerifyRequest(
                    policy=self.policy.uuid,
                    target=target,
                    job_id=self.job_id,
                    items=list(items.values()),
                    progress=self._progress,
                )
                operation = handle.instance.verify
            verified: list[str] = []
            journal = self._journal(
                handle,
                [
                    JournalEntry(key=k, name=i.locator, item_id=refs[k][0].item_id, sha1=i.sha1)
                    for k, i in items.items()
                ],
            )
            with journal:
                for outcome in self._drive(handle, operation, request, items):
                    job, copy = refs[outcome.key]
                    if capability is Capability.VERIFY:
                        outcome = _check_sha1(outcome, items[outcome.key].sha1, "read back")
                    journal.add(
                        JournalResult(
                            key=outcome.key,
                            ok=outcome.ok,
                            error=outcome.error,
                            removed=copy.external_id
                            if outcome.ok and capability is Capability.DELETE
                            else None,
                        )
                    )
                    if outcome.ok:
                        verified.append(copy.external_id)
                    else:
                        errors[job.key].append(f"copy {copy.external_id}: {outcome.error}")
                    self._file_done(attrs.evolve(outcome, key=job.key))
            if capability is Capability.VERIFY and verified:
                self.site.catalog.mark_verified(verified)
        results = [
            FileResult(
                key=j.key,
                ok=not errors[j.key],
                external_ids=j.external_ids,
                error="; ".join(errors[j.key]) or None,
            )
            for j in jobs
        ]
        return self._finish(jobs, results)

    # --- shared machinery ----------------------------------------------------------------------

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
        """Copies named by the FileSet's external ids; the catalog when Portal has none."""
        copies: list[_Copy] = []
        for text in job.external_ids:
            try:
                ext = ExternalId.parse(text)
            except ArchiveCoreError as exc:
                errors.append(exc.message)
                continue
            if ext.target not in self.site.config.targets:
                errors.append(f"copy {text}: target {ext.target!r} is not configured")
                continue
            copies.append(
                _Copy(target=ext.target, scheme=ext.scheme, locator=ext.locator, external_id=text)
            )
        if copies or job.external_ids or not job.files:
            return copies
        name = archive_name(job.files[0], item_id=job.item_id, sha1=job.sha1)
        for target in self.policy.targets:
            if job.sha1:
                found = self.site.catalog.find_copies(target, [(name, job.sha1.lower())])
                for record in found.values():
                    copies.append(
                        _Copy(
                            target=target,
                            scheme=ExternalId.parse(record.external_id).scheme,
                            locator=record.locator,
                            external_id=record.external_id,
                            sha1=record.sha1,
                        )
                    )
        return copies

    def _drive(
        self,
        handle: TargetHandle,
        operation: Callable[[Any], Iterable[FileOutcome]],
        request: Any,
        expected: dict[str, Any],
    ) -> Iterable[FileOutcome]:
        """The driver's outcomes, made total: exactly one per expected key, never a raise."""
        pending = dict.fromkeys(expected)
        try:
            for outcome in operation(request):
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
            for key in list(pending):
                del pending[key]
                yield FileOutcome.failure(key, reason, retryable=getattr(exc, "retryable", False))
        for key in pending:
            yield FileOutcome.failure(
                key, f"driver {handle.driver_name!r} did not report on this file"
            )

    def _journal(self, handle: TargetHandle, entries: list[JournalEntry]) -> _JournalWriter:
        batch = self.site.catalog.begin(
            job_id=self.job_id,
            policy=self.policy.uuid,
            target=handle.name,
            operation=self.operation,
            entries=entries,
        )
        return _JournalWriter(self.site.catalog, batch.id, batch.abandoned)

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

    def _file_done(self, outcome: FileOutcome) -> None:
        hook = "archive_core_file_done" if outcome.ok else "archive_core_file_failed"
        self.site.hooks.notify(hook, job=self._info, outcome=outcome)
        if not outcome.ok:
            log.warning(
                "policy=%s job=%s %s failed for %s: %s",
                self.policy.uuid,
                self.job_id,
                self.operation,
                outcome.key,
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
            labels={j.key: j.label for j in jobs},
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
    """Group-commits results: a crash loses at most the last group, which re-runs redo safely."""

    def __init__(self, catalog: Any, batch: str, abandoned: frozenset[str]) -> None:
        self._catalog = catalog
        self._batch = batch
        self.abandoned = abandoned
        self._buffer: list[JournalResult] = []
        self._last = time.monotonic()

    def add(self, result: JournalResult) -> None:
        self._buffer.append(result)
        if len(self._buffer) >= _FLUSH_EVERY or time.monotonic() - self._last > _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._catalog.finish(self._batch, self._buffer)
            self._buffer = []
        self._last = time.monotonic()

    def __enter__(self) -> _JournalWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        # Flush even when unwinding: results already known are true and worth keeping.
        self.flush()


def _archive_problem(job: FileJob) -> str | None:
    if not job.files:
        return "Portal gave no source path for this file"
    if job.sha1 is not None:
        sha1 = job.sha1.lower()
        if len(sha1) != 40 or not set(sha1) <= _HEX:
            return f"Portal's sha1 {job.sha1!r} is not 40 hexadecimal digits"
    return None


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
            f"checked against Portal's sha1 {expected}",
        )
    if outcome.sha1.lower() != expected:
        return FileOutcome.failure(
            outcome.key,
            f"checksum mismatch: the bytes {verb} hash to sha1 {outcome.sha1}, "
            f"Portal's sha1 is {expected}",
        )
    return outcome


def _on_target(handle: TargetHandle, error: str | None) -> str:
    return f"target {handle.name}: {error}"


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
