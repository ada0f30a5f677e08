"""Scrubbing: reading archived copies back, oldest verification first, within a budget.

Copies rot unnoticed unless somebody reads them. `scrub` takes each target's copies in the
order they were last verified (never verified first, then the longest ago), and reads them back
through the verify operation of their policy (the driver's `verify`, checked against the
recorded sha1) in small batches, until the target's budget of bytes or seconds for this run is
spent. Each batch's result is in the catalog before the next starts (`last_verified`, or the
failure), so a scrub that is killed resumes where it stopped: the next run starts with the
copies this one did not reach. A copy that reads back wrong is recorded on its row and reported
through the `archive_core_copy_bad` hook and the scrub's report.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from archive_core.audit import record_quietly
from archive_core.errors import ArchiveCoreError, LeaseHolderAlive, LeaseTimeout
from archive_core.repair import JobFile

if TYPE_CHECKING:
    from archive_core.catalog import CopyRecord
    from archive_core.portal import ArchiveCorePlugin

log = logging.getLogger("archive_core.scrub")

#: Copies read back per verify call: each batch is recorded before the next one starts.
BATCH_FILES = 50
#: The scrub lease of a target; renewed while the scrub runs, free this long after a crash.
LEASE_SECONDS = 120.0


@attrs.frozen(kw_only=True)
class ScrubBudget:
    """How much one run may read on each target; None: no limit of that kind. A copy larger
    than the whole byte budget is read when it is the first of its target's run, so that no
    copy is left out for good."""

    max_bytes: int | None = None
    max_seconds: float | None = None


@attrs.frozen(kw_only=True)
class BadCopy:
    external_id: str
    policy: str
    error: str
    repaired: str | None = None  # the new copy's external id, when the policy repairs
    repair_error: str | None = None


@attrs.frozen(kw_only=True)
class TargetScrub:
    """What one run did on one target."""

    target: str
    verified: int = 0
    bytes: int = 0
    bad: tuple[BadCopy, ...] = ()
    left: int = 0  # copies due that the budget left for the next run
    stopped: str | None = None  # why the run stopped before every due copy was read

    def as_json(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self, recurse=False, filter=lambda a, _v: a.name != "bad"),
            "bad": [attrs.asdict(b) for b in self.bad],
        }


Progress = Callable[[str, TargetScrub], None]


def scrub(
    plugin: ArchiveCorePlugin,
    *,
    budget: ScrubBudget,
    targets: Sequence[str] | None = None,
    policy: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> list[TargetScrub]:
    """Scrub each target (default: every configured one) within `budget`; one result each."""
    site = plugin.site()
    names = list(targets) if targets else sorted(site.config.targets)
    unknown = [n for n in names if n not in site.config.targets]
    if unknown:
        raise ArchiveCoreError(
            f"No target named {', '.join(map(repr, unknown))} is configured (known: "
            f"{', '.join(sorted(site.config.targets)) or 'none'})."
        )
    results = []
    for name in names:
        run = functools.partial(
            _scrub_target,
            plugin,
            name,
            budget=budget,
            policy=policy,
            clock=clock,
            progress=progress,
        )
        try:
            results.append(_leased(site.catalog.leases, name, run))
        except (LeaseTimeout, LeaseHolderAlive) as exc:
            results.append(
                TargetScrub(target=name, stopped=f"another scrub runs on it: {exc.message}")
            )
    return results


def _leased(leases: Any, target: str, run: Callable[..., TargetScrub]) -> TargetScrub:
    """`run` holding the target's scrub lease: one scrub per target at a time, across workers
    and hosts (two would read the same copies). The lease of a scrub whose process died (a
    kill) is broken at once: a scrub holds nothing but its place in the order."""
    resource = f"scrub/{target}"

    def holding() -> TargetScrub:
        with leases.hold(resource, ttl=LEASE_SECONDS, purpose=f"scrub of target {target}") as held:
            return run(still_held=held.check)

    try:
        return holding()
    except LeaseTimeout:
        # LeaseHolderAlive when the holder runs (or on another host): the caller says so.
        leases.break_dead(resource, proof="a scrub leaves nothing behind to clean up")
    return holding()


def _scrub_target(
    plugin: ArchiveCorePlugin,
    target: str,
    *,
    budget: ScrubBudget,
    policy: str | None,
    clock: Callable[[], float],
    progress: Progress | None,
    still_held: Callable[[], None],
) -> TargetScrub:
    catalog = plugin.site().catalog
    started, began = clock(), catalog.now()
    done = TargetScrub(target=target)
    while True:
        still_held()  # LeaseLost when another scrub took the target over
        if budget.max_seconds is not None and clock() - started >= budget.max_seconds:
            return _left(done, catalog, target, policy, began, f"{budget.max_seconds:g} s spent")
        due = catalog.scrub_order(target=target, policy=policy, before=began, limit=BATCH_FILES)
        if not due:
            return done
        batch = _within(due, done, budget)
        if not batch:
            return _left(done, catalog, target, policy, began, f"{budget.max_bytes} bytes read")
        done = _verify(plugin, target, batch, done, began)
        if progress is not None:
            progress(target, done)
        if done.stopped:
            return _left(done, catalog, target, policy, began, None)


def _within(due: Iterable[CopyRecord], done: TargetScrub, budget: ScrubBudget) -> list:
    """The first copies of `due` that the byte budget still holds."""
    if budget.max_bytes is None:
        return list(due)
    taken, spent = [], done.bytes
    for record in due:
        size = record.size or 0
        first = done.verified == 0 and not done.bad and not taken
        if spent + size > budget.max_bytes and not first:
            break
        taken.append(record)
        spent += size
    return taken


def _verify(
    plugin: ArchiveCorePlugin,
    target: str,
    batch: list[CopyRecord],
    done: TargetScrub,
    began: dt.datetime,
) -> TargetScrub:
    """Read one batch back, policy by policy; what the run has done with it."""
    by_policy: dict[str, list[CopyRecord]] = {}
    for record in batch:
        by_policy.setdefault(record.policy, []).append(record)
    verified, size, bad = done.verified, done.bytes, list(done.bad)
    catalog = plugin.site().catalog
    for policy, records in by_policy.items():
        copies = [JobFile((), (r.external_id,), r.item_id, r.sha1) for r in records]
        try:
            report = plugin.run("verify", copies, policy, f"scrub {target}")
        except ArchiveCoreError as exc:
            # The policy is gone from the config, or its target cannot verify.
            return attrs.evolve(
                done,
                verified=verified,
                bytes=size,
                bad=tuple(bad),
                stopped=f"policy {policy} cannot be verified: {exc.message}",
            )
        for record, result in zip(records, report.results, strict=True):
            if result.ok:
                verified += 1
                size += record.size or 0
                continue
            now = catalog.copy(record.external_id)
            if now is None or now.last_failure is None or now.last_failure < began:
                # Not the copy's own fault (the target did not answer, a network error): the
                # rest of the target waits for a later run rather than being hammered.
                return attrs.evolve(
                    done,
                    verified=verified,
                    bytes=size,
                    bad=tuple(bad),
                    stopped=f"target {target} could not be read: {result.error}",
                )
            plugin.site().hooks.notify("archive_core_copy_bad", copy=now, error=now.failure or "")
            bad.append(_repaired(plugin, now, policy, target))
    return attrs.evolve(done, verified=verified, bytes=size, bad=tuple(bad))


def _repaired(plugin: ArchiveCorePlugin, record: CopyRecord, policy: str, target: str) -> BadCopy:
    """The bad copy as the report shows it, written again first when its policy repairs."""
    from archive_core.repair import repair

    bad = BadCopy(external_id=record.external_id, policy=policy, error=record.failure or "")
    try:
        if not plugin.site().policy(policy).repair:
            return bad
        new = repair(plugin, record, job=f"scrub {target}")
    except ArchiveCoreError as exc:  # RepairFailed, or the policy is no longer configured
        log.error("scrub of target %s: %s", target, exc.message)
        bad = attrs.evolve(bad, repair_error=exc.message)
    else:
        bad = attrs.evolve(bad, repaired=new)
    record_quietly(
        plugin.site().catalog,
        log,
        actor=plugin.actor or f"scrub of target {target}",
        operation="repair",
        policy=policy,
        subject={"bad": bad.external_id, "error": bad.error, "new": bad.repaired},
        outcome="repaired" if bad.repaired else f"not repaired: {bad.repair_error}",
    )
    return bad


def _left(
    done: TargetScrub,
    catalog: Any,
    target: str,
    policy: str | None,
    began: dt.datetime,
    budget: str | None,
) -> TargetScrub:
    """The run on this target ends: how many due copies it leaves, and why."""
    left = catalog.scrub_count(target=target, policy=policy, before=began)
    why = done.stopped or (f"budget reached ({budget})" if left else None)
    return attrs.evolve(done, left=left, stopped=why)
