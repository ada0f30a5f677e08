"""`sg_turs -v` (TEST UNIT READY with its sense data) and the drive state the sense means.

With `-v` sg_turs prints the decoded sense on stderr (sg3-utils `sg_get_sense_str`):
`Fixed format, current; Sense key: Not Ready`, `Additional sense: <ASC/ASCQ text>`, and for a
long operation `  Progress indication: 37.50%`; on stdout `device not ready`, or
`device not ready, estimated to be ready in <n> milliseconds` when the drive gave an estimate
(04/01 with an INFO field, T10 20-061r2). Exit status 0 is ready, 2 not ready.
"""

from __future__ import annotations

import re

import attrs

from archive_core_tape_ltfs.model import DriveState

_KEY = re.compile(r"Sense key: (?P<key>[A-Za-z ()0-9]+?)\s*$", re.MULTILINE)
_ADDITIONAL = re.compile(r"^Additional sense: (?P<text>.+?)\s*$", re.MULTILINE)
_CODES = re.compile(r"ASC=(?P<asc>[0-9a-fA-F]{2}),? ASCQ=(?P<ascq>[0-9a-fA-F]{2})")
_PROGRESS = re.compile(r"Progress indication: (?P<pct>\d+(?:\.\d+)?)\s*%")
_ESTIMATE = re.compile(r"estimated to be ready in (?P<ms>\d+) milliseconds")

# ASC/ASCQ of the texts sg3-utils prints (lib/sg_lib_data.c) for the conditions a tape drive
# reports to TEST UNIT READY; LTFS reads the same codes (src/tape_drivers/vendor_compat.c).
SENSE_CODES = {
    "Logical unit not ready, cause not reportable": (0x04, 0x00),
    "Logical unit is in process of becoming ready": (0x04, 0x01),
    "Logical unit not ready, initializing command required": (0x04, 0x02),
    "Logical unit not ready, manual intervention required": (0x04, 0x03),
    "Logical unit not ready, operation in progress": (0x04, 0x07),
    "Logical unit not ready, offline": (0x04, 0x12),
    "Logical unit not ready, calibration required": (0x04, 0x17),
    "Cleaning requested": (0x00, 0x17),
    "Cleaning cartridge installed": (0x30, 0x03),
    "Cleaning failure": (0x30, 0x07),
    "Medium not present": (0x3A, 0x00),
    "Medium not present - tray closed": (0x3A, 0x01),
    "Medium not present - tray open": (0x3A, 0x02),
    "Medium not present - loadable": (0x3A, 0x03),
    "Medium not present - medium auxiliary memory accessible": (0x3A, 0x04),
}

BECOMING_READY = (0x04, 0x01)
MANUAL_INTERVENTION = (0x04, 0x03)  # LTFS vendor_compat.c 0x020403: drive needs an operator
OPERATION_IN_PROGRESS = (0x04, 0x07)
OFFLINE = (0x04, 0x12)  # taken offline at the library or drive panel
CLEANING_CARTRIDGE = (0x30, 0x03)  # LTFS 0x023003 EDEV_CLEANING_IN_PROGRESS
MEDIUM_NOT_PRESENT_ASC = 0x3A


@attrs.frozen(kw_only=True)
class UnitReady:
    """One TEST UNIT READY answer."""

    ready: bool
    sense_key: str | None = None
    code: tuple[int, int] | None = None  # (ASC, ASCQ), when the text is one we know
    text: str = ""  # the additional sense in sg3-utils' words
    progress: float | None = None  # percent done of a long operation
    seconds_left: float | None = None  # the drive's own estimate

    @property
    def detail(self) -> str:
        words = ": ".join(p for p in (self.sense_key, self.text) if p)
        return f"{words} ({self.progress:.2f}% done)" if self.progress is not None else words


def parse_turs(exit_code: int, stdout: str, stderr: str) -> UnitReady:
    if exit_code == 0:
        return UnitReady(ready=True)
    text = stdout + "\n" + stderr
    key = _KEY.search(text)
    additional = _ADDITIONAL.search(text)
    progress = _PROGRESS.search(text)
    estimate = _ESTIMATE.search(text)
    words = additional.group("text") if additional else ""
    code = SENSE_CODES.get(words)
    if code is None and (numbers := _CODES.search(words)):
        code = (int(numbers.group("asc"), 16), int(numbers.group("ascq"), 16))
    return UnitReady(
        ready=False,
        sense_key=key.group("key") if key else None,
        code=code,
        text=words or _last_line(stdout) or _last_line(stderr),
        progress=float(progress.group("pct")) if progress else None,
        seconds_left=int(estimate.group("ms")) / 1000 if estimate else None,
    )


def state_of(answer: UnitReady) -> DriveState:
    """The drive state a not-ready answer means; LOADING for a drive that will get ready on its
    own (the DT device activity tells loading from calibrating, cleaning and unloading)."""
    if answer.ready:
        return DriveState.READY
    code = answer.code
    if code is not None and code[0] == MEDIUM_NOT_PRESENT_ASC:
        return DriveState.EMPTY
    if code == CLEANING_CARTRIDGE:
        return DriveState.CLEANING
    if code in (BECOMING_READY, OPERATION_IN_PROGRESS):
        return DriveState.LOADING
    if code in (MANUAL_INTERVENTION, OFFLINE) or answer.sense_key == "Hardware Error":
        return DriveState.OUT_OF_SERVICE
    return DriveState.NOT_READY


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
