"""Portal-compatible names for archived files: `<stem>_<item_id>_<sha1><ext>`."""

from __future__ import annotations

import os
import re

#: Longest file name, in bytes, that common filesystems (ext4, XFS, LTFS, NTFS) accept.
NAME_MAX = 255


def archive_name(source: str, *, item_id: str | None, sha1: str | None) -> str:
    """Name Portal's reference plugin would give `source`, shortened to fit NAME_MAX.

    Two items sharing one sha1 get different names because the item id is part of it.
    Only the stem is shortened (on a character boundary), so item id, hash and extension stay
    intact and the name stays deterministic: archiving the same file again yields the same name.
    """
    base = os.path.basename(source.rstrip("/")) or "file"
    stem, ext = os.path.splitext(base)
    if not stem:  # ".bashrc": splitext gives the whole name as stem; keep that shape
        stem, ext = ext, ""
    suffix = (f"_{item_id}" if item_id else "") + (f"_{sha1}" if sha1 else "") + ext
    name = stem + suffix
    if len(name) <= NAME_MAX and (name.isascii() or len(name) * 4 <= NAME_MAX):
        return name  # fits in bytes too (UTF-8 takes at most 4 per character)
    budget = NAME_MAX - len(suffix.encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) > budget:
        stem = encoded[: max(budget, 0)].decode("utf-8", errors="ignore")
    return stem + suffix


_NAMED = re.compile(
    r"^(?P<stem>.+?)(?:_(?P<item>[^_/]+))?_(?P<sha1>[0-9a-f]{40})(?P<ext>\.[^._/]*)?$"
)


def parse_archive_name(name: str) -> tuple[str | None, str] | None:
    """(item id, sha1) of a name `archive_name` made, None for any other name. An item id
    holds no underscore (Vidispine's `VX-123`)."""
    found = _NAMED.match(os.path.basename(name))
    if found is None:
        return None
    return found["item"], found["sha1"]


def source_name(name: str) -> str | None:
    """A file name that `archive_name` turns into `name` again (its stem and extension);
    None when `name` is not one `archive_name` made."""
    found = _NAMED.match(os.path.basename(name))
    if found is None:
        return None
    return found["stem"] + (found["ext"] or "")


#: Where a copy goes under a target's root: 'flat' = <name>, 'item' = <item_id>/<name>,
#: 'date' = YYYY/MM/DD/<name> (`transfer.layout_locator`). Drivers that keep files in
#: directories offer these alike.
LAYOUTS = ("flat", "item", "date")
