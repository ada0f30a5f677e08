"""`tapeinfo -f /dev/sgN` output (mtx package): identity, readiness, TapeAlert lines."""

from __future__ import annotations

import re

from archive_core_tape_ltfs.model import DriveIdentity, TapeAlerts, generation_from_model

_FIELD = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9 ]*?):\s*'?(?P<value>[^']*?)'?\s*$")
_ALERT = re.compile(r"^TapeAlert\[(?P<n>\d+)\]:")


def parse_fields(stdout: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        if _ALERT.match(line.strip()):
            continue
        if match := _FIELD.match(line.strip()):
            fields.setdefault(match.group("key"), match.group("value").strip())
    return fields


def parse_identity(stdout: str) -> DriveIdentity:
    fields = parse_fields(stdout)
    model = fields.get("Product ID", "")
    return DriveIdentity(
        vendor=fields.get("Vendor ID", ""),
        model=model,
        serial=fields.get("SerialNumber", ""),
        revision=fields.get("Revision", ""),
        generation=generation_from_model(model),
    )


def parse_alerts(stdout: str) -> TapeAlerts:
    flags = {int(m.group("n")) for line in stdout.splitlines() if (m := _ALERT.match(line.strip()))}
    return TapeAlerts(flags=frozenset(flags))


def is_ready(stdout: str) -> bool:
    return parse_fields(stdout).get("Ready", "").lower() == "yes"
