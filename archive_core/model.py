"""Frozen values passed between the core and drivers: requests, per-file outcomes, readiness.

Every class is keyword-only so fields can be added with defaults without breaking a driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

#: Called with the number of bytes moved since the previous call; must be cheap.
ProgressCallback = Callable[[int], None]


def _tuple(value) -> tuple:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Readiness:
    """Whether a target can take work now, and why (shown to admins by the CLI and logs)."""

    ok: bool
    reason: str

    @classmethod
    def ready(cls, reason: str = "ready") -> Readiness:
        return cls(ok=True, reason=reason)

    @classmethod
    def not_ready(cls, reason: str) -> Readiness:
        return cls(ok=False, reason=reason)


@attrs.frozen(kw_only=True)
class ArchiveItem:
    """One file to archive: several sources of identical content, read the first readable."""

    key: str  # unique within a request; outcomes carry it back
    sources: tuple[str, ...] = attrs.field(converter=_tuple)
    name: str  # file name to store under (Portal's `<stem>_<item_id>_<sha1><ext>`)
    item_id: str | None = None
    sha1: str | None = None  # Vidispine's hash: the bytes must hash to it
    size: int | None = None
    # Workers (`archive_core.workers.WorkerId` strings) whose earlier attempt at this name
    # died mid-transfer, as the journal shows: the driver may remove the leftovers (temporary
    # files) those workers made for this name before writing. Never a live worker's.
    abandoned_by: tuple[str, ...] = attrs.field(default=(), converter=_tuple)

    @property
    def resumed(self) -> bool:
        """An earlier attempt at this name died mid-transfer."""
        return bool(self.abandoned_by)


@attrs.frozen(kw_only=True)
class RestoreItem:
    """One archived copy to bring back to `destination`."""

    key: str
    locator: str  # driver-relative location taken from the external id
    destination: str
    sha1: str | None = None
    size: int | None = None
    # The placement the driver returned when it archived this copy (drivers that declare
    # Capability.PLACEMENT; None when the catalog has none or cannot be read).
    placement: Mapping[str, Any] | None = None
    # Workers whose earlier restore to this destination died mid-transfer (see ArchiveItem):
    # only their leftovers for this destination may be removed, nothing else in its folder.
    abandoned_by: tuple[str, ...] = attrs.field(default=(), converter=_tuple)

    @property
    def resumed(self) -> bool:
        return bool(self.abandoned_by)


@attrs.frozen(kw_only=True)
class CopyRef:
    """One archived copy to delete or verify."""

    key: str
    locator: str
    sha1: str | None = None
    size: int | None = None
    placement: Mapping[str, Any] | None = None  # as in RestoreItem


@attrs.frozen(kw_only=True)
class ArchiveRequest:
    policy: str
    target: str
    job_id: str | None
    items: tuple[ArchiveItem, ...] = attrs.field(converter=_tuple)
    progress: ProgressCallback | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class RestoreRequest:
    policy: str
    target: str
    job_id: str | None
    items: tuple[RestoreItem, ...] = attrs.field(converter=_tuple)
    progress: ProgressCallback | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class DeleteRequest:
    policy: str
    target: str
    job_id: str | None
    items: tuple[CopyRef, ...] = attrs.field(converter=_tuple)


@attrs.frozen(kw_only=True)
class StatRequest:
    """Does each copy exist on the target, and how big is it? Cheap: no bytes are read.

    The core asks before it counts a copy the catalog remembers as archived, because the
    catalog alone is not proof (an admin's `rm`, a catalog restored from backup, a delete
    killed before it was journaled). A driver answers one outcome per item: ok with `size`
    (and `sha1` only where the storage keeps one it can hand out without reading the
    bytes) when a copy is there, a failure when it is not or cannot be checked.
    """

    policy: str
    target: str
    job_id: str | None
    items: tuple[CopyRef, ...] = attrs.field(converter=_tuple)


@attrs.frozen(kw_only=True)
class VerifyRequest:
    """Read archived copies back and hash them against the recorded sha1."""

    policy: str
    target: str
    job_id: str | None
    items: tuple[CopyRef, ...] = attrs.field(converter=_tuple)
    progress: ProgressCallback | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class FileOutcome:
    """What happened to one file of a request. Drivers yield exactly one per item."""

    key: str
    ok: bool
    locator: str | None = None
    size: int | None = None
    sha1: str | None = None  # of the bytes actually moved
    sha256: str | None = None
    error: str | None = None  # admin-readable, set when not ok
    retryable: bool = False
    reused: bool = False  # an identical copy already existed; nothing was written
    # Archive: where the copy sits, in the driver's own terms (small, JSON-serialisable:
    # e.g. {"barcode": "A00001L9", "partition": "b", "start_block": 4711}). The catalog
    # keeps it with the copy and hands it back with every later request for that copy.
    placement: Mapping[str, Any] | None = None

    @classmethod
    def success(cls, key: str, **fields) -> FileOutcome:
        return cls(key=key, ok=True, **fields)

    @classmethod
    def failure(cls, key: str, error: str, *, retryable: bool = False, **fields) -> FileOutcome:
        return cls(key=key, ok=False, error=error, retryable=retryable, **fields)


@attrs.frozen(kw_only=True)
class ManifestRequest:
    """Keep one batch's manifest on the target, beside the copies it describes.

    `name` is the manifest's file name (unique per batch and target); `text` its whole
    content, JSON Lines made by `archive_core.manifests`; `locators` the copies it describes
    (a driver that spreads copies over media keeps the manifest with each medium that holds
    any of them). Published like a copy: whole or not at all, never replacing another.
    """

    policy: str
    target: str
    name: str
    text: str
    locators: tuple[str, ...] = attrs.field(converter=_tuple)


@attrs.frozen(kw_only=True)
class StoredManifest:
    """A manifest as the target gave it back: its name and content, unchecked."""

    name: str
    text: str


@attrs.frozen(kw_only=True)
class StoredCopy:
    """A copy the target holds, as it lists it."""

    locator: str
    size: int
