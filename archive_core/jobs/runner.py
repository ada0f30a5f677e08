"""The one job loop: an operation on one policy's targets, file by file, journaled and checked."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from archive_core import metrics
from archive_core.audit import record_quietly
from archive_core.errors import ArchiveCoreError, CatalogError, DriverUnavailable, PolicyDisabled
from archive_core.jobs.archive import Archive
from archive_core.jobs.copies import Delete, Verify
from archive_core.jobs.journal import JournalWriter
from archive_core.jobs.operation import Batch, Operation
from archive_core.jobs.report import PAST, FileJob, FileResult, JobObserver, JobReport
from archive_core.jobs.restore import Restore
from archive_core.model import FileOutcome
from archive_core.policies import Policy
from archive_core.site import Site, TargetHandle

log = logging.getLogger("archive_core.jobs")

OPERATIONS: dict[str, Operation] = {
    op.name: op for op in (Archive(), Restore(), Delete(), Verify())
}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JobRunner:
    """Runs archive/restore/delete/verify for a Site; one instance per call.

    `clock` (monotonic seconds) paces the journal's group commits and times the job; `now`
    stamps the copies recorded. Both are injected so tests never wait on real time.
    """

    def __init__(
        self,
        site: Site,
        *,
        policy_uuid: str,
        job_id: str | None,
        operation: str,
        observer: JobObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = _utcnow,
        actor: str | None = None,
    ) -> None:
        self.site = site
        self.policy: Policy = site.policy(policy_uuid)
        # Portal gives restore and delete no job id: a run id of our own ties their journal
        # rows and log lines together instead.
        self.job_id = job_id or f"{operation}-{uuid.uuid4().hex[:12]}"
        # Who the audit trail names: the caller's (the CLI's user), else the Portal job.
        self.actor = actor or (f"Portal job {job_id}" if job_id else f"Portal ({operation})")
        self.operation = operation
        self.observer = observer
        self.clock = clock
        self.now = now
        self.labels: dict[str, str] = {}
        self._bytes = 0
        self._started = clock()

    def run(self, jobs: Sequence[FileJob]) -> JobReport:
        """Run this runner's operation over `jobs`; one result per job, in order.

        Everything that can refuse the whole call (an unknown operation, a driver that does
        not declare the capability) is settled before the job is reported started, so
        observers never see a job that started and never finished.
        """
        try:
            operation = OPERATIONS[self.operation]
        except KeyError:
            raise ArchiveCoreError(f"archive-core has no operation {self.operation!r}.") from None
        if self.operation == "archive" and (refused := self.site.refusal(self.policy)):
            raise PolicyDisabled(refused, policy=self.policy.uuid)
        errors: dict[str, list[str]] = {j.key: [j.problem] if j.problem else [] for j in jobs}
        targets, located = operation.targets(self, jobs, errors)
        handles = {name: self._handle(name, operation) for name in targets}
        self._begin(jobs)
        done = operation.step(self, jobs, handles, located, errors)
        results = [
            FileResult(key=j.key, ok=True, external_ids=done[j.key])
            if j.key in done and not errors[j.key]
            else FileResult(key=j.key, ok=False, error="; ".join(errors[j.key]) or None)
            for j in jobs
        ]
        unusable = tuple(h.message for h in handles.values() if isinstance(h, DriverUnavailable))
        return self._finish(results, unusable)

    # --- what operations call ------------------------------------------------------------------

    def run_batch(
        self,
        handle: TargetHandle,
        batch: Batch,
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
        writer = self._journal(handle, batch, report_as=report_as)
        if isinstance(writer, CatalogError):
            reason = (
                f"nothing was done: the catalog, which must record this {self.operation}, "
                f"cannot be written ({writer.message})"
            )
            outcomes = {k: FileOutcome.failure(k, reason, retryable=True) for k in items}
            for outcome in outcomes.values():
                self.file_done(outcome, report_as)
            return outcomes
        with writer:
            request, ready = batch.prepare(writer.abandoned)
            stream = self.drive(handle, batch.call, request, ready)
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
                    f"not {PAST[self.operation]}: the batch was stopped because the catalog "
                    f"could not record results ({writer.error_message})",
                    retryable=True,
                )
                outcomes[key] = outcome
                self.file_done(outcome, report_as)
        metrics.observe_files(self.operation, self.policy.uuid, handle.name, outcomes.values())
        return outcomes

    def drive(
        self,
        handle: TargetHandle,
        call: Callable[[Any], Iterable[FileOutcome]],
        request: Any,
        expected: Mapping[str, Any],
    ) -> Iterator[FileOutcome]:
        """The driver's outcomes, made total: exactly one per expected key, never a raise."""
        pending = dict.fromkeys(expected)
        stream = None
        try:
            stream = iter(call(request))
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

    def progress(self, nbytes: int) -> None:
        self._bytes += nbytes
        if self.observer is not None:
            self.observer.advanced(nbytes)

    def file_done(
        self, outcome: FileOutcome, report_as: Callable[[str], str] | None = None
    ) -> None:
        """Tell hooks, logs and the observer one file's outcome (under its job's key)."""
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
                self.labels.get(outcome.key, outcome.key),
                outcome.error,
            )
        if self.observer is not None:
            self.observer.file_finished(outcome)

    # --- the loop's own steps ------------------------------------------------------------------

    def _handle(self, name: str, operation: Operation) -> TargetHandle | DriverUnavailable:
        """The target's driver, or the reason it cannot be used (kept per file, not raised).

        An undeclared capability is raised: it is a policy design error, not a file's fate.
        """
        try:
            handle = self.site.target(name)
        except DriverUnavailable as exc:
            return exc
        handle.require(operation.capability, policy=self.policy.uuid)
        return handle

    def _journal(
        self, handle: TargetHandle, batch: Batch, *, report_as: Callable[[str], str] | None
    ) -> JournalWriter | CatalogError:
        """A writer for the batch's results, or the reason a required journal cannot be kept."""
        required = OPERATIONS[self.operation].journal_required
        try:
            begun = self.site.catalog.begin(
                job_id=self.job_id,
                policy=self.policy.uuid,
                target=handle.name,
                operation=self.operation,
                entries=batch.entries,
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
                len(batch.entries),
            )
            return JournalWriter(self, None, {}, required=False, report_as=report_as)
        return JournalWriter(
            self, begun.id, begun.abandoned, required=required, report_as=report_as
        )

    def _begin(self, jobs: Sequence[FileJob]) -> None:
        from archive_core.hooks import JobInfo

        self._info = JobInfo(
            job_id=self.job_id,
            policy=self.policy.uuid,
            operation=self.operation,
            file_count=len(jobs),
        )
        self.labels = {j.key: j.label for j in jobs}
        self.site.note_config(actor=self.actor)
        log.info(
            "policy=%s job=%s %s of %d files started",
            self.policy.uuid,
            self.job_id,
            self.operation,
            len(jobs),
        )
        self.site.hooks.notify("archive_core_job_started", job=self._info)
        if self.observer is not None:
            self.observer.started(self.operation, len(jobs), _total_size(jobs))

    def _finish(self, results: list[FileResult], unusable: tuple[str, ...]) -> JobReport:
        from archive_core.hooks import JobSummary

        report = JobReport(
            operation=self.operation,
            policy=self.policy.uuid,
            job_id=self.job_id,
            results=tuple(results),
            labels=self.labels,
            unusable=unusable,
        )
        failed = len(report.failed)
        summary = JobSummary(
            succeeded=len(results) - failed,
            failed=failed,
            bytes=self._bytes,
            seconds=self.clock() - self._started,
        )
        self.site.hooks.notify("archive_core_job_finished", job=self._info, summary=summary)
        metrics.observe_job(self.operation, self.policy.uuid, summary.seconds)
        record_quietly(
            self.site.catalog,
            log,
            actor=self.actor,
            operation=self.operation,
            policy=self.policy.uuid,
            subject={
                "job_id": self.job_id,
                "files": [_audited(r, self.labels.get(r.key, r.key)) for r in results],
                "unusable": list(unusable),
            },
            outcome=f"{summary.succeeded} ok, {failed} failed",
        )
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


def _audited(result: FileResult, label: str) -> dict[str, Any]:
    """One file of a job as the audit trail keeps it."""
    entry: dict[str, Any] = {"file": label, "ok": result.ok}
    if result.external_ids:
        entry["external_ids"] = list(result.external_ids)
    if result.error:
        entry["error"] = result.error[:500]
    return entry


def _total_size(jobs: Sequence[FileJob]) -> int | None:
    """The bytes a job will move, for an observer's progress bar: one stat per file."""
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
