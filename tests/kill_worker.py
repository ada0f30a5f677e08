"""A Portal worker in its own process: one archive, restore or delete, its result as JSON.

Run as `python kill_worker.py CONFIG MANIFEST POLICY OPERATION JOB_ID`. MANIFEST is a JSON list
of FileSets (their fields as dicts). The kill harness (tests/killrun/) SIGKILLs this process,
or one of its staging children, mid-operation, then runs it again to completion.

The one line printed on stdout is the result in Portal's terms:

- archive: `{"archived": [FileSet...], "not_archived": [FileSet...], "error": "..."}`
- restore: `{"restored": [FileSet...], "raised": null | "<the error Portal would see>"}`
- delete: `{"deleted": [FileSet...]}`

An exception the Portal face should never raise (anything but restore's RestoreFailed) is
printed as `{"crashed": "<traceback>"}`, exit status 3.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections import namedtuple
from typing import Any

from archive_core.portal import ArchiveCorePlugin

FileSet = namedtuple("FileSet", "files external_ids item_id sha1 shape_id component_id")


def perform(
    plugin: ArchiveCorePlugin, operation: str, file_sets: list[Any], policy: str, job_id: str
) -> dict[str, Any]:
    """Run `operation` through the Portal face; its result as plain JSON values."""
    if operation == "archive":
        archived, not_archived, error, _ = plugin.archive(file_sets, policy, job_id)
        return {
            "archived": [fs._asdict() for fs in archived],
            "not_archived": [fs._asdict() for fs in not_archived],
            "error": error,
        }
    if operation == "restore":
        from archive_core.errors import RestoreFailed

        try:
            restored = plugin.restore(file_sets, policy, job_id)
        except RestoreFailed as exc:  # Portal's view of a failed restore: one raised error
            return {"restored": [], "raised": str(exc)}
        return {"restored": [fs._asdict() for fs in restored], "raised": None}
    if operation == "delete":
        return {"deleted": [fs._asdict() for fs in plugin.delete(file_sets, policy, job_id)]}
    raise ValueError(f"unknown operation {operation!r}")


def main(config: str, manifest: str, policy: str, operation: str, job_id: str) -> int:
    with open(manifest, encoding="utf-8") as fh:
        file_sets = [FileSet(**fs) for fs in json.load(fh)]
    plugin = ArchiveCorePlugin(config)
    try:
        result = perform(plugin, operation, file_sets, policy, job_id)
    except Exception:
        print(json.dumps({"crashed": traceback.format_exc()}), flush=True)
        return 3
    finally:
        with contextlib.suppress(Exception):
            plugin.site().close()  # stops staging processes a big batch started
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
