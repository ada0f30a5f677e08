"""Repairing a bad copy from a good one, for policies that say so (`repair = true`).

A scrub that finds a copy reading back wrong, on a policy with another copy of the file on
another of its targets, rewrites the bad copy from the good one, each step an ordinary job
(journaled, audited, checked against the sha1):

1. the good copy is read back (verify): a repair never spreads a copy that is bad too;
2. it is restored into the site's state directory;
3. the bad copy is deleted from its target (the good one is untouched);
4. the restored file is archived again through the policy: the good target finds its copy
   and keeps it, the bad target gets a new one (its external id may differ: the catalog
   records it, and restores through the old id fail over to the other copy);
5. the new copy is read back.

The temporary file is removed whatever happens. A failed step leaves the good copy as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from archive_core.errors import ArchiveCoreError, CatalogError
from archive_core.naming import source_name

if TYPE_CHECKING:
    from archive_core.catalog import CopyRecord
    from archive_core.portal import ArchiveCorePlugin

log = logging.getLogger("archive_core.repair")


class JobFile(NamedTuple):
    """One file as the jobs take it (the shape of Portal's FileSets); the scrub's too."""

    files: tuple[str, ...]
    external_ids: tuple[str, ...]
    item_id: str | None
    sha1: str | None


class RepairFailed(ArchiveCoreError):
    """A bad copy could not be written again; the message says at which step and why."""


def repair(plugin: ArchiveCorePlugin, bad: CopyRecord, *, job: str) -> str:
    """Write `bad` again from a good copy of the same file; the new copy's external id."""
    site = plugin.site()
    policy = site.policy(bad.policy)
    good = _good_copy(site, policy, bad)
    name = source_name(bad.name)
    if name is None:
        raise RepairFailed(f"{bad.name} is not a name archive-core gave a copy; not repaired.")
    folder = Path(tempfile.mkdtemp(prefix="repair-", dir=_scratch(site)))
    try:
        copy = str(folder / name)

        def step(operation: str, file_set: JobFile, what: str) -> Any:
            report = plugin.run(operation, [file_set], policy.uuid, f"{job} repair")
            [result] = report.results
            if not result.ok:
                raise RepairFailed(f"Repairing {bad.external_id} failed {what}: {result.error}")
            return result

        step(
            "verify",
            JobFile((), (good.external_id,), good.item_id, bad.sha1),
            "reading the good copy back",
        )
        step(
            "restore",
            JobFile((copy,), (good.external_id,), good.item_id, bad.sha1),
            "restoring the good copy",
        )
        step(
            "delete",
            JobFile((), (bad.external_id,), bad.item_id, bad.sha1),
            "removing the bad copy",
        )
        archived = step("archive", JobFile((copy,), (), bad.item_id, bad.sha1), "writing it again")
        new = next((e for e in archived.external_ids if _target_of(e) == bad.target), None)
        if new is None:
            raise RepairFailed(
                f"Repairing {bad.external_id}: the archive wrote no copy on target {bad.target}."
            )
        step("verify", JobFile((), (new,), bad.item_id, bad.sha1), "reading the new copy back")
        log.info("repaired %s from %s as %s", bad.external_id, good.external_id, new)
        return new
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _good_copy(site: Any, policy: Any, bad: CopyRecord) -> CopyRecord:
    """Another copy of the file, on another of the policy's targets, not known to be bad."""
    for target in policy.targets:
        if target == bad.target:
            continue
        try:
            found = site.catalog.find_copies(target, [(bad.name, bad.sha1)])
        except CatalogError as exc:
            raise RepairFailed(
                f"The catalog cannot be read to find a good copy: {exc.message}"
            ) from exc
        for record in found.values():
            if record.failure is None:
                return record
    raise RepairFailed(
        f"No good copy of {bad.name} is known on another target of policy {policy.uuid}; "
        f"{bad.external_id} cannot be repaired."
    )


def _scratch(site: Any) -> str:
    folder = os.path.join(site.config.state_dir, "repair")
    os.makedirs(folder, exist_ok=True)
    return folder


def _target_of(external_id: str) -> str:
    from archive_core.externalid import ExternalId

    return ExternalId.parse(external_id).target
