"""Comparing what the catalog says a cartridge holds with what its LTFS index says.

The catalog is memory, the index is the tape: after a crash, a swapped or relabelled cartridge
or a hand-run `ltfsck`, the two can drift. `compare` names every difference; whoever finds one
stops writing to that cartridge until an operator has looked.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from archive_core_tape_ltfs.model import MANIFEST_PREFIX, CapturedIndex


@attrs.frozen(kw_only=True)
class Catalogued:
    """A copy the catalog places on the cartridge: its path on the volume and its size."""

    path: str
    size: int


@attrs.frozen(kw_only=True)
class ChangedSize:
    path: str
    catalogued: int
    on_tape: int


@attrs.frozen(kw_only=True)
class Drift:
    """The differences between the catalog and a volume's index; empty when they agree."""

    barcode: str
    volume_uuid: str
    generation: int
    missing: tuple[str, ...] = ()  # in the catalog, not on the tape: those copies are lost
    unknown: tuple[str, ...] = ()  # on the tape, not in the catalog: written but not recorded
    changed: tuple[ChangedSize, ...] = ()  # on both, with another size

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unknown or self.changed)

    def describe(self) -> str:
        """One paragraph for an admin."""
        if self.clean:
            return (
                f"{self.barcode}: the catalog and the LTFS index (generation "
                f"{self.generation}) agree."
            )
        parts = []
        if self.missing:
            parts.append(
                f"{len(self.missing)} catalogued copies are not on the tape (first: "
                f"{self.missing[0]})"
            )
        if self.unknown:
            parts.append(
                f"{len(self.unknown)} files on the tape are not in the catalog (first: "
                f"{self.unknown[0]})"
            )
        if self.changed:
            first = self.changed[0]
            parts.append(
                f"{len(self.changed)} files have another size on the tape (first: {first.path}, "
                f"{first.catalogued} bytes catalogued, {first.on_tape} on tape)"
            )
        return (
            f"{self.barcode}: the catalog and the LTFS index (generation {self.generation}) "
            f"differ: " + "; ".join(parts) + ". Nothing more is written to it until an operator "
            "has checked it."
        )


def compare(barcode: str, catalogued: Iterable[Catalogued], index: CapturedIndex) -> Drift:
    # The core's manifests are on the volume by design; they are no copies.
    on_tape = {f.path: f.size for f in index.files if not f.path.startswith(MANIFEST_PREFIX)}
    expected: dict[str, int] = {}
    for copy in catalogued:
        expected[copy.path.lstrip("/")] = copy.size
    return Drift(
        barcode=barcode,
        volume_uuid=index.volume_uuid,
        generation=index.generation,
        missing=tuple(sorted(p for p in expected if p not in on_tape)),
        unknown=tuple(sorted(p for p in on_tape if p not in expected)),
        changed=tuple(
            ChangedSize(path=p, catalogued=size, on_tape=on_tape[p])
            for p, size in sorted(expected.items())
            if p in on_tape and on_tape[p] != size
        ),
    )
