"""A lower bound of a restore batch's makespan: no schedule of the same reads can beat it."""

from __future__ import annotations

from collections.abc import Sequence

from archive_core_tape_ltfs.cost import BOT, TimingModel
from archive_core_tape_ltfs.restore.estimate import RunWork
from archive_core_tape_ltfs.restore.view import DriveView, LibraryView, Where


def entry_seconds(model: TimingModel, view: LibraryView, run: RunWork) -> float:
    """The least it can cost to have the run's cartridge mounted in some drive: nothing when
    it is mounted, a mount when it is loaded, else the cheapest exchange from what a drive
    holds now (a drive only ever gets dearer: it holds a cartridge read since)."""
    where = view.where(run.barcode)
    mount = model.mount(run.volume_files)
    if where is Where.MOUNTED:
        return 0.0
    if where is Where.LOADED:
        return mount
    return min(_exchange(model, d) for d in view.drives) + mount


def _exchange(model: TimingModel, drive: DriveView) -> float:
    status = model.library.element_status_seconds
    fetch = status + model.robot_move() + model.load()
    if drive.barcode is None:
        return fetch
    unmount = model.library.clean_unmount_seconds if drive.mounted else 0.0
    return unmount + status + model.unload(BOT, 0) + model.robot_move() + fetch


def robot_moves(view: LibraryView, runs: Sequence[RunWork]) -> int:
    """Moves the robot must make: one per cartridge fetched, and one per cartridge taken out
    of a drive to make room (all but the drives empty now)."""
    fetched = sum(1 for r in runs if view.where(r.barcode) not in (Where.MOUNTED, Where.LOADED))
    empty = sum(1 for d in view.drives if d.barcode is None)
    return fetched + max(0, fetched - empty)


def lower_bound(model: TimingModel, view: LibraryView, runs: Sequence[RunWork]) -> float:
    """max(the longest cartridge: its cheapest entry and its sorted reads; all cartridges'
    work spread evenly over the drives; the robot's moves one after another)."""
    if not runs:
        return 0.0
    unmount = model.library.clean_unmount_seconds  # every run ends with one
    work = [entry_seconds(model, view, r) + r.read_total + unmount for r in runs]
    return max(
        max(work),
        sum(work) / len(view.drives),
        robot_moves(view, runs) * model.robot_move(),
    )
