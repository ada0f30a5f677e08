"""The one error a restore plan raises when cartridges it needs are outside the library."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from archive_core_tape_ltfs.errors import CartridgeOffline


@attrs.frozen(kw_only=True)
class MissingCartridge:
    """A cartridge to insert, the files only it can serve, and the copies that would do too."""

    barcode: str
    files: int
    # Other offline cartridges holding another copy of those files: (barcode, which copy of
    # the file it holds, 1 for the first), in preference order.
    alternatives: tuple[tuple[str, int], ...] = ()


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")


class CartridgesOffline(CartridgeOffline):
    """Files of a restore batch have no copy inside the library: an operator must insert
    cartridges before any tape moves. Raised by the planner, so nothing has moved yet."""

    def __init__(self, missing: Sequence[MissingCartridge], *, keys: Sequence[str] = ()) -> None:
        self.missing = tuple(missing)
        parts = []
        for cartridge in self.missing:
            wanted = f"{cartridge.files} file{'s' if cartridge.files != 1 else ''}"
            text = f"insert {cartridge.barcode} ({wanted})"
            for other, copy in cartridge.alternatives:
                text += f", or {other} for the {_ordinal(copy)} copy"
            parts.append(text)
        count = len(keys)
        super().__init__(
            f"Cannot restore {count} file{'s' if count != 1 else ''}: no copy is on a cartridge "
            f"inside the library (vaulted, or waiting in an import/export slot). To restore "
            f"them, {'; '.join(parts)}. Nothing was moved.",
            barcode=self.missing[0].barcode if self.missing else None,
            paths=tuple(keys),
        )
