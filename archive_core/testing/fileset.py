"""A stand-in for Portal's FileSet (`portal.archive_framework.utils.FileSet`).

A namedtuple with the fields Portal is known to pass, changed only through `_replace`, as
Portal's own is. Portal is not installable outside Portal, so tests hand the plugin these.
"""

from __future__ import annotations

from collections import namedtuple

FileSet = namedtuple(
    "FileSet",
    ["files", "external_ids", "item_id", "sha1", "shape_id", "component_id"],
    defaults=([], None, None, None, None),
)
