"""Pools: named sets of cartridges (barcode ranges of one media type) and pool sets (copies).

A pool is what a policy writes one copy to; a pool set writes one copy to each of its pools,
so each copy lands on another cartridge of another pool. Barcodes are given as ranges
(`A00000L9-A00099L9`) or single barcodes; `scratch` names the blank cartridges of the pool
the driver may format with LTFS when it needs a new one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from archive_core import setting
from archive_core_tape_ltfs.model import MEDIA_TYPES, MediaType

_BARCODE = re.compile(r"^(?P<prefix>[A-Z0-9]*?)(?P<number>\d+)(?P<media>[A-Z][A-Z0-9])$")
# The namespace of the policy uuids derived from target and pool names.
_POLICY_NAMESPACE = uuid.UUID("6c1d7a52-2f4e-4d8b-9a1c-5e3f0b7d9c21")


@attrs.frozen(kw_only=True)
class BarcodeRange:
    """Barcodes `first` to `last`: one prefix, one media id, the numbers in between."""

    prefix: str
    low: int
    high: int
    width: int
    media: str

    @classmethod
    def parse(cls, text: str) -> BarcodeRange:
        first, _, last = text.strip().upper().partition("-")
        last = last or first
        a, b = _BARCODE.match(first), _BARCODE.match(last)
        if a is None or b is None:
            raise ValueError(
                f"{text!r} is not a barcode or a range of barcodes like A00000L9-A00099L9"
            )
        if (a["prefix"], len(a["number"]), a["media"]) != (
            b["prefix"],
            len(b["number"]),
            b["media"],
        ):
            raise ValueError(
                f"{text!r}: both ends of a range need the same prefix, digit count and media id"
            )
        low, high = int(a["number"]), int(b["number"])
        if low > high:
            raise ValueError(f"{text!r}: the range runs backwards")
        return cls(prefix=a["prefix"], low=low, high=high, width=len(a["number"]), media=a["media"])

    def __contains__(self, barcode: object) -> bool:
        if not isinstance(barcode, str):
            return False
        match = _BARCODE.match(barcode.strip().upper())
        return bool(
            match
            and match["prefix"] == self.prefix
            and match["media"] == self.media
            and len(match["number"]) == self.width
            and self.low <= int(match["number"]) <= self.high
        )

    def _alike(self, other: BarcodeRange) -> bool:
        return (self.prefix, self.width, self.media) == (other.prefix, other.width, other.media)

    def overlaps(self, other: BarcodeRange) -> bool:
        return self._alike(other) and self.low <= other.high and other.low <= self.high

    def within(self, other: BarcodeRange) -> bool:
        return self._alike(other) and other.low <= self.low and self.high <= other.high

    def __str__(self) -> str:
        first = f"{self.prefix}{self.low:0{self.width}d}{self.media}"
        last = f"{self.prefix}{self.high:0{self.width}d}{self.media}"
        return first if first == last else f"{first}-{last}"


def _ranges(value: Iterable[str]) -> tuple[BarcodeRange, ...]:
    return tuple(BarcodeRange.parse(text) for text in value)


def _barcode_list(_instance: Any, _attribute: Any, value: tuple[str, ...]) -> None:
    _ranges(value)  # raises ValueError with the bad entry


def _media(_instance: Any, _attribute: Any, value: str) -> None:
    if value.upper() not in MEDIA_TYPES:
        raise ValueError(
            f"{value!r} is not an LTO media type; known: {', '.join(sorted(MEDIA_TYPES))}"
        )


def _limit(_instance: Any, _attribute: Any, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError("must be 1 or more")


@attrs.frozen(kw_only=True)
class PoolSettings:
    """One pool as the admin writes it (`[pools.<name>]`)."""

    media: str = setting(
        help="Media id of the pool's cartridges: L5..L9, LA (LTO-10), M8, or WORM LV..LZ.",
        validator=_media,
    )
    barcodes: tuple[str, ...] = setting(
        help="The pool's cartridges: ranges like A00000L9-A00099L9, or single barcodes.",
        validator=_barcode_list,
    )
    scratch: tuple[str, ...] = setting(
        factory=tuple,
        help="Blank cartridges of the pool the driver may format with LTFS when it needs a "
        "new one (ranges or barcodes within `barcodes`). A cartridge that already holds a "
        "volume is never formatted.",
        validator=_barcode_list,
    )
    name: str | None = setting(default=None, help="Name of the pool's policy in Portal.")
    uuid: str | None = setting(
        default=None, help="Uuid of the pool's policy; default: derived from target and pool."
    )
    max_files: int | None = setting(
        default=None,
        help="Most files Portal hands the policy in one call (bulk batches); default 1000.",
        validator=_limit,
    )
    max_bytes: int | None = setting(
        default=None,
        help="Most bytes per call; a pool without scratch cartridges is also bounded by the "
        "room its cartridges have left.",
        validator=_limit,
    )


@attrs.frozen(kw_only=True)
class PoolSetSettings:
    """Copies on several pools (`[pool_sets.<name>]`): one copy on each, each on its own
    cartridge."""

    pools: tuple[str, ...] = setting(help="The pools a copy goes to, one copy each.")
    name: str | None = setting(default=None, help="Name of the pool set's policy in Portal.")
    uuid: str | None = setting(default=None, help="Uuid of the pool set's policy.")
    max_files: int | None = setting(
        default=None, help="Most files per call (bulk batches).", validator=_limit
    )
    max_bytes: int | None = setting(default=None, help="Most bytes per call.", validator=_limit)


@attrs.frozen(kw_only=True)
class Pool:
    """A validated pool: its media type and cartridges."""

    name: str
    media: MediaType
    barcodes: tuple[BarcodeRange, ...]
    scratch: tuple[BarcodeRange, ...]

    @property
    def worm(self) -> bool:
        return self.media.worm

    def holds(self, barcode: str) -> bool:
        return any(barcode in r for r in self.barcodes)

    def is_scratch(self, barcode: str) -> bool:
        return any(barcode in r for r in self.scratch)


@attrs.frozen(kw_only=True)
class CopyPlan:
    """What one policy of the driver writes: one copy on each pool, in order."""

    key: str  # the pool's or pool set's name in the config
    uuid: str
    name: str
    pools: tuple[Pool, ...]
    max_files: int | None = None
    max_bytes: int | None = None


def build_pools(pools: Mapping[str, PoolSettings]) -> dict[str, Pool]:
    return {
        name: Pool(
            name=name,
            media=MEDIA_TYPES[p.media.upper()],
            barcodes=_ranges(p.barcodes),
            scratch=_ranges(p.scratch),
        )
        for name, p in pools.items()
    }


def pool_problems(pools: Mapping[str, PoolSettings]) -> list[str]:
    """What is wrong across pools: media types of ranges, scratch outside the pool, overlaps."""
    problems: list[str] = []
    built = build_pools(pools)
    for name, pool in built.items():
        for field, ranges in (("barcodes", pool.barcodes), ("scratch", pool.scratch)):
            for r in ranges:
                if r.media != pool.media.code:
                    kind = MEDIA_TYPES.get(r.media)
                    problems.append(
                        f"pools.{name}.{field}: {r} are "
                        f"{kind.name if kind else f'media {r.media}'} cartridges, but the pool "
                        f"holds {pool.media.name}"
                    )
        for r in pool.scratch:
            if not any(r.within(b) for b in pool.barcodes):
                problems.append(f"pools.{name}.scratch: {r} is not within the pool's barcodes")
    names = sorted(built)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for ra in built[a].barcodes:
                for rb in built[b].barcodes:
                    if ra.overlaps(rb):
                        problems.append(
                            f"pools.{b}.barcodes: {rb} overlaps {ra} of pool {a}; a cartridge "
                            f"belongs to one pool"
                        )
    return problems


def policy_uuid(target: str, key: str, given: str | None) -> str:
    return given or str(uuid.uuid5(_POLICY_NAMESPACE, f"tape_ltfs:{target}:{key}"))
