"""Where a file's copies are, and which of them the named policy may touch."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from archive_core.driver import Capability
from archive_core.errors import ArchiveCoreError, CatalogError, DriverUnavailable
from archive_core.externalid import ExternalId
from archive_core.jobs.operation import Copy
from archive_core.naming import archive_name

if TYPE_CHECKING:
    from archive_core.jobs.operation import JobContext
    from archive_core.jobs.report import FileJob

log = logging.getLogger("archive_core.jobs")


def locate(
    runner: JobContext, jobs: Sequence[FileJob], errors: dict[str, list[str]]
) -> tuple[Iterable[str], dict[str, list[Copy]]]:
    """The targets holding the jobs' copies, and each usable job's copies; a job with none
    gets the reason in `errors`."""
    located: dict[str, list[Copy]] = {}
    for job in jobs:
        if errors[job.key]:
            continue
        located[job.key] = copies_of(runner, job, errors[job.key])
        if not located[job.key] and not errors[job.key]:
            errors[job.key].append("no archived copy is known for this file")
    return dict.fromkeys(c.target for found in located.values() for c in found), with_placement(
        runner, located
    )


def with_placement(runner: JobContext, located: dict[str, list[Copy]]) -> dict[str, list[Copy]]:
    """The copies, each on a target whose driver declares Capability.PLACEMENT given the
    placement the catalog keeps for it. Read in bulk, once per job; a catalog that cannot be
    read leaves the placement out (the driver finds the copy by its locator) and says so."""
    targets = {c.target for found in located.values() for c in found}
    placed = {name for name in targets if _wants_placement(runner, name)}
    wanting = {
        c.external_id
        for found in located.values()
        for c in found
        if c.placement is None and c.target in placed
    }
    if not wanting:
        return located
    try:
        placements = runner.site.catalog.placements(wanting)
    except CatalogError as exc:
        log.warning(
            "policy=%s job=%s the catalog cannot be read for the placement of %d copies (%s); "
            "their drivers get none",
            runner.policy.uuid,
            runner.job_id,
            len(wanting),
            exc.message,
        )
        return located
    return {
        key: [
            attrs.evolve(c, placement=placements[c.external_id])
            if c.external_id in placements
            else c
            for c in found
        ]
        for key, found in located.items()
    }


def _wants_placement(runner: JobContext, target: str) -> bool:
    try:
        return runner.site.target(target).declares(Capability.PLACEMENT)
    except DriverUnavailable:
        return False


def copies_of(runner: JobContext, job: FileJob, errors: list[str]) -> list[Copy]:
    """Copies named by the FileSet's external ids; the catalog when Portal has none.

    Only copies of this policy count: on one of its targets, or recorded in the catalog
    as made for it (a policy moved to a new target keeps its old copies). Any other id
    is refused with the reason, and nothing is done with it.
    """
    copies: list[Copy] = []
    for text in job.external_ids:
        try:
            ext = ExternalId.parse(text)
        except ArchiveCoreError as exc:
            errors.append(exc.message)
            continue
        problem = foreign(runner, ext, text)
        if problem:
            errors.append(problem)
            continue
        copies.append(Copy(target=ext.target, locator=ext.locator, external_id=text))
    if copies or job.external_ids or not job.files or not job.sha1:
        return copies
    name = archive_name(job.files[0], item_id=job.item_id, sha1=job.sha1)
    for target in runner.policy.targets:
        try:
            found = runner.site.catalog.find_copies(target, [(name, job.sha1)])
        except CatalogError as exc:
            errors.append(
                f"Portal gave no external id for this file, and the catalog, the only other "
                f"place that knows its copies, cannot be read: {exc.message}"
            )
            return []
        copies.extend(
            Copy(
                target=target,
                locator=record.locator,
                external_id=record.external_id,
                sha1=record.sha1,
                placement=record.placement,
            )
            for record in found.values()
        )
    return copies


def foreign(runner: JobContext, ext: ExternalId, text: str) -> str | None:
    """Why the copy `text` names is not this policy's to touch; None when it is."""
    site, policy = runner.site, runner.policy
    named = f"policy {policy.uuid} ({policy.name})"
    if ext.target not in site.config.targets:
        return f"copy {text}: target {ext.target!r} is not configured"
    try:
        handle = site.target(ext.target)
    except DriverUnavailable as exc:
        return f"copy {text}: {exc.message}"
    if handle.scheme != ext.scheme:
        return (
            f"copy {text}: its scheme {ext.scheme!r} is not that of target {ext.target!r} "
            f"(driver {handle.driver_name!r}, scheme {handle.scheme!r}); nothing was done "
            "with it"
        )
    if ext.target in policy.targets:
        return None
    try:
        record = site.catalog.copy(text)
    except CatalogError as exc:
        return (
            f"copy {text} is on target {ext.target!r}, which {named} does not use; "
            f"whether it was made for this policy is in the catalog, which cannot be read "
            f"({exc.message}). Nothing was done with it."
        )
    if record is not None and record.policy == policy.uuid:
        return None
    return (
        f"copy {text} is on target {ext.target!r}, which {named} does not use, and the "
        "catalog does not record it as made for this policy. Nothing was done with it."
    )
