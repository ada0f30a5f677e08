"""One file's work on a copy: archive, restore or verify it, in the driver's process or a worker.

Module-level functions with plain arguments, so the stager can run them in a worker process
too (it names them to the worker's interpreter, bound with functools.partial).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence

import attrs

from archive_core import (
    ArchiveItem,
    CopyRef,
    FileOutcome,
    ProgressCallback,
    RestoreItem,
    WorkerId,
    transfer,
)
from archive_core.transfer.stager import Result, Staged
from archive_core_filesys._root import not_there

log = logging.getLogger(__name__)

#: What archiving one item takes once the driver's process has placed it: (item, locator).
ArchiveTask = tuple[ArchiveItem, str]


def stage_archive(
    task: ArchiveTask,
    progress: ProgressCallback | None,
    *,
    root: str,
    fsync: bool,
    direct_io: bool,
) -> Result:
    """Write the item beside its locator and check it, or find it there already.

    Returns the staged copy, or a `reused` success when the very same bytes are already
    published under that name. Anything else under that name is never replaced: the file
    fails, saying what is there. Raises for a per-file failure (the stager reports it).
    """
    item, locator = task
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


def sweep_archive_directories(
    tasks: Sequence[ArchiveTask], made_by: WorkerId, *, root: str
) -> None:
    """After a staging worker died or was stopped: sweep the directories of its tasks.

    Only ever directories under root, which hold nothing but ours; the worker is gone, so
    its temporary files are stale (with any other dead worker's).
    """
    directories = {os.path.dirname(os.path.join(root, locator)) for _, locator in tasks}
    for directory in directories:
        try:
            transfer.sweep_partials(directory)
        except OSError as exc:
            log.warning("could not sweep %s: %s", directory, exc)


def stage_restore(
    item: RestoreItem,
    progress: ProgressCallback | None,
    *,
    root: str,
    fsync: bool,
    direct_io: bool,
) -> Result:
    """Copy the archived copy beside Portal's destination and check it; staged, or why not."""
    source = transfer.safe_join(root, item.locator, what="locator")
    destination = item.destination
    if not destination or not os.path.isabs(destination) or "\0" in destination:
        problem = "contains a NUL byte" if "\0" in destination else "is not an absolute path"
        return FileOutcome.failure(
            item.key, f"restore destination {destination!r} {problem}", locator=item.locator
        )
    # Portal's folder is not ours to sweep: only the leftovers of our own earlier restore
    # to this very destination go, and only once the journal says its worker died.
    if item.abandoned_by:
        transfer.remove_partials(
            os.path.dirname(destination),
            os.path.basename(destination),
            made_by=item.abandoned_by,
        )
    try:
        stream = transfer.open_regular(source)
    except (FileNotFoundError, NotADirectoryError):
        return not_there(root, item.key, item.locator, consequence="nothing was restored")
    except OSError as exc:
        return FileOutcome.failure(
            item.key,
            f"archived copy {item.locator} in {root} cannot be read: {exc.strerror or exc}",
            locator=item.locator,
            retryable=True,
        )
    with stream:
        staged = transfer.stage_file(
            stream,
            destination,
            replace=True,  # Portal asked for this file back, whatever is there now
            expected_sha1=item.sha1,
            progress=progress,
            durable=None if fsync else False,
            direct_io=direct_io,
        )
    return Staged(key=item.key, locator=item.locator, staged=staged)


def remove_restore_leftovers(items: Sequence[RestoreItem], made_by: WorkerId) -> None:
    """After a staging worker died or was stopped: remove its temporary files for these
    destinations, and nothing else of Portal's folders (one listing per folder)."""
    by_folder: dict[str, list[str]] = {}
    for item in items:
        if item.destination and os.path.isabs(item.destination) and "\0" not in item.destination:
            folder, name = os.path.split(item.destination)
            by_folder.setdefault(folder, []).append(name)
    for folder, names in by_folder.items():
        transfer.remove_partials(folder, names, made_by=[made_by])


def verify_copy(item: CopyRef, progress: ProgressCallback | None, *, root: str) -> FileOutcome:
    """Read the copy back and hash it; ok when sha1 (and size) are those recorded."""
    path = transfer.safe_join(root, item.locator, what="locator")
    try:
        digests = transfer.hash_file(path, progress=progress)
    except (FileNotFoundError, NotADirectoryError):
        return not_there(
            root, item.key, item.locator, consequence=f"{item.locator} cannot be verified"
        )
    found = {"locator": item.locator, **attrs.asdict(digests)}
    expected = item.sha1.strip().lower() if item.sha1 else None
    if expected and digests.sha1 != expected:
        return FileOutcome.failure(
            item.key,
            f"archived copy {item.locator} in {root} hashes to sha1 {digests.sha1}, "
            f"expected {expected}",
            **found,
        )
    if item.size is not None and digests.size != item.size:
        return FileOutcome.failure(
            item.key,
            f"archived copy {item.locator} in {root} has {digests.size} bytes, "
            f"expected {item.size}",
            **found,
        )
    return FileOutcome.success(item.key, **found)
