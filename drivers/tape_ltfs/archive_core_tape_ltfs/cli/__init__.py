"""`archive-core tape ...`: the operator's commands for a tape library (real or simulated).

Every command prints a line or two for a person, or with `--json` one object of the versioned
schema in `output.SCHEMA`; its exit status says what to do next (`output.EXIT_*`).
"""

from archive_core_tape_ltfs.cli import ltfs, media, moves, plan, prepare, show, sim  # noqa: F401
from archive_core_tape_ltfs.cli.common import tape

__all__ = ["tape"]
