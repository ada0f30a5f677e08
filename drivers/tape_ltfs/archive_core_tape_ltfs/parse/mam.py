"""`sg_read_attr DEVICE` (READ ATTRIBUTE, the cartridge memory): medium type, density, barcode.

sg3-utils prints one `  <Attribute name>: <value>` line per attribute after `Attribute values:`
(names from its `attr_name_arr`, SPC-4 MAM attribute identifiers in brackets below).
"""

from __future__ import annotations

import re

import attrs

_LINE = re.compile(r"^\s+(?P<name>[A-Za-z][^:]*):\s?(?P<value>.*)$")

# Medium type (0408h) values, SPC-4: 00h data, 01h cleaning, 80h write-once (WORM).
MEDIUM_DATA = 0x00
MEDIUM_CLEANING = 0x01
MEDIUM_WORM = 0x80


@attrs.frozen(kw_only=True)
class CartridgeMemory:
    medium_type: int | None = None  # Medium type (0408h)
    density_code: int | None = None  # Medium density code (0405h): the cartridge's generation
    barcode: str = ""  # Barcode (0806h), as the application wrote it

    @property
    def worm(self) -> bool | None:
        return None if self.medium_type is None else self.medium_type == MEDIUM_WORM


def _number(value: str) -> int | None:
    try:
        return int(value.strip(), 0)
    except ValueError:
        return None


def parse_attributes(stdout: str) -> CartridgeMemory:
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        if match := _LINE.match(line):
            found.setdefault(match.group("name").strip(), match.group("value"))
    return CartridgeMemory(
        medium_type=_number(found.get("Medium type", "")),
        density_code=_number(found.get("Medium density code", "")),
        barcode=found.get("Barcode", "").strip(),
    )
