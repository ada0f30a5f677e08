"""One kill trial, start to end: build, run, kill, run again, check; and a run of many."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from archive_core.testing.fileset import FileSet
from tests.killrun.checks import archived_state_problems, copies_problems, open_intent_problems
from tests.killrun.disk import count_entries, scan, sha1_of
from tests.killrun.plan import TARGETS, KillPoint, TrialPlan
from tests.killrun.processes import (
    RUN_SECONDS,
    WorkerRun,
    await_exit,
    child_pids,
    finish_worker,
    is_stager,
    run_worker,
    start_worker,
)
from tests.killrun.site import (
    Databases,
    JournalCounter,
    Site,
    as_file_sets,
    build_batch,
    build_site,
    catalog_copies,
    expected_locator,
    write_manifest,
)
from tests.killrun.text import found, short
from tests.pgserver import PostgresServer

#: How long a staging process orphaned by its parent's kill may live on (it should finish
#: the task it holds and exit when it finds its answer pipe gone).
ORPHAN_SECONDS = 60.0
#: Shortest pause between two looks at a kill point's progress.
_POLL_PAUSE = 0.002


@attrs.frozen(kw_only=True)
class TrialReport:
    plan: TrialPlan
    outcome: str  # killed | finished-before-kill | no-child-to-kill | setup-failed
    violations: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float
    phases: tuple[tuple[str, float], ...] = ()  # each worker run, for where the time goes

    def line(self) -> str:
        verdict = "ok" if not self.violations else f"{len(self.violations)} VIOLATIONS"
        return f"{self.plan.describe()} outcome={self.outcome} {verdict} ({self.seconds:.1f} s)"


class Trial:
    """Runs one plan in `directory`; collects violations as it goes (never stops at one)."""

    def __init__(self, plan: TrialPlan, directory: Path, databases: Databases) -> None:
        self.plan = plan
        self.directory = directory
        self.databases = databases
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.rng = random.Random(plan.seed ^ 0xC0FFEE)
        self._runs = itertools.count(1)
        self.phases: list[tuple[str, float]] = []

    # --- the flow ----------------------------------------------------------------------------

    def run(self) -> TrialReport:
        started = time.monotonic()
        plan = self.plan
        self.batch = build_batch(self.directory / "online", plan)
        self.by_locator = {expected_locator(fs): fs for fs in self.batch}
        self.site = build_site(
            self.directory / "site", self.databases.new(plan.backend, self.directory / "site")
        )
        self.manifest = write_manifest(self.directory / "batch.json", self.batch)
        job = f"job-{plan.seed}-{plan.operation}"
        outcome = "setup-failed"
        expected_ids = None
        if plan.operation == "archive":
            expected_ids = self._reference_ids()
            if expected_ids is not None:
                outcome = self._archive_trial(job, expected_ids)
        else:
            archived = self._archive("setup", f"job-{plan.seed}-setup", None)
            if archived is not None:
                expected_ids = _ids_by_item(archived)
                if plan.operation == "restore":
                    outcome = self._restore_trial(job, archived)
                else:
                    outcome = self._delete_trial(job, archived)
                # The archive trial's re-run checks its intents with everything else it left.
                self.violations += open_intent_problems(f"{plan.operation} re-run", self.site)
        if expected_ids is not None:
            self._rearchive("re-archive", f"job-{plan.seed}-rearchive", expected_ids)
        return TrialReport(
            plan=plan,
            outcome=outcome,
            violations=tuple(self.violations),
            notes=tuple(self.notes),
            seconds=time.monotonic() - started,
            phases=tuple(self.phases),
        )

    def _archive_trial(self, job: str, expected_ids: dict[str, set[str]]) -> str:
        run, outcome, orphans = self._killed_run(self.manifest, "archive", job, None)
        self._check_copies_whole_after_kill()
        if self.plan.kill_target == "child":
            self._check_survivor_of_child_kill(run)
        self._rearchive("re-run", self._rerun_job(job), expected_ids, orphans=orphans)
        return outcome

    def _restore_trial(self, job: str, archived: list[FileSet]) -> str:
        destinations = self.directory / "restored"
        if self.rng.random() < 0.5:  # Portal's folder may exist already, or not
            for folder in {Path(fs.files[0]).parent.name for fs in self.batch}:
                (destinations / folder).mkdir(parents=True, exist_ok=True)
        wanted = [
            fs._replace(files=[str(destinations / Path(fs.files[0]).parent.name / f"r_{n}.mxf")])
            for n, fs in enumerate(archived)
        ]
        manifest = write_manifest(self.directory / "restore.json", wanted)
        _, outcome, _ = self._killed_run(manifest, "restore", job, destinations)
        self._check_destinations("after the kill", wanted, partial_ok=True)
        result = self._rerun(manifest, "restore", job, answer="raised")
        if result is not None and result["raised"] is not None:
            self._violate(f"restore re-run raised: {short(result['raised'])}")
        self._check_destinations("restore re-run", wanted, partial_ok=False)
        self.violations += found(
            "restore re-run",
            scan(destinations).temporaries,
            "temporary files left in the destination folders",
        )
        return outcome

    def _delete_trial(self, job: str, archived: list[FileSet]) -> str:
        manifest = write_manifest(self.directory / "delete.json", archived)
        _, outcome, _ = self._killed_run(manifest, "delete", job, None)
        self.notes += found(
            "after the kill",
            self._stale_rows(),
            "catalog rows name copies already gone from their root (the delete ran ahead of "
            "its journal)",
        )
        what = "delete re-run"
        result = self._rerun(manifest, "delete", job, answer="deleted")
        if result is not None:
            deleted = {fs["item_id"] for fs in result["deleted"]}
            missing = [fs.item_id for fs in archived if fs.item_id not in deleted]
            self.violations += found(
                what, missing, f"of {len(archived)} FileSets not reported deleted"
            )
        for target, root in self.site.roots.items():
            tree = scan(root)
            empty = [d.relative_to(root) for d in tree.directories if not any(d.iterdir())]
            self.violations += found(what, tree.files, f"copies left on {target}")
            self.violations += found(what, tree.temporaries, f"temporary files left on {target}")
            self.violations += found(what, empty, f"empty layout directories left on {target}")
        rows = [r.external_id for r in catalog_copies(self.site)]
        self.violations += found(what, rows, "catalog rows left for deleted copies")
        return outcome

    # --- runs --------------------------------------------------------------------------------

    def _run(
        self, manifest: Path, operation: str, job_id: str, site: Site | None = None
    ) -> WorkerRun:
        log = self.directory / f"run{next(self._runs)}-{operation}"
        started = time.monotonic()
        run = run_worker(site or self.site, manifest, operation, job_id, log)
        self.phases.append((f"{operation} {job_id}", time.monotonic() - started))
        return run

    def _rerun_job(self, job: str) -> str:
        return job if self.plan.rerun_job == "same" else f"{job}-retry"

    def _rerun(
        self, manifest: Path, operation: str, job: str, *, answer: str
    ) -> dict[str, Any] | None:
        """Run the killed `operation` again to completion, as Celery would: its result, or
        None (and a violation) when it printed none holding `answer`."""
        run = self._run(manifest, operation, self._rerun_job(job))
        if run.result is None or answer not in run.result:
            self._violate(f"{operation} re-run: no result ({run.summary()})")
            return None
        return run.result

    def _reference_ids(self) -> dict[str, set[str]] | None:
        """External ids of an uninterrupted run of the same batch in a separate site."""
        directory = self.directory / "reference"
        site = build_site(directory, self.databases.new(self.plan.backend, directory))
        run = self._run(self.manifest, "archive", f"job-{self.plan.seed}-reference", site)
        archived = self._archive_result("reference run", run)
        if archived is None:
            return None
        return _ids_by_item(archived)

    def _archive(
        self,
        what: str,
        job_id: str,
        expected_ids: dict[str, set[str]] | None,
        *,
        orphans: Sequence[int] = (),
    ) -> list[FileSet] | None:
        """Archive the batch to completion; check Portal's answer (and ids, when known)."""
        run = self._run(self.manifest, "archive", job_id)
        survivors = await_exit(orphans, seconds=ORPHAN_SECONDS)
        if survivors:
            self._violate(
                f"staging processes {survivors} orphaned by the kill still ran "
                f"{ORPHAN_SECONDS:g} s later"
            )
        archived = self._archive_result(what, run)
        if archived is not None and expected_ids is not None:
            self._check_ids(what, archived, expected_ids)
        return archived

    def _archive_result(self, what: str, run: WorkerRun) -> list[FileSet] | None:
        result = run.result
        if result is None or "archived" not in result:
            self._violate(f"{what}: archive gave no result ({run.summary()})")
            return None
        archived = as_file_sets(result["archived"])
        not_archived = result["not_archived"]
        if not_archived or result["error"]:
            self._violate(
                f"{what}: {len(not_archived)} of {len(self.batch)} FileSets not archived; "
                f"error: {short(result['error'])}"
            )
        if len(archived) + len(not_archived) != len(self.batch):
            self._violate(
                f"{what}: {len(archived)} archived + {len(not_archived)} not archived for a "
                f"batch of {len(self.batch)}"
            )
        wrong = [fs.item_id for fs in archived if len(set(fs.external_ids)) != len(TARGETS)]
        self.violations += found(
            what, wrong, "archived FileSets without one external id per target"
        )
        return archived

    def _rearchive(
        self,
        what: str,
        job_id: str,
        expected_ids: dict[str, set[str]],
        *,
        orphans: Sequence[int] = (),
    ) -> None:
        """Whatever happened, archiving the batch again works and names the same copies."""
        archived = self._archive(what, job_id, expected_ids, orphans=orphans)
        if archived is not None:
            self.violations += archived_state_problems(what, self.site, archived)

    def _killed_run(
        self, manifest: Path, operation: str, job_id: str, destinations: Path | None
    ) -> tuple[WorkerRun, str, list[int]]:
        """Run `operation` and SIGKILL the plan's target at its kill point.

        Returns the run, the outcome, and the staging processes the kill orphaned.
        """
        plan = self.plan
        log = self.directory / f"run{next(self._runs)}-{operation}-killed"
        journal = JournalCounter(self.site.catalog_url, job_id)
        probe = self._probe(plan.kill_point, journal, destinations)
        deadline = time.monotonic() + RUN_SECONDS
        started = time.monotonic()
        process = start_worker(self.site, manifest, operation, job_id, log)
        orphans: list[int] = []
        outcome = "finished-before-kill"
        reached = False
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if not reached:
                    looked = time.monotonic()
                    if probe() < plan.kill_point.count:
                        # Pause as long as the look took: a scan of thousands of folders
                        # must not take a core from the worker it is watching.
                        time.sleep(max(_POLL_PAUSE, time.monotonic() - looked))
                        continue
                reached = True
                children = [c for c in child_pids(process.pid) if is_stager(c)]
                if plan.kill_target == "child":
                    if not children:
                        time.sleep(_POLL_PAUSE)  # between targets: the next pool is starting
                        continue
                    victim = self.rng.choice(children)
                    os.kill(victim, signal.SIGKILL)
                    outcome = "killed"
                    self.notes.append(f"killed staging process {victim} of {len(children)}")
                else:
                    process.send_signal(signal.SIGKILL)
                    orphans = children
                    outcome = "killed"
                break
        finally:
            journal.close()
        if reached and outcome != "killed":
            outcome = "no-child-to-kill"  # the point came between two targets' pools
        run = finish_worker(process, log, deadline=deadline)
        self.phases.append((f"{operation} {job_id} (killed)", time.monotonic() - started))
        if run.timed_out:
            self._violate(f"{operation} (the run to be killed) hung: {run.summary()}")
        if outcome == "killed" and plan.kill_target == "parent":
            final, hidden = count_entries(self.site.roots.values())
            where = f"{final} final-named and {hidden} hidden files on the roots"
            if destinations is not None:
                final, hidden = count_entries([destinations])
                where += f", {final} and {hidden} at the restore destinations"
            self.notes.append(f"at the kill: {where}; {len(orphans)} staging processes orphaned")
        return run, outcome, orphans

    def _probe(
        self, point: KillPoint, journal: JournalCounter, destinations: Path | None
    ) -> Callable[[], int]:
        roots = list(self.site.roots.values())
        if point.probe == "published":
            return lambda: count_entries(roots)[0]
        if point.probe == "removed":
            before = count_entries(roots)[0]
            return lambda: before - count_entries(roots)[0]
        if point.probe == "restored":
            assert destinations is not None
            return lambda: count_entries([destinations])[0]
        if point.probe == "temporary":
            where = [destinations] if destinations is not None else roots
            return lambda: count_entries(where)[1]
        if point.probe == "journal":
            return lambda: journal.count(finished_only=True)
        if point.probe == "intents":
            return lambda: journal.count(finished_only=False)
        raise ValueError(f"unknown kill point {point}")

    # --- checks ------------------------------------------------------------------------------

    def _violate(self, message: str) -> None:
        self.violations.append(message)

    def _check_ids(self, what: str, archived: list[FileSet], expected: dict[str, set[str]]) -> None:
        differing = [
            f"{fs.item_id}: {sorted(fs.external_ids)} != {sorted(expected.get(fs.item_id, ()))}"
            for fs in archived
            if set(fs.external_ids) != expected.get(fs.item_id)
        ]
        self.violations += found(
            what, differing, "FileSets got other external ids than an uninterrupted run"
        )

    def _check_copies_whole_after_kill(self) -> None:
        """Nothing half-done, even mid-batch: every final name and catalog row is whole."""
        unexpected, broken = [], []
        for target, root in self.site.roots.items():
            for locator, path in scan(root).files.items():
                fs = self.by_locator.get(locator)
                if fs is None:
                    unexpected.append(f"{target}:{locator}")
                elif sha1_of(path) != fs.sha1:
                    broken.append(f"{target}:{locator} ({path.stat().st_size} bytes)")
        what = "after the kill"
        self.violations += found(what, unexpected, "files under names no FileSet of the batch gets")
        self.violations += found(
            what, broken, "files under their final name do not hold their bytes"
        )
        bad = []
        for row in catalog_copies(self.site):
            root = self.site.roots.get(row.target)
            if root is None or sha1_of(root / row.locator) != row.sha1:
                bad.append(row.external_id)
        self.violations += found(
            what, bad, "catalog rows record copies that are missing or not whole"
        )

    def _check_survivor_of_child_kill(self, run: WorkerRun) -> None:
        """The parent of a killed staging process finishes, and what it calls archived is."""
        if run.result is None or "archived" not in run.result:
            self._violate(
                f"after its staging process was killed, the worker gave no result ({run.summary()})"
            )
            return
        archived = as_file_sets(run.result["archived"])
        failed = len(run.result["not_archived"])
        self.notes.append(f"first run: {len(archived)} archived, {failed} not archived")
        if failed and not run.result["error"]:
            self._violate("first run: FileSets not archived, but the error string is empty")
        self.violations += copies_problems("first run (staging killed)", self.site, archived)

    def _check_destinations(self, what: str, wanted: list[FileSet], *, partial_ok: bool) -> None:
        """Every destination holds the right bytes (after a kill: the right bytes or nothing)."""
        absent, wrong = [], []
        for fs in wanted:
            path = Path(fs.files[0])
            if not path.exists():
                absent.append(path)
            elif sha1_of(path) != fs.sha1:
                wrong.append(path)
        self.violations += found(
            what, wrong, "restored files under their final name do not hold their bytes"
        )
        if not partial_ok:
            self.violations += found(what, absent, "files not restored")

    def _stale_rows(self) -> list[str]:
        return [
            r.external_id
            for r in catalog_copies(self.site)
            if r.target in self.site.roots and not (self.site.roots[r.target] / r.locator).exists()
        ]


def _ids_by_item(archived: Sequence[FileSet]) -> dict[str, set[str]]:
    return {fs.item_id: set(fs.external_ids) for fs in archived}


def run_trial(
    plan: TrialPlan, directory: Path, databases: Databases, *, keep: bool = False
) -> TrialReport:
    """Run one trial in a fresh `directory`; removes it afterwards unless `keep`."""
    directory.mkdir(parents=True)
    try:
        return Trial(plan, directory, databases).run()
    finally:
        databases.drop_all()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def run_trials(
    plans: Sequence[TrialPlan],
    *,
    server: PostgresServer | None,
    workdir: Path,
    keep: bool = False,
    out: TextIO | None = None,
    verbose: bool = False,
) -> list[TrialReport]:
    """Run `plans` one after another; print each trial's line (and what it found) to `out`."""
    databases = Databases(server)
    reports = []
    for n, plan in enumerate(plans, 1):
        report = run_trial(plan, workdir / f"trial{n:04d}-{plan.seed}", databases, keep=keep)
        reports.append(report)
        if out is not None:
            print(f"[{n}/{len(plans)}] {report.line()}", file=out, flush=True)
            for note in report.notes if verbose else ():
                print(f"    note: {note}", file=out)
            if verbose:
                runs = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in report.phases)
                print(f"    runs: {runs}", file=out)
            for violation in report.violations:
                print(f"    VIOLATION: {violation}", file=out)
            if report.violations:
                print(f"    replay: {plan.replay()}", file=out)
    return reports
