"""Rebuilding a lost catalog's copies of one target from what the target itself holds.

The target's manifests (see `archive_core.manifests`) give each copy back with everything the
catalog had: policy, item id, name, size, sha1, sha256, time, external id and placement. A
manifest that was cut off or edited is refused whole and reported. A copy no trusted manifest
describes is taken by its name alone (`<stem>_<item_id>_<sha1><ext>` gives item id and sha1,
the listing its size; no sha256), for the policy given or the only one using the target. Only
copies the target lists now are recorded: the catalog never promises a copy that is gone. A
catalog that already records copies on the target is left alone unless the rebuild is told to
replace them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import attrs

from archive_core import manifests
from archive_core.catalog import CopyRecord
from archive_core.driver import Capability
from archive_core.errors import ArchiveCoreError
from archive_core.externalid import ExternalId
from archive_core.naming import parse_archive_name

if TYPE_CHECKING:
    from archive_core.site import Site

log = logging.getLogger("archive_core.rebuild")


@attrs.frozen(kw_only=True)
class RebuildReport:
    target: str
    from_manifests: int
    from_names: int
    replaced: int  # rows the catalog had for the target before
    refused: tuple[str, ...]  # manifests not trusted, and why
    skipped: tuple[str, ...]  # copies left out, and why

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def rebuild(
    site: Site, target: str, *, policy: str | None = None, replace: bool = False, actor: str
) -> RebuildReport:
    handle = site.target(target)
    if not handle.declares(Capability.MANIFEST):
        raise ArchiveCoreError(
            f"Target {target}'s driver {handle.driver_name} keeps no manifests and cannot list "
            "its copies: its catalog entries cannot be rebuilt from the target."
        )
    catalog = site.catalog
    # Counted, not read: a target may hold millions of copies.
    existing = sum(row.copies for row in catalog.summary() if row.target == target)
    if existing and not replace:
        raise ArchiveCoreError(
            f"The catalog already records {existing} copies on target {target}; a rebuild "
            "would overwrite them. Give --force to replace them with what the target holds."
        )
    listed = {c.locator: c for c in handle.instance.list_copies()}
    records: dict[str, CopyRecord] = {}
    refused: list[str] = []
    skipped: list[str] = []
    for stored in handle.instance.read_manifests():
        try:
            manifest = manifests.parse(stored.text, name=stored.name)
        except manifests.ManifestRefused as exc:
            refused.append(str(exc))
            continue
        if manifest.target != target:
            refused.append(f"manifest {stored.name} describes target {manifest.target}")
            continue
        for entry in manifest.entries:
            found = listed.get(entry.locator)
            if found is None:
                skipped.append(f"{entry.locator}: in manifest {stored.name}, not on the target")
                continue
            if entry.size is not None and found.size != entry.size:
                skipped.append(
                    f"{entry.locator}: {found.size} bytes on the target, {entry.size} in "
                    f"manifest {stored.name}; taken by its name"
                )
                continue
            records[entry.locator] = CopyRecord(
                policy=manifest.policy,
                target=target,
                external_id=entry.external_id,
                locator=entry.locator,
                name=entry.name,
                item_id=entry.item_id,
                sha1=entry.sha1,
                sha256=entry.sha256,
                size=entry.size,
                created=entry.time,
                placement=entry.placement,
            )
    from_manifests = len(records)
    by_name = [c for locator, c in sorted(listed.items()) if locator not in records]
    owner = (policy or _only_policy(site, target)) if by_name else None
    id_of = ExternalId.formatter(scheme=handle.scheme, target=target)
    now = catalog.now()
    for copy in by_name:
        parsed = parse_archive_name(copy.locator)
        if parsed is None:
            skipped.append(f"{copy.locator}: not a name archive-core gives a copy")
            continue
        if owner is None:
            skipped.append(
                f"{copy.locator}: several policies use target {target}; give --policy to say "
                "whose copies the unlisted ones are"
            )
            continue
        item_id, sha1 = parsed
        records[copy.locator] = CopyRecord(
            policy=owner,
            target=target,
            external_id=id_of(copy.locator),
            locator=copy.locator,
            name=os.path.basename(copy.locator),
            item_id=item_id,
            sha1=sha1,
            sha256=None,
            size=copy.size,
            created=now,
        )
    replaced = catalog.replace_copies(target, list(records.values()))
    report = RebuildReport(
        target=target,
        from_manifests=from_manifests,
        from_names=len(records) - from_manifests,
        replaced=replaced,
        refused=tuple(refused),
        skipped=tuple(skipped),
    )
    for why in refused:
        log.warning("rebuild of target %s: %s", target, why)
    catalog.audit.record(
        actor=actor,
        operation="rebuild",
        policy=policy,
        subject={"target": target, **report.as_json()},
        outcome=f"{len(records)} copies recorded, {len(refused)} manifests refused",
    )
    return report


def _only_policy(site: Site, target: str) -> str | None:
    using = [p.uuid for p in site.policies() if target in p.targets]
    return using[0] if len(using) == 1 else None
