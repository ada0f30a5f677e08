"""Archive: each file to every target of its policy, a copy recorded only once confirmed."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from archive_core import manifests
from archive_core.catalog import CopyRecord, JournalEntry, JournalResult
from archive_core.driver import Capability
from archive_core.errors import ArchiveCoreError, CatalogError, DriverUnavailable
from archive_core.externalid import ExternalId
from archive_core.jobs.checks import check_archived, content_sha1
from archive_core.jobs.operation import Batch, Copy, Handles, JobContext
from archive_core.jobs.verified import Made, require_verified
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    FileOutcome,
    ManifestRequest,
    StatRequest,
)
from archive_core.naming import archive_name

if TYPE_CHECKING:
    from archive_core.jobs.report import FileJob
    from archive_core.site import TargetHandle

log = logging.getLogger("archive_core.jobs")


class Archive:
    name = "archive"
    capability = Capability.ARCHIVE
    journal_required = True

    def targets(
        self, runner: JobContext, jobs: Sequence[FileJob], errors: dict[str, list[str]]
    ) -> tuple[Iterable[str], dict[str, list[Copy]]]:
        return runner.policy.targets, {}

    def step(
        self,
        runner: JobContext,
        jobs: Sequence[FileJob],
        handles: Handles,
        located: Mapping[str, list[Copy]],
        errors: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        items, hashed = _items(jobs, errors)
        copies: dict[str, list[str]] = {item.key: [] for item in items}
        made: list[Made] = []
        sha1_of = {item.key: item.sha1 for item in items}
        for handle in handles.values():
            pending = [i for i in items if not errors[i.key]]
            if isinstance(handle, DriverUnavailable):
                for item in pending:
                    errors[item.key].append(handle.message)
                continue
            trusted = handle.declares(Capability.TRUSTED_CHECKSUM)
            for key, (outcome, external_id, verified) in _archive_to(
                runner, handle, pending, hashed
            ).items():
                if outcome.ok and external_id:
                    copies[key].append(external_id)
                    made.append(
                        Made(
                            key=key,
                            target=handle.name,
                            external_id=external_id,
                            locator=outcome.locator or "",
                            sha1=sha1_of[key],
                            size=outcome.size,
                            placement=outcome.placement,
                            verified=verified or (trusted and not outcome.reused),
                        )
                    )
                else:
                    errors[key].append(f"target {handle.name}: {outcome.error}")
        require_verified(runner, handles, made, errors)
        return {key: tuple(ids) for key, ids in copies.items()}


def _items(
    jobs: Sequence[FileJob], errors: dict[str, list[str]]
) -> tuple[list[ArchiveItem], set[str]]:
    """The driver's items, and the keys whose sha1 the core computed (Portal gave none)."""
    items: list[ArchiveItem] = []
    hashed: set[str] = set()
    for job in jobs:
        if errors[job.key]:
            continue
        if not job.files:
            errors[job.key].append("Portal gave no source path for this file")
            continue
        sha1 = job.sha1
        if sha1 is None:
            try:
                sha1 = content_sha1(job.files)
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
    return items, hashed


def _archive_to(
    runner: JobContext, handle: TargetHandle, items: list[ArchiveItem], hashed: set[str]
) -> dict[str, tuple[FileOutcome, str | None, bool]]:
    """Archive `items` to one target: each key's outcome, when ok its external id, and
    whether the copy was verified already (one remembered from before, read back since)."""
    results: dict[str, tuple[FileOutcome, str | None, bool]] = {}
    try:
        known = runner.site.catalog.find_copies(handle.name, [(i.name, i.sha1) for i in items])
    except CatalogError as exc:
        failure = f"not archived: the catalog cannot be read ({exc.message})"
        return {
            i.key: (FileOutcome.failure(i.key, failure, retryable=True), None, False) for i in items
        }
    confirmed = _confirm(runner, handle, [(i, known[i.name]) for i in items if i.name in known])
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
            placement=record.placement,
        )
        results[item.key] = (outcome, record.external_id, record.last_verified is not None)
        runner.file_done(outcome)
    if not todo:
        return results
    log.info(
        "policy=%s job=%s archiving %d files to target %s (%d already archived there)",
        runner.policy.uuid,
        runner.job_id,
        len(todo),
        handle.name,
        len(results),
    )
    by_key = {i.key: i for i in todo}
    id_of = ExternalId.formatter(scheme=handle.scheme, target=handle.name)
    created = runner.now()

    def prepare(abandoned: Mapping[str, tuple[str, ...]]):
        # evolve() costs more than the rest of a small file's core work: only where needed.
        items = [
            attrs.evolve(i, abandoned_by=abandoned[i.name]) if i.name in abandoned else i
            for i in todo
        ]
        request = ArchiveRequest(
            policy=runner.policy.uuid,
            target=handle.name,
            job_id=runner.job_id,
            items=items,
            progress=runner.progress,
        )
        return request, {i.key: i for i in items}

    def check(outcome: FileOutcome, item: ArchiveItem) -> FileOutcome:
        checked = check_archived(outcome, item)
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
    recorded: list[CopyRecord] = []

    def record(outcome: FileOutcome, item: ArchiveItem) -> JournalResult:
        copy = None
        if outcome.ok:
            locator = outcome.locator or ""
            external_ids[outcome.key] = external_id = id_of(locator)
            copy = CopyRecord(
                policy=runner.policy.uuid,
                target=handle.name,
                external_id=external_id,
                locator=locator,
                name=item.name,
                item_id=item.item_id,
                sha1=outcome.sha1,
                sha256=outcome.sha256,
                size=outcome.size,
                created=created,
                placement=outcome.placement,
            )
            recorded.append(copy)
        return JournalResult(key=outcome.key, ok=outcome.ok, error=outcome.error, copy=copy)

    batch = Batch(
        entries=[JournalEntry(key=i.key, name=i.name) for i in todo],
        prepare=prepare,
        call=handle.instance.archive,
        check=check,
        record=record,
    )
    for key, outcome in runner.run_batch(handle, batch, by_key).items():
        results[key] = (outcome, external_ids.get(key) if outcome.ok else None, False)
    # The copies the catalog holds now (a result it failed to record does not count).
    done = {ext for key, (outcome, ext, _) in results.items() if outcome.ok and key in by_key}
    write_manifest(runner, handle, [c for c in recorded if c.external_id in done], created)
    return results


def write_manifest(
    runner: JobContext, handle: TargetHandle, copies: list[CopyRecord], created: dt.datetime
) -> None:
    """The batch's new copies described beside them on the target (drivers that declare
    `manifest`). A manifest that cannot be written is logged: the copies are archived and in
    the catalog; only a rebuild from the target would have to go by their names."""
    if not copies or not handle.declares(Capability.MANIFEST):
        return
    batch = f"{_safe(runner.job_id)}-{uuid.uuid4().hex[:8]}"
    text = manifests.render(
        manifests.Manifest(
            target=handle.name,
            policy=runner.policy.uuid,
            batch=batch,
            created=created,
            entries=tuple(manifests.entries_for(copies)),
        )
    )
    request = ManifestRequest(
        policy=runner.policy.uuid,
        target=handle.name,
        name=manifests.manifest_name(batch, created),
        text=text,
        locators=[c.locator for c in copies],
    )
    try:
        handle.instance.write_manifest(request)
    except Exception as exc:  # any driver's failure: the copies stand without it
        log.error(
            "policy=%s job=%s target %s: the manifest of %d new copies could not be written: %s",
            runner.policy.uuid,
            runner.job_id,
            handle.name,
            len(copies),
            getattr(exc, "message", None) or exc,
        )


def _safe(text: str) -> str:
    """A job id as a file name may hold it."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)[:64] or "job"


def _confirm(
    runner: JobContext, handle: TargetHandle, known: list[tuple[ArchiveItem, CopyRecord]]
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
            runner.policy.uuid,
            runner.job_id,
            handle.driver_name,
            len(known),
            handle.name,
        )
        return {}
    placed = handle.declares(Capability.PLACEMENT)
    refs = {
        item.key: CopyRef(
            key=item.key,
            locator=rec.locator,
            sha1=rec.sha1,
            size=rec.size,
            placement=rec.placement if placed else None,
        )
        for item, rec in known
    }
    records = {item.key: rec for item, rec in known}
    request = StatRequest(
        policy=runner.policy.uuid, target=handle.name, job_id=runner.job_id, items=refs.values()
    )
    confirmed: dict[str, CopyRecord] = {}
    missing = 0
    for outcome in runner.drive(handle, stat, request, refs):
        rec = records[outcome.key]
        same_sha1 = not outcome.sha1 or outcome.sha1.lower() == rec.sha1
        if outcome.ok and rec.size is not None and outcome.size == rec.size and same_sha1:
            confirmed[outcome.key] = rec
            continue
        missing += 1
        log.info(
            "policy=%s job=%s target %s: the catalog's copy %s is not confirmed (%s); "
            "writing it again",
            runner.policy.uuid,
            runner.job_id,
            handle.name,
            rec.locator,
            outcome.error or f"the target has {outcome.size} bytes there, the catalog {rec.size}",
        )
    if missing:
        log.warning(
            "policy=%s job=%s target %s: %d copies the catalog remembers are missing or "
            "differ on the target; they are written again",
            runner.policy.uuid,
            runner.job_id,
            handle.name,
            missing,
        )
    return confirmed
