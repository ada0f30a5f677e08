"""Archiving to tape from a fast and from a slow source, on the simulator's event clock.

Run `python bench/tape_archive.py [--quick]` from the repository (in its virtualenv). Each row
archives the same files through the Portal face (`ArchiveCorePlugin.archive`, a bulk batch) to
a fresh simulated library with one LTO-9 full-height drive (native 400 MB/s, speed-matching
floor 177 MB/s), side by side in one run:

- `driver (read-ahead, 4 readers)`: the tape driver as configured by default;
- `driver, 1 reader`: read-ahead on one stream;
- `plain copy (read as written)`: `read_ahead.readers = 0`, each file read only as it is
  written, which is what `cp` onto the LTFS mount does.

Sources: `fast` is the local disk, whose real speed is far above the drive's (in virtual time it
costs nothing); `slow` is an HDD array, 120 MB/s per stream and 100 ms per open, paced on the
readers' clocks (`sim.sources.PacedOpener`). Workloads: large files (1 GiB each) and small files
(20 MiB each). The bytes are real (sparse sources, hashed and written to the simulator's
blobs); the times are the simulator's.

Measured from the drive's timeline: the sustained write rate (the bytes of every file but the
first over the span from the end of the first file's write to the end of the last, index syncs
and per-file work included; the first carries the locate from the index partition), as a share
of native, and the back-hitches of all. The memory for read-ahead is the default 1 GiB, less
than a workload, so the rows show the steady state, not a head start. A last row per table,
`bound`, is the fastest any writer gets: native rate plus LTFS's work per file (the cost
model's `per_file_seconds`, an estimate), which weighs on small files. No assertions: it
prints, with the goals (fast source at least 90 % of native; slow source at least the floor,
without back-hitching) answered yes or no.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "drivers" / "tape_ltfs"))

from archive_core_tape_ltfs.config import structure_library  # noqa: E402
from archive_core_tape_ltfs.cost import MB, timing_for  # noqa: E402
from archive_core_tape_ltfs.driver import TapeLtfsDriver  # noqa: E402
from archive_core_tape_ltfs.sim.library import SimLibrary  # noqa: E402
from archive_core_tape_ltfs.sim.sources import PacedOpener  # noqa: E402
from core import table  # noqa: E402 - bench/core.py: its table

from archive_core.testing import KIT_POLICY, KIT_TARGET, DriverUnderTest, Harness  # noqa: E402

GiB = 2**30
MiB = 2**20
PROFILE = timing_for(9).profile
GOAL_FAST = 0.90  # of native
SLOW = PacedOpener(rate=120 * MB, open_seconds=0.1)

MODES = {
    "driver (read-ahead, 4 readers)": 4,
    "driver, 1 reader": 1,
    "plain copy (read as written)": 0,
}
SOURCES: dict[str, PacedOpener | None] = {"fast": None, "slow": SLOW}


@attrs.frozen(kw_only=True)
class Workload:
    name: str
    files: int
    size: int


@attrs.frozen(kw_only=True)
class Measured:
    rate: float  # bytes/s sustained
    backhitches: int
    seconds: float  # virtual, the span measured
    wall: float


def settings(state_dir: Path, readers: int) -> dict[str, Any]:
    return {
        "library": {
            "backend": "simulator",
            "simulator": {
                "state_dir": str(state_dir),
                "slots": 8,
                "import_export": 1,
                "drives": 1,
                "cartridges": [
                    {"barcode": f"A{n:05d}L9", "slot": n + 1, "new": False} for n in range(4)
                ],
            },
        },
        "pools": {
            "main": {
                "media": "L9",
                "barcodes": ["A00000L9-A00003L9"],
                "scratch": ["A00000L9-A00003L9"],
            }
        },
        "read_ahead": {"readers": readers},
    }


def measure(state_dir: Path, wall: float) -> Measured:
    """Sustained: from the end of the first file's write (which carries the locate from the
    index partition, where the mount left the head) to the end of the last."""
    library = SimLibrary.open(structure_library(settings(state_dir, 0)["library"]).simulator)
    try:
        writes = [e for e in library.timeline("drive0") if e.operation == "write"]
    finally:
        library.engine.close()
    span = writes[-1].end - writes[0].end
    return Measured(
        rate=sum(e.bytes for e in writes[1:]) / span,
        backhitches=sum(e.backhitches for e in writes),
        seconds=span,
        wall=wall,
    )


def run_row(folder: Path, file_sets: list, readers: int, source: PacedOpener | None) -> Measured:
    state = folder / "library"
    harness = Harness(
        DriverUnderTest(driver_class=TapeLtfsDriver, settings=settings(state, readers)),
        folder / "kit",
    )
    try:
        driver = harness.site().target(KIT_TARGET).instance
        if source is not None:
            driver.source_opener = source
        start = time.perf_counter()
        archived, not_archived, error, _ = harness.plugin.archive(file_sets, KIT_POLICY, "bench")
        wall = time.perf_counter() - start
        if not_archived:
            raise SystemExit(f"{len(not_archived)} files were not archived: {error}")
        assert len(archived) == len(file_sets)
        return measure(state, wall)
    finally:
        harness.close()
        shutil.rmtree(folder, ignore_errors=True)


def run(workload: Workload, scratch: Path) -> None:
    sources = Harness(
        DriverUnderTest(driver_class=TapeLtfsDriver, settings=settings(scratch / "unused", 0)),
        scratch / f"sources-{workload.name}",
    )
    file_sets = [
        sources.media(f"{workload.name}{n:05d}.mxf", size=workload.size)
        for n in range(workload.files)
    ]
    total = workload.files * workload.size
    print(
        f"\n## {workload.name}: {workload.files} files of {workload.size / MiB:,.0f} MiB "
        f"({total / GiB:.1f} GiB) to one LTO-9 FH drive (native "
        f"{PROFILE.native_rate / MB:.0f} MB/s, floor {PROFILE.speed_match_floor / MB:.0f} MB/s)\n"
    )
    rows = []
    verdicts = []
    for source_name, source in SOURCES.items():
        measured = {
            mode: run_row(scratch / "row", file_sets, readers, source)
            for mode, readers in MODES.items()
        }
        plain = measured["plain copy (read as written)"]
        for mode, m in measured.items():
            rows.append(
                (
                    source_name,
                    mode,
                    f"{m.rate / MB:.0f}",
                    f"{m.rate / PROFILE.native_rate:.1%}",
                    str(m.backhitches),
                    f"{m.seconds:,.0f}",
                    f"{plain.seconds / m.seconds:.2f}x",
                    f"{m.wall:.1f}",
                )
            )
        best = measured["driver (read-ahead, 4 readers)"]
        if source is None:
            ok = best.rate >= GOAL_FAST * PROFILE.native_rate
            verdicts.append(
                f"fast source at least {GOAL_FAST:.0%} of native: {'yes' if ok else 'NO'} "
                f"({best.rate / PROFILE.native_rate:.1%})"
            )
        else:
            ok = best.rate >= PROFILE.speed_match_floor and best.backhitches == 0
            verdicts.append(
                f"slow source at least the floor, no back-hitch: {'yes' if ok else 'NO'} "
                f"({best.rate / MB:.0f} MB/s, {best.backhitches} back-hitches; plain copy "
                f"{plain.rate / MB:.0f} MB/s, {plain.backhitches} back-hitches)"
            )
    per_file = timing_for(9).library.per_file_seconds
    bound = workload.size / (workload.size / PROFILE.native_rate + per_file)
    rows.append(
        (
            "",
            "bound: native + LTFS per file",
            f"{bound / MB:.0f}",
            f"{bound / PROFILE.native_rate:.1%}",
            "0",
            "",
            "",
            "",
        )
    )
    header = ("source", "row", "MB/s", "of native", "back-hitches", "tape s", "vs plain", "wall s")
    print(table([header, *rows]))
    for verdict in verdicts:
        print(f"- {verdict}")
    sources.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller files")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    workloads = (
        [
            Workload(name="large", files=6, size=GiB // 2),
            Workload(name="small", files=60, size=20 * MiB),
        ]
        if args.quick
        else [
            Workload(name="large", files=8, size=GiB),
            Workload(name="small", files=300, size=20 * MiB),
        ]
    )
    # Beside the repository, on the same disk: the simulator's blobs are real bytes.
    scratch = Path(tempfile.mkdtemp(prefix="bench-tape-archive-", dir=REPO.parent))
    try:
        for workload in workloads:
            run(workload, scratch)
    finally:
        if args.keep:
            print(f"\nkept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
