"""What the harness sees on disk: trees of final-named and hidden files, counts, digests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import attrs

#: Where the core keeps its own files under a filesys root (the manifests).
CORE_DIRECTORY = ".archive-core"


@attrs.frozen(kw_only=True)
class Tree:
    """What is under a directory: final-named files, temporary files and directories."""

    files: dict[str, Path]  # relative posix path -> path, for names not starting with "."
    temporaries: list[Path]  # hidden names: `.<name>...partial` and anything else hidden
    directories: list[Path]


def scan(top: Path) -> Tree:
    files: dict[str, Path] = {}
    temporaries: list[Path] = []
    directories: list[Path] = []
    stack = [top]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        own = CORE_DIRECTORY in Path(current).relative_to(top).parts
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                directories.append(Path(entry.path))
                stack.append(Path(entry.path))
            elif entry.name.startswith("."):
                temporaries.append(Path(entry.path))
            elif not own:  # the core's own files (manifests) are no copies
                files[Path(entry.path).relative_to(top).as_posix()] = Path(entry.path)
    return Tree(files=files, temporaries=temporaries, directories=directories)


def count_entries(tops: Iterable[Path]) -> tuple[int, int]:
    """(final-named files, hidden files) under `tops`: the cheap scan a kill point polls."""
    final = hidden = 0
    stack = [os.fspath(t) for t in tops]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != CORE_DIRECTORY:
                        stack.append(entry.path)
                elif entry.name.startswith("."):
                    hidden += 1
                else:
                    final += 1
    return final, hidden


def sha1_of(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha1").hexdigest()
    except OSError:
        return None
