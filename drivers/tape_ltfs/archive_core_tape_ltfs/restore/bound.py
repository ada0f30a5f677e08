"""A lower bound of a restore batch's makespan: no schedule of the same reads can beat it."""

from __future__ import annotations

from collections.abc import Sequence

from archive_core_tape_ltfs.cost import BOT, TimingModel
from archive_core_tape_ltfs.restore.estimate import RunWork
from archive_core_tape_ltfs.restore.view import LibraryView, Where


def _fetch(model: TimingModel, volume_files: int) -> float:
    """Into an empty drive: the element status, the robot's move, threading, the mount."""
    status = model.library.element_status_seconds
    return status + model.robot_move() + model.load() + model.mount(volume_files)


def _unload(model: TimingModel, activity_bytes: int, *, mounted: bool) -> float:
    """Out of a drive: unmount, element status, rewind and unthread (the rewind by what was
    read since the load), the robot's move to the slot (the bay is busy until it is empty)."""
    unmount = model.library.clean_unmount_seconds if mounted else 0.0
    status = model.library.element_status_seconds
    return unmount + status + model.unload(BOT, activity_bytes) + model.robot_move()


def entry_seconds(
    model: TimingModel, view: LibraryView, run: RunWork, *, making_room: bool = True
) -> float:
    """The least it can cost to have the run's cartridge mounted in some drive: nothing when
    it is mounted, a mount when it is loaded, a fetch into an empty drive, else (with
    `making_room`) the cheapest exchange with what a drive holds now (a drive only gets
    dearer: it holds a cartridge read since)."""
    where = view.where(run.barcode)
    if where is Where.MOUNTED:
        return 0.0
    if where is Where.LOADED:
        return model.mount(run.volume_files)
    fetch = _fetch(model, run.volume_files)
    if not making_room or _empty(view):
        return fetch
    return fetch + min(_unload(model, 0, mounted=d.mounted) for d in view.drives)


def _fetched(view: LibraryView, runs: Sequence[RunWork]) -> int:
    """Cartridges the robot must bring to a drive."""
    return sum(1 for r in runs if view.where(r.barcode) not in (Where.MOUNTED, Where.LOADED))


def _empty(view: LibraryView) -> int:
    return sum(1 for d in view.drives if d.barcode is None)


def robot_moves(view: LibraryView, runs: Sequence[RunWork]) -> int:
    """Moves the robot must make: one per cartridge fetched, and one per cartridge taken out
    of a drive to make room (all but the drives empty now)."""
    fetched = _fetched(view, runs)
    return fetched + max(0, fetched - _empty(view))


def _unloads(model: TimingModel, view: LibraryView, runs: Sequence[RunWork]) -> float:
    """The drive time of the unloads that must happen: one per fetch beyond the empty
    drives, the cheapest ones possible (a cartridge after its own reads, or one a drive
    holds that the batch does not need)."""
    needed = max(0, _fetched(view, runs) - _empty(view))
    wanted = {r.barcode for r in runs}
    costs = [_unload(model, r.bytes, mounted=False) for r in runs]
    costs += [
        _unload(model, 0, mounted=d.mounted)
        for d in view.drives
        if d.barcode is not None and d.barcode not in wanted
    ]
    return sum(sorted(costs)[:needed])


def lower_bound(model: TimingModel, view: LibraryView, runs: Sequence[RunWork]) -> float:
    """The largest of: the longest cartridge (its cheapest entry, its sorted reads without
    the locates of unknown length, its unmount); all cartridges' work, with the unloads that
    must happen and the empty drives' waits for their first cartridge, spread evenly over
    the drives; the robot's moves one after another."""
    if not runs:
        return 0.0
    unmount = model.library.clean_unmount_seconds  # every run ends with one
    # A locate to or from an unknown position may be short: the bound counts none.
    reads = {r.barcode: r.read_total - r.guessed for r in runs}
    longest = max(entry_seconds(model, view, r) + reads[r.barcode] + unmount for r in runs)
    # Spread over the drives, the unloads are counted once each, apart from the entries.
    work = sum(entry_seconds(model, view, r, making_room=False) + reads[r.barcode] for r in runs)
    work += len(runs) * unmount + _unloads(model, view, runs) + _first_waits(model, view, runs)
    return max(longest, work / len(view.drives), robot_moves(view, runs) * model.robot_move())


def _first_waits(model: TimingModel, view: LibraryView, runs: Sequence[RunWork]) -> float:
    """The empty drives' first cartridges come one robot move after another: the k-th
    drive served waits k moves before its work can start."""
    served = min(_fetched(view, runs), _empty(view))
    return model.robot_move() * served * (served - 1) / 2
