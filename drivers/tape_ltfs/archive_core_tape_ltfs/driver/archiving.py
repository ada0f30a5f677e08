"""An archive batch: every file to each pool of its policy, reported once all copies synced.

The batch is written in chunks of `sync_every_files`: each chunk's files go to the first
pool's cartridge, whose index is then synced, then to the next pool's, and so on; a file is
reported archived once every copy is in an index generation on tape. Each pool's writer reads
the whole batch's sources ahead of its drive (see `feeding`). A crash therefore loses
the unsynced files of the chunk in progress at most; a re-run finds the synced copies in the
media store (reused) and writes exactly the others.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from archive_core import ArchiveItem, ArchiveRequest, FileOutcome
from archive_core_tape_ltfs.driver.feeding import ReadAhead, SourceOpener
from archive_core_tape_ltfs.driver.loader import Loader
from archive_core_tape_ltfs.driver.media import MediaStore
from archive_core_tape_ltfs.driver.placement import locator_of, placement_of
from archive_core_tape_ltfs.driver.pools import CopyPlan
from archive_core_tape_ltfs.driver.writing import FileFailed, PoolWriter, Written

logger = logging.getLogger(__name__)

#: How often a file whose copy a sync did not confirm is written again in one batch.
ATTEMPTS = 2


def archive_batch(
    request: ArchiveRequest,
    plan: CopyPlan,
    *,
    loader: Loader,
    store: MediaStore,
    headroom_bytes: int,
    sync_every_files: int,
    read_ahead: ReadAhead,
    opener: SourceOpener,
) -> Iterator[FileOutcome]:
    context = f"policy {request.policy} job {request.job_id}"
    writers = [
        PoolWriter(
            pool,
            loader=loader,
            store=store,
            headroom_bytes=headroom_bytes,
            read_ahead=read_ahead,
            opener=opener,
            context=context,
        )
        for pool in plan.pools
    ]
    items = list(request.items)
    with contextlib.ExitStack() as reading:
        try:
            for writer in writers:
                reading.enter_context(writer.reading_ahead(items))
            for start in range(0, len(items), sync_every_files):
                chunk = items[start : start + sync_every_files]
                yield from _chunk(chunk, writers, request, context)
        finally:
            for writer in writers:
                writer.close()


def _chunk(
    chunk: list[ArchiveItem], writers: list[PoolWriter], request: ArchiveRequest, context: str
) -> Iterator[FileOutcome]:
    copies: dict[str, list[Written | None]] = {i.key: [None] * len(writers) for i in chunk}
    failed: dict[str, FileFailed] = {}
    for index, writer in enumerate(writers):
        todo = [i for i in chunk if i.key not in failed]
        for _attempt in range(ATTEMPTS):
            for item in todo:
                try:
                    reused = writer.write(item, request.progress)
                except FileFailed as exc:
                    failed[item.key] = exc
                    continue
                if reused is not None:
                    copies[item.key][index] = reused
            confirmed, lost = writer.flush()
            for written in confirmed:
                copies[written.key][index] = written
            again = set(lost) - set(failed)
            todo = [i for i in todo if i.key in again]
            if not todo:
                break
            logger.warning(
                "%s: %d files were not in the synced index of pool %s; writing them again",
                context,
                len(todo),
                writer.pool.name,
            )
        for item in todo:
            failed[item.key] = FileFailed(
                f"The index sync of pool {writer.pool.name} did not confirm the copy; it was "
                f"not archived.",
                retryable=True,
            )
    for item in chunk:
        if item.key in failed:
            exc = failed[item.key]
            yield FileOutcome.failure(item.key, exc.message, retryable=exc.retryable)
            continue
        written = [w for w in copies[item.key] if w is not None]
        if len(written) < len(writers):  # never expected: every copy is written or failed
            yield FileOutcome.failure(item.key, "Not every copy was written.", retryable=True)
            continue
        first = written[0]
        digests = next((w.digests for w in written if w.digests is not None), None)
        yield FileOutcome.success(
            item.key,
            locator=locator_of(first.copy),
            size=first.size,
            sha1=first.sha1,
            sha256=digests.sha256 if digests else None,
            reused=all(w.reused for w in written),
            placement=placement_of([w.copy for w in written], first.generation),
        )
