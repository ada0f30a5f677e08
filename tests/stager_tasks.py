"""Per-item steps the stager's tests hand it: importable by name, so worker processes run them too.

A task is `(key, source path, destination name)`; `stage_copy` stages the source under the
name in `root`. Some source names make a worker misbehave on purpose: `poison` leaves a
temporary file and kills its own process (as the OOM killer would), `slow` takes a while:
as long as the stager's hand-off interval (`_threads.HANDOFF_SECONDS`), so that worker
threads hand an early-stopped batch over a few files at a time rather than all of it in one
chunk published before the first outcome, and a worker process is mid-task at the close.
It is a real sleep because that interval runs on the stager's clock, and the early-stop
test in tests/test_stager.py builds its stager on the real one.
"""

from __future__ import annotations

import errno
import os
import signal
import time
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
    if os.path.basename(source).startswith("slow"):
        time.sleep(0.05)
    if os.path.basename(source).startswith("denied"):
        raise PermissionError(errno.EACCES, "Permission denied", source)
    if os.path.basename(source).startswith("bug"):
        raise ValueError("a bug in the stage step")
    staged = transfer.stage_file(source, destination, replace=False, progress=progress, root=root)
    return Staged(key=key, locator=name, staged=staged)


def sweep_root(tasks: Sequence[Task], made_by: WorkerId, *, root: str) -> None:
    """What a dead worker left: its temporary files under root (its pid is gone now)."""
    transfer.sweep_partials(root)
