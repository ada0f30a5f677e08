"""A Portal worker process for tests: one plugin, one JSON command per stdin line.

python tests/config_worker.py CONFIG
["policies"]                  -> {"version": N, "policies": [[uuid, name], ...]}
["archive", PATH, SHA1]       -> {"error": "..."}   (first policy; "" when archived)
"""

from __future__ import annotations

import json
import sys

from archive_core.portal import ArchiveCorePlugin
from archive_core.testing.fileset import FileSet


def save_forever(plugin: ArchiveCorePlugin, root: str) -> None:
    from archive_core import configedit

    site = plugin.site()
    versions = site.catalog.config_versions
    n = 0
    while True:
        n += 1
        document = {
            "targets": {"disk": {"driver": "filesys", "settings": {"root": root}}},
            "policies": {"p": {"name": f"saved {n} " + "x" * 4000, "targets": ["disk"]}},
        }
        latest = versions.latest_number()
        configedit.save(site, document, actor="crash test", based_on=latest)


def main() -> None:
    plugin = ArchiveCorePlugin(sys.argv[1])
    if sys.argv[2:3] == ["--save-forever"]:
        save_forever(plugin, sys.argv[3])
        return
    for line in sys.stdin:
        command, *args = json.loads(line)
        if command == "policies":
            policies = plugin.get_policies()
            version = plugin.site().config.config_source.version
            answer = {
                "version": version.number if version else 0,
                "policies": [[p["uuid"], p["name"]] for p in policies],
            }
        elif command == "archive":
            path, sha1 = args
            fs = FileSet(files=[path], external_ids=[], item_id="VX-1", sha1=sha1)
            _, _, error, _ = plugin.archive([fs], plugin.get_policies()[0]["uuid"], "job-w")
            answer = {"error": error}
        else:
            answer = {"unknown": command}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
