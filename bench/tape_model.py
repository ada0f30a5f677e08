"""What the simulated tape library costs to run, and what its model says a schedule costs.

Run `python bench/tape_model.py [--quick]` from the repository (in its virtualenv, with the
tape driver importable). Three parts, each a table (see bench/README.md):

1. The simulator's own cost per simulated file (microseconds of wall time) with 1,000 and
   100,000 files already in the library: one transaction a port call, and in a batch.
2. A 4-drive batch of 500 restores of 2 TB: the wall time to simulate it, its virtual
   makespan, and beside it the same 500 restores in request order on one drive (what a user
   gets without a scheduler) against sorted by (cartridge, partition, startblock) over four
   drives. Then the first timeline entries of every drive and of the robot in the sorted run.
3. Four parallel unloads (one worker per drive) against one unload plus the robot's
   serialised moves.

No assertions: it prints. Goals: per-file cost flat (at most 1.2x between the two library
sizes), the 4-drive batch simulated in under 5 s, the parallel unloads within 10 %.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "drivers" / "tape_ltfs"))

from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings  # noqa: E402
from archive_core_tape_ltfs.cost import GB, timing_for  # noqa: E402
from archive_core_tape_ltfs.model import (  # noqa: E402
    FormatRequest,
    LoadRequest,
    MountRequest,
    UnloadRequest,
)
from archive_core_tape_ltfs.sim.library import ROBOT, SimLibrary  # noqa: E402
from core import count_text, table  # noqa: E402 - bench/core.py: its table

GOAL_FLAT = 1.2
GOAL_BATCH_WALL = 5.0
GOAL_UNLOADS = 0.10


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


# --- 1. the simulator's cost per file --------------------------------------------------------


def per_file_cost(folder: Path, prefill: int, measured: int) -> dict[str, float]:
    """µs of wall time per file written and read, with `prefill` files in the library."""
    library = SimLibrary.open(
        SimulatorSettings(
            state_dir=folder / f"prefill-{prefill}",
            slots=4,
            import_export=0,
            drives=1,
            cartridges=(SimulatedCartridge(barcode="BEN001L9", slot=1, new=False),),
        )
    )
    library.changer.load(LoadRequest(slot=1, drive=0))
    library.drive(0).wait_ready()
    library.ltfs.format(FormatRequest(drive=0, barcode="BEN001L9"))
    mount = library.ltfs.mount(MountRequest(drive=0))
    with library.batch():
        for n in range(prefill):
            mount.write_synthetic(f"prefill/{n:07d}", 20_000_000, seed=n)
    results: dict[str, float] = {}
    for mode in ("per call", "batch"):
        names = [f"{mode}/{n:07d}" for n in range(measured)]
        started = time.perf_counter()
        with library.batch() if mode == "batch" else _nothing():
            for n, name in enumerate(names):
                mount.write_synthetic(name, 20_000_000, seed=n)
        results[f"write {mode}"] = (time.perf_counter() - started) / measured * 1e6
        started = time.perf_counter()
        with library.batch() if mode == "batch" else _nothing():
            for name in names:
                with mount.open_read(name) as fh:
                    fh.drain()
        results[f"read {mode}"] = (time.perf_counter() - started) / measured * 1e6
    library.ltfs.unmount(mount)
    library.engine.close()
    return results


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


# --- 2. a 500-restore batch -------------------------------------------------------------------

CARTRIDGES = 8


def archive(folder: Path, name: str, files_per_cartridge: int, file_bytes: int) -> SimLibrary:
    """A 4-drive library whose 8 cartridges hold `files_per_cartridge` files each, unloaded."""
    library = SimLibrary.open(
        SimulatorSettings(
            state_dir=folder / name,
            slots=CARTRIDGES + 4,
            import_export=0,
            drives=4,
            seed=7,
            cartridges=tuple(
                SimulatedCartridge(barcode=f"RES{n:03d}L9", slot=n, new=False)
                for n in range(1, CARTRIDGES + 1)
            ),
        )
    )
    for n in range(1, CARTRIDGES + 1):
        barcode = f"RES{n:03d}L9"
        library.changer.load(LoadRequest(slot=n, drive=0, barcode=barcode))
        library.drive(0).wait_ready()
        library.ltfs.format(FormatRequest(drive=0, barcode=barcode))
        mount = library.ltfs.mount(MountRequest(drive=0))
        with library.batch():
            for i in range(files_per_cartridge):
                mount.write_synthetic(f"{barcode}/clip{i:04d}.mxf", file_bytes, seed=n * 10**6 + i)
        library.ltfs.unmount(mount)
        library.changer.unload(UnloadRequest(drive=0))
    return library


def requests(files_per_cartridge: int, count: int) -> list[tuple[str, str]]:
    """`count` restores, (barcode, path), in the random order users ask for them."""
    everything = [
        (f"RES{n:03d}L9", f"RES{n:03d}L9/clip{i:04d}.mxf")
        for n in range(1, CARTRIDGES + 1)
        for i in range(files_per_cartridge)
    ]
    return random.Random(10).sample(everything, count)


def _read(mount, path: str) -> int:
    with mount.open_read(path) as fh:
        return fh.drain()


def request_order_one_drive(library: SimLibrary, wanted: list[tuple[str, str]]) -> float:
    """Each restore as it comes, on drive 0: exchange whenever the cartridge differs."""
    start = library.clock.now()
    slots = {f"RES{n:03d}L9": n for n in range(1, CARTRIDGES + 1)}
    mounted, mount = None, None
    for barcode, path in wanted:
        if barcode != mounted:
            if mount is not None:
                library.ltfs.unmount(mount)
                library.changer.unload(UnloadRequest(drive=0))
            library.changer.load(LoadRequest(slot=slots[barcode], drive=0, barcode=barcode))
            library.drive(0).wait_ready()
            mount = library.ltfs.mount(MountRequest(drive=0, barcode=barcode, read_only=True))
            mounted = barcode
        _read(mount, path)
    library.ltfs.unmount(mount)
    library.changer.unload(UnloadRequest(drive=0))
    return library.clock.now() - start


def sorted_four_drives(library: SimLibrary, wanted: list[tuple[str, str]]) -> float:
    """Grouped by cartridge, cartridges spread over 4 drives by bytes (longest first), each
    cartridge's files read in (partition, startblock) order; one worker per drive."""
    start = library.clock.now()
    by_cartridge: dict[str, list[str]] = {}
    for barcode, path in wanted:
        by_cartridge.setdefault(barcode, []).append(path)
    loads = [0] * 4
    plan: list[list[str]] = [[] for _ in range(4)]
    for barcode in sorted(by_cartridge, key=lambda b: -len(by_cartridge[b])):
        drive = loads.index(min(loads))
        plan[drive].append(barcode)
        loads[drive] += len(by_cartridge[barcode])
    workers = [library.worker(f"restore-drive{n}") for n in range(4)]
    slots = {f"RES{n:03d}L9": n for n in range(1, CARTRIDGES + 1)}

    def work(n: int) -> Iterator[None]:
        worker = workers[n]
        for barcode in plan[n]:
            worker.changer.load(LoadRequest(slot=slots[barcode], drive=n, barcode=barcode))
            yield
            worker.drive(n).wait_ready()
            mount = worker.ltfs.mount(MountRequest(drive=n, barcode=barcode, read_only=True))
            yield
            located = [(mount.location(p), p) for p in by_cartridge[barcode]]
            for _, path in sorted(located, key=lambda lp: (lp[0].partition, lp[0].startblock)):
                _read(mount, path)
                yield
            worker.ltfs.unmount(mount)
            worker.changer.unload(UnloadRequest(drive=n))
            yield

    _interleave(workers, [work(n) for n in range(4)])
    return max(w.clock.now() for w in workers) - start


def _interleave(workers: list[SimLibrary], plans: list[Iterator[None]]) -> None:
    """Run the workers' plans one port call at a time, always the one furthest behind in
    virtual time first: the order their calls would reach the library in."""
    running = dict(enumerate(plans))
    while running:
        n = min(running, key=lambda i: workers[i].clock.now())
        try:
            next(running[n])
        except StopIteration:
            del running[n]


def timeline_excerpt(library: SimLibrary, since: float, per_resource: int) -> str:
    rows = [("resource", "operation", "caller", "cartridge", "start s", "end s", "GB", "loc")]
    for resource in [f"drive{n}" for n in range(4)] + [ROBOT]:
        entries = [e for e in library.timeline(resource) if e.start >= since][:per_resource]
        for e in entries:
            rows.append(
                (
                    e.resource,
                    e.operation,
                    e.caller,
                    e.cartridge or "",
                    f"{e.start - since:.1f}",
                    f"{e.end - since:.1f}",
                    f"{e.bytes / GB:.1f}" if e.bytes else "",
                    str(e.locates) if e.locates else "",
                )
            )
    return table(rows, left=4)


# --- 3. parallel unloads ----------------------------------------------------------------------


def parallel_unloads(folder: Path) -> tuple[float, float, float]:
    """(makespan of 4 unloads at once, one unload alone, robot move)."""
    library = SimLibrary.open(
        SimulatorSettings(
            state_dir=folder / "unloads",
            slots=8,
            import_export=0,
            drives=4,
            cartridges=tuple(
                SimulatedCartridge(barcode=f"UNL{n:03d}L9", slot=n, new=False, formatted=True)
                for n in range(1, 5)
            ),
        )
    )

    def load_all() -> None:
        for n in range(4):
            library.changer.load(LoadRequest(slot=n + 1, drive=n))
        for n in range(4):
            library.drive(n).wait_ready()

    load_all()
    alone = library.worker("alone")
    started = alone.clock.now()
    alone.changer.unload(UnloadRequest(drive=0))
    one = alone.clock.now() - started
    for n in range(1, 4):
        library.changer.unload(UnloadRequest(drive=n))
    library.clock.sleep(max(0.0, alone.clock.now() - library.clock.now()))
    load_all()
    start = library.clock.now()
    workers = [library.worker(f"unloader{n}") for n in range(4)]
    for n, worker in enumerate(workers):
        worker.changer.unload(UnloadRequest(drive=n))
    return max(w.clock.now() for w in workers) - start, one, timing_for(9).robot_move()


def timed(call: Callable[[], float]) -> tuple[float, float]:
    started = time.perf_counter()
    value = call()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 files instead of 100,000")
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (1_000, 100_000)
    measured = 500 if args.quick else 2_000

    with tempfile.TemporaryDirectory(prefix="tape-model-", dir=REPO.parent) as scratch:
        folder = Path(scratch)
        print(f"1. Simulator cost per file (µs wall, {measured} files measured)\n")
        costs = {n: per_file_cost(folder, n, measured) for n in sizes}
        small, large = sizes
        rows = [("operation", f"{count_text(small)} in library", f"{count_text(large)}", "ratio")]
        for key in costs[small]:
            rows.append(
                (
                    key,
                    f"{costs[small][key]:.1f}",
                    f"{costs[large][key]:.1f}",
                    f"{costs[large][key] / costs[small][key]:.2f}x",
                )
            )
        print(table(rows, left=1))
        worst = max(costs[large][k] / costs[small][k] for k in costs[small])
        print(f"\nflat within {GOAL_FLAT}x: {'yes' if worst <= GOAL_FLAT else 'NO'} ({worst:.2f}x)")

        files_per_cartridge, file_bytes, count = 250, 4 * GB, 500
        wanted = requests(files_per_cartridge, count)
        print(
            f"\n2. {count} restores of {count * file_bytes / 1e12:.0f} TB "
            f"({CARTRIDGES} LTO-9 cartridges of {files_per_cartridge} x 4 GB files)\n"
        )
        one_lib = archive(folder, "one", files_per_cartridge, file_bytes)
        one_span, one_wall = timed(lambda: request_order_one_drive(one_lib, wanted))
        four_lib = archive(folder, "four", files_per_cartridge, file_bytes)
        since = four_lib.clock.now()
        four_span, four_wall = timed(lambda: sorted_four_drives(four_lib, wanted))
        rows = [
            ("schedule", "virtual makespan", "wall to simulate", "vs request order"),
            ("request order, 1 drive", hours(one_span), f"{one_wall:.2f} s", "1.00x"),
            (
                "sorted, 4 drives",
                hours(four_span),
                f"{four_wall:.2f} s",
                f"{one_span / four_span:.1f}x faster",
            ),
        ]
        print(table(rows, left=1))
        print(
            f"\n4-drive batch simulated in under {GOAL_BATCH_WALL:.0f} s: "
            f"{'yes' if four_wall < GOAL_BATCH_WALL else 'NO'} ({four_wall:.2f} s)"
        )
        print("\nTimeline of the sorted 4-drive batch (first entries per drive and the robot):\n")
        print(timeline_excerpt(four_lib, since, per_resource=4))

        print("\n3. Four parallel unloads (one worker per drive)\n")
        parallel, one, move = parallel_unloads(folder)
        expected = one + 3 * move
        rows = [
            ("case", "seconds"),
            ("one unload (status, rewind + unthread, robot)", f"{one:.1f}"),
            ("one unload + 3 more serialised robot moves", f"{expected:.1f}"),
            ("four unloads at once: makespan", f"{parallel:.1f}"),
            ("four unloads one after the other", f"{4 * one:.1f}"),
        ]
        print(table(rows, left=1))
        off = abs(parallel - expected) / expected
        print(
            f"\nparallel / (one + serialised moves) = {parallel / expected:.3f} "
            f"(within {GOAL_UNLOADS:.0%}: {'yes' if off <= GOAL_UNLOADS else 'NO'}); "
            f"parallel / sequential = {parallel / (4 * one):.2f}"
        )


if __name__ == "__main__":
    main()
