"""The purge interlock: a file counts as archived only once enough of its copies were read back.

Portal deletes the online original as soon as archive() reports a file archived; from then on
the archive holds the only copies. A policy with `verified_copies = K` therefore reports a
file archived only when K of its copies, on distinct targets, are verified: read back and
hashed against Portal's sha1 by the driver's `verify`, or stored by a target whose storage
checks the checksum itself as it stores the bytes (`Capability.TRUSTED_CHECKSUM`). A copy
verified before (by an earlier run, a `verify`, a scrub) counts without being read again.
The copies of a file that falls short stay archived and recorded: they count once verified.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from archive_core.driver import Capability
from archive_core.errors import CatalogError, DriverUnavailable
from archive_core.jobs.checks import check_sha1
from archive_core.jobs.operation import Handles, JobContext
from archive_core.model import CopyRef, VerifyRequest

log = logging.getLogger("archive_core.jobs")


@attrs.frozen(kw_only=True)
class Made:
    """One copy of one file on one target, as the archive left it."""

    key: str
    target: str
    external_id: str
    locator: str
    sha1: str | None  # what the bytes must hash to (Portal's sha1)
    size: int | None
    placement: Any = None
    verified: bool = False  # already: read back before, or checked by its storage


def require_verified(
    runner: JobContext,
    handles: Handles,
    made: Sequence[Made],
    errors: dict[str, list[str]],
) -> None:
    """Verify the copies in `made` that are not verified yet; every file left with fewer than
    the policy's `verified_copies` gets an error saying which copies are missing and why."""
    wanted = runner.policy.verified_copies
    if not wanted:
        return
    made = [m for m in made if not errors.get(m.key)]
    verdicts: dict[str, dict[str, str | None]] = {}  # key -> target -> None (ok) or why not
    todo: dict[str, list[Made]] = {}
    for copy in made:
        if copy.verified:
            verdicts.setdefault(copy.key, {})[copy.target] = None
        else:
            todo.setdefault(copy.target, []).append(copy)
    for target, copies in todo.items():
        for key, why in _verify_on(runner, handles[target], copies).items():
            verdicts.setdefault(key, {})[target] = why
    for key, found in verdicts.items():
        verified = sum(1 for why in found.values() if why is None)
        if verified >= wanted:
            continue
        listed = "; ".join(
            f"target {target}: {why or 'verified'}" for target, why in sorted(found.items())
        )
        errors[key].append(
            f"{wanted} verified {_copies(wanted)} {'is' if wanted == 1 else 'are'} required "
            f"before Portal may purge the "
            f"original, and {verified} {'was' if verified == 1 else 'were'} verified ({listed}). "
            "The copies made are kept and count once verified: archive the file again, or "
            "run `archive-core verify` on the policy first."
        )


def _copies(count: int) -> str:
    return "copy" if count == 1 else "copies"


def _verify_on(runner: JobContext, handle: Any, copies: Sequence[Made]) -> Mapping[str, str | None]:
    """Read each copy back on its target: file key -> None when verified, else why not."""
    if isinstance(handle, DriverUnavailable):
        return {c.key: handle.message for c in copies}
    if not handle.declares(Capability.VERIFY):
        why = (
            f"its driver {handle.driver_name} cannot read copies back (it declares no verify "
            "capability), and its storage does not check checksums itself"
        )
        return {c.key: why for c in copies}
    placed = handle.declares(Capability.PLACEMENT)
    refs = {
        str(n): CopyRef(
            key=str(n),
            locator=c.locator,
            sha1=c.sha1,
            size=c.size,
            placement=c.placement if placed else None,
        )
        for n, c in enumerate(copies)
    }
    of = {str(n): c for n, c in enumerate(copies)}
    request = VerifyRequest(
        policy=runner.policy.uuid, target=handle.name, job_id=runner.job_id, items=refs.values()
    )
    results: dict[str, str | None] = {}
    verified: list[str] = []
    failed: dict[str, str] = {}
    for outcome in runner.drive(handle, handle.instance.verify, request, refs):
        checked = check_sha1(outcome, refs[outcome.key].sha1, "read back")
        copy = of[outcome.key]
        if checked.ok:
            results[copy.key] = None
            verified.append(copy.external_id)
        else:
            results[copy.key] = f"reading the copy back failed: {checked.error}"
            if not checked.retryable:  # the copy's own fault, not the way to it
                failed[copy.external_id] = checked.error or "failed"
    log.info(
        "policy=%s job=%s target %s: %d of %d new copies read back and verified",
        runner.policy.uuid,
        runner.job_id,
        handle.name,
        len(verified),
        len(copies),
    )
    record_verification(runner, verified, failed)
    return results


def record_verification(runner: JobContext, verified: list[str], failed: dict[str, str]) -> None:
    """The catalog learns which copies read back right (now) and which did not (and why)."""
    try:
        runner.site.catalog.mark_verified(verified)
        runner.site.catalog.mark_failed(failed)
    except CatalogError as exc:
        # They were read back in this job, and count for it; a later job reads them again.
        log.warning(
            "policy=%s job=%s the catalog could not record the verification of %d copies: %s",
            runner.policy.uuid,
            runner.job_id,
            len(verified) + len(failed),
            exc.message,
        )
