"""An LTFS index (XML, format 2.4: `xml_writer_libltfs.c`) read as a stream into a CapturedIndex.

A full tape holds up to about a million files; the index is read with iterparse and every
element is dropped as soon as it has been used, so memory grows with the files found, not with
the XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from os import PathLike
from typing import IO
from urllib.parse import unquote

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import CapturedIndex, Extent, IndexedFile

_EXTENT_FIELDS = ("fileoffset", "partition", "startblock", "byteoffset", "bytecount")


def _name(element: ET.Element) -> str:
    # Names LTFS cannot store verbatim (`:` and control characters) are percent-encoded.
    text = element.text or ""
    return unquote(text) if element.get("percentencoded") == "true" else text


def _extent(element: ET.Element) -> Extent:
    values = {child.tag: (child.text or "").strip() for child in element}
    missing = [f for f in _EXTENT_FIELDS if not values.get(f)]
    if missing:
        raise ValueError(f"an extent lacks {', '.join(missing)}")
    return Extent(
        partition=values["partition"],
        startblock=int(values["startblock"]),
        byte_offset=int(values["byteoffset"]),
        byte_count=int(values["bytecount"]),
        file_offset=int(values["fileoffset"]),
    )


def _file(element: ET.Element, directories: list[str]) -> IndexedFile | None:
    """The indexed file of a `<file>` element; None for a symlink (no data on tape)."""
    if element.find("symlink") is not None:
        return None
    name = element.find("name")
    if name is None:
        raise ValueError("a file has no name")
    extents = element.find("extentinfo")
    return IndexedFile(
        path="/".join([*directories, _name(name)]),
        size=int(element.findtext("length", "0")),
        fileuid=int(element.findtext("fileuid", "0")),
        extents=tuple(_extent(e) for e in extents.iterfind("extent"))
        if extents is not None
        else (),
    )


def _files(
    source: str | PathLike[str] | IO[bytes], header: dict[str, str]
) -> Iterator[IndexedFile]:
    # `elements` mirrors the open elements, `names` the open directories' names (the root's
    # name is the volume name, so paths start below it).
    elements: list[ET.Element] = []
    names: list[str] = []
    for event, element in ET.iterparse(source, events=("start", "end")):
        if event == "start":
            elements.append(element)
            if element.tag == "directory":
                names.append("")
            continue
        elements.pop()
        parent = elements[-1] if elements else None
        tag = element.tag
        if parent is None:
            continue
        if tag == "name" and parent.tag == "directory":
            names[-1] = _name(element)
        elif tag == "file":
            found = _file(element, names[1:])
            if found is not None:
                yield found
        elif tag == "directory":
            names.pop()
        elif parent.tag == "ltfsindex":
            header[tag] = (element.text or "").strip()
        elif parent.tag == "location" and len(elements) == 2:
            header[f"location.{tag}"] = (element.text or "").strip()
        if tag in ("file", "directory"):
            # Done with it: keep the tree from growing with the index.
            element.clear()
            parent.remove(element)


def parse_index(source: str | PathLike[str] | IO[bytes], *, origin: str) -> CapturedIndex:
    """Every file of an LTFS index with all its extents; `origin` names the index in errors."""
    header: dict[str, str] = {}
    try:
        files = tuple(_files(source, header))
        uuid = header["volumeuuid"]
        generation = int(header["generationnumber"])
    except (ET.ParseError, ValueError, KeyError) as exc:
        raise errors.InconsistentIndex(
            f"The LTFS index {origin} cannot be read ({exc}); the captured copy is damaged or "
            f"was cut short. Read the index from the cartridge again.",
            detail=str(exc),
        ) from exc
    partition = header.get("location.partition", "")
    block = header.get("location.startblock", "")
    return CapturedIndex(
        volume_uuid=uuid,
        generation=generation,
        files=files,
        location=f"{partition}:{block}" if partition and block else "",
    )
