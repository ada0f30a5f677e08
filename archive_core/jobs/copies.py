"""Delete and verify: act on every known copy of a file; done when all of its copies are."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from archive_core.catalog import JournalEntry, JournalResult
from archive_core.driver import Capability
from archive_core.errors import DriverUnavailable
from archive_core.jobs.checks import check_sha1
from archive_core.jobs.locate import locate
from archive_core.jobs.operation import Batch, Copy, Handles, JobContext
from archive_core.jobs.verified import record_verification
from archive_core.model import CopyRef, DeleteRequest, FileOutcome, VerifyRequest

if TYPE_CHECKING:
    from archive_core.jobs.report import FileJob
    from archive_core.site import TargetHandle

log = logging.getLogger("archive_core.jobs")


class _OnEveryCopy(abc.ABC):
    """The shared shape; `Delete` and `Verify` say what the request, check and record are."""

    name: str
    capability: Capability
    journal_required: bool

    def targets(
        self, runner: JobContext, jobs: Sequence[FileJob], errors: dict[str, list[str]]
    ) -> tuple[Iterable[str], dict[str, list[Copy]]]:
        return locate(runner, jobs, errors)

    def step(
        self,
        runner: JobContext,
        jobs: Sequence[FileJob],
        handles: Handles,
        located: Mapping[str, list[Copy]],
        errors: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        by_key = {job.key: job for job in jobs}
        per_target: dict[str, list[tuple[FileJob, Copy]]] = {}
        for key, found in located.items():
            for copy in found:
                per_target.setdefault(copy.target, []).append((by_key[key], copy))
        for target, pairs in per_target.items():
            handle = handles[target]
            if isinstance(handle, DriverUnavailable):
                for job, copy in pairs:
                    errors[job.key].append(f"copy {copy.external_id}: {handle.message}")
                continue
            # One key per copy: a file may have two copies on one target.
            refs = {f"{i}": (job, copy) for i, (job, copy) in enumerate(pairs)}
            items = {
                key: CopyRef(
                    key=key,
                    locator=copy.locator,
                    sha1=job.sha1 or copy.sha1,
                    placement=copy.placement,
                )
                for key, (job, copy) in refs.items()
            }
            job_of = {key: job.key for key, (job, _) in refs.items()}
            batch = self._batch(runner, handle, refs, items)
            outcomes = runner.run_batch(handle, batch, items, report_as=job_of.__getitem__)
            succeeded, failed = [], {}
            for key, outcome in outcomes.items():
                job, copy = refs[key]
                if outcome.ok:
                    succeeded.append(copy.external_id)
                else:
                    if not outcome.retryable:  # the copy's own fault, not the way to it
                        failed[copy.external_id] = outcome.error or "failed"
                    errors[job.key].append(f"copy {copy.external_id}: {outcome.error}")
            self._after(runner, succeeded, failed)
        return {key: by_key[key].external_ids for key in located if not errors[key]}

    def _batch(
        self,
        runner: JobContext,
        handle: TargetHandle,
        refs: dict[str, tuple[FileJob, Copy]],
        items: dict[str, CopyRef],
    ) -> Batch:
        fields = {"policy": runner.policy.uuid, "target": handle.name, "job_id": runner.job_id}
        return Batch(
            entries=[JournalEntry(key=k, name=i.locator) for k, i in items.items()],
            prepare=lambda _abandoned: (self._request(runner, fields, items), items),
            call=self._call(handle),
            check=self._check,
            record=lambda outcome, _item: JournalResult(
                key=outcome.key,
                ok=outcome.ok,
                error=outcome.error,
                removed=self._removed(outcome, refs[outcome.key][1]),
            ),
        )

    @abc.abstractmethod
    def _request(self, runner: JobContext, fields: dict[str, Any], items: dict[str, CopyRef]):
        """The driver's request for the copies `items` on one target."""

    @abc.abstractmethod
    def _call(self, handle: TargetHandle):
        """The driver method the request goes to."""

    def _check(self, outcome: FileOutcome, item: CopyRef) -> FileOutcome:
        return outcome

    def _removed(self, outcome: FileOutcome, copy: Copy) -> str | None:
        """The external id whose catalog row this outcome removes."""
        return None

    @abc.abstractmethod
    def _after(self, runner: JobContext, external_ids: list[str], failed: dict[str, str]) -> None:
        """What the catalog learns of the copies on one target: those that succeeded, and
        those that failed (external id -> why)."""


class Delete(_OnEveryCopy):
    name = "delete"
    capability = Capability.DELETE
    journal_required = True

    def _request(self, runner: JobContext, fields: dict[str, Any], items: dict[str, CopyRef]):
        return DeleteRequest(**fields, items=items.values())

    def _call(self, handle: TargetHandle):
        return handle.instance.delete

    def _removed(self, outcome: FileOutcome, copy: Copy) -> str | None:
        return copy.external_id if outcome.ok else None

    def _after(self, runner: JobContext, external_ids: list[str], failed: dict[str, str]) -> None:
        pass  # each deleted copy's row went with its journal result (`_removed`)


class Verify(_OnEveryCopy):
    name = "verify"
    capability = Capability.VERIFY
    journal_required = False

    def _request(self, runner: JobContext, fields: dict[str, Any], items: dict[str, CopyRef]):
        return VerifyRequest(**fields, items=items.values(), progress=runner.progress)

    def _call(self, handle: TargetHandle):
        return handle.instance.verify

    def _check(self, outcome: FileOutcome, item: CopyRef) -> FileOutcome:
        return check_sha1(outcome, item.sha1, "read back")

    def _after(self, runner: JobContext, external_ids: list[str], failed: dict[str, str]) -> None:
        record_verification(runner, external_ids, failed)
