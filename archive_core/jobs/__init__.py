"""One operation of one policy over a batch of files: journal, driver, fixity check, hooks.

This is where the core's guarantees are kept for every driver alike: intent is journaled
before a transfer and the result after it; a copy is recorded only when the driver reports the
sha1 of the bytes it stored and that sha1 matches Portal's; a copy the catalog remembers counts
only once its target confirms it is there; restore, delete and verify touch only copies that
belong to the named policy; and one outcome per file always exists, whatever the driver does
(raises midway, forgets a file, reports a stranger) or the catalog does (fails mid-batch).

One loop (`runner`) runs every operation; each operation module supplies only what differs:
`archive`, `restore`, and `copies` (delete and verify, which act on every known copy).
"""

from archive_core.jobs.report import FileJob, FileResult, JobObserver, JobReport
from archive_core.jobs.runner import JobRunner

__all__ = ["FileJob", "FileResult", "JobObserver", "JobReport", "JobRunner"]
