"""Archiving one file under its locator: in the driver's process or in a staging worker."""

from __future__ import annotations

import os
import stat
from typing import Any

from archive_core import transfer
from archive_core.model import ArchiveItem, FileOutcome, ProgressCallback
from archive_core_filesys._batch import Result, Staged


def stage_archive(
    item: ArchiveItem,
    locator: str,
    *,
    root: str,
    fsync: bool,
    direct_io: bool,
    progress: ProgressCallback | None,
) -> Result:
    """Write `item` under a temporary name beside `locator` and check it, or find it there.

    Returns the staged copy, or a `reused` success when the very same bytes are already
    published under that name. Raises for a per-file failure (the caller reports it).
    """
    destination, existing = transfer.safe_lookup(root, locator, what="archive location")
    if item.resumed:
        # The core's journal says the last attempt at this name died mid-transfer,
        # possibly on another host whose processes the sweep cannot check.
        transfer.remove_partials(os.path.dirname(destination), os.path.basename(destination))
    expected = item.sha1.strip().lower() if item.sha1 else None
    opened: tuple[str, Any] | None = None
    try:
        size = item.size
        if expected and existing is not None and stat.S_ISREG(existing.st_mode):
            # A copy is already there: if it is this very file (a re-run after a crash
            # between publish and the core's journal), report it instead of copying.
            if size is None:
                opened = transfer.open_first_readable(item.sources)
                size = os.fstat(opened[1].fileno()).st_size
            if existing.st_size == size:
                digests = transfer.hash_file(destination, progress=progress, follow_symlinks=False)
                if digests.sha1 == expected:
                    return FileOutcome.success(
                        item.key,
                        locator=locator,
                        size=digests.size,
                        sha1=digests.sha1,
                        sha256=digests.sha256,
                        reused=True,
                    )
        if opened is None:
            opened = transfer.open_first_readable(item.sources)
        staged = transfer.stage_file(
            opened[1],
            destination,
            expected_sha1=expected,
            progress=progress,
            durable=None if fsync else False,
            direct_io=direct_io,
            root=root,
            size=size,
        )
    finally:
        if opened is not None:
            opened[1].close()
    return Staged(key=item.key, locator=locator, staged=staged)
