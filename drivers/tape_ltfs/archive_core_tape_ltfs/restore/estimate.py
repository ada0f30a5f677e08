"""What a plan costs on the cost model: the reads of a cartridge, and the drives' timelines
with the robot as one serial resource, replayed as the executor makes its calls."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import attrs

from archive_core_tape_ltfs.cost import BOT, INDEX_POSITION, Position, TimingModel, position
from archive_core_tape_ltfs.restore.ordering import OrderedRead
from archive_core_tape_ltfs.restore.view import LibraryView


def read_seconds(
    model: TimingModel, reads: Sequence[OrderedRead], *, head: Position | None = INDEX_POSITION
) -> tuple[tuple[float, ...], float, Position | None]:
    """Seconds of each read in order (locate and stream) from `head` (None: unknown, as for a
    volume another job left mounted); how much of that is average locates charged for an
    unknown position; where the head ends."""
    seconds = []
    guessed = 0.0
    for read in reads:
        if read.location is None or head is None:
            locate = model.profile.published_avg_locate
            guessed += locate
        else:
            locate = model.locate(head, position(read.location.partition, read.location.startblock))
        seconds.append(locate + model.stream(read.copy.size)[0])
        if read.location is None:
            head = None
        else:
            head = position(read.location.partition, read.location.startblock)
            head = Position(
                partition=head.partition, block=head.block + model.blocks_for(read.copy.size)
            )
    return tuple(seconds), guessed, head


@attrs.frozen(kw_only=True)
class RunWork:
    """One cartridge's share of a plan before it has a drive and a time."""

    barcode: str
    reads: tuple[float, ...]  # seconds of each read
    bytes: int
    end_head: Position | None  # where the last read leaves the head
    volume_files: int = 0
    guessed: float = 0.0  # of `reads`: average locates charged where a position is unknown

    @property
    def read_total(self) -> float:
        return sum(self.reads)


@attrs.frozen(kw_only=True)
class RunTimes:
    start: float
    ready: float
    end: float
    reads: tuple[tuple[float, float], ...]  # (start, end) of each read


@attrs.define
class _Drive:
    runs: Sequence[RunWork]
    clock: float = 0.0  # the drive's worker
    busy: float = 0.0  # the drive itself
    barcode: str | None = None
    mounted: bool = False
    activity: int = 0
    head: Position | None = None
    times: list[RunTimes] = attrs.Factory(list)


class _Replay:
    """The executor's calls on the cost model, made in the same order: always the call of
    the worker furthest behind in time next (how the simulator orders them, and near enough
    how a library serves drives that ask for the robot at once)."""

    def __init__(self, model: TimingModel, *, detail: bool) -> None:
        self.model = model
        self.detail = detail
        self.robot = 0.0

    def _status(self, d: _Drive) -> None:
        d.clock += self.model.library.element_status_seconds

    def _drive_work(self, d: _Drive, seconds: float) -> float:
        d.busy = d.clock = max(d.clock, d.busy) + seconds
        return d.clock

    def _robot(self, d: _Drive, start: float) -> float:
        self.robot = max(start, self.robot) + self.model.robot_move()
        d.busy = max(d.busy, self.robot)
        d.clock = max(d.clock, self.robot)
        return self.robot

    def calls(self, d: _Drive) -> Iterator[None]:
        model = self.model
        clean_unmount = model.library.clean_unmount_seconds
        for run in d.runs:
            start = d.clock
            if d.barcode is not None and d.barcode != run.barcode:
                if d.mounted:
                    self._drive_work(d, clean_unmount)
                    d.mounted = False
                    yield
                rewind = model.unload(d.head or BOT, d.activity)
                if d.head is None and model.profile.unload_rewind_buckets is None:
                    rewind += model.profile.published_avg_rewind
                self._drive_work(d, rewind)  # eject: rewind and unthread
                yield
                self._status(d)
                self._robot(d, d.clock)  # unload: the robot takes it to its slot
                d.barcode = None
                yield
            if d.barcode is None:
                self._status(d)
                moved = self._robot(d, max(d.clock, d.busy))
                d.busy = moved + model.load()
                d.barcode, d.activity, d.head = run.barcode, 0, BOT
                yield
                d.clock = max(d.clock, d.busy)  # wait_ready
                yield
            if not d.mounted:
                self._drive_work(d, model.mount(run.volume_files, d.head or BOT))
                d.mounted, d.head = True, INDEX_POSITION
                yield
            ready = d.clock
            reads = []
            if self.detail:
                for seconds in run.reads:
                    begin = max(d.clock, d.busy)
                    reads.append((begin, self._drive_work(d, seconds)))
                    yield
            else:  # the same times for the runs: reads use no shared resource
                self._drive_work(d, run.read_total)
            d.activity += run.bytes
            d.head = run.end_head
            self._drive_work(d, clean_unmount)
            d.mounted = False
            d.times.append(RunTimes(start=start, ready=ready, end=d.clock, reads=tuple(reads)))
            yield


def replay(
    model: TimingModel,
    view: LibraryView,
    assignment: Mapping[int, Sequence[RunWork]],
    *,
    detail: bool = True,
) -> dict[int, list[RunTimes]]:
    """When each drive's runs start, are ready and end, from time 0 (and, with `detail`,
    each read)."""
    replayer = _Replay(model, detail=detail)
    drives = {
        v.index: _Drive(
            runs=assignment.get(v.index, ()),
            barcode=v.barcode,
            mounted=v.mounted,
            head=None if v.mounted else BOT,
        )
        for v in view.drives
    }
    running = {i: replayer.calls(d) for i, d in drives.items() if d.runs}
    while running:
        index = min(running, key=lambda i: (drives[i].clock, i))
        try:
            next(running[index])
        except StopIteration:
            del running[index]
    return {i: d.times for i, d in drives.items()}


def makespan(times: Mapping[int, Sequence[RunTimes]]) -> float:
    return max((t[-1].end for t in times.values() if t), default=0.0)
