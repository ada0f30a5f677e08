"""A worker killed mid-batch (SIGKILL, a real process) and run again completes the batch with
no duplicate copies, and no partial copy is ever reported or recorded as archived."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from archive_core.catalog import Catalog
from archive_core.portal import ArchiveCorePlugin
from archive_core.testing.fileset import FileSet
from tests.sites import POLICY, files_under, filesys_site

WORKER = Path(__file__).with_name("crash_worker.py")
FILES = 600
SIZE = 192 * 1024


def _write_batch(online: Path) -> list[FileSet]:
    online.mkdir()
    file_sets = []
    block = os.urandom(SIZE)
    for n in range(FILES):
        data = n.to_bytes(4, "big") + block[4:]
        path = online / f"clip_{n:04d}.mxf"
        path.write_bytes(data)
        file_sets.append(
            FileSet(
                files=[str(path)],
                external_ids=[],
                item_id=f"VX-{n}",
                sha1=hashlib.sha1(data).hexdigest(),
            )
        )
    return file_sets


def _published(root: Path) -> list[Path]:
    return [p for p in files_under(root) if not p.name.startswith(".")]


#: Runs tests/crash_worker.py (its arguments follow the two descriptors) and holds it
#: mid-batch: the first chunk published once some results are in the catalog waits there,
#: its files linked but not recorded, after a word on the `report` pipe, until the test
#: kills the process (or the `hold` pipe ends, should the test itself be gone).
_HELD_MID_BATCH = """
import os, runpy, sys
from archive_core import catalog, transfer

report, hold = int(sys.argv.pop(1)), int(sys.argv.pop(1))
sys.argv.pop(0)  # "-c": the worker's own command line follows
recorded = []
real_finish, real_publish = catalog.Catalog.finish, transfer.publish_staged

def finish(self, *args, **kwargs):
    real_finish(self, *args, **kwargs)
    recorded.append(True)

def publish(*args, **kwargs):
    published = real_publish(*args, **kwargs)
    if recorded:
        os.write(report, b"held\\n")
        os.read(hold, 1)
    return published

catalog.Catalog.finish = finish
transfer.publish_staged = publish
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _kill_mid_batch(config: Path, manifest: Path, root: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path.cwd()), *sys.path]))
    report_read, report_write = os.pipe()
    hold_read, hold_write = os.pipe()
    try:
        held = [sys.executable, "-c", _HELD_MID_BATCH, str(report_write), str(hold_read)]
        worker = subprocess.Popen(
            [*held, str(WORKER), str(config), str(manifest), POLICY, "job-1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(report_write, hold_read),
        )
        os.close(report_write)  # the worker's copy is the only one: its end if the worker ends
        report_write = -1
        try:
            ready, _, _ = select.select([report_read], [], [], 120)
            assert ready, "the worker was not held mid-batch within 120 s"
            said = os.read(report_read, 16)
            assert said == b"held\n", said or worker.stderr.read().decode()  # "": it ended
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    finally:
        for fd in (report_read, report_write, hold_read, hold_write):
            if fd >= 0:
                os.close(fd)
    assert worker.returncode == -signal.SIGKILL
    assert len(_published(root)) < FILES, "worker finished before it could be killed"


def test_worker_killed_mid_batch_then_rerun_completes_without_duplicates(tmp_path):
    config, [root] = filesys_site(tmp_path)
    file_sets = _write_batch(tmp_path / "online")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps([fs._asdict() for fs in file_sets]))
    contents = {fs.sha1 for fs in file_sets}

    _kill_mid_batch(config, manifest, root)

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    assert catalog.copies(), "the worker was killed before any result was recorded"
    for record in catalog.copies():  # whatever was recorded is a whole, verified copy
        stored = root / record.locator
        assert hashlib.sha1(stored.read_bytes()).hexdigest() == record.sha1
    assert catalog.unfinished(), "the killed worker left intents without results"

    plugin = ArchiveCorePlugin(config)
    archived, not_archived, error, _ = plugin.archive(file_sets, POLICY, "job-1-retry")
    assert (len(archived), not_archived, error) == (FILES, [], "")

    stored = files_under(root)
    assert len(stored) == FILES, "duplicates or leftover temporary files in the archive"
    assert {hashlib.sha1(p.read_bytes()).hexdigest() for p in stored} == contents
    records = plugin.site().catalog.copies()
    assert len(records) == FILES == len({r.locator for r in records})
    assert plugin.site().catalog.unfinished() == []
    states = {row.state for row in plugin.site().catalog.journal(job_id="job-1")}
    assert "abandoned" in states
    for fs in archived:
        assert (root / fs.external_ids[0].split("/", 3)[3]).is_file()
