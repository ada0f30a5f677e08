"""The journal side of a batch: results group-committed, an outcome final once recorded."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from archive_core.catalog import JournalResult
from archive_core.errors import CatalogError
from archive_core.model import FileOutcome

if TYPE_CHECKING:
    from archive_core.jobs.operation import JobContext

log = logging.getLogger("archive_core.jobs")

FLUSH_EVERY = 256  # results per journal transaction
FLUSH_SECONDS = 1.0  # ...or this long, whichever comes first


class JournalWriter:
    """Group-commits results; an outcome is final only once its group is in the catalog.

    A crash loses at most the last group, which a re-run redoes safely. When the catalog
    refuses a group, its outcomes become failures that say the result was not recorded, and
    `stopped` tells the loop to end the batch (for operations whose journal is required;
    otherwise the refusal is logged once and the outcomes stand).
    """

    def __init__(
        self,
        runner: JobContext,
        batch: str | None,
        abandoned: Mapping[str, tuple[str, ...]],
        *,
        required: bool,
        report_as: Callable[[str], str] | None,
    ) -> None:
        self._runner = runner
        self._catalog = runner.site.catalog
        self._batch = batch
        self._required = required
        self._report_as = report_as
        self.abandoned = abandoned
        self.outcomes: dict[str, FileOutcome] = {}
        self.error: CatalogError | None = None
        self._buffer: list[tuple[JournalResult, FileOutcome]] = []
        self._last = runner.clock()

    @property
    def stopped(self) -> bool:
        return self._required and self.error is not None

    @property
    def error_message(self) -> str:
        return self.error.message if self.error is not None else "unknown"

    def add(self, result: JournalResult, outcome: FileOutcome) -> None:
        self._buffer.append((result, outcome))
        if len(self._buffer) >= FLUSH_EVERY or self._runner.clock() - self._last > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        group, self._buffer = self._buffer, []
        self._last = self._runner.clock()
        if not group:
            return
        if self._batch is not None and self.error is None:
            try:
                self._catalog.finish(self._batch, [result for result, _ in group])
            except CatalogError as exc:
                self.error = exc
                self._log_refusal(exc, len(group))
        if self.error is not None and self._required:
            group = [(r, unrecorded(o, self._runner.operation, self.error)) for r, o in group]
        for _, outcome in group:
            self.outcomes[outcome.key] = outcome
            self._runner.file_done(outcome, self._report_as)

    def _log_refusal(self, exc: CatalogError, count: int) -> None:
        runner = self._runner
        log.log(
            logging.ERROR if self._required else logging.WARNING,
            "policy=%s job=%s the catalog refused the results of %d files of this %s (%s)%s",
            runner.policy.uuid,
            runner.job_id,
            count,
            runner.operation,
            exc.message,
            "; the batch is stopped" if self._required else "; going on without the journal",
        )

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        # Flush even when unwinding: results already known are true and worth keeping.
        try:
            self.flush()
        finally:
            if self._batch is not None:
                self._catalog.end(self._batch)


def unrecorded(outcome: FileOutcome, operation: str, error: CatalogError) -> FileOutcome:
    """A result the catalog could not keep: never reported done, and the reason told."""
    if not outcome.ok:
        return outcome
    if operation == "archive":
        what = (
            f"the copy was written ({outcome.locator}), but the catalog could not record it "
            f"({error.message}), so it is not reported archived; archiving it again finds "
            "the copy and records it"
        )
    else:
        what = (
            f"the copy {outcome.locator} was deleted, but the catalog could not record that "
            f"({error.message}); deleting it again finishes the job"
        )
    return FileOutcome.failure(outcome.key, what, retryable=True, locator=outcome.locator)
