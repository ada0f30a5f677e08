"""Where a tape copy sits: locators (`<barcode>/<path>`) and the placement kept in the catalog.

An archived file has one copy per pool of its policy, each on its own cartridge. The core
keeps one copy per target, so the outcome's locator names the first cartridge and its
placement lists every copy: `{"barcode", "volume", "partition", "block", "generation",
"copies": [{"barcode", "volume", "partition", "block"}, ...]}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from archive_core import CopyNotFound, UnsafeName
from archive_core.transfer import check_locator


@attrs.frozen(kw_only=True)
class TapeCopy:
    """One copy of a file on one cartridge."""

    barcode: str
    path: str
    volume: str = ""  # the LTFS volume UUID, "" when not known (a locator only)
    partition: str | None = None
    block: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "barcode": self.barcode,
            "volume": self.volume,
            "partition": self.partition,
            "block": self.block,
        }


def locator_of(copy: TapeCopy) -> str:
    return f"{copy.barcode}/{copy.path}"


def parse_locator(locator: str) -> TapeCopy:
    """The cartridge and path a locator names; UnsafeName when it does not name one."""
    check_locator(locator)
    barcode, slash, path = locator.partition("/")
    if not slash or not barcode or not path:
        raise UnsafeName(
            f"{locator!r} is not a tape locator (expected <barcode>/<path>).", paths=(locator,)
        )
    return TapeCopy(barcode=barcode, path=path)


def placement_of(copies: list[TapeCopy], generation: int) -> dict[str, Any]:
    first = copies[0]
    return {
        **first.as_dict(),
        "generation": generation,
        "copies": [c.as_dict() for c in copies],
    }


def copies_from(locator: str, placement: Mapping[str, Any] | None) -> list[TapeCopy]:
    """Every copy a request names: from its placement, else the locator's cartridge alone."""
    named = parse_locator(locator)
    listed = (placement or {}).get("copies") or []
    copies = []
    for entry in listed:
        if isinstance(entry, Mapping) and isinstance(entry.get("barcode"), str):
            block = entry.get("block")
            copies.append(
                TapeCopy(
                    barcode=entry["barcode"],
                    path=named.path,
                    volume=str(entry.get("volume") or ""),
                    partition=entry.get("partition"),
                    block=block if isinstance(block, int) else None,
                )
            )
    if not any(c.barcode == named.barcode for c in copies):
        copies.insert(0, named)
    return copies


def missing(copy: TapeCopy) -> CopyNotFound:
    return CopyNotFound(
        f"{copy.path} is not on cartridge {copy.barcode} (deleted, or never archived there).",
        paths=(copy.path,),
    )
