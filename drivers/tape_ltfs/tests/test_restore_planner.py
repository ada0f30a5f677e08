"""The restore planner on hand-made library views: copies, cartridges, drives, order, bound."""

from __future__ import annotations

import pytest
from archive_core_tape_ltfs.model import CapturedIndex, Extent, IndexedFile
from archive_core_tape_ltfs.restore import (
    CartridgesOffline,
    DriveView,
    LibraryView,
    TapeCopy,
    WantedFile,
    plan_restore,
)
from hypothesis import given, settings
from hypothesis import strategies as st

GB = 10**9


def copy(barcode: str, path: str, size: int, block: int | None, partition: str = "b") -> TapeCopy:
    return TapeCopy(
        barcode=barcode,
        volume_uuid=f"uuid-{barcode}",
        path=path,
        size=size,
        partition=None if block is None else partition,
        startblock=block,
    )


def wanted(key: str, size: int, *copies: TapeCopy) -> WantedFile:
    return WantedFile(key=key, size=size, copies=copies)


def one(barcode: str, n: int, block: int | None, size: int = GB) -> WantedFile:
    return wanted(f"{barcode}/{n}", size, copy(barcode, f"clip{n:03d}", size, block))


def library(*online: str, drives: int = 2, held: dict | None = None) -> LibraryView:
    """A view with `online` cartridges in slots 1.. and `held` {drive: (barcode, mounted)}."""
    held = held or {}
    return LibraryView(
        drives=tuple(
            DriveView(index=i, barcode=held[i][0], mounted=held[i][1])
            if i in held
            else DriveView(index=i)
            for i in range(drives)
        ),
        online={b: n for n, b in enumerate(online, start=1)},
    )


def test_reads_on_a_cartridge_follow_partition_then_start_block():
    files = [
        one("A00001L9", 1, 900),
        one("A00001L9", 2, 10),
        one(
            "A00001L9",
            3,
            5,
        ),
        one("A00001L9", 4, 400),
    ]
    files.append(wanted("index-partition", GB, copy("A00001L9", "meta.xml", GB, 7, partition="a")))
    plan = plan_restore(files, library("A00001L9"))
    (run,) = plan.runs()
    assert [r.copy.path for r in run.reads] == [
        "meta.xml",
        "clip003",
        "clip002",
        "clip004",
        "clip001",
    ]
    assert [r.start for r in run.reads] == sorted(r.start for r in run.reads)


def test_each_cartridge_is_loaded_once_into_one_drive():
    barcodes = [f"B0000{n}L9" for n in range(1, 7)]
    files = [one(b, n, 100 * n) for n in range(30) for b in barcodes[n % 6 : n % 6 + 1]]
    plan = plan_restore(files, library(*barcodes, drives=3))
    runs = list(plan.runs())
    assert sorted(r.barcode for r in runs) == sorted(barcodes)
    assert sum(r.files for r in runs) == 30
    assert all(d.runs for d in plan.drives), "every drive gets work"


def test_a_mounted_copy_is_preferred_to_an_online_one():
    file = wanted("clip", GB, copy("A00001L9", "clip", GB, 50), copy("M00001L9", "clip", GB, 900))
    plan = plan_restore([file], library("A00001L9", held={1: ("M00001L9", True)}))
    (run,) = plan.runs()
    assert (run.barcode, run.drive, run.slot, run.mounted) == ("M00001L9", 1, None, True)
    assert plan.exchanges == 0


def test_a_copy_on_a_cartridge_needed_anyway_beats_one_on_another_cartridge():
    only_on_a = [one("A00001L9", n, 100 * n) for n in range(3)]
    either = wanted(
        "either", GB, copy("B00001L9", "either", GB, 10), copy("A00001L9", "either", GB, 5000)
    )
    plan = plan_restore([*only_on_a, either], library("A00001L9", "B00001L9"))
    assert [r.barcode for r in plan.runs()] == ["A00001L9"]


def test_offline_cartridges_raise_one_error_naming_what_to_insert_and_the_alternatives():
    files = [
        wanted("a", GB, copy("A00001L9", "a", GB, 10), copy("B00004L9", "a", GB, 10)),
        wanted("b", GB, copy("A00001L9", "b", GB, 20)),
        wanted("c", GB, copy("C00009L9", "c", GB, 20)),
        one("D00001L9", 1, 10),  # online: no part of the error
    ]
    view = LibraryView(
        drives=(DriveView(index=0),), online={"D00001L9": 1}, offline=frozenset({"C00009L9"})
    )
    with pytest.raises(CartridgesOffline) as raised:
        plan_restore(files, view)
    error = raised.value
    assert [m.barcode for m in error.missing] == ["A00001L9", "C00009L9"]
    assert error.message == (
        "Cannot restore 3 files: no copy is on a cartridge inside the library (vaulted, or "
        "waiting in an import/export slot). To restore them, insert A00001L9 (2 files), or "
        "B00004L9 for the second copy; insert C00009L9 (1 file). Nothing was moved."
    )
    assert set(error.paths) == {"a", "b", "c"}


def test_files_without_a_start_block_are_ordered_from_a_captured_index_with_a_warning():
    files = [one("A00001L9", 1, None), one("A00001L9", 2, 300), one("A00001L9", 3, None)]
    index = CapturedIndex(
        volume_uuid="uuid-A00001L9",
        generation=12,
        files=(
            IndexedFile(path="clip001", size=GB, fileuid=1, extents=(_extent(900),)),
            IndexedFile(path="clip003", size=GB, fileuid=3, extents=(_extent(100),)),
        ),
    )
    plan = plan_restore(files, library("A00001L9"), indexes=[index])
    (run,) = plan.runs()
    assert [r.copy.path for r in run.reads] == ["clip003", "clip002", "clip001"]
    assert plan.warnings == (
        "On A00001L9, 2 files without a start block in the catalog were ordered from the "
        "captured index of volume uuid-A00001L9 (generation 12).",
    )


def test_files_without_any_start_block_are_read_last_and_the_plan_says_so():
    files = [one("A00001L9", 9, None), one("A00001L9", 2, 300), one("A00001L9", 5, None)]
    plan = plan_restore(files, library("A00001L9"))
    (run,) = plan.runs()
    assert [r.copy.path for r in run.reads] == ["clip002", "clip005", "clip009"]
    (warning,) = plan.warnings
    assert warning.startswith("On A00001L9, 2 files without a start block in the catalog or in")
    assert "read last, in path order" in warning


def test_empty_files_need_no_tape():
    empty = wanted("empty", 0, copy("Z00001L9", "empty", 0, None))
    plan = plan_restore([empty, one("A00001L9", 1, 10)], library("A00001L9"))
    assert plan.no_tape == (empty,)
    assert [r.barcode for r in plan.runs()] == ["A00001L9"]
    assert plan_restore([empty], library()).exchanges == 0


def test_cartridges_already_in_a_drive_stay_in_that_drive():
    files = [one("A00001L9", 1, 10), one("B00001L9", 1, 10), one("C00001L9", 1, 10)]
    held = {0: ("C00001L9", False), 1: ("B00001L9", True)}
    plan = plan_restore(files, library("A00001L9", held=held))
    firsts = {d.drive: d.runs[0].barcode for d in plan.drives}
    assert firsts == {0: "C00001L9", 1: "B00001L9"}


def test_the_plan_is_the_same_every_time():
    files = [one(f"A0000{n % 5}L9", n, (n * 7919) % 1000, size=(n % 7 + 1) * GB) for n in range(60)]
    view = library(*{f"A0000{n}L9" for n in range(5)}, drives=3)
    assert plan_restore(files, view) == plan_restore(list(files), view)


def test_describe_prints_each_drive_with_its_cartridges_in_order():
    files = [one("A00001L9", 1, 10, size=3 * GB), one("B00001L9", 1, 10)]
    text = plan_restore(files, library("A00001L9", "B00001L9")).describe()
    lines = text.splitlines()
    assert lines[0].startswith("Restore of 2 files (4.0 GB) from 2 cartridges on 2 drives")
    assert lines[1] == "drive 0:"
    assert lines[2].split()[:5] == ["A00001L9", "1", "files", "3.0", "GB"]
    assert lines[2].endswith("(slot 1)")
    assert lines[3] == "drive 1:"


sizes = st.integers(min_value=1, max_value=50 * GB)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 200_000), sizes), min_size=1, max_size=40
    ),
    drives=st.integers(1, 4),
    held=st.lists(
        st.tuples(st.integers(0, 7), st.booleans()), max_size=4, unique_by=lambda h: h[0]
    ),
)
def test_no_plan_is_estimated_below_its_lower_bound(batch, drives, held):
    files = [one(f"C0000{c}L9", n, block, size) for n, (c, block, size) in enumerate(batch)]
    in_drives = {d: (f"C0000{c}L9", mounted) for d, (c, mounted) in enumerate(held[:drives])}
    online = {f"C0000{c}L9" for c in range(8)} - {b for b, _ in in_drives.values()}
    plan = plan_restore(files, library(*sorted(online), drives=drives, held=in_drives))
    assert plan.lower_bound <= plan.makespan + 1e-6
    assert sum(r.files for r in plan.runs()) == len(files)


def _extent(block: int) -> Extent:
    return Extent(partition="b", startblock=block, byte_offset=0, byte_count=GB, file_offset=0)


def test_a_file_without_any_copy_on_tape_is_refused_by_name():
    from archive_core import CopyNotFound

    with pytest.raises(CopyNotFound) as raised:
        plan_restore([wanted("lost.mxf", GB), one("A00001L9", 1, 10)], library("A00001L9"))
    assert raised.value.paths == ("lost.mxf",)
    assert "no copy on tape" in raised.value.message
