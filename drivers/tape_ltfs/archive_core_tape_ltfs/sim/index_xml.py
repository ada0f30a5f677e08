"""A captured index as the LTFS 2.4 index XML that ltfs writes with `-o capture_index` and
`ltfsck --capture-index` (LinearTapeFileSystem/ltfs `src/libltfs/xml_writer_libltfs.c`: one
element a line, the volume name as the root directory's name, directories nested by path,
every extent of a file, names LTFS cannot store verbatim percent-encoded).

Written line by line to its file, so an index of a full tape never sits in memory as XML.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import attrs
from archive_core_tape_ltfs.model import CapturedIndex, IndexedFile

CREATOR = "IBM LTFS 2.4.5.1 (10520) - Linux - ltfs (simulated)"


def _encoded(name: str) -> tuple[str, bool]:
    """`name` as LTFS writes it, and whether it is percent-encoded: LTFS encodes a name with a
    `:` or a control character (invalid in XML, or in the names of other systems), and then
    its `%` signs too, so the reader's unquote gives the name back."""
    if not any(c == ":" or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return name, False
    special = {":", "%"}
    return "".join(
        f"%{ord(c):02X}" if c in special or ord(c) < 0x20 or ord(c) == 0x7F else c for c in name
    ), True


def _name(name: str) -> str:
    text, encoded = _encoded(name)
    attribute = ' percentencoded="true"' if encoded else ""
    return f"<name{attribute}>{escape(text)}</name>"


def _time(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    nanoseconds = round((seconds % 1) * 1e9) % 1_000_000_000
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanoseconds:09d}Z"


@attrs.define
class _Directory:
    directories: dict[str, _Directory] = attrs.Factory(dict)
    files: list[IndexedFile] = attrs.Factory(list)


def _tree(files: Iterable[IndexedFile]) -> _Directory:
    root = _Directory()
    for file in files:
        *parents, _leaf = file.path.split("/")
        here = root
        for part in parents:
            here = here.directories.setdefault(part, _Directory())
        here.files.append(file)
    return root


def _times(when: str) -> Iterator[str]:
    for tag in ("creationtime", "changetime", "modifytime", "accesstime", "backuptime"):
        yield f"<{tag}>{when}</{tag}>"


def _file(file: IndexedFile, when: str) -> Iterator[str]:
    yield "<file>"
    yield _name(file.path.rsplit("/", 1)[-1])
    yield f"<length>{file.size}</length>"
    yield "<readonly>false</readonly>"
    yield from _times(when)
    yield f"<fileuid>{file.fileuid}</fileuid>"
    if file.extents:
        yield "<extentinfo>"
        for extent in sorted(file.extents, key=lambda e: e.file_offset):
            yield "<extent>"
            yield f"<fileoffset>{extent.file_offset}</fileoffset>"
            yield f"<partition>{extent.partition}</partition>"
            yield f"<startblock>{extent.startblock}</startblock>"
            yield f"<byteoffset>{extent.byte_offset}</byteoffset>"
            yield f"<bytecount>{extent.byte_count}</bytecount>"
            yield "</extent>"
        yield "</extentinfo>"
    yield "</file>"


def _directory(name: str, tree: _Directory, uids: Iterator[int], when: str) -> Iterator[str]:
    yield "<directory>"
    yield _name(name)
    yield "<readonly>false</readonly>"
    yield from _times(when)
    yield f"<fileuid>{next(uids)}</fileuid>"
    yield "<contents>"
    for child in sorted(tree.directories):
        yield from _directory(child, tree.directories[child], uids, when)
    for file in sorted(tree.files, key=lambda f: f.path):
        yield from _file(file, when)
    yield "</contents>"
    yield "</directory>"


def _directory_count(tree: _Directory) -> int:
    return 1 + sum(_directory_count(d) for d in tree.directories.values())


def index_lines(index: CapturedIndex, *, volume_name: str, when: float) -> Iterator[str]:
    """The index XML of `index`, a line at a time; `when` (seconds since the epoch) stamps the
    update and every file's times."""
    stamp = _time(when)
    tree = _tree(index.files)
    # Directories take file uids after the files' own (LTFS counts both in one sequence).
    first = max((f.fileuid for f in index.files), default=0) + 1
    highest = first + _directory_count(tree) - 1
    yield '<?xml version="1.0" encoding="UTF-8"?>'
    yield '<ltfsindex version="2.4.0">'
    yield f"<creator>{escape(CREATOR)}</creator>"
    yield f"<volumeuuid>{index.volume_uuid}</volumeuuid>"
    yield f"<generationnumber>{index.generation}</generationnumber>"
    yield f"<updatetime>{stamp}</updatetime>"
    if index.location:
        partition, block = index.location.split(":")
        yield "<location>"
        yield f"<partition>{partition}</partition>"
        yield f"<startblock>{block}</startblock>"
        yield "</location>"
    yield "<allowpolicyupdate>true</allowpolicyupdate>"
    yield f"<highestfileuid>{highest}</highestfileuid>"
    yield "<volumelockstate>unlocked</volumelockstate>"
    yield from _directory(volume_name, tree, iter(range(first, highest + 1)), stamp)
    yield "</ltfsindex>"


def write_index(path: Path, index: CapturedIndex, *, volume_name: str, when: float) -> None:
    """Write `index` to `path` as ltfs does (its directory must exist, as ltfs's must)."""
    with open(path, "w", encoding="utf-8") as out:
        for line in index_lines(index, volume_name=volume_name, when=when):
            out.write(line + "\n")
