"""Per-item steps the stager's tests hand it: importable by name, so worker processes run them too.

A task is `(key, source path, destination name)`; `stage_copy` stages the source under the
name in `root`. Some source names make a worker misbehave on purpose: `poison` leaves a
temporary file and kills its own process (as the OOM killer would).
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Sequence

from archive_core import transfer
from archive_core.model import ProgressCallback
from archive_core.transfer.stager import Result, Staged
from archive_core.workers import WorkerId

#: (key, source path, destination name under root)
Task = tuple[str, str, str]


def stage_copy(task: Task, progress: ProgressCallback | None, *, root: str) -> Result:
    key, source, name = task
    destination = os.path.join(root, name)
    if os.path.basename(source).startswith("poison"):
        with open(os.path.join(root, transfer.temporary_name(name)), "wb") as half:
            half.write(b"half a copy")
        os.kill(os.getpid(), signal.SIGKILL)
    if os.path.basename(source).startswith("denied"):
        raise PermissionError(errno.EACCES, "Permission denied", source)
    if os.path.basename(source).startswith("bug"):
        raise ValueError("a bug in the stage step")
    staged = transfer.stage_file(source, destination, replace=False, progress=progress, root=root)
    return Staged(key=key, locator=name, staged=staged)


def sweep_root(tasks: Sequence[Task], made_by: WorkerId, *, root: str) -> None:
    """What a dead worker left: its temporary files under root (its pid is gone now)."""
    transfer.sweep_partials(root)
