"""How the harness quotes what it found: a few examples, a shortened text, one problem line."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

#: Examples quoted per violation: enough to find the files, short enough to read.
EXAMPLES = 3


def examples(items: Iterable[Any]) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:EXAMPLES])
    return shown + (f", ... ({len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else "")


def short(text: Any, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def found(what: str, items: Collection[Any], description: str) -> list[str]:
    """`what: N description: examples` when `items` is not empty, else no problem at all.

    Nearly every check reports this way; a list, so callers add it with `+=` unconditionally.
    """
    if not items:
        return []
    return [f"{what}: {len(items)} {description}: {examples(items)}"]
