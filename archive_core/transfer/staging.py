"""Staging a copy beside its destination: written, hashed and checked, not under its name yet.

`stage_file` writes a small file as an unnamed file in its destination's directory where the
file system allows it, anything else under a temporary name (`PartialName`); nothing is
visible under the destination until `publish.publish_staged` gives it the name.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from typing import BinaryIO

import attrs

from archive_core.errors import FixityMismatch, TransferFailed
from archive_core.model import ProgressCallback
from archive_core.transfer import directories
from archive_core.transfer._flags import O_CLOEXEC, O_DIRECT, O_NOFOLLOW
from archive_core.transfer._sinks import FdSink
from archive_core.transfer._unnamed import Unnamed, create_unnamed
from archive_core.transfer.hashing import LARGE_FILE, Digests, hash_while_moving, label_of, size_of
from archive_core.transfer.partials import temporary_name
from archive_core.transfer.sources import open_regular

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class StagedFile:
    """Bytes written and checked beside their destination, not yet under its name.

    Small files are held as an open unnamed file (`unnamed`) where the file system allows
    it, others under a temporary name (`temp`). Nothing is visible under `destination`
    until `publish.publish_staged` links or renames it; `discard` drops it. Paths are plain
    strings: thousands of these are made per batch, and Path objects would be most of
    their cost.
    """

    temp: str | None
    destination: str
    digests: Digests
    source: str  # what was read, for messages
    durable: bool  # already fsynced on its own (large files): the batch sync may skip it
    # Whether publishing may replace what is under `destination` (a restore into Portal's
    # folder) or must leave it in place and fail (an archive copy: never overwritten).
    replace: bool
    sync_dirs: tuple[str, ...]  # directories whose fsync makes the published name durable
    unnamed: Unnamed | None = attrs.field(default=None, eq=False)

    def discard(self) -> None:
        if self.unnamed is not None:
            self.unnamed.close()
        abandon(self.temp, ())


def stage_file(
    source: str | os.PathLike[str] | BinaryIO,
    destination: str | os.PathLike[str],
    *,
    replace: bool,
    expected_sha1: str | None = None,
    progress: ProgressCallback | None = None,
    durable: bool | None = None,
    direct_io: bool = True,
    root: str | os.PathLike[str] | None = None,
    size: int | None = None,
) -> StagedFile:
    """Copy `source` beside `destination`, not under its name yet, and check its sha1 there.

    A small file (size known, under LARGE_FILE) becomes an unnamed file in the destination's
    directory where the file system allows it, anything else a temporary name. `replace`
    says what publishing does with a destination that is taken: replace it atomically (a
    restore into Portal's folder), or leave it in place and fail that file (an archive
    copy, which is never overwritten). Missing parent directories are created: with
    `root` (an archive root), only below it, and a missing root raises TransferFailed.
    `durable=None` fsyncs large files on their own (in the calling thread, so several
    stage in parallel) and leaves small ones to the one sync of `publish_staged`. `root`
    also adds every directory between the destination and root to those fsynced at
    publish time, so new layout directories are durable too. `size`, when the caller
    already knows it, saves asking the source again. A sha1 mismatch raises FixityMismatch;
    any failure drops what was written (and directories made for it) before raising.
    """
    target = os.fspath(destination)
    parent, name = os.path.split(target)
    top = os.fspath(root) if root is not None else None
    if isinstance(source, str | os.PathLike):
        source_label = os.fspath(source)
        try:
            stream = open_regular(source)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise TransferFailed(
                f"Could not read {source_label}: {reason}.", paths=(source_label,)
            ) from exc
        owned = True
    else:
        stream = source
        source_label = label_of(source, "the source")
        owned = False
    try:
        if size is None:
            size = size_of(stream)
        large = size is None or size >= LARGE_FILE
        unnamed: Unnamed | None = None
        try:
            made = None if large else create_unnamed(parent, top)
            if made is not None:
                (unnamed, created), temp, direct = made, None, False
                fd = unnamed.fd
            else:
                temp, fd, direct, created = _create_temp(
                    parent, name, direct=direct_io and large, root=top
                )
        except OSError as exc:
            raise TransferFailed(
                f"Could not create a file in {parent}: {exc.strerror or exc}.",
                paths=(target,),
                retryable=exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO),
            ) from exc
        try:
            try:
                sink = FdSink(fd, target, flush_behind=large, direct=direct)
                digests = hash_while_moving(stream, source_label, size, sink, progress)
                if expected_sha1 and digests.sha1 != expected_sha1.strip().lower():
                    raise FixityMismatch(
                        path=source_label,
                        expected=expected_sha1,
                        actual=digests.sha1,
                        destination=target,
                        replacing=replace,
                    )
                synced = large if durable is None else durable
                if synced:
                    os.fsync(fd)
            finally:
                if unnamed is None:
                    os.close(fd)
        except OSError as exc:
            if unnamed is not None:
                unnamed.close()
            abandon(temp, created)
            raise TransferFailed(
                f"Could not write {target}: {exc.strerror or exc}.",
                paths=(target,),
                retryable=True,
            ) from exc
        except BaseException:
            if unnamed is not None:
                unnamed.close()
            abandon(temp, created)
            raise
    finally:
        if owned:
            stream.close()
    return StagedFile(
        temp=temp,
        destination=target,
        digests=digests,
        source=source_label,
        durable=synced,
        replace=replace,
        sync_dirs=directories.sync_dirs(parent, top, created),
        unnamed=unnamed,
    )


def _create_temp(
    parent: str, name: str, *, direct: bool, root: str | None
) -> tuple[str, int, bool, list[str]]:
    """Create a fresh temporary file in `parent` for `name` (directories only below `root`).

    Returns (path, fd, whether O_DIRECT is on, directories created).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC

    def create() -> tuple[str, int, bool]:
        temp = os.path.join(parent, temporary_name(name))
        if direct and O_DIRECT:
            try:
                return temp, os.open(temp, flags | O_DIRECT, 0o666), True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # This file system does not do O_DIRECT (tmpfs, some FUSE): write buffered.
        return temp, os.open(temp, flags, 0o666), False

    (temp, fd, direct_on), created = directories.create_in(parent, create, root)
    return temp, fd, direct_on, created


def abandon(temp: str | None, created: Sequence[str]) -> None:
    """Undo a failed staging: its temporary file, then the directories made for it if empty."""
    if temp is not None:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove temporary file %s: %s", temp, exc)
    directories.remove_created(created)
