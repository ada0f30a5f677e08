"""Telling a failing drive from a failing cartridge, from the media errors both were part of.

One media error says little: the cartridge, the drive, or dirt between them. The same drive
failing with several cartridges is the drive (take it out of service); the same cartridge
failing in several drives is the cartridge (mark it suspect: read it, write nothing more to
it). The rules are the ones mature tools use (tape-facts §6: "if it repeats on several tapes
suspect the drive").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import attrs

DEFAULT_WINDOW_SECONDS = 30 * 24 * 3600.0  # a month: older errors say nothing about now
DEFAULT_DISTINCT = 3  # failures with this many different partners convict


@attrs.frozen(kw_only=True)
class MediaFailure:
    """A read or write error: which drive, which cartridge, when (library clock), what."""

    drive: int
    barcode: str
    at: float
    kind: str = "media error"  # "read error", "write error", ...


@attrs.frozen(kw_only=True)
class Verdict:
    """The drives to take out of service and the cartridges to mark suspect, with why."""

    drives_out_of_service: dict[int, str] = attrs.field(factory=dict)
    suspect_cartridges: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class HealthRules:
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    distinct: int = DEFAULT_DISTINCT

    def judge(self, failures: Iterable[MediaFailure], *, now: float) -> Verdict:
        recent = [f for f in failures if now - f.at <= self.window_seconds]
        by_drive: dict[int, set[str]] = defaultdict(set)
        by_cartridge: dict[str, set[int]] = defaultdict(set)
        for failure in recent:
            by_drive[failure.drive].add(failure.barcode)
            by_cartridge[failure.barcode].add(failure.drive)
        drives = {
            drive: (
                f"drive {drive} had media errors with {len(barcodes)} different cartridges "
                f"({', '.join(sorted(barcodes))}): the drive is failing, not the cartridges. "
                f"Clean it; if errors continue, have it serviced."
            )
            for drive, barcodes in sorted(by_drive.items())
            if len(barcodes) >= self.distinct
        }
        cartridges = {
            barcode: (
                f"cartridge {barcode} had media errors in {len(indexes)} different drives "
                f"({', '.join(map(str, sorted(indexes)))}): the cartridge is failing. Copy its "
                f"files to another cartridge and retire it."
            )
            for barcode, indexes in sorted(by_cartridge.items())
            if len(indexes) >= self.distinct
        }
        return Verdict(drives_out_of_service=drives, suspect_cartridges=cartridges)
