"""Names and locators that come from outside (Portal, external ids): refused unless they stay put.

A name must be one plain path component; a locator a relative posix path whose components are
plain names, which `safe_join` / `safe_lookup` also keep from passing through a symbolic link
that leads outside the archive root.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

from archive_core.errors import ArchiveCoreError, UnsafeName
from archive_core.naming import LAYOUTS, NAME_MAX


def _shown(text: str) -> str:
    """A name quoted for an error message: escapes visible, very long names shortened."""
    if len(text) <= 120:
        return repr(text)
    return f"{text[:100]!r}… ({len(os.fsencode(text))} bytes)"


def _check_component(part: str, *, whole: str, what: str) -> None:
    if part == "":
        raise UnsafeName(
            f"Refusing {what} {_shown(whole)}: it has an empty path component "
            "(a doubled or trailing '/').",
            paths=(whole,),
        )
    if part in (".", ".."):
        raise UnsafeName(
            f"Refusing {what} {_shown(whole)}: it has a {part!r} component; only plain names "
            "inside the archive root are allowed.",
            paths=(whole,),
        )
    length = len(os.fsencode(part))
    if length > NAME_MAX:
        raise UnsafeName(
            f"Refusing {what} {_shown(whole)}: its component {_shown(part)} is {length} bytes "
            f"long; file systems allow at most {NAME_MAX}.",
            paths=(whole,),
        )


def _check_text(text: str, *, what: str) -> None:
    if not isinstance(text, str):
        raise UnsafeName(f"Refusing {what} {text!r}: it is not text.", paths=(repr(text),))
    if not text:
        raise UnsafeName(f"Refusing an empty {what}.")
    if "\0" in text:
        raise UnsafeName(f"Refusing {what} {_shown(text)}: it contains a NUL byte.", paths=(text,))


def check_name(name: str, *, what: str = "file name") -> str:
    """Return `name` if it is one safe path component; raise UnsafeName naming it otherwise.

    Refused: empty, NUL bytes, '/', '.' and '..', more than 255 bytes.
    """
    _check_text(name, what=what)
    if "/" in name:
        raise UnsafeName(
            f"Refusing {what} {_shown(name)}: it contains '/', but must be a single name.",
            paths=(name,),
        )
    _check_component(name, whole=name, what=what)
    return name


def layout_locator(layout: str, *, name: str, item_id: str | None, today: dt.date) -> str:
    """Where a copy named `name` goes under root by `layout` (one of LAYOUTS).

    Raises UnsafeName for a hostile name or item id, ArchiveCoreError when the 'item' layout
    has no item id to store under.
    """
    name = check_name(name, what="archive name")
    if layout == "item":
        if not item_id:
            raise ArchiveCoreError(
                f"The 'item' layout stores {name} under its item id, but none was given."
            )
        return f"{check_name(item_id, what='item id')}/{name}"
    if layout == "date":
        return f"{today:%Y/%m/%d}/{name}"
    if layout != "flat":
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    return name


def check_locator(locator: str, *, what: str = "locator") -> str:
    """Return `locator` if it is a safe relative posix path; raise UnsafeName naming it if not.

    For storage without a file system (object stores, tape indexes), where `safe_join` has
    no root to resolve against: the same refusals (empty, NUL bytes, absolute, '.' or '..'
    components, empty components, components over 255 bytes), no symlink check.
    """
    _locator_parts(locator, what=what, root=None)
    return locator


def _locator_parts(locator: str, *, what: str, root: str | None) -> list[str]:
    _check_text(locator, what=what)
    if locator.startswith("/"):
        where = f"the archive root {root}" if root is not None else "the archive target"
        raise UnsafeName(
            f"Refusing {what} {_shown(locator)}: it is an absolute path; only paths relative "
            f"to {where} are allowed.",
            paths=(locator,),
        )
    parts = locator.split("/")
    for part in parts:
        _check_component(part, whole=locator, what=what)
    return parts


def safe_join(root: str | os.PathLike[str], locator: str, *, what: str = "locator") -> Path:
    """`root / locator`, refusing any locator that could lead outside `root`.

    `locator` is a relative posix path (an archive name, or the part of an external id after
    the target). Refused with UnsafeName: empty, NUL bytes, absolute, '.' or '..' components,
    empty components, components over 255 bytes, and paths whose existing parts are symbolic
    links resolving outside root. Parts that do not exist yet are fine (they get created).
    """
    return Path(safe_lookup(root, locator, what=what)[0])


def safe_lookup(
    root: str | os.PathLike[str], locator: str, *, what: str = "locator", look: bool = True
) -> tuple[str, os.stat_result | None]:
    """`safe_join` for hot paths: the path as a string, and the lstat of its last component.

    The lstat is None when nothing exists there yet; callers that would stat the path next
    (is there a copy already?) save that call, which counts over thousands of small files.
    With `look=False` the last component is not looked at at all (None): for a caller
    that will only ever create it without following links (an O_EXCL create, a link).
    """
    parts = _locator_parts(locator, what=what, root=os.fspath(root))
    base = os.fspath(root)
    current = base
    real_root: str | None = None
    last = len(parts) - 1
    final: os.stat_result | None = None
    for index, part in enumerate(parts):
        current = os.path.join(current, part)
        if index == last and not look:
            return current, None
        try:
            info = os.lstat(current)
        except OSError:
            break  # nothing further exists, so nothing further can be a link
        if stat.S_ISLNK(info.st_mode):
            if real_root is None:
                real_root = os.path.realpath(base)
            target = os.path.realpath(current)
            if target != real_root and not target.startswith(real_root.rstrip("/") + "/"):
                prefix = "/".join(parts[: index + 1])
                raise UnsafeName(
                    f"Refusing {what} {_shown(locator)}: {_shown(prefix)} is a symbolic link "
                    f"that leads outside the archive root {base} (to {target}).",
                    paths=(locator,),
                )
        elif index < last and not stat.S_ISDIR(info.st_mode):
            break  # the open will fail with "Not a directory"; nothing can escape through it
        if index == last:
            final = info
    return current if final is not None else os.path.join(base, *parts), final
