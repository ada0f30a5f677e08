"""The core's own checks on what a driver reports, whatever the driver claims to have checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from archive_core.catalog import placement_text
from archive_core.model import ArchiveItem, FileOutcome


def content_sha1(sources: Sequence[str]) -> str:
    """The sha1 of the first readable source, for a file Portal gave no sha1 for.

    The one read that exists only to hash: the name of a copy carries its content's sha1
    (so different files never share one), and the copy is then checked against it, which
    also catches a file that changes while it is archived.
    """
    from archive_core import transfer

    _, stream = transfer.open_first_readable(sources)
    with stream:
        return transfer.hash_stream(stream).sha1


def check_archived(outcome: FileOutcome, item: ArchiveItem) -> FileOutcome:
    """A stored copy counts only with a location and the sha1 the item was archived under."""
    if not outcome.ok:
        return outcome
    if not outcome.locator:
        return FileOutcome.failure(outcome.key, "the driver reported success without a location")
    if outcome.placement is not None:
        problem = placement_problem(outcome.placement)
        if problem:
            return FileOutcome.failure(
                outcome.key,
                f"the driver stored the copy at {outcome.locator} but returned placement the "
                f"catalog cannot keep ({problem}), so it is not reported archived",
                locator=outcome.locator,
            )
    return check_sha1(outcome, item.sha1, "stored")


#: The most a copy's placement may take as JSON: a note of where it is, not data.
PLACEMENT_MAX_BYTES = 4096


def placement_problem(placement: object) -> str | None:
    """Why a driver's placement cannot be recorded; None when it can."""
    if not isinstance(placement, Mapping):
        return f"it must be a mapping, not {type(placement).__name__}"
    try:
        text = placement_text(placement)
    except (TypeError, ValueError) as exc:
        return f"it is not JSON-serialisable: {exc}"
    size = len(text.encode())
    if size > PLACEMENT_MAX_BYTES:
        return f"it takes {size} bytes as JSON, more than the {PLACEMENT_MAX_BYTES} allowed"
    return None


def check_sha1(outcome: FileOutcome, expected: str | None, verb: str) -> FileOutcome:
    """A success whose reported sha1 is not `expected` becomes a failure that says so."""
    if not outcome.ok or not expected:
        return outcome
    if not outcome.sha1:
        return FileOutcome.failure(
            outcome.key,
            f"the driver did not report the sha1 of the bytes it {verb}, so they cannot be "
            f"checked against the expected sha1 {expected}",
        )
    if outcome.sha1.lower() != expected:
        return FileOutcome.failure(
            outcome.key,
            f"checksum mismatch: the bytes {verb} hash to sha1 {outcome.sha1}, "
            f"the expected sha1 is {expected}",
        )
    return outcome
