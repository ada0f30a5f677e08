"""The catalog against a volume's LTFS index: every kind of drift named, agreement when none."""

from __future__ import annotations

from archive_core_tape_ltfs.model import CapturedIndex, Extent, IndexedFile
from archive_core_tape_ltfs.reconcile import Catalogued, ChangedSize, compare


def index_of(*files: tuple[str, int]) -> CapturedIndex:
    return CapturedIndex(
        volume_uuid="u-1",
        generation=7,
        files=tuple(
            IndexedFile(
                path=path,
                size=size,
                fileuid=n,
                extents=(
                    Extent(
                        partition="b",
                        startblock=10 + n,
                        byte_offset=0,
                        byte_count=size,
                        file_offset=0,
                    ),
                ),
            )
            for n, (path, size) in enumerate(files)
        ),
    )


def test_a_cartridge_whose_index_matches_the_catalog_is_clean():
    drift = compare(
        "A00001L9",
        [Catalogued(path="/a/one.mov", size=5), Catalogued(path="a/two.mov", size=6)],
        index_of(("a/one.mov", 5), ("a/two.mov", 6)),
    )
    assert drift.clean and "agree" in drift.describe()


def test_missing_unknown_and_resized_files_are_each_named():
    drift = compare(
        "A00001L9",
        [Catalogued(path="lost.mov", size=1), Catalogued(path="grown.mov", size=2)],
        index_of(("grown.mov", 3), ("stray.mov", 4)),
    )
    assert drift.missing == ("lost.mov",)
    assert drift.unknown == ("stray.mov",)
    assert drift.changed == (ChangedSize(path="grown.mov", catalogued=2, on_tape=3),)
    text = drift.describe()
    assert "1 catalogued copies are not on the tape (first: lost.mov)" in text
    assert "stray.mov" in text and "grown.mov, 2 bytes catalogued, 3 on tape" in text
    assert "Nothing more is written to it" in text
