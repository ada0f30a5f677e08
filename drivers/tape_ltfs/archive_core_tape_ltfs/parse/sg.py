"""sg3-utils output: `sg_inq` (identity, serial) and `sg_logs -p 0x2e` (TapeAlert flags)."""

from __future__ import annotations

import re

from archive_core_tape_ltfs.model import (
    TAPE_ALERT_NAMES,
    DriveIdentity,
    TapeAlerts,
    generation_from_model,
)

_INQ = {
    "Vendor identification": "vendor",
    "Product identification": "model",
    "Product revision level": "revision",
    "Unit serial number": "serial",
}
_INQ_LINE = re.compile(r"^\s*(?P<key>[A-Za-z ]+?):\s?(?P<value>.*)$")


def parse_inquiry(stdout: str) -> DriveIdentity:
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        match = _INQ_LINE.match(line)
        if match and match.group("key") in _INQ:
            fields[_INQ[match.group("key")]] = match.group("value").strip()
    model = fields.get("model", "")
    return DriveIdentity(
        vendor=fields.get("vendor", ""),
        model=model,
        serial=fields.get("serial", ""),
        revision=fields.get("revision", ""),
        generation=generation_from_model(model),
    )


_ALERT_NUMBER = {name.lower(): number for number, name in enumerate(TAPE_ALERT_NAMES, start=1)}
_ALERT_LINE = re.compile(r"^\s+(?P<name>.+?):\s*(?P<value>[01])\s*$")


def parse_tape_alerts(stdout: str) -> TapeAlerts:
    """Set flags from `sg_logs -p 0x2e` (lines `  <Flag name>: 0|1` after the page title)."""
    flags: set[int] = set()
    in_page = False
    for line in stdout.splitlines():
        if "Tape alert page" in line:
            in_page = True
            continue
        if not in_page:
            continue
        match = _ALERT_LINE.match(line)
        if match and match.group("value") == "1":
            number = _ALERT_NUMBER.get(match.group("name").lower())
            if number is not None:
                flags.add(number)
    return TapeAlerts(flags=frozenset(flags))
