"""Scrubbing: copies read back oldest-verified first, within a budget, resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from archive_core import scrub as scrub_module
from archive_core.cli import main
from archive_core.hooks import hookimpl
from archive_core.portal import ArchiveCorePlugin
from archive_core.scrub import ScrubBudget, scrub

from .sites import POLICY, files_under, filesys_site, media

SIZE = 1000


@pytest.fixture
def archived(tmp_path):
    """Six files of 1000 bytes archived one call each (so in a known order)."""
    config, roots = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    ids = []
    for n in range(6):
        original = media(tmp_path / "online", f"f{n}.bin", os.urandom(SIZE), item_id=f"VX-{n}")
        done, _, error, _ = plugin.archive([original], POLICY, f"job-{n}")
        assert done, error
        ids.append(done[0].external_ids[0])
    return config, roots[0], ids


def verified_order(config) -> list[str]:
    records = ArchiveCorePlugin(config).site().catalog.copies(policy=POLICY)
    done = [r for r in records if r.last_verified is not None]
    return [r.external_id for r in sorted(done, key=lambda r: r.last_verified)]


def test_scrub_reads_the_longest_unverified_first_within_the_byte_budget(archived):
    config, _root, ids = archived
    budget = ScrubBudget(max_bytes=3 * SIZE)
    [first] = scrub(ArchiveCorePlugin(config), budget=budget)
    assert (first.verified, first.bytes, first.left) == (3, 3 * SIZE, 3)
    assert "budget reached" in (first.stopped or "")
    assert set(verified_order(config)) == set(ids[:3])  # never verified, oldest archived first
    [second] = scrub(ArchiveCorePlugin(config), budget=budget)
    assert (second.verified, second.left) == (3, 3)  # next in line: those verified first
    assert set(verified_order(config)[3:]) == set(ids[3:])
    [third] = scrub(ArchiveCorePlugin(config), budget=ScrubBudget(max_bytes=2 * SIZE))
    assert third.verified == 2
    assert set(verified_order(config)[-2:]) <= set(ids[:3])  # verified longest ago, again


def test_a_duration_budget_ends_the_run_between_batches(archived, monkeypatch):
    config, _root, _ids = archived
    monkeypatch.setattr(scrub_module, "BATCH_FILES", 2)
    ticks = iter(range(0, 1000, 10))
    [done] = scrub(
        ArchiveCorePlugin(config),
        budget=ScrubBudget(max_seconds=15),
        clock=lambda: float(next(ticks)),
    )
    assert (done.verified, done.left) == (2, 4)  # 0 s: start; 10 s: one batch; 20 s: stop
    assert "15 s spent" in (done.stopped or "")


def test_a_bad_copy_is_recorded_reported_through_the_hook_and_shown_by_status(
    archived, monkeypatch
):
    config, root, ids = archived
    [victim] = [p for p in root.rglob("*") if p.is_file() and p.name.startswith("f2_")]
    victim.write_bytes(b"x" * SIZE)  # same size, other bytes: only a read-back sees it
    seen = []

    class Observer:
        @hookimpl
        def archive_core_copy_bad(self, copy, error):
            seen.append((copy.external_id, error))

    plugin = ArchiveCorePlugin(config)
    plugin.site().hooks.register(Observer())
    [done] = scrub(plugin, budget=ScrubBudget())
    assert done.verified == 5 and [b.external_id for b in done.bad] == [ids[2]]
    assert seen and seen[0][0] == ids[2] and "sha1" in seen[0][1]
    record = plugin.site().catalog.copy(ids[2])
    assert record.failure and record.last_failure is not None
    result = CliRunner().invoke(main, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["copies"], row["failed"], row["never_verified"]) == (6, 1, 1)
    # A bad copy stays bad: the next run reads it first again (never verified), and says so.
    again = CliRunner().invoke(main, ["--config", str(config), "scrub"])
    assert again.exit_code == 1 and f"bad copy {ids[2]}" in again.output, again.output
    text = CliRunner().invoke(main, ["--config", str(config), "status"]).output
    assert "disk0" in text and POLICY in text


def test_the_cli_reports_a_bad_copy_and_exits_1(archived):
    config, root, ids = archived
    [victim] = [p for p in root.rglob("*") if p.is_file() and p.name.startswith("f0_")]
    victim.write_bytes(b"y" * SIZE)
    result = CliRunner().invoke(main, ["--config", str(config), "scrub", "--json"])
    assert result.exit_code == 1, result.output
    [target] = json.loads(result.output)["targets"]
    assert target["verified"] == 5 and target["bad"][0]["external_id"] == ids[0]


_KILLED_SCRUB = """
import sys, threading
from pathlib import Path
from archive_core import scrub as scrub_module
from archive_core.portal import ArchiveCorePlugin
from archive_core.scrub import ScrubBudget, scrub
from archive_core_filesys.driver import FilesysDriver

scrub_module.BATCH_FILES = 2
calls = []
original = FilesysDriver.verify

def verify(self, request):
    calls.append(1)
    if len(calls) == 2:  # the second batch: the first is recorded; now the worker dies
        Path(sys.argv[2]).write_text("in the second batch")
        threading.Event().wait()
    yield from original(self, request)

FilesysDriver.verify = verify
scrub(ArchiveCorePlugin(sys.argv[1]), budget=ScrubBudget())
"""


def test_a_scrub_killed_mid_run_resumes_with_the_copies_it_did_not_reach(archived, tmp_path):
    config, _root, ids = archived
    marker = tmp_path / "marker"
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SCRUB, str(config), str(marker)], env=os.environ
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, "the scrub ended before its second batch"
            assert time.monotonic() < deadline, "the scrub never reached its second batch"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert set(verified_order(config)) == set(ids[:2])  # the first batch, recorded
    [done] = scrub(ArchiveCorePlugin(config), budget=ScrubBudget(max_bytes=4 * SIZE))
    assert done.verified == 4 and done.left == 2  # the killed run's first batch: next in line
    assert set(verified_order(config)[2:]) == set(ids[2:])  # exactly the ones not reached


def test_an_unknown_target_is_refused_by_name(archived):
    config, _root, _ids = archived
    result = CliRunner().invoke(main, ["--config", str(config), "scrub", "--target", "nope"])
    assert result.exit_code == 2 and "No target named 'nope'" in result.output


def test_a_target_another_scrub_holds_is_left_alone(archived):
    config, _root, _ids = archived
    plugin = ArchiveCorePlugin(config)
    with plugin.site().catalog.leases.hold("scrub/disk0", ttl=60, purpose="the other scrub"):
        [done] = scrub(ArchiveCorePlugin(config), budget=ScrubBudget())
    assert done.verified == 0 and "another scrub runs on it" in (done.stopped or "")
    assert "the other scrub" in done.stopped


def _two_targets(tmp_path, *, repair: bool):
    config, roots = filesys_site(tmp_path, copies=2, policy={"repair": repair})
    plugin = ArchiveCorePlugin(config)
    content = os.urandom(SIZE)
    original = media(tmp_path / "online", "clip.mxf", content)
    [archived], _, _, _ = plugin.archive([original], POLICY, "job-1")
    [victim] = files_under(roots[1])
    victim.write_bytes(b"z" * SIZE)
    return config, archived, content, victim


def test_a_policy_that_repairs_writes_a_bad_copy_again_from_a_good_one(tmp_path):
    config, archived, content, victim = _two_targets(tmp_path, repair=True)
    bad_id = next(e for e in archived.external_ids if "disk1" in e)
    result = CliRunner().invoke(main, ["--config", str(config), "scrub", "--target", "disk1"])
    assert result.exit_code == 0, result.output  # bad, and repaired
    assert f"bad copy {bad_id}" in result.output and "repaired from a good copy" in result.output
    assert victim.read_bytes() == content
    plugin = ArchiveCorePlugin(config)
    [record] = plugin.site().catalog.copies(target="disk1")
    assert record.failure is None and record.last_verified is not None
    trail = [e.operation for e in plugin.site().catalog.audit.entries()]
    assert trail[-1] == "repair" and {"restore", "delete", "archive"} <= set(trail)
    back = tmp_path / "back.mxf"
    plugin.restore(
        [archived._replace(files=[str(back)], external_ids=[record.external_id])], POLICY
    )
    assert back.read_bytes() == content


def test_a_policy_that_does_not_repair_leaves_the_bad_copy_and_says_so(tmp_path):
    config, _archived, content, victim = _two_targets(tmp_path, repair=False)
    result = CliRunner().invoke(main, ["--config", str(config), "scrub", "--target", "disk1"])
    assert result.exit_code == 1 and "bad copy" in result.output, result.output
    assert victim.read_bytes() != content
