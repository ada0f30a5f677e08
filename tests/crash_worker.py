"""A Portal worker in its own process: archives the FileSets of a manifest, prints the result.

Run as `python crash_worker.py CONFIG MANIFEST POLICY JOB_ID`; the crash test kills it mid-batch.
"""

from __future__ import annotations

import json
import sys
from collections import namedtuple

from archive_core.portal import ArchiveCorePlugin

FileSet = namedtuple("FileSet", "files external_ids item_id sha1 shape_id component_id")


def main(config: str, manifest: str, policy: str, job_id: str) -> None:
    with open(manifest, encoding="utf-8") as fh:
        file_sets = [FileSet(**fs) for fs in json.load(fh)]
    archived, not_archived, error, _ = ArchiveCorePlugin(config).archive(file_sets, policy, job_id)
    print(
        json.dumps({"archived": len(archived), "not_archived": len(not_archived), "error": error})
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
