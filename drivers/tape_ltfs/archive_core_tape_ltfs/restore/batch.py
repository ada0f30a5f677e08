"""A whole restore batch: plan it, run it, and read failed files again from their next copies."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import attrs

from archive_core_tape_ltfs.model import CapturedIndex
from archive_core_tape_ltfs.port import Library, Mount
from archive_core_tape_ltfs.restore.executor import (
    FailedRead,
    FileRestored,
    Hands,
    ReadFile,
    drive_workers,
    run_plan,
)
from archive_core_tape_ltfs.restore.offline import CartridgesOffline
from archive_core_tape_ltfs.restore.plan import RestorePlan
from archive_core_tape_ltfs.restore.planner import plan_restore
from archive_core_tape_ltfs.restore.request import TapeCopy, WantedFile
from archive_core_tape_ltfs.restore.view import LibraryView, read_view

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class FileFailed:
    """A file no copy of which could be read: why, copy by copy (or why none could be tried)."""

    file: WantedFile
    reasons: tuple[str, ...]
    retryable: bool = False  # one of the failures may pass (a drive was busy)


@attrs.frozen(kw_only=True)
class RestoreOutcome:
    restored: tuple[FileRestored, ...]
    failed: tuple[FileFailed, ...]
    plans: tuple[RestorePlan, ...]  # the first plan, then one per retry round


def restore_files(
    files: Iterable[WantedFile],
    library: Library,
    *,
    read: ReadFile,
    generation: int,
    form: str = "FH",
    plan: RestorePlan | None = None,
    indexes: Iterable[CapturedIndex] = (),
    volume_files: Mapping[str, int] | None = None,
    mounts: Mapping[int, Mount] | None = None,
    workers: Mapping[int, Library] | None = None,
    virtual_time: bool = False,
    hands: Hands | None = None,
    context: str = "restore",
) -> RestoreOutcome:
    """Restore `files` (with `plan` if one was made already): run the plan, then plan the
    files whose read failed again from their copies not tried yet, on the library as it is
    then, until every file is restored or out of copies.

    `workers`, `hands`, `mounts`, `virtual_time` and `context` are as for `run_plan`. Raises
    `CartridgesOffline` before anything moves when a file of the first plan has no copy
    inside the library; in a retry round such files fail with that message instead.
    """
    wanted = list(files)
    indexes = tuple(indexes)
    if plan is None:
        view = read_view(library, generation=generation, form=form, volume_files=volume_files)
        plan = plan_restore(wanted, view, indexes=indexes)
    workers = dict(workers) if workers is not None else drive_workers(library, plan)
    restored: list[FileRestored] = []
    reasons: dict[str, list[str]] = {}
    passing: set[str] = set()  # files one of whose failures may pass
    tried: set[TapeCopy] = set()
    plans = [plan]
    while True:
        result = run_plan(
            plan,
            library,
            read=read,
            workers=workers,
            mounts=mounts,
            virtual_time=virtual_time,
            hands=hands,
            context=context,
        )
        mounts = None  # the executor unmounts what it read
        restored += result.restored
        if not result.failed:
            break
        passing.update(f.file.key for f in result.failed if f.retryable)
        retry = _record(result.failed, tried, reasons)
        if not retry:
            break
        caller = workers[min(workers)]
        view = read_view(caller, generation=generation, form=form, volume_files=volume_files)
        plan = _replan(retry, view, indexes, frozenset(tried), reasons)
        if plan is None:
            break
        plans.append(plan)
    done = {r.file.key for r in restored}
    by_key = {f.key: f for f in wanted}
    failed = tuple(
        FileFailed(file=by_key[key], reasons=tuple(why), retryable=key in passing)
        for key, why in reasons.items()
        if key not in done
    )
    return RestoreOutcome(restored=tuple(restored), failed=failed, plans=tuple(plans))


def _record(
    failed: Iterable[FailedRead], tried: set[TapeCopy], reasons: dict[str, list[str]]
) -> list[WantedFile]:
    """Note the failed copies and why; the files that still have a copy worth trying."""
    files = {}
    final = set()
    for failure in failed:
        tried.add(failure.copy)
        files[failure.file.key] = failure.file
        if failure.final:
            final.add(failure.file.key)
        reasons.setdefault(failure.file.key, []).append(
            f"{failure.copy.barcode}:{failure.copy.path}: {failure.reason}"
        )
    return [
        f for key, f in files.items() if key not in final and any(c not in tried for c in f.copies)
    ]


def _replan(
    files: list[WantedFile],
    view: LibraryView,
    indexes: tuple[CapturedIndex, ...],
    tried: frozenset[TapeCopy],
    reasons: dict[str, list[str]],
) -> RestorePlan | None:
    """The retry round's plan; files whose untried copies are all outside the library fail
    with the planner's message, and the rest are planned without them."""
    while files:
        try:
            return plan_restore(files, view, indexes=indexes, exclude=tried)
        except CartridgesOffline as offline:
            stranded = set(offline.paths)
            for key in stranded:
                reasons.setdefault(key, []).append(offline.message)
            files = [f for f in files if f.key not in stranded]
    return None
