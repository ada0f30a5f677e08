"""sg3-utils output: `sg_inq` (identity, serial) and `sg_logs` pages: TapeAlert (0x2E and the
non-clearing TapeAlert response page 0x12) and DT device status (0x11)."""

from __future__ import annotations

import re

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import (
    TAPE_ALERT_NAMES,
    DriveIdentity,
    DriveState,
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


# Page 0x12 as sg_logs (sg3-utils >= 1.42, `show_tapealert_response_page`) prints it: eight flags
# a line, `  Flag01h: 0  02h: 1 ...`, the flag number in hex.
_RESPONSE_FLAG = re.compile(r"(?:Flag)?(?P<number>[0-9A-F]{2})h: (?P<value>[01])\b")


def parse_tape_alert_response(stdout: str) -> TapeAlerts:
    """Set flags from `sg_logs -p 0x12` (TapeAlert response; reading it clears nothing).

    Output in the page-0x2E layout (one named flag a line) carries the same flags and is read
    too: the simulated tools answer every `sg_logs` page with that layout.
    """
    if "[0x12]" not in stdout:
        if "Tape alert page" in stdout:
            return parse_tape_alerts(stdout)
        raise errors.ToolFailed(
            "sg_logs printed no TapeAlert response page (0x12); sg3-utils older than 1.42 "
            "cannot decode it, or the drive does not support it.",
            detail=stdout[-500:],
        )
    flags: set[int] = set()
    for line in stdout.splitlines():
        if line.lstrip().startswith("Flag"):
            for match in _RESPONSE_FLAG.finditer(line):
                if match.group("value") == "1":
                    flags.add(int(match.group("number"), 16))
    return TapeAlerts(flags=frozenset(flags))


# DT device activity of page 0x11 (SSC-4 VHF data), in sg_logs' wording (`dt_dev_activity[]`),
# for the activities that make a drive busy on its own.
_ACTIVITY_STATES = {
    "Cleaning operation in progress": DriveState.CLEANING,
    "Volume is being loaded": DriveState.LOADING,
    "Volume is being unloaded": DriveState.UNLOADING,
    "Calibrating": DriveState.CALIBRATING,
}
_ACTIVITY = re.compile(r"^\s*DT device activity: (?P<activity>.+?)\s*$", re.MULTILINE)


def parse_device_activity(stdout: str) -> tuple[DriveState | None, str]:
    """What `sg_logs -p 0x11` says the drive is doing: the busy state it means (None for any
    other activity) and the activity in the drive's words ("" when the page was not printed)."""
    match = _ACTIVITY.search(stdout)
    if match is None:
        return None, ""
    activity = match.group("activity")
    return _ACTIVITY_STATES.get(activity), activity
