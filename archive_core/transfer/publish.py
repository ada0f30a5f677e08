"""Publishing staged copies under their final names, atomically and durably, a batch at a time.

Order for a batch: its bytes made durable (one syncfs per file system), every link or
rename, then one fsync per directory. An archive copy never replaces what is under its name;
a restore replaces it atomically.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from typing import BinaryIO

from archive_core.errors import TransferFailed
from archive_core.model import ProgressCallback
from archive_core.transfer import durability
from archive_core.transfer._noreplace import link_or_rename_no_replace
from archive_core.transfer._unnamed import link_unnamed
from archive_core.transfer.hashing import Digests, hash_file
from archive_core.transfer.partials import temporary_name
from archive_core.transfer.staging import StagedFile, abandon, stage_file

#: Returned by `publish_staged` for a file whose destination already held the very same bytes
#: (a re-run after a crash between publish and the journal): nothing was changed there.
ALREADY_PUBLISHED = "already published"


def sync_staged(staged: Sequence[StagedFile]) -> list[TransferFailed | None]:
    """First step of publishing: make the bytes of staged files durable.

    One syncfs per file system covers every file not already fsynced on its own, instead
    of one fsync each. Safe to run in a background thread while more files are staged (it
    may then make some of those durable too). Returns, aligned with `staged`, None or the
    error that means the file must not be published.
    """
    results: list[TransferFailed | None] = [None] * len(staged)
    by_device: dict[int, tuple[str, list[int]]] = {}
    devices: dict[str, int | OSError] = {}  # a chunk's files mostly share a few directories
    for index, item in enumerate(staged):
        if item.durable:
            continue
        parent = os.path.dirname(item.destination)
        device = devices.get(parent)
        if device is None:
            try:
                device = os.stat(parent).st_dev
            except OSError as exc:
                device = exc
            devices[parent] = device
        if isinstance(device, OSError):
            results[index] = _publish_error(item, device)
            continue
        by_device.setdefault(device, (parent, []))[1].append(index)
    for directory, indexes in by_device.values():
        try:
            durability.sync_filesystem(directory)
        except OSError as exc:
            for index in indexes:
                results[index] = _publish_error(staged[index], exc)
    return results


def publish_staged(
    staged: Sequence[StagedFile],
    *,
    sync: bool = True,
    stop: Callable[[], bool] | None = None,
) -> list[TransferFailed | str | None]:
    """Publish staged files under their final names, durably, with one sync for the batch.

    Order: `sync_staged`, then every link or rename, then one fsync per distinct directory.
    Returns, aligned with `staged`, None for each file published, ALREADY_PUBLISHED where
    the destination already held the same bytes, or the error that kept it back (its
    staged bytes are dropped). A destination holding anything else is replaced or left in
    place, as each file was staged to (`stage_file(replace=...)`). `sync=False` skips the
    syncs (faster, not crash-safe). `stop`, asked before each name is published, ends the
    publishing once it answers True: the rest are dropped (whoever asked for them is gone).
    """
    results: list[TransferFailed | str | None] = (
        sync_staged(staged) if sync else [None] * len(staged)  # type: ignore[assignment]
    )
    for index, item in enumerate(staged):
        if results[index] is None and stop is not None and stop():
            results[index] = TransferFailed(
                f"{item.destination} was not published: its batch was stopped.",
                paths=(item.destination,),
                retryable=True,
            )
        if results[index] is not None:
            item.discard()
            continue
        try:
            if _publish(item):
                results[index] = ALREADY_PUBLISHED
        except TransferFailed as exc:
            results[index] = exc
            item.discard()
        except OSError as exc:
            results[index] = _publish_error(item, exc)
            item.discard()
    if sync:
        dirs: dict[str, list[int]] = {}
        for index, item in enumerate(staged):
            # A name found already there may be as fresh as ours (a worker killed after its
            # rename, before its directory fsync): it is made durable too.
            if results[index] is None or results[index] is ALREADY_PUBLISHED:
                for directory in item.sync_dirs:
                    dirs.setdefault(directory, []).append(index)
        for directory, indexes in dirs.items():
            try:
                durability.fsync_directory(directory)
            except OSError as exc:
                for index in indexes:
                    if not isinstance(results[index], TransferFailed):
                        results[index] = TransferFailed(
                            f"{staged[index].destination} was written, but its directory "
                            f"{directory} could not be synced ({exc.strerror or exc}), so it "
                            "may not survive a crash.",
                            paths=(os.fspath(staged[index].destination),),
                            retryable=True,
                        )
    return results


def _publish(item: StagedFile) -> bool:
    """Give a staged file its destination's name; True when the very same bytes were there
    already (they are kept, and the staged copy dropped).

    Without `replace`, every step refuses to overwrite (a link, or a rename that must not
    replace): whatever appears under the name, even between our look and our publish, is
    never overwritten, and the file fails with TransferFailed saying what is there.
    """
    if item.unnamed is None:
        assert item.temp is not None
        if item.replace:
            os.replace(item.temp, item.destination)
            return False
        try:
            link_or_rename_no_replace(item.temp, item.destination)
        except FileExistsError:
            if _holds(item.destination, item.digests):
                abandon(item.temp, ())
                return True
            raise name_taken(item.destination, size=item.digests.size) from None
        return False
    handle = item.unnamed
    try:
        try:
            link_unnamed(handle, item.destination)
            return False
        except FileExistsError:
            if _holds(item.destination, item.digests):
                return True
            if not item.replace:
                raise name_taken(item.destination, size=item.digests.size) from None
        # A destination holding other bytes is replaced atomically, as a rename would: the
        # file is linked beside it under a temporary name first.
        parent, name = os.path.split(item.destination)
        temp = os.path.join(parent, temporary_name(name))
        link_unnamed(handle, temp)
        try:
            os.replace(temp, item.destination)
        except BaseException:
            abandon(temp, ())
            raise
        return False
    finally:
        handle.close()


def name_taken(destination: str, *, size: int | None = None) -> TransferFailed:
    """The error for a destination that holds something other than the bytes to publish there.

    For an archive copy this is damage or a foreign file (archive names carry the sha1 of
    their content): it is left for an admin to look at, never replaced.
    """
    kept = "It was left in place; nothing was replaced."
    try:
        info = os.lstat(destination)
    except FileNotFoundError:
        return TransferFailed(
            f"Could not publish {destination}: another file was under this name a moment ago "
            "and is gone now; try again. Nothing was replaced.",
            paths=(destination,),
            retryable=True,
        )
    except OSError as exc:
        return TransferFailed(
            f"Could not publish {destination}: something is under this name but cannot be "
            f"looked at ({exc.strerror or exc}). {kept}",
            paths=(destination,),
            retryable=True,
        )
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if size is not None and info.st_size != size:
            detail = f"{info.st_size} bytes, not the {size} bytes of this copy"
        else:
            detail = "the same size, other bytes"
        what = f"a different file already exists under this name ({detail})"
    elif stat.S_ISLNK(mode):
        try:
            what = f"a symbolic link (to {os.readlink(destination)}) is under this name"
        except OSError:
            what = "a symbolic link is under this name"
    elif stat.S_ISDIR(mode):
        what = "a directory is under this name"
    else:
        what = "something other than a regular file (a FIFO, socket or device) is there"
    return TransferFailed(f"Could not publish {destination}: {what}. {kept}", paths=(destination,))


def _holds(path: str, digests: Digests) -> bool:
    """Whether `path` is a regular file (not a link) holding exactly the bytes of `digests`."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size != digests.size:
            return False
        return hash_file(path, follow_symlinks=False).sha1 == digests.sha1
    except (OSError, TransferFailed):
        return False


def _publish_error(item: StagedFile, exc: OSError) -> TransferFailed:
    return TransferFailed(
        f"Could not publish {item.destination}: {exc.strerror or exc}.",
        paths=(os.fspath(item.destination),),
        retryable=True,
    )


def publish_file(
    source: str | os.PathLike[str] | BinaryIO,
    destination: str | os.PathLike[str],
    *,
    replace: bool,
    expected_sha1: str | None = None,
    progress: ProgressCallback | None = None,
    fsync: bool = True,
    direct_io: bool = True,
    root: str | os.PathLike[str] | None = None,
) -> Digests:
    """Copy one file atomically: temp beside destination, sha1 check, fsync, publish, fsync dir.

    Never leaves a partial file under `destination`. `replace` is as for `stage_file`: True
    (a restore into a destination of Portal's) replaces what is there atomically; an archive
    copy passes False, so a taken name fails and is left as it is. Raises FixityMismatch or
    TransferFailed.
    """
    staged = stage_file(
        source,
        destination,
        replace=replace,
        expected_sha1=expected_sha1,
        progress=progress,
        durable=fsync,
        direct_io=direct_io,
        root=root,
    )
    error = publish_staged([staged], sync=fsync)[0]
    if isinstance(error, TransferFailed):
        raise error
    return staged.digests
