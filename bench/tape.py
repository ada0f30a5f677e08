"""The tape restore scheduler against what a user gets without one, on the simulator's clock.

Run `python bench/tape.py [--quick]` from the repository (in its virtualenv, with the tape
driver importable). Each scenario is a library of twelve LTO-9 cartridges filled 30-90 % with
synthetic files, seeded; for 1, 2 and 4 drives, side by side from the same starting state (a
copy of one simulated library per row):

- `scheduler`: `plan_restore` + `restore_files` (the restore package), one worker per drive;
- `FIFO`: the files in the order asked, FIFO across drives: each file goes to the drive that
  holds its cartridge, else to the first drive to come free, which exchanges whenever its next
  file is on another cartridge;
- `ordered copy`: what `ltfs_ordered_copy` does, one drive at a time: cartridges in volume UUID
  order, each read in (partition, start block) order (a cartridge already mounted is read
  where it is);
- `lower bound`: `RestorePlan.lower_bound`, no schedule does better;
- `(plan estimate)`: the plan's own estimate of its makespan, from the cost model.

Then the plan of the largest library, as `RestorePlan.describe()` prints it.

Measured from the simulator's timeline: makespan, exchanges (robot loads), locates,
back-hitches, drive utilisation (busy time of the row's drives over drives x makespan). No
assertions: it prints, with the goals (scheduler within 1.10x of the bound; at least 5x faster
than FIFO with 4 drives) answered yes or no.
"""

from __future__ import annotations

import argparse
import collections
import math
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "drivers" / "tape_ltfs"))

from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings  # noqa: E402
from archive_core_tape_ltfs.cost import TB  # noqa: E402
from archive_core_tape_ltfs.model import (  # noqa: E402
    FormatRequest,
    LoadRequest,
    MountRequest,
    UnloadRequest,
)
from archive_core_tape_ltfs.restore import (  # noqa: E402
    LibraryView,
    TapeCopy,
    WantedFile,
    plan_restore,
    read_view,
    restore_files,
)
from archive_core_tape_ltfs.sim.library import ROBOT, SimLibrary  # noqa: E402
from core import table  # noqa: E402 - bench/core.py: its table

GiB = 2**30
MiB = 2**20
CARTRIDGES = 12
CAPACITY = 18 * TB
DRIVES = 4  # the simulated library; a row with fewer drives uses drives 0..n-1
GOAL_BOUND = 1.10
GOAL_FIFO = 5.0


MEDIAN = 2 * GiB  # of the archived (and restored) large files' sizes, lognormal
SIGMA = 1.0
CLUSTER = 200  # small files written one after another


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    restores: int
    mounted: int = 0  # cartridges mounted in drives 0.. before the batch (at most one a drive)
    # The small-files variant: this many small files a cartridge, in clusters spread over the
    # tape between large files; the batch asks only for small files.
    small_files: int = 0
    small_size: int = 20 * MiB


@attrs.frozen(kw_only=True)
class Measured:
    makespan: float
    exchanges: int
    locates: int
    backhitches: int
    utilisation: float
    wall: float


# --- the archive ----------------------------------------------------------------------------


def barcode(n: int) -> str:
    return f"RES{n:03d}L9"


def lognormal(rng: random.Random) -> int:
    return max(1, int(MEDIAN * math.exp(rng.gauss(0.0, SIGMA))))


def archive(folder: Path, scenario: Scenario, seed: int) -> tuple[Path, list[TapeCopy], dict]:
    """A library whose cartridges are filled 30-90 %; the copies a batch can ask for, and
    the file count of every volume."""
    state = folder / f"{scenario.name}-base"
    library = SimLibrary.open(
        SimulatorSettings(
            state_dir=state,
            slots=CARTRIDGES + 4,
            import_export=0,
            drives=DRIVES,
            seed=seed,
            cartridges=tuple(
                SimulatedCartridge(barcode=barcode(n), slot=n, new=False)
                for n in range(1, CARTRIDGES + 1)
            ),
        )
    )
    rng = random.Random(seed)
    askable: list[TapeCopy] = []
    files: dict[str, int] = {}
    for n in range(1, CARTRIDGES + 1):
        label = barcode(n)
        library.changer.load(LoadRequest(slot=n, drive=0, barcode=label))
        library.drive(0).wait_ready()
        uuid = library.ltfs.format(FormatRequest(drive=0, barcode=label)).uuid
        mount = library.ltfs.mount(MountRequest(drive=0))
        target = rng.uniform(0.3, 0.9) * CAPACITY
        clusters = scenario.small_files // CLUSTER
        written = count = cluster = 0
        with library.batch():
            while written < target:
                small = cluster < clusters and written >= target * cluster / clusters
                cluster += small
                sizes = [scenario.small_size] * CLUSTER if small else [lognormal(rng)]
                for size in sizes:
                    path = f"{label}/{'small' if small else 'clip'}{count:06d}.mxf"
                    mount.write_synthetic(path, size, seed=n * 10**7 + count)
                    location = mount.location(path)
                    if small or not scenario.small_files:
                        askable.append(
                            TapeCopy(
                                barcode=label,
                                volume_uuid=uuid,
                                path=path,
                                size=size,
                                partition=location.partition,
                                startblock=location.startblock,
                            )
                        )
                    written += size
                    count += 1
        files[label] = count
        library.ltfs.unmount(mount)
        library.changer.unload(UnloadRequest(drive=0))
    library.engine.close()
    return state, askable, files


def batch(askable: list[TapeCopy], scenario: Scenario, seed: int) -> list[WantedFile]:
    """The files a user asks for, in the order asked."""
    picked = random.Random(seed + 1).sample(askable, scenario.restores)
    return [WantedFile(key=c.path, size=c.size, copies=(c,)) for c in picked]


def fresh(base: Path, folder: Path, name: str) -> SimLibrary:
    copy = folder / name
    shutil.copytree(base, copy)
    return SimLibrary.open(SimulatorSettings(state_dir=copy))


def mounted_first(scenario: Scenario, drives: int, wanted: list[WantedFile]) -> list[str]:
    """The cartridges already mounted (in drives 0..): those most files ask for."""
    counts = collections.Counter(f.copies[0].barcode for f in wanted)
    return [b for b, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][
        : min(scenario.mounted, drives)
    ]


def prepare(library: SimLibrary, names: dict[int, str], mounted: list[str], slots: dict):
    """Callers for the row's drives, the cartridges of `mounted` mounted in drives 0.. by
    them, and their clocks set to one start."""
    workers = {d: library.worker(name) for d, name in names.items()}
    mounts = {}
    for drive, label in enumerate(mounted):
        worker = workers[drive] if drive in workers else workers[min(workers)]
        worker.changer.load(LoadRequest(slot=slots[label], drive=drive, barcode=label))
        worker.drive(drive).wait_ready()
        mounts[drive] = worker.ltfs.mount(MountRequest(drive=drive, barcode=label, read_only=True))
    start = max(w.clock.now() for w in (library, *workers.values()))
    for worker in (library, *workers.values()):
        worker.clock.sleep(start - worker.clock.now())
    return workers, mounts, start


def measure(library: SimLibrary, start: float, drives: int, wall: float) -> Measured:
    entries = [e for e in library.timeline() if e.end > start]
    end = max(e.end for e in entries)
    span = end - start
    on_drives = [e for e in entries if e.resource in {f"drive{d}" for d in range(drives)}]
    busy = sum(min(e.end, end) - max(e.start, start) for e in on_drives)
    return Measured(
        makespan=span,
        exchanges=sum(1 for e in entries if e.resource == ROBOT and "-> drive" in e.operation),
        locates=sum(e.locates for e in on_drives),
        backhitches=sum(e.backhitches for e in entries),
        utilisation=busy / (drives * span) if span else 0.0,
        wall=wall,
    )


# --- the rows ---------------------------------------------------------------------------------


def drain(file, copy, reader) -> None:
    reader.drain()


def scheduler(library: SimLibrary, wanted, drives, mounted, slots, volume_files):
    names = {d: f"restore-drive{d}" for d in range(drives)}
    workers, mounts, start = prepare(library, names, mounted, slots)
    view = read_view(library, generation=9, volume_files=volume_files)
    view = LibraryView(
        drives=view.drives[:drives],
        online=view.online,
        generation=9,
        volume_files=volume_files,
    )
    library.clock.sleep(start - library.clock.now())
    started = time.perf_counter()
    plan = plan_restore(wanted, view)
    planning = time.perf_counter() - started
    outcome = restore_files(
        wanted,
        library,
        read=drain,
        generation=9,
        plan=plan,
        workers=workers,
        mounts=mounts,
        virtual_time=True,
    )
    assert not outcome.failed
    return measure(library, start, drives, time.perf_counter() - started), plan, planning


class Hand:
    """One drive driven by one caller, for the baselines: switch cartridge, read, finish."""

    def __init__(self, worker: SimLibrary, drive: int, slots: dict, mount=None) -> None:
        self.worker, self.drive, self.slots = worker, drive, slots
        self.mount = mount
        self.barcode = None if mount is None else mount.barcode  # in the drive
        self.claim = self.barcode  # the cartridge this drive reads next

    def holds(self, label: str) -> bool:
        return label in (self.barcode, self.claim)

    def switch(self, label: str) -> Iterator[None]:
        self.claim = label
        if self.barcode == label:
            return
        worker, n = self.worker, self.drive
        if self.mount is not None:
            worker.ltfs.unmount(self.mount)
            self.mount = None
            yield
        if self.barcode is not None:
            worker.changer.unload(UnloadRequest(drive=n))
            self.barcode = None
            yield
        self.barcode = label  # from now on other drives hand its files to this one
        worker.changer.load(LoadRequest(slot=self.slots[label], drive=n, barcode=label))
        yield
        worker.drive(n).wait_ready()
        yield
        self.mount = worker.ltfs.mount(MountRequest(drive=n, barcode=label, read_only=True))
        yield

    def read(self, path: str) -> None:
        with self.mount.open_read(path) as reader:
            reader.drain()

    def finish(self) -> None:
        if self.mount is not None:
            self.worker.ltfs.unmount(self.mount)
            self.mount = None


def interleave(clocks: dict[int, SimLibrary], plans: dict[int, Iterator[None]]) -> None:
    """Run the drives' calls one at a time, the caller furthest behind first (as the
    scheduler's executor does on a virtual clock)."""
    running = dict(plans)
    while running:
        n = min(running, key=lambda i: (clocks[i].clock.now(), i))
        try:
            next(running[n])
        except StopIteration:
            del running[n]


def fifo(library: SimLibrary, wanted, drives, mounted, slots, volume_files):
    names = {d: f"fifo-drive{d}" for d in range(drives)}
    workers, mounts, start = prepare(library, names, mounted, slots)
    started = time.perf_counter()
    hands = {d: Hand(workers[d], d, slots, mounts.get(d)) for d in range(drives)}
    queue = collections.deque((f.copies[0].barcode, f.copies[0].path) for f in wanted)
    handed: dict[int, collections.deque] = {d: collections.deque() for d in range(drives)}

    def holder(label: str) -> int | None:
        return next((d for d, h in hands.items() if h.holds(label)), None)

    def work(d: int) -> Iterator[None]:
        hand = hands[d]
        while handed[d] or queue:
            label, path = handed[d].popleft() if handed[d] else queue.popleft()
            other = holder(label)
            if other is not None and other != d:
                handed[other].append((label, path))
                continue
            yield from hand.switch(label)
            hand.read(path)
            yield
        hand.finish()

    interleave(workers, {d: work(d) for d in range(drives)})
    return measure(library, start, drives, time.perf_counter() - started)


def ordered_copy(library: SimLibrary, wanted, drives, mounted, slots, volume_files):
    names = {0: "ordered-copy"}
    workers, mounts, start = prepare(library, names, mounted, slots)
    started = time.perf_counter()
    caller = workers[0]
    hands = {d: Hand(caller, d, slots, mounts.get(d)) for d in range(drives)}
    by_tape: dict[str, list[TapeCopy]] = {}
    for file in wanted:
        by_tape.setdefault(file.copies[0].volume_uuid, []).append(file.copies[0])
    for uuid in sorted(by_tape):
        copies = sorted(by_tape[uuid], key=lambda c: (c.partition, c.startblock))
        label = copies[0].barcode
        hand = next((h for h in hands.values() if h.barcode == label), hands[0])
        for _ in hand.switch(label):
            pass
        for c in copies:
            hand.read(c.path)
    for hand in hands.values():
        hand.finish()
    return measure(library, start, drives, time.perf_counter() - started)


# --- the report -------------------------------------------------------------------------------


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def run(scenario: Scenario, folder: Path, seed: int, drive_counts: tuple[int, ...]) -> None:
    started = time.perf_counter()
    base, askable, volume_files = archive(folder, scenario, seed)
    wanted = batch(askable, scenario, seed)
    total = sum(f.size for f in wanted)
    cartridges = len({f.copies[0].barcode for f in wanted})
    print(
        f"\n{scenario.name}: {len(wanted)} restores, {total / TB:.2f} TB on {cartridges} of "
        f"{CARTRIDGES} LTO-9 cartridges ({sum(volume_files.values()):,} files archived, "
        f"{time.perf_counter() - started:.1f} s to fill)\n"
    )
    slots = {barcode(n): n for n in range(1, CARTRIDGES + 1)}
    rows = [
        (
            "drives",
            "schedule",
            "makespan",
            "x bound",
            "exchanges",
            "locates",
            "back-hitches",
            "drive util",
            "wall s",
        )
    ]
    goals = []
    for drives in drive_counts:
        mounted = mounted_first(scenario, drives, wanted)
        results = {}
        for name, row in (("scheduler", scheduler), ("FIFO", fifo), ("ordered copy", ordered_copy)):
            library = fresh(base, folder, f"{scenario.name}-{drives}-{name.replace(' ', '-')}")
            result = row(library, wanted, drives, mounted, slots, volume_files)
            if name == "scheduler":
                result, plan, planning = result
            results[name] = result
            library.engine.close()
        bound = plan.lower_bound
        for name, m in results.items():
            rows.append(
                (
                    str(drives),
                    name,
                    hours(m.makespan),
                    f"{m.makespan / bound:.2f}x",
                    str(m.exchanges),
                    str(m.locates),
                    str(m.backhitches),
                    f"{m.utilisation:.0%}",
                    f"{m.wall:.1f}",
                )
            )
        rows.append((str(drives), "lower bound", hours(bound), "1.00x", "", "", "", "", ""))
        rows.append(
            (
                str(drives),
                "(plan estimate)",
                hours(plan.makespan),
                f"{plan.makespan / bound:.2f}x",
                str(plan.exchanges),
                "",
                "",
                "",
                f"{planning:.1f}",
            )
        )
        ours = results["scheduler"].makespan
        goals.append(
            f"{drives} drive{'s' if drives > 1 else ''}: within {GOAL_BOUND:.2f}x of the bound: "
            f"{'yes' if ours <= GOAL_BOUND * bound else 'NO'} ({ours / bound:.3f}x); "
            f"vs FIFO {results['FIFO'].makespan / ours:.1f}x faster"
            + (
                f" (goal {GOAL_FIFO:.0f}x with 4 drives: "
                f"{'yes' if results['FIFO'].makespan >= GOAL_FIFO * ours else 'NO'})"
                if drives == 4
                else ""
            )
            + f"; vs ordered copy {results['ordered copy'].makespan / ours:.1f}x faster"
        )
    print(table(rows, left=2))
    print()
    for line in goals:
        print(line)
    print(f"\nThe scheduler's plan with {drive_counts[-1]} drives, as `describe()` prints it:\n")
    print(plan.describe())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 4 drives, smaller batches")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    quick = args.quick
    scenarios = [
        Scenario(name="large files", restores=500),
        Scenario(name="large files, 3 mounted", restores=500, mounted=3),
        Scenario(
            name="small files",
            restores=1_000 if quick else 5_000,
            small_files=600 if quick else 2_000,
        ),
    ]
    if quick:
        scenarios = [scenarios[0], scenarios[2]]
    drive_counts = (1, 4) if quick else (1, 2, 4)
    with tempfile.TemporaryDirectory(prefix="tape-restore-", dir=REPO.parent) as scratch:
        for scenario in scenarios:
            run(scenario, Path(scratch), args.seed, drive_counts)


if __name__ == "__main__":
    main()
