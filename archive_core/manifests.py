"""Manifests: what a target holds, written beside the copies, so a lost catalog can come back.

One manifest per archive batch and target, JSON Lines: a header (format, target, policy,
batch, time), one line per new copy (item id and the other Portal ids known, archive name,
size, sha1, sha256, time, external id, locator, placement), and a trailer with the number of
entries and the sha256 of every line before it. The driver publishes it like a copy (whole or
not at all). A manifest whose trailer is missing (cut off) or does not match (edited) is
refused whole, with the reason, never trusted in part.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

FORMAT = 1
SUFFIX = ".manifest.jsonl"


@attrs.frozen(kw_only=True)
class ManifestEntry:
    external_id: str
    locator: str
    name: str
    item_id: str | None
    sha1: str | None
    sha256: str | None
    size: int | None
    time: dt.datetime
    placement: Mapping[str, Any] | None = None
    portal_ids: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Manifest:
    target: str
    policy: str
    batch: str
    created: dt.datetime
    entries: tuple[ManifestEntry, ...]


class ManifestRefused(ValueError):
    """A manifest that cannot be trusted; the message says why, for an admin."""


def manifest_name(batch: str, created: dt.datetime) -> str:
    return f"{created.astimezone(dt.UTC):%Y%m%dT%H%M%S}-{batch}{SUFFIX}"


def render(manifest: Manifest) -> str:
    """The manifest's text: header, entries, trailer."""
    lines = [
        _line(
            {
                "archive_core_manifest": FORMAT,
                "target": manifest.target,
                "policy": manifest.policy,
                "batch": manifest.batch,
                "created": manifest.created.astimezone(dt.UTC).isoformat(),
            }
        )
    ]
    stamps: dict[dt.datetime, str] = {}  # a batch's copies share their time: made once
    for e in manifest.entries:
        stamp = stamps.get(e.time)
        if stamp is None:
            stamp = stamps[e.time] = e.time.astimezone(dt.UTC).isoformat()
        # By hand, not attrs.asdict: this runs once per copy of every batch.
        values = {
            "external_id": e.external_id,
            "locator": e.locator,
            "name": e.name,
            "item_id": e.item_id,
            "sha1": e.sha1,
            "sha256": e.sha256,
            "size": e.size,
            "time": stamp,
            "placement": e.placement,
            "portal_ids": dict(e.portal_ids),
        }
        lines.append(_line(values))
    body = "".join(lines)
    trailer = {
        "entries": len(manifest.entries),
        "sha256": hashlib.sha256(body.encode()).hexdigest(),
    }
    return body + _line(trailer)


def parse(text: str, *, name: str) -> Manifest:
    """The manifest in `text`, checked whole; ManifestRefused naming what is wrong."""
    lines = text.splitlines(keepends=True)
    if len(lines) < 2:
        raise ManifestRefused(f"manifest {name} is empty or cut off (no trailer)")
    *body_lines, last = lines
    body = "".join(body_lines)
    try:
        trailer = json.loads(last)
    except ValueError:
        raise ManifestRefused(
            f"manifest {name} is cut off: its last line is not its trailer"
        ) from None
    if not isinstance(trailer, dict) or set(trailer) != {"entries", "sha256"}:
        raise ManifestRefused(f"manifest {name} is cut off: its last line is not its trailer")
    if not last.endswith("\n"):
        raise ManifestRefused(f"manifest {name} is cut off in its trailer")
    if hashlib.sha256(body.encode()).hexdigest() != trailer["sha256"]:
        raise ManifestRefused(f"manifest {name} was changed: its lines do not match its trailer")
    if trailer["entries"] != len(body_lines) - 1:
        raise ManifestRefused(
            f"manifest {name} was changed: its trailer counts {trailer['entries']} entries, "
            f"it holds {len(body_lines) - 1}"
        )
    try:
        header = json.loads(body_lines[0])
        if header.get("archive_core_manifest") != FORMAT:
            raise ManifestRefused(
                f"manifest {name} is of format {header.get('archive_core_manifest')!r}, not "
                f"{FORMAT}"
            )
        entries = tuple(_entry(json.loads(line)) for line in body_lines[1:])
        return Manifest(
            target=header["target"],
            policy=header["policy"],
            batch=header["batch"],
            created=dt.datetime.fromisoformat(header["created"]),
            entries=entries,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ManifestRefused):
            raise
        raise ManifestRefused(
            f"manifest {name} does not hold what a manifest holds: {exc}"
        ) from None


def entries_for(
    copies: Iterable[Any], *, portal_ids: Mapping[str, Mapping[str, str]] | None = None
) -> list[ManifestEntry]:
    """Manifest entries for catalog copy records (`CopyRecord`)."""
    ids = portal_ids or {}
    return [
        ManifestEntry(
            external_id=c.external_id,
            locator=c.locator,
            name=c.name,
            item_id=c.item_id,
            sha1=c.sha1,
            sha256=c.sha256,
            size=c.size,
            time=c.created,
            placement=c.placement,
            portal_ids=ids.get(c.external_id, {}),
        )
        for c in copies
    ]


def _entry(values: Mapping[str, Any]) -> ManifestEntry:
    return ManifestEntry(
        external_id=values["external_id"],
        locator=values["locator"],
        name=values["name"],
        item_id=values.get("item_id"),
        sha1=values.get("sha1"),
        sha256=values.get("sha256"),
        size=values.get("size"),
        time=dt.datetime.fromisoformat(values["time"]),
        placement=values.get("placement"),
        portal_ids=values.get("portal_ids") or {},
    )


def _line(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, ensure_ascii=False) + "\n"
