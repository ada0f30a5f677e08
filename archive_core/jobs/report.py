"""What a job is given (one FileJob per Portal FileSet) and what it reports back."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import attrs

from archive_core.model import FileOutcome

#: How each operation's result reads in a sentence ("could not be archived").
PAST = {"archive": "archived", "restore": "restored", "delete": "deleted", "verify": "verified"}


class FileJob(NamedTuple):
    """One Portal FileSet as the core sees it.

    A named tuple, as FileResult: the core makes one per file, thousands per batch, and a tuple
    of strings is cheaper to make than an attrs instance and not tracked by the garbage
    collector for the rest of the batch.
    """

    key: str
    files: tuple[str, ...]
    external_ids: tuple[str, ...] = ()
    item_id: str | None = None
    sha1: str | None = None  # Portal's, as 40 lowercase hex digits (checked at the boundary)
    problem: str | None = None  # what makes the FileSet unusable as Portal passed it

    @property
    def label(self) -> str:
        """How to name this file to an admin."""
        if self.files:
            return self.files[0]
        if self.external_ids:
            return self.external_ids[0]
        return f"item {self.item_id or '?'} (file set {self.key})"


class FileResult(NamedTuple):
    key: str
    ok: bool
    external_ids: tuple[str, ...] = ()
    error: str | None = None


@attrs.frozen(kw_only=True)
class JobReport:
    operation: str
    policy: str
    job_id: str | None
    results: tuple[FileResult, ...]
    labels: dict[str, str] = attrs.field(factory=dict, repr=False)
    # Why targets the call needed could not be used (a driver not installed or its settings
    # refused): a configuration problem rather than a file's fate.
    unusable: tuple[str, ...] = ()

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    def error_text(self) -> str:
        """One admin-readable message for all failures ("" when none)."""
        failed = self.failed
        if not failed:
            return ""
        head = f"{len(failed)} of {len(self.results)} files could not be {PAST[self.operation]}"
        lines = [f"{self.labels.get(r.key, r.key)}: {r.error}" for r in failed]
        return head + ":\n" + "\n".join(lines)


class JobObserver(Protocol):
    """Progress for an interactive caller (the CLI's progress bar)."""

    def started(self, operation: str, files: int, total_bytes: int | None) -> None: ...

    def advanced(self, nbytes: int) -> None: ...

    def file_finished(self, outcome: FileOutcome) -> None: ...
