"""Shared byte moving for drivers: hash-while-copy, atomic publish, safe paths, readable sources.

Every driver that writes files reuses these pieces so the core's promises hold alike for all:
bytes are hashed (sha1 for Portal's value, sha256 for the catalog) while they move, a copy is
published under its final name only after its sha1 matched and its bytes are durable, and a
name or locator that comes from outside can never lead out of the archive root.

The stable surface drivers import from here (one concern a module, named in brackets):

- hashing: `Digests`, `copy_stream`, `hash_stream`, `hash_file`, `HashingReader`,
  `LARGE_FILE`, `CHUNK_SIZE`
- paths: `check_name`, `check_locator`, `safe_join`, `safe_lookup`,
  `layout_locator`
- sources: `RegularFile`, `open_regular`, `open_first_readable`
- staging and publish: `StagedFile`, `stage_file`, `sync_staged`, `publish_staged`,
  `publish_file`, `ALREADY_PUBLISHED`, `name_taken`
- directories: `make_directories`, `root_missing`
- partials: `PartialName`, `temporary_name`, `sweep_partials`, `remove_partials`,
  `abandoned_partials`,
  `STALE_AFTER_SECONDS`
- durability: `fsync_directory`, `sync_filesystem`
- `archive_core.transfer.stager` (imported on its own): the chunked durable publisher,
  inline, in threads or in worker processes.

Modules with a leading underscore (buffers, sinks, flags, unnamed files, no-replace renames)
are internal and may change in any release.
"""

from archive_core.transfer._buffers import CHUNK_SIZE
from archive_core.transfer.directories import make_directories, root_missing
from archive_core.transfer.durability import fsync_directory, sync_filesystem
from archive_core.transfer.hashing import (
    LARGE_FILE,
    Digests,
    HashingReader,
    copy_stream,
    hash_file,
    hash_stream,
    serialized_progress,
)
from archive_core.transfer.partials import (
    STALE_AFTER_SECONDS,
    PartialName,
    abandoned_partials,
    remove_partials,
    sweep_partials,
    temporary_name,
)
from archive_core.transfer.paths import (
    check_locator,
    check_name,
    layout_locator,
    safe_join,
    safe_lookup,
)
from archive_core.transfer.publish import (
    ALREADY_PUBLISHED,
    name_taken,
    publish_file,
    publish_staged,
    sync_staged,
)
from archive_core.transfer.sources import RegularFile, open_first_readable, open_regular
from archive_core.transfer.staging import StagedFile, stage_file

__all__ = [
    "ALREADY_PUBLISHED",
    "CHUNK_SIZE",
    "LARGE_FILE",
    "STALE_AFTER_SECONDS",
    "Digests",
    "HashingReader",
    "PartialName",
    "RegularFile",
    "StagedFile",
    "abandoned_partials",
    "check_locator",
    "check_name",
    "copy_stream",
    "fsync_directory",
    "hash_file",
    "hash_stream",
    "layout_locator",
    "make_directories",
    "name_taken",
    "open_first_readable",
    "open_regular",
    "publish_file",
    "publish_staged",
    "remove_partials",
    "root_missing",
    "safe_join",
    "safe_lookup",
    "serialized_progress",
    "stage_file",
    "sweep_partials",
    "sync_filesystem",
    "sync_staged",
    "temporary_name",
]
