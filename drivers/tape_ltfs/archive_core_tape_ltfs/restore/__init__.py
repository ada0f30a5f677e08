"""The restore scheduler of the tape driver: which copy, which cartridge in which drive, in
what order, and the executor that runs the plan on a library.

`plan_restore(files, view)` makes a `RestorePlan` (moving nothing; `describe()` prints it),
`restore_files(files, library, read=...)` plans, runs and retries from the next copies,
`run_plan` runs one plan. Nothing here imports a backend: it speaks the port.
"""

from archive_core_tape_ltfs.restore.batch import FileFailed, RestoreOutcome, restore_files
from archive_core_tape_ltfs.restore.bound import lower_bound
from archive_core_tape_ltfs.restore.executor import (
    COPY_FAILURES,
    FailedRead,
    FileRestored,
    ReadFile,
    RunResult,
    drive_workers,
    run_plan,
)
from archive_core_tape_ltfs.restore.offline import CartridgesOffline, MissingCartridge
from archive_core_tape_ltfs.restore.plan import CartridgeRun, DrivePlan, ReadStep, RestorePlan
from archive_core_tape_ltfs.restore.planner import plan_restore
from archive_core_tape_ltfs.restore.request import TapeCopy, WantedFile
from archive_core_tape_ltfs.restore.view import DriveView, LibraryView, Where, read_view

__all__ = [
    "COPY_FAILURES",
    "CartridgeRun",
    "CartridgesOffline",
    "DrivePlan",
    "DriveView",
    "FailedRead",
    "FileFailed",
    "FileRestored",
    "LibraryView",
    "MissingCartridge",
    "ReadFile",
    "ReadStep",
    "RestoreOutcome",
    "RestorePlan",
    "RunResult",
    "TapeCopy",
    "WantedFile",
    "Where",
    "drive_workers",
    "lower_bound",
    "plan_restore",
    "read_view",
    "restore_files",
    "run_plan",
]
