"""Archiving one file under its locator: in the driver's process or in a staging worker."""

from __future__ import annotations

import os
import stat

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
    """Write `item` beside `locator` and check it, or find it there already.

    Returns the staged copy, or a `reused` success when the very same bytes are already
    published under that name. Anything else under that name is never replaced: the file
    fails, saying what is there. Raises for a per-file failure (the caller reports it).
    """
    # The name's folders are checked now; the name itself is only ever created (O_EXCL, or
    # a link that refuses to overwrite), never followed.
    destination, _ = transfer.safe_lookup(root, locator, what="archive location", look=False)
    if item.abandoned_by:
        # The core's journal says these workers died writing this name, possibly on another
        # host whose processes the sweep cannot check. Only theirs go: another worker may be
        # writing the same name right now.
        transfer.remove_partials(
            os.path.dirname(destination),
            os.path.basename(destination),
            made_by=item.abandoned_by,
        )
    expected = item.sha1.strip().lower() if item.sha1 else None
    _, source = transfer.open_first_readable(item.sources)
    with source:
        # A small copy is published by a link that finds an existing one by itself (and keeps
        # it when it holds the same bytes). A large one, or one a dead worker was writing, is
        # looked for first: copying it again would cost more than the look.
        if expected and (item.resumed or source.size >= transfer.LARGE_FILE):
            reused = _existing_copy(item, locator, destination, source.size, expected, progress)
            if reused is not None:
                return reused
        staged = transfer.stage_file(
            source,
            destination,
            replace=False,
            expected_sha1=expected,
            progress=progress,
            durable=None if fsync else False,
            direct_io=direct_io,
            root=root,
            size=source.size,
        )
    return Staged(key=item.key, locator=locator, staged=staged)


def _existing_copy(
    item: ArchiveItem,
    locator: str,
    destination: str,
    size: int,
    expected: str,
    progress: ProgressCallback | None,
) -> FileOutcome | None:
    """A `reused` success when `destination` already holds these very bytes; None when
    nothing is there. Anything else there fails the file now, before a copy that could
    never be published is written (the publish itself refuses to replace it all the same).
    """
    try:
        existing = os.lstat(destination)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(existing.st_mode) or existing.st_size != size:
        raise transfer.name_taken(destination, size=size)
    digests = transfer.hash_file(destination, progress=progress, follow_symlinks=False)
    if digests.sha1 != expected:
        raise transfer.name_taken(destination, size=size)
    return FileOutcome.success(
        item.key,
        locator=locator,
        size=digests.size,
        sha1=digests.sha1,
        sha256=digests.sha256,
        reused=True,
    )
