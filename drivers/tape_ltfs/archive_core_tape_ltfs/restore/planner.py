"""The restore planner: which copy of each file, which cartridge in which drive, in what order.

Objective: the batch's makespan on the library (drives in parallel, one robot). Each needed
cartridge is loaded once, into one drive, and read in (partition, start block) order; copies
are chosen mounted first, then loaded, then online, on as few cartridges as possible; cartridge
runs go to drives longest first onto the drive that would finish them first (the robot a
serial resource, the cartridges already in a drive staying there), then runs are moved or
swapped (between drives or within one) while that shortens the batch. Deterministic: the
same batch and view give the same plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from archive_core import CopyNotFound
from archive_core_tape_ltfs.cost import INDEX_POSITION, TimingModel, timing_for
from archive_core_tape_ltfs.model import CapturedIndex
from archive_core_tape_ltfs.restore.bound import lower_bound
from archive_core_tape_ltfs.restore.estimate import (
    RunTimes,
    RunWork,
    makespan,
    read_seconds,
    replay,
)
from archive_core_tape_ltfs.restore.offline import CartridgesOffline, MissingCartridge
from archive_core_tape_ltfs.restore.ordering import OrderedRead, order_reads
from archive_core_tape_ltfs.restore.plan import CartridgeRun, DrivePlan, ReadStep, RestorePlan
from archive_core_tape_ltfs.restore.request import TapeCopy, WantedFile
from archive_core_tape_ltfs.restore.view import LibraryView, Where

_IN_DRIVE = (Where.MOUNTED, Where.LOADED)
_MAX_REPLAYS = 20_000  # local-search trials; a few seconds at worst


def plan_restore(
    files: Iterable[WantedFile],
    view: LibraryView,
    *,
    indexes: Iterable[CapturedIndex] = (),
    exclude: frozenset[TapeCopy] = frozenset(),
    model: TimingModel | None = None,
) -> RestorePlan:
    """The plan of a restore batch on the library `view` shows; moves nothing.

    `indexes` are captured LTFS indexes that order files the catalog has no start block for;
    `exclude` copies already tried and failed. Raises `CartridgesOffline` (one error naming
    every cartridge to insert, with the alternatives) when a file has no copy in the library.
    """
    model = model or timing_for(view.generation, view.form)
    wanted = list(files)
    no_tape = tuple(f for f in wanted if not f.needs_tape)
    chosen = choose_copies([f for f in wanted if f.needs_tape], view, exclude=exclude)
    by_volume = {i.volume_uuid: i for i in indexes}
    per_cartridge: dict[str, list[tuple[WantedFile, TapeCopy]]] = {}
    for file, copy in chosen:
        per_cartridge.setdefault(copy.barcode, []).append((file, copy))
    ordered: dict[str, tuple[OrderedRead, ...]] = {}
    warnings: list[str] = []
    for barcode in sorted(per_cartridge):
        reads, said = order_reads(barcode, per_cartridge[barcode], by_volume)
        ordered[barcode] = reads
        warnings += said
    work = {b: _work(model, view, b, reads) for b, reads in ordered.items()}
    assignment = assign(model, view, work)
    times = replay(model, view, assignment)
    drives = tuple(
        DrivePlan(
            drive=d.index,
            holds=d.barcode,
            holds_mounted=d.mounted,
            runs=tuple(
                _run(view, d.index, ordered[w.barcode], t)
                for w, t in zip(assignment.get(d.index, ()), times[d.index], strict=True)
            ),
        )
        for d in view.drives
    )
    return RestorePlan(
        drives=drives,
        no_tape=no_tape,
        warnings=tuple(warnings),
        makespan=makespan(times),
        lower_bound=lower_bound(model, view, list(work.values())),
    )


# --- which copy ----------------------------------------------------------------------------------


def choose_copies(
    files: Sequence[WantedFile], view: LibraryView, *, exclude: frozenset[TapeCopy] = frozenset()
) -> list[tuple[WantedFile, TapeCopy]]:
    """One copy per file: one in a drive (mounted before loaded), else online on a cartridge
    the batch needs anyway, else on the online cartridge that serves the most files."""
    usable = {f.key: [c for c in f.copies if c not in exclude] for f in files}
    uncopied = [f.key for f in files if not usable[f.key]]
    if uncopied:
        raise CopyNotFound(
            f"Cannot restore {len(uncopied)} file{'' if len(uncopied) == 1 else 's'}: the "
            f"catalog lists no copy on tape that has not failed already "
            f"({', '.join(uncopied[:5])}{', ...' if len(uncopied) > 5 else ''}).",
            paths=uncopied,
        )
    chosen: dict[str, TapeCopy] = {}
    for where in _IN_DRIVE:
        for file in files:
            if file.key not in chosen:
                here = [c for c in usable[file.key] if view.where(c.barcode) is where]
                if here:
                    chosen[file.key] = here[0]
    needed = {c.barcode for c in chosen.values()}
    online = [
        (f, [c for c in usable[f.key] if view.where(c.barcode) is Where.ONLINE])
        for f in files
        if f.key not in chosen
    ]
    chosen.update(_cover([(f, cs) for f, cs in online if cs], needed))
    stranded = [f for f in files if f.key not in chosen]
    if stranded:
        raise _offline(stranded, usable)
    return [(f, chosen[f.key]) for f in files]


def _cover(
    candidates: Sequence[tuple[WantedFile, Sequence[TapeCopy]]], needed: set[str]
) -> dict[str, TapeCopy]:
    """Greedy set cover: a copy on a cartridge already needed, else the cartridge that serves
    the most remaining files (then the most first choices, then the barcode) becomes needed."""
    chosen: dict[str, TapeCopy] = {}
    remaining = list(candidates)
    while remaining:
        left = []
        for file, copies in remaining:
            here = next((c for c in copies if c.barcode in needed), None)
            if here is not None:
                chosen[file.key] = here
            else:
                left.append((file, copies))
        if not left:
            break
        serves = Counter(b for _, copies in left for b in {c.barcode for c in copies})
        firsts = Counter(copies[0].barcode for _, copies in left)
        best = min(serves, key=lambda b: (-serves[b], -firsts[b], b))
        needed.add(best)
        remaining = left
    return chosen


def _offline(
    stranded: Sequence[WantedFile], usable: Mapping[str, Sequence[TapeCopy]]
) -> CartridgesOffline:
    """The cartridges to insert for files with no copy inside: as few as cover them all."""
    with_copies = [(f, usable[f.key]) for f in stranded]
    chosen = _cover(with_copies, set())
    missing: dict[str, list[WantedFile]] = {}
    for file, _ in with_copies:
        missing.setdefault(chosen[file.key].barcode, []).append(file)
    cartridges = []
    for barcode in sorted(missing, key=lambda b: (-len(missing[b]), b)):
        alternatives: dict[str, int] = {}
        for file in missing[barcode]:
            for number, copy in enumerate(file.copies, start=1):
                if copy.barcode != barcode and copy in usable[file.key]:
                    alternatives.setdefault(copy.barcode, number)
        cartridges.append(
            MissingCartridge(
                barcode=barcode,
                files=len(missing[barcode]),
                alternatives=tuple(alternatives.items()),
            )
        )
    return CartridgesOffline(cartridges, keys=[f.key for f in stranded])


# --- which drive, in what order ----------------------------------------------------------------


def _work(
    model: TimingModel, view: LibraryView, barcode: str, reads: Sequence[OrderedRead]
) -> RunWork:
    mounted = view.where(barcode) is Where.MOUNTED
    seconds, guessed, end_head = read_seconds(
        model, reads, head=None if mounted else INDEX_POSITION
    )
    return RunWork(
        barcode=barcode,
        reads=seconds,
        guessed=guessed,
        bytes=sum(r.copy.size for r in reads),
        end_head=end_head,
        volume_files=view.volume_files.get(barcode, 0),
    )


def assign(
    model: TimingModel, view: LibraryView, work: Mapping[str, RunWork]
) -> dict[int, list[RunWork]]:
    """Cartridge runs onto drives: a cartridge already in a drive first on that drive; the
    others longest first, each onto the drive that makes the batch (then that drive) end
    soonest; then one run moved (to any place on any drive) or two swapped while the batch
    ends sooner."""
    assignment: dict[int, list[RunWork]] = {d.index: [] for d in view.drives}
    pinned = set()
    for drive in view.drives:
        if drive.barcode in work and drive.barcode not in pinned:
            assignment[drive.index].append(work[drive.barcode])
            pinned.add(drive.barcode)
    free = sorted(
        (w for w in work.values() if w.barcode not in pinned),
        key=lambda w: (-w.read_total, w.barcode),
    )
    for run in free:
        best = None
        for index in assignment:
            trial = {i: [*runs, run] if i == index else runs for i, runs in assignment.items()}
            times = replay(model, view, trial, detail=False)
            key = (makespan(times), times[index][-1].end, index)
            if best is None or key < best[0]:
                best = (key, trial)
        assert best is not None
        assignment = best[1]
    return _improve(model, view, assignment, pinned)


def _improve(
    model: TimingModel,
    view: LibraryView,
    assignment: dict[int, list[RunWork]],
    pinned: set[str],
) -> dict[int, list[RunWork]]:
    """Local search: move one run to another place (on any drive), or swap two, while that
    shortens the batch (the robot's queue included: staggering similar drives' exchanges
    pays); the best change each round, the first found among equals, so it is repeatable.
    Bounded by `_MAX_REPLAYS` trials."""
    current = _score(model, view, assignment)
    trials = 0
    while trials < _MAX_REPLAYS:
        best: tuple[tuple[float, float], dict[int, list[RunWork]]] | None = None
        for trial in _neighbours(assignment, pinned):
            trials += 1
            score = _score(model, view, trial)
            if score < current and (best is None or score < best[0]):
                best = (score, trial)
            if trials >= _MAX_REPLAYS:
                break
        if best is None:
            break
        current, assignment = best
    return assignment


def _score(
    model: TimingModel, view: LibraryView, assignment: dict[int, list[RunWork]]
) -> tuple[float, float]:
    """The makespan, then the sum of the drives' ends (earlier is better for the next batch);
    rounded to a millisecond so float noise never decides."""
    times = replay(model, view, assignment, detail=False)
    ends = [t[-1].end for t in times.values() if t]
    return (round(max(ends, default=0.0), 3), round(sum(ends), 3))


def _neighbours(
    assignment: dict[int, list[RunWork]], pinned: set[str]
) -> Iterator[dict[int, list[RunWork]]]:
    """Every assignment one move or one swap away; a run already in its drive stays first."""
    drives = sorted(assignment)
    places = [
        (d, n) for d in drives for n, r in enumerate(assignment[d]) if r.barcode not in pinned
    ]
    for a, n in places:
        run = assignment[a][n]
        for b in drives:
            rest = [r for m, r in enumerate(assignment[a]) if m != n] if b == a else assignment[b]
            first = 1 if rest and rest[0].barcode in pinned else 0
            for position in range(first, len(rest) + 1):
                if b == a and position == n:
                    continue
                moved = {i: list(r) for i, r in assignment.items()}
                moved[a] = [r for m, r in enumerate(assignment[a]) if m != n]
                moved[b] = [*moved[b][:position], run, *moved[b][position:]]
                yield moved
    for x, (a, n) in enumerate(places):
        for b, m in places[x + 1 :]:
            swapped = {i: list(r) for i, r in assignment.items()}
            swapped[a][n], swapped[b][m] = assignment[b][m], assignment[a][n]
            yield swapped


def _run(
    view: LibraryView, drive: int, reads: Sequence[OrderedRead], times: RunTimes
) -> CartridgeRun:
    barcode = reads[0].copy.barcode
    return CartridgeRun(
        barcode=barcode,
        volume_uuid=reads[0].copy.volume_uuid,
        drive=drive,
        slot=view.slot_of(barcode) if view.where(barcode) is Where.ONLINE else None,
        mounted=view.where(barcode) is Where.MOUNTED,
        reads=tuple(
            ReadStep(file=r.file, copy=r.copy, location=r.location, start=s, end=e)
            for r, (s, e) in zip(reads, times.reads, strict=True)
        ),
        start=times.start,
        ready=times.ready,
        end=times.end,
    )
