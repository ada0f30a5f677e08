"""One of several Portal workers archiving at the same moment (tests/test_concurrent_workers.py).

Run as `python race_worker.py CONFIG MANIFEST POLICY JOB_ID READY_FILE`. The worker gets
everything ready that does not touch the catalog (config, drivers, imports), creates
READY_FILE, and waits for one line on stdin: the test writes it to every worker once all are
ready, so their archives start together.
Then it archives the manifest's FileSets and prints the result as one JSON line, as
tests/kill_worker.py does.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import traceback

from tests.kill_worker import FileSet, perform


def main(config: str, manifest: str, policy: str, job_id: str, ready: str) -> int:
    from archive_core.portal import ArchiveCorePlugin

    with open(manifest, encoding="utf-8") as fh:
        file_sets = [FileSet(**fs) for fs in json.load(fh)]
    plugin = ArchiveCorePlugin(config)
    # Warm up what a long-running Portal worker has loaded already: the drivers (readiness
    # probes them) and the database modules, so the race is between archives, not imports.
    plugin.is_ready()
    for module in ("sqlalchemy", "archive_core.catalog", "archive_core.jobs"):
        importlib.import_module(module)

    with open(ready, "x"):
        pass
    sys.stdin.readline()
    try:
        result = perform(plugin, "archive", file_sets, policy, job_id)
    except Exception:
        print(json.dumps({"crashed": traceback.format_exc()}), flush=True)
        return 3
    finally:
        with contextlib.suppress(Exception):
            plugin.site().close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
