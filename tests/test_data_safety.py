"""The core's promise, defect by defect: nothing is reported archived that is not on its target,
nothing is done outside the named policy, and no record is lost or reported kept when it was not.

Each test drives `ArchiveCorePlugin` as Portal's workers call it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from archive_core.catalog import Catalog
from archive_core.errors import CatalogError, RestoreFailed
from archive_core.portal import ArchiveCorePlugin
from archive_core.testing import memory
from archive_core.testing.fileset import FileSet
from archive_core.testing.siteconfig import write_config
from tests.sites import POLICY, MemoryDriver, files_under, filesys_site, media, plugin_with_drivers

OTHER = "9d3e1f00-0000-4000-8000-0000000000b2"


def _two_policies(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Policy POLICY on target `a`, policy OTHER on target `b`; returns (config, root a, b)."""
    roots = {}
    for name in ("a", "b"):
        roots[name] = tmp_path / f"root-{name}"
        roots[name].mkdir()
    config = write_config(
        tmp_path / "archive-core.toml",
        targets={
            name: {"driver": "filesys", "settings": {"root": str(root), "min_free_bytes": 0}}
            for name, root in roots.items()
        },
        policies={
            POLICY: {"name": "Policy A", "targets": ["a"]},
            OTHER: {"name": "Policy B", "targets": ["b"]},
        },
        catalog_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
    )
    return config, roots["a"], roots["b"]


# --- 1. a copy is counted archived only when the target confirms it -------------------------


def test_a_copy_removed_behind_the_catalogs_back_is_written_again_not_reported_from_memory(
    tmp_path,
):
    config, [root] = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "clip.mov", b"the only copy")
    [first], *_ = plugin.archive([fs], POLICY, "j1")
    for path in files_under(root):
        path.unlink()  # an admin's rm, or a delete killed before its journal flush
    archived, not_archived, error, _ = plugin.archive([fs], POLICY, "j2")
    assert (not_archived, error) == ([], "")
    assert archived[0].external_ids == first.external_ids
    [stored] = files_under(root)
    assert stored.read_bytes() == b"the only copy"
    assert len(plugin.site().catalog.copies()) == 1


def test_a_copy_whose_size_on_the_target_differs_from_the_record_is_not_reported_archived(
    tmp_path,
):
    config, [root] = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "clip.mov", b"twelve bytes")
    plugin.archive([fs], POLICY, "j1")
    [stored] = files_under(root)
    stored.write_bytes(b"short")  # damaged, or not the file the catalog remembers
    archived, not_archived, error, _ = plugin.archive([fs], POLICY, "j2")
    # Not reused from memory; and the bytes found there are not ours to overwrite.
    assert (archived, not_archived) == ([], [fs])
    assert "already exists" in error
    assert stored.read_bytes() == b"short"


def test_an_object_removed_from_a_bucket_is_uploaded_again(tmp_path):
    bucket = memory.create_bucket()
    try:
        plugin = plugin_with_drivers(
            tmp_path,
            {"memory": memory.MemoryDriver},
            targets={"s3": {"driver": "memory", "settings": {"bucket": bucket}}},
            policies={"p": {"name": "Bucket", "targets": ["s3"]}},
        )
        fs = media(tmp_path / "online", "clip.mov", b"in the bucket")
        plugin.archive([fs], "p", "j1")
        [key] = memory.bucket_contents(bucket)
        memory.MemoryDriver(memory.MemoryConfig(bucket=bucket), _context(tmp_path)).remove(key)
        _archived, not_archived, error, _ = plugin.archive([fs], "p", "j2")
        assert (not_archived, error) == ([], "")
        assert memory.bucket_contents(bucket) == {key: b"in the bucket"}
    finally:
        memory.drop_bucket(bucket)


def _context(tmp_path: Path):
    from archive_core.driver import DriverContext

    return DriverContext(target="s3", state_dir=tmp_path / "state")


# --- 2. restore, delete and verify act only inside the named policy --------------------------


def test_delete_through_one_policy_refuses_another_policys_copy_and_touches_nothing(tmp_path):
    config, _, root_b = _two_policies(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "b.mov", b"policy b's media")
    [archived], *_ = plugin.archive([fs], OTHER, "j")
    assert plugin.delete([archived], POLICY) == []
    [stored] = files_under(root_b)
    assert stored.read_bytes() == b"policy b's media"
    assert [c.external_id for c in plugin.site().catalog.copies()] == list(archived.external_ids)


def test_restore_and_verify_through_one_policy_refuse_another_policys_copy(tmp_path, caplog):
    config, _, _ = _two_policies(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "b.mov", b"policy b's media")
    [archived], *_ = plugin.archive([fs], OTHER, "j")
    Path(fs.files[0]).unlink()
    with pytest.raises(RestoreFailed) as caught:
        plugin.restore([archived], POLICY)
    assert "'b'" in caught.value.message and POLICY in caught.value.message
    assert not Path(fs.files[0]).exists()
    verified, failed, error = plugin.verify([archived], POLICY)
    assert (verified, failed) == ([], [archived]) and "'b'" in error


def test_a_policy_moved_to_a_new_target_still_restores_the_copies_it_made_on_the_old_one(
    tmp_path,
):
    config, _root_a, _root_b = _two_policies(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "a.mov", b"made on a")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    # The admin moves policy A to target b; target a stays configured for its old copies.
    config.write_text(config.read_text().replace('targets = ["a"]', 'targets = ["b"]'))
    moved = ArchiveCorePlugin(config)
    Path(fs.files[0]).unlink()
    moved.restore([archived], POLICY)
    assert Path(fs.files[0]).read_bytes() == b"made on a"


def test_an_external_id_whose_scheme_is_not_its_targets_driver_is_refused(tmp_path):
    config, [root] = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "x.mov", b"x")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    forged = archived._replace(
        external_ids=[e.replace("filesys://", "sftp://") for e in archived.external_ids]
    )
    assert plugin.delete([forged], POLICY) == []
    assert len(files_under(root)) == 1
    with pytest.raises(RestoreFailed, match="scheme"):
        plugin.restore([forged._replace(files=[str(tmp_path / "r.mov")])], POLICY)


# --- 4. names never collide ------------------------------------------------------------------


def test_two_files_of_one_item_with_one_base_name_and_no_sha1_keep_copies_of_their_own(tmp_path):
    config, _ = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    sources = []
    for folder, content in (("proxy", b"the proxy"), ("original", b"the original")):
        path = tmp_path / folder / "clip.mov"
        path.parent.mkdir()
        path.write_bytes(content)
        sources.append(FileSet(files=[str(path)], external_ids=[], item_id="VX-7", sha1=None))
    archived, not_archived, error, _ = plugin.archive(sources, POLICY, "j")
    assert (not_archived, error) == ([], "")
    assert archived[0].external_ids != archived[1].external_ids
    for fs, content in zip(archived, (b"the proxy", b"the original"), strict=True):
        Path(fs.files[0]).unlink()
        plugin.restore([fs], POLICY)
        assert Path(fs.files[0]).read_bytes() == content


# --- 7. a deleted catalog file never loses records silently ------------------------------------


def test_archiving_after_the_catalog_file_was_deleted_reports_the_files_not_archived(tmp_path):
    config, _ = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    plugin.archive([media(tmp_path / "online", "first.mov", b"first")], POLICY, "j1")
    database = tmp_path / "catalog.sqlite"
    backup = tmp_path / "backup.sqlite"
    with sqlite3.connect(database) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)  # what an admin's nightly backup holds
    for path in tmp_path.glob("catalog.sqlite*"):
        path.unlink()
    second = media(tmp_path / "online", "second.mov", b"second")
    archived, not_archived, error, _ = plugin.archive([second], POLICY, "j2")
    assert (archived, not_archived) == ([], [second])
    assert "catalog file" in error and "deleted" in error
    shutil.copyfile(backup, database)  # the admin restores it from the backup
    archived, not_archived, error, _ = plugin.archive([second], POLICY, "j3")
    assert (not_archived, error) == ([], "")
    assert len(Catalog(f"sqlite:///{database}").copies()) == 2


def test_a_write_that_lands_in_a_deleted_catalog_file_is_an_error_not_a_success(tmp_path):
    from archive_core.catalog import JournalEntry, JournalResult

    database = tmp_path / "c.sqlite"
    catalog = Catalog(f"sqlite:///{database}")
    batch = catalog.begin(
        job_id="j",
        policy="p",
        target="t",
        operation="archive",
        entries=[JournalEntry(key="0", name="n")],
    )
    database.unlink()
    with pytest.raises(CatalogError, match="deleted"):
        catalog.finish(batch.id, [JournalResult(key="0", ok=False, error="x")])
    catalog.close()


# --- 8. restore by self-describing external id without a usable catalog ------------------------


@pytest.mark.parametrize("broken", ["unreachable", "read-only"])
def test_restore_by_external_id_works_when_the_catalog_cannot_be_written(tmp_path, broken, caplog):
    config, _ = filesys_site(tmp_path)
    fs = media(tmp_path / "online", "keep.mov", b"keep me")
    [archived], *_ = ArchiveCorePlugin(config).archive([fs], POLICY, "j")
    if broken == "unreachable":
        url = "postgresql+psycopg://archive@127.0.0.1:1/gone"
    else:
        url = f"sqlite:///file:{tmp_path / 'catalog.sqlite'}?mode=ro&uri=true"
    config.write_text(config.read_text().replace(f"sqlite:///{tmp_path / 'catalog.sqlite'}", url))
    Path(fs.files[0]).unlink()
    with caplog.at_level(logging.WARNING):
        assert ArchiveCorePlugin(config).restore([archived], POLICY) == [archived]
    assert Path(fs.files[0]).read_bytes() == b"keep me"
    assert "journal" in caplog.text.lower()


# --- 10/11. targets and configs come back; a reload never pulls a site from under a job -------


def test_a_config_reload_closes_the_old_site_only_after_its_running_jobs_end(tmp_path, monkeypatch):
    from archive_core_filesys.driver import FilesysDriver

    config, _ = filesys_site(tmp_path)
    entered, release = threading.Event(), threading.Event()
    closed: list[int] = []
    real_archive, real_close = FilesysDriver.archive, FilesysDriver.close

    def slow_archive(self, request):
        entered.set()
        assert release.wait(30)
        yield from real_archive(self, request)

    def recording_close(self):
        closed.append(id(self))
        real_close(self)

    monkeypatch.setattr(FilesysDriver, "archive", slow_archive)
    monkeypatch.setattr(FilesysDriver, "close", recording_close)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "long.mov", b"a long job")
    result: list = []
    job = threading.Thread(target=lambda: result.append(plugin.archive([fs], POLICY, "j")))
    job.start()
    assert entered.wait(30)
    text = config.read_text()
    config.write_text(text + "\n# edited by the admin\n")
    os.utime(config, (time.time() + 5, time.time() + 5))
    assert [p["uuid"] for p in plugin.get_policies()] == [POLICY]  # the new site answers
    assert closed == [], "the old site was closed under a running job"
    release.set()
    job.join(30)
    [(_archived, not_archived, error, _)] = result
    assert (not_archived, error) == ([], "")
    assert len(closed) == 1  # closed once its job was done


# --- 12. the smaller ones -----------------------------------------------------------------------


def test_archive_answers_per_file_for_bytes_and_int_paths_and_for_none(tmp_path):
    config, _ = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    good = media(tmp_path / "online", "bytes.mov", b"named by bytes")
    as_bytes = good._replace(files=[os.fsencode(good.files[0])])
    as_int = good._replace(files=[3])
    archived, not_archived, error, _ = plugin.archive([as_bytes, as_int], POLICY, "j")
    assert [fs.files for fs in archived] == [as_bytes.files]
    assert not_archived == [as_int] and "3" in error
    assert plugin.archive(None, POLICY, "j") == ([], [], "", {})
    assert plugin.restore(None, POLICY) == []
    assert plugin.delete(None, POLICY) == []


def test_the_catalog_password_never_shows_and_can_be_given_by_reference(tmp_path, monkeypatch):
    from archive_core.policies import load_config

    monkeypatch.setenv("ARCHIVE_CORE_TEST_DB_PASSWORD", "hunter2-from-env")
    config = tmp_path / "a.toml"
    config.write_text(
        textwrap.dedent(
            """
            [catalog]
            url = "postgresql+psycopg://archive:hunter2@127.0.0.1:1/portal_archive"
            """
        )
    )
    assert "hunter2" not in repr(load_config(config))
    config.write_text(
        textwrap.dedent(
            """
            [catalog]
            url = "postgresql+psycopg://archive@127.0.0.1:1/portal_archive"
            password = "env:ARCHIVE_CORE_TEST_DB_PASSWORD"
            """
        )
    )
    loaded = load_config(config)
    assert "hunter2" not in repr(loaded)
    assert loaded.catalog_password.reveal() == "hunter2-from-env"
    from archive_core.site import Site

    catalog = Site(loaded).catalog
    with pytest.raises(CatalogError) as caught:
        catalog.copies()
    assert "hunter2" not in caught.value.message and "hunter2" not in repr(catalog)


def test_bulk_support_follows_the_drivers_declared_capability(tmp_path):
    config, _ = filesys_site(tmp_path)  # filesys declares bulk; no bulk limits configured
    plugin = ArchiveCorePlugin(config)
    assert plugin.get_policies()[0]["bulk_support"] is True
    assert plugin.get_policy_constrains() == [
        {"uuid": POLICY, "max_files": None, "max_bytes": None}
    ]
    (tmp_path / "m").mkdir()
    no_bulk = plugin_with_drivers(
        tmp_path / "m",
        {"memory": MemoryDriver},  # declares no bulk
        targets={"t": {"driver": "memory"}},
        policies={"p": {"name": "P", "targets": ["t"], "bulk": {"max_files": 10}}},
    )
    assert no_bulk.get_policies()[0]["bulk_support"] is False
    assert no_bulk.get_policy_constrains() == []


def test_a_hanging_readiness_probe_does_not_keep_the_process_from_exiting(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, threading
            sys.path[:0] = {[str(Path.cwd()), *sys.path]!r}
            from pathlib import Path
            from tests.sites import MemoryDriver, plugin_with_drivers

            class Hangs(MemoryDriver):
                name = "hangs"
                def check_ready(self):
                    threading.Event().wait()  # never answers, as on a dead NFS mount

            plugin = plugin_with_drivers(
                Path({str(tmp_path)!r}),
                {{"hangs": Hangs}},
                targets={{"t": {{"driver": "hangs"}}}},
                policies={{"p": {{"name": "P", "targets": ["t"]}}}},
                portal={{"ready_timeout_seconds": 0.2}},
            )
            print(plugin.is_ready(), flush=True)
            """
        )
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
    assert time.monotonic() - started < 30, "the hung probe's thread kept the process alive"


class _TornReads(MemoryDriver):
    """Reads each source in two halves; the file is rewritten in between (a live recording)."""

    name = "torn"

    def archive(self, request):
        from archive_core.model import FileOutcome

        for item in request.items:
            path = Path(item.sources[0])
            with open(path, "rb", buffering=0) as fh:
                head = fh.read(len(path.read_bytes()) // 2)
                path.write_bytes(b"X" * 64)  # someone else writes the file meanwhile
                data = head + fh.read()
            self.store[item.name] = data
            yield FileOutcome.success(
                item.key, locator=item.name, size=len(data), sha1=hashlib.sha1(data).hexdigest()
            )


def test_a_file_that_changes_while_read_without_a_sha1_is_never_archived_torn(tmp_path):
    plugin = plugin_with_drivers(
        tmp_path,
        {"torn": _TornReads},
        targets={"t": {"driver": "torn"}},
        policies={"p": {"name": "P", "targets": ["t"]}},
    )
    path = tmp_path / "online" / "live.mov"
    path.parent.mkdir()
    path.write_bytes(b"A" * 64)
    fs = FileSet(files=[str(path)], external_ids=[], item_id="VX-1", sha1=None)
    archived, not_archived, error, _ = plugin.archive([fs], "p", "j")
    assert (archived, not_archived) == ([], [fs])
    assert "changed while" in error


def test_log_lines_name_files_by_path_and_carry_a_job_id(tmp_path, caplog):
    config, _ = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "gone.mov", b"gone")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    Path(fs.files[0]).unlink()
    missing = archived._replace(external_ids=[archived.external_ids[0] + "-nothing-here"])
    with caplog.at_level(logging.WARNING), pytest.raises(RestoreFailed):
        plugin.restore([missing], POLICY)
    [line] = [r.getMessage() for r in caplog.records if "failed for" in r.getMessage()]
    assert fs.files[0] in line
    assert "job=None" not in line and "job=restore-" in line


class _FailsOnSecondFlush(Catalog):
    """A real catalog whose database goes away after the first group of results."""

    flushes = 0

    def finish(self, batch, results):
        type(self).flushes += 1
        if type(self).flushes >= 2:
            raise CatalogError("Catalog operation failed: server closed the connection")
        super().finish(batch, results)


def test_a_catalog_failure_mid_batch_is_reported_per_file_with_what_was_recorded(tmp_path):
    from archive_core.hooks import Hooks
    from archive_core.policies import load_config
    from archive_core.registry import FixedRegistry
    from archive_core.site import Site

    config = write_config(
        tmp_path / "archive-core.toml",
        targets={"t": {"driver": "memory"}},
        policies={"p": {"name": "P", "targets": ["t"]}},
    )
    catalog = _FailsOnSecondFlush(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    site = Site(
        load_config(config),
        registry=FixedRegistry({"memory": MemoryDriver}),
        hooks=Hooks(),
        catalog=catalog,
    )
    plugin = ArchiveCorePlugin(config, site=site)
    batch = [
        media(tmp_path / "online", f"f{i}.mov", f"content {i}".encode(), item_id=f"VX-{i}")
        for i in range(600)
    ]
    archived, not_archived, error, _ = plugin.archive(batch, "p", "j")
    recorded = {c.external_id for c in Catalog(catalog.url).copies()}
    # Exactly the files whose records are in the catalog are reported archived.
    assert len(recorded) == 256
    assert {e for fs in archived for e in fs.external_ids} == recorded
    assert len(not_archived) == 600 - 256
    assert "could not record it" in error and "the batch was stopped" in error


def test_delete_refuses_to_start_when_the_catalog_cannot_record_it(tmp_path):
    config, [root] = filesys_site(tmp_path)
    fs = media(tmp_path / "online", "keep.mov", b"keep me")
    [archived], *_ = ArchiveCorePlugin(config).archive([fs], POLICY, "j")
    database = str(tmp_path / "catalog.sqlite")
    config.write_text(
        config.read_text().replace(
            f"sqlite:///{database}", f"sqlite:///file:{database}?mode=ro&uri=true"
        )
    )
    assert ArchiveCorePlugin(config).delete([archived], POLICY) == []
    assert len(files_under(root)) == 1


def test_a_target_that_could_not_be_built_is_tried_again_after_the_cache_time(tmp_path):
    import attrs

    from archive_core.driver import setting
    from archive_core.hooks import Hooks
    from archive_core.policies import load_config
    from archive_core.registry import FixedRegistry
    from archive_core.site import Site

    mounted = tmp_path / "share"

    def _mounted(_instance, _attribute, value):
        if not mounted.exists():  # a third-party validator that looks at storage
            raise ValueError("share is not mounted")

    @attrs.frozen(kw_only=True)
    class PickyConfig:
        label: str = setting(help="a label", default="x", validator=_mounted)

    class Picky(MemoryDriver):
        name = "picky"
        Config = PickyConfig

    config = write_config(
        tmp_path / "archive-core.toml",
        targets={"t": {"driver": "picky"}},
        policies={"p": {"name": "P", "targets": ["t"]}},
        portal={"ready_cache_seconds": 15},
    )
    now = [1000.0]
    site = Site(
        load_config(config),
        registry=FixedRegistry({"picky": Picky}),
        hooks=Hooks(),
        clock=lambda: now[0],
    )
    fs = media(tmp_path / "online", "a.mov", b"a")
    plugin = ArchiveCorePlugin(config, site=site)
    _, not_archived, error, _ = plugin.archive([fs], "p", "j1")
    assert not_archived == [fs] and "share is not mounted" in error
    mounted.mkdir()
    now[0] += 16
    _, not_archived, error, _ = plugin.archive([fs], "p", "j2")
    assert (not_archived, error) == ([], "")
