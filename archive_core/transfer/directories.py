"""Directories a copy needs: made only below an archive root, undone when the copy fails, synced."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from archive_core.errors import TransferFailed

T = TypeVar("T")

#: How many times a file is re-tried when its directory vanished under it (a concurrent
#: delete removed the empty layout directory between mkdir and open).
_CREATE_ATTEMPTS = 3


def make_directories(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """Create `path` and missing parents; return the directories this call created.

    With `root`, only directories strictly below root are made. A missing root is most
    often the mount point of a share that is not mounted: creating it would write the
    archive onto whatever disk holds its parent, so TransferFailed says so instead.
    """
    current = os.path.normpath(os.fspath(path))
    top = os.path.normpath(os.fspath(root)) if root is not None else None
    if top is not None and current != top and not current.startswith(top.rstrip("/") + "/"):
        raise ValueError(f"{current} is not inside the archive root {top}")
    missing: list[str] = []
    while True:
        try:
            os.stat(current)
            break
        except FileNotFoundError:
            if current == top:
                raise root_missing(current) from None
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    created: list[str] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue  # another worker made it at the same moment
        created.append(directory)
    return tuple(created)


def root_missing(root: str | os.PathLike[str]) -> TransferFailed:
    """The error for an archive root that is not there: nothing is written, try again later."""
    return TransferFailed(
        f"archive root {os.fspath(root)} does not exist (is the share mounted?); "
        "nothing was written",
        paths=(os.fspath(root),),
        retryable=True,
    )


def create_in(parent: str, create: Callable[[], T], root: str | None) -> tuple[T, list[str]]:
    """`create()` a file in `parent`; returns its result and the directories made for it.

    The directory is made only when the create says it is missing, which saves a stat per
    file in the usual case and also covers a concurrent delete pruning it between mkdir and
    create. With `root`, nothing is made at or above it (see `make_directories`). On any
    failure the directories made are removed again.
    """
    created: list[str] = []
    try:
        for attempt in range(_CREATE_ATTEMPTS + 1):
            try:
                return create(), created
            except FileNotFoundError:
                if attempt == _CREATE_ATTEMPTS:
                    raise
                created.extend(make_directories(parent, root=root))
    except BaseException:
        remove_created(created)
        raise
    raise AssertionError("unreachable")


def remove_created(created: Sequence[str]) -> None:
    """Remove directories a failed copy made, newest first, while they are empty."""
    for directory in reversed(created):
        try:
            os.rmdir(directory)
        except OSError:
            break  # another copy is being written there, or it is not empty: keep it


def sync_dirs(parent: str, root: str | None, created: Sequence[str]) -> tuple[str, ...]:
    """Directories to fsync so a name in `parent` survives a crash, new directories included.

    With `root`, every directory from `parent` up to root: another worker may have created
    one of them in this batch and failed, so "created by this call" alone is not enough.
    """
    dirs = [parent]
    if root is not None and parent != root and parent.startswith(root.rstrip("/") + "/"):
        current = parent
        while current != root:
            current = os.path.dirname(current)
            dirs.append(current)
    dirs.extend(os.path.dirname(d) for d in created)
    return tuple(dict.fromkeys(dirs))
