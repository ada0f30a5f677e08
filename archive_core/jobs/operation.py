"""What an operation supplies to the one job loop: the rest is the same for all four."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from archive_core.catalog import JournalEntry, JournalResult
from archive_core.driver import Capability
from archive_core.errors import DriverUnavailable
from archive_core.model import FileOutcome

if TYPE_CHECKING:
    import datetime as dt

    from archive_core.jobs.report import FileJob
    from archive_core.policies import Policy
    from archive_core.site import Site, TargetHandle


@attrs.frozen(kw_only=True)
class Copy:
    """Where one archived copy of a file is: a target and the driver's locator there."""

    target: str
    locator: str
    external_id: str
    sha1: str | None = None
    placement: Mapping[str, Any] | None = None  # the catalog's, for drivers that want it


#: A target's driver as the loop holds it: usable, or the reason it is not (kept per file).
Handles = Mapping[str, "TargetHandle | DriverUnavailable"]


class JobContext(Protocol):
    """What an operation sees of the job running it (the runner, in `runner`)."""

    site: Site
    policy: Policy
    job_id: str
    operation: str
    labels: dict[str, str]  # job key -> how to name that file to an admin
    clock: Callable[[], float]
    now: Callable[[], dt.datetime]

    def run_batch(
        self,
        handle: TargetHandle,
        batch: Batch,
        items: dict[str, Any],
        *,
        report_as: Callable[[str], str] | None = None,
    ) -> dict[str, FileOutcome]:
        """Journal, drive, check and record one batch on one target: one outcome per item."""
        ...

    def drive(
        self,
        handle: TargetHandle,
        call: Callable[[Any], Iterable[FileOutcome]],
        request: Any,
        expected: Mapping[str, Any],
    ) -> Iterable[FileOutcome]:
        """A driver call's outcomes made total: one per expected key, never a raise."""
        ...

    def progress(self, nbytes: int) -> None: ...

    def file_done(
        self, outcome: FileOutcome, report_as: Callable[[str], str] | None = None
    ) -> None: ...


class Operation(Protocol):
    """One of archive, restore, delete, verify."""

    name: str
    capability: Capability
    #: Whether results must reach the catalog before they are reported: an archived copy
    #: nobody recorded, or a deletion that left its row, must not be reported done. Restore
    #: and verify only read copies: they go on, with a warning, when the catalog cannot be
    #: written (a restore must work from Portal's external ids alone).
    journal_required: bool

    def targets(
        self, runner: JobContext, jobs: Sequence[FileJob], errors: dict[str, list[str]]
    ) -> tuple[Iterable[str], dict[str, list[Copy]]]:
        """The targets the call needs and, for operations on copies, each job's copies.

        Runs before the job is reported started; a job that cannot be done gets its reason
        in `errors`.
        """
        ...

    def step(
        self,
        runner: JobContext,
        jobs: Sequence[FileJob],
        handles: Handles,
        located: Mapping[str, list[Copy]],
        errors: dict[str, list[str]],
    ) -> dict[str, tuple[str, ...]]:
        """Do the operation; the external ids to report for each job that succeeded."""
        ...


@attrs.frozen(kw_only=True)
class Batch:
    """What an operation hands the shared loop for one target.

    `prepare` builds the driver's request once the journal said which names a dead worker
    left unfinished; `check` applies the core's own checks to each outcome; `record` says
    what the journal keeps of it.
    """

    entries: list[JournalEntry]
    prepare: Callable[[Mapping[str, tuple[str, ...]]], tuple[Any, dict[str, Any]]]
    call: Callable[[Any], Iterable[FileOutcome]]
    check: Callable[[FileOutcome, Any], FileOutcome]
    record: Callable[[FileOutcome, Any], JournalResult]
