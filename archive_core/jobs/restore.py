"""Restore: each file from its first copy that works, failing over copy by copy."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from archive_core.catalog import JournalEntry, JournalResult
from archive_core.driver import Capability
from archive_core.errors import DriverUnavailable
from archive_core.jobs.checks import check_sha1
from archive_core.jobs.locate import locate
from archive_core.jobs.operation import Batch, Copy, Handles, JobContext
from archive_core.model import FileOutcome, RestoreItem, RestoreRequest

if TYPE_CHECKING:
    from archive_core.jobs.report import FileJob
    from archive_core.site import TargetHandle

log = logging.getLogger("archive_core.jobs")


class Restore:
    name = "restore"
    capability = Capability.RESTORE
    journal_required = False

    def targets(
        self, runner: JobContext, jobs: Sequence[FileJob], errors: dict[str, list[str]]
    ) -> tuple[Iterable[str], dict[str, list[Copy]]]:
        for job in jobs:
            if not errors[job.key] and not job.files:
                errors[job.key].append("Portal gave no destination path for this file")
        return locate(runner, jobs, errors)

    def step(
        self,
        runner: JobContext,
        jobs: Sequence[FileJob],
        handles: Handles,
        located: Mapping[str, list[Copy]],
        errors: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        """The failures of passed-over copies are kept only for files not restored at all."""
        by_key = {job.key: job for job in jobs}
        candidates = {key: found for key, found in located.items() if found}
        failures: dict[str, list[str]] = {key: [] for key in candidates}
        done: dict[str, tuple[str, ...]] = {}
        # Each round restores every pending file from its next copy, one driver call per
        # target, so a batch fails over to a second copy only for the files that need it.
        while candidates:
            round_: dict[str, list[tuple[FileJob, Copy]]] = {}
            for key, copies in candidates.items():
                round_.setdefault(copies[0].target, []).append((by_key[key], copies[0]))
            for target, pairs in round_.items():
                handle = handles[target]
                if isinstance(handle, DriverUnavailable):
                    outcomes = {j.key: FileOutcome.failure(j.key, handle.message) for j, _ in pairs}
                else:
                    outcomes = _restore_from(runner, handle, pairs)
                for job, copy in pairs:
                    outcome = outcomes[job.key]
                    if outcome.ok:
                        done[job.key] = job.external_ids
                    else:
                        failures[job.key].append(f"copy {copy.external_id}: {outcome.error}")
            candidates = {k: c[1:] for k, c in candidates.items() if k not in done and len(c) > 1}
        for key, reasons in failures.items():
            if key not in done:
                errors[key].extend(reasons)
                continue
            # Restored from a good copy: ids refused or copies that failed on the way are
            # worth a log line, not a failed restore.
            if errors[key] or reasons:
                log.info(
                    "policy=%s job=%s %s restored; passed over: %s",
                    runner.policy.uuid,
                    runner.job_id,
                    runner.labels.get(key, key),
                    "; ".join(errors[key] + reasons),
                )
            errors[key].clear()
        return done


def _restore_from(
    runner: JobContext, handle: TargetHandle, pairs: list[tuple[FileJob, Copy]]
) -> dict[str, FileOutcome]:
    items = {
        job.key: RestoreItem(
            key=job.key,
            locator=copy.locator,
            destination=job.files[0],
            sha1=job.sha1 or copy.sha1,
            placement=copy.placement,
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
            policy=runner.policy.uuid,
            target=handle.name,
            job_id=runner.job_id,
            items=ready.values(),
            progress=runner.progress,
        )
        return request, ready

    batch = Batch(
        # Journaled by destination: a restore killed mid-file is found again by the next
        # restore to the same path, whose driver may then clear what it left there.
        entries=[JournalEntry(key=i.key, name=i.destination) for i in items.values()],
        prepare=prepare,
        call=handle.instance.restore,
        check=lambda outcome, item: check_sha1(outcome, item.sha1, "restored"),
        record=lambda outcome, _: JournalResult(
            key=outcome.key, ok=outcome.ok, error=outcome.error
        ),
    )
    return runner.run_batch(handle, batch, items)
