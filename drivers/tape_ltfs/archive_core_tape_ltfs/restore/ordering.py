"""The order of the reads on one cartridge: by (partition, start block), as one forward pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from archive_core_tape_ltfs.model import CapturedIndex, FileLocation
from archive_core_tape_ltfs.restore.request import TapeCopy, WantedFile


@attrs.frozen(kw_only=True)
class OrderedRead:
    file: WantedFile
    copy: TapeCopy
    # Where the read starts: from the catalog, else from a captured index; None when unknown.
    location: FileLocation | None


def order_reads(
    barcode: str,
    picks: Sequence[tuple[WantedFile, TapeCopy]],
    indexes: Mapping[str, CapturedIndex],
) -> tuple[tuple[OrderedRead, ...], tuple[str, ...]]:
    """The reads of one cartridge in tape order, and warnings about files placed without a
    start block from the catalog (`indexes` are captured indexes by volume UUID)."""
    located: list[OrderedRead] = []
    unknown: list[OrderedRead] = []
    from_index: dict[str, int] = {}
    for file, copy in picks:
        location = copy.location
        if location is None:
            index = indexes.get(copy.volume_uuid)
            indexed = index.file(copy.path) if index is not None else None
            location = indexed.location if indexed is not None else None
            if location is not None:
                from_index[copy.volume_uuid] = from_index.get(copy.volume_uuid, 0) + 1
        read = OrderedRead(file=file, copy=copy, location=location)
        (located if location is not None else unknown).append(read)
    located.sort(key=lambda r: (r.location.partition, r.location.startblock, r.copy.path))
    unknown.sort(key=lambda r: r.copy.path)
    warnings = [
        f"On {barcode}, {_files(count)} without a start block in the catalog "
        f"{'was' if count == 1 else 'were'} ordered from "
        f"the captured index of volume {uuid} (generation {indexes[uuid].generation})."
        for uuid, count in sorted(from_index.items())
    ]
    if unknown:
        count = len(unknown)
        warnings.append(
            f"On {barcode}, {_files(count)} without a start block in the catalog or in a "
            f"captured index of the volume {'is' if count == 1 else 'are'} read last, in path "
            f"order, each after a locate "
            f"of unknown length. Capture the volume's index (ltfsck --capture-index) to read "
            f"{'it' if count == 1 else 'them'} in tape order."
        )
    return (*located, *unknown), tuple(warnings)


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"
