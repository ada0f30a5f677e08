"""The chunked durable publisher any driver can use: per-item work, copies published in chunks.

A driver describes a batch as a `Plan` (prepare each item here, stage it anywhere, publish
chunks) and its `Stager` runs it inline, in worker threads or in worker processes, yielding
exactly one `FileOutcome` per item as items finish. Staged copies are published chunk by
chunk (durably: one sync, the links, one fsync per directory), so the core journals progress
as the batch goes and a crash redoes little.

The surface drivers import from here:

- `Stager(name=, workers=, clock=)`: one driver instance's stager; `run(items, plan, mode=,
  remote=, request=, progress=)` runs a batch, `close()` stops its worker processes.
- `Plan(prepare=, stage=, describe=, publish=, abandon=)`: a batch's steps for each item.
- `Staged(key=, locator=, staged=)`: what `stage` returns for a copy awaiting its publish;
  `staged` is a `transfer.StagedFile`, or any `StagedCopy` (its `digests` and `discard()`)
  of a driver whose `publish` knows it, such as a temporary file on a server.
- `Result`: `FileOutcome | Staged`, what `stage` returns.
- `Mode`: `auto`, `inline`, `threads`, `processes`; `choose_mode(items, ...)`: what auto picks.
- `failure_outcome(key, what, exc, request)`: a per-file failure an admin can act on.
- `published_outcomes(staged, publish)`: publish one chunk and get its outcomes.
- `publish_results(groups, publish, name=, clock=, taken=)`: results a driver staged by
  itself (its own threads or pipeline), published in chunks as the stager's own are;
  `CHUNK_FILES`, the most files a chunk holds (to size a window of staged copies).
"""

from archive_core.transfer.stager._chunks import (
    CHUNK_FILES,
    publish_results,
    published_outcomes,
)
from archive_core.transfer.stager._plan import (
    Mode,
    Plan,
    Result,
    Staged,
    StagedCopy,
    failure_outcome,
)
from archive_core.transfer.stager._stager import Stager, choose_mode

__all__ = [
    "CHUNK_FILES",
    "Mode",
    "Plan",
    "Result",
    "Staged",
    "StagedCopy",
    "Stager",
    "choose_mode",
    "failure_outcome",
    "publish_results",
    "published_outcomes",
]
