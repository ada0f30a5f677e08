"""sg3-utils output: `sg_inq` (identity, serial) and `sg_logs -p 0x2e` (TapeAlert flags)."""

from __future__ import annotations

import re

from archive_core_tape_ltfs.model import DriveIdentity, TapeAlerts, generation_from_model

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


# Flag names in parameter-code order, as sg3-utils 1.4x decodes page 0x2E.
TAPE_ALERT_NAMES: tuple[str, ...] = (
    "Read warning",
    "Write warning",
    "Hard error",
    "Media",
    "Read failure",
    "Write failure",
    "Media life",
    "Not data grade",
    "Write protect",
    "No removal",
    "Cleaning media",
    "Unsupported format",
    "Recoverable mechanical cartridge failure",
    "Unrecoverable mechanical cartridge failure",
    "Memory chip in cartridge failure",
    "Forced eject",
    "Read only format",
    "Tape directory corrupted on load",
    "Nearing media life",
    "Cleaning required",
    "Cleaning requested",
    "Expired cleaning media",
    "Invalid cleaning tape",
    "Retension requested",
    "Dual port interface error",
    "Cooling fan failing",
    "Power supply failure",
    "Power consumption",
    "Drive maintenance",
    "Hardware A",
    "Hardware B",
    "Interface",
    "Eject media",
    "Microcode update fail",
    "Drive humidity",
    "Drive temperature",
    "Drive voltage",
    "Predictive failure",
    "Diagnostics required",
    *(f"Obsolete ({code:X}h)" for code in range(0x28, 0x2F)),
    *(f"Reserved ({code:X}h)" for code in range(0x2F, 0x32)),
    "Lost statistics",
    "Tape directory invalid at unload",
    "Tape system area write failure",
    "Tape system area read failure",
    "No start of data",
    "Loading failure",
    "Unrecoverable unload failure",
    "Automation interface failure",
    "Firmware failure",
    "WORM medium - integrity check failed",
    "WORM medium - overwrite attempted",
    *(f"Reserved parameter code 0x{code:02x}, flag" for code in range(0x3D, 0x41)),
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
