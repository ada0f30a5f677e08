"""The audit trail: every operation and config change recorded, hash-chained, tamper-evident."""

from __future__ import annotations

import json
import os
import threading

import sqlalchemy as sa
from click.testing import CliRunner

from archive_core.catalog import Catalog
from archive_core.cli import main
from archive_core.portal import ArchiveCorePlugin
from archive_core.testing.siteconfig import write_config

from .sites import POLICY, filesys_site, media


def entries(plugin: ArchiveCorePlugin) -> list:
    return list(plugin.site().catalog.audit.entries())


def test_every_operation_is_recorded_with_who_what_and_how_it_ended(tmp_path):
    config, _roots = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    original = media(tmp_path / "online", "clip.mxf", os.urandom(2000))
    [archived], _, _, _ = plugin.archive([original], POLICY, "VX-JOB-7")
    wanted = archived._replace(files=[str(tmp_path / "back" / "clip.mxf")])
    (tmp_path / "back").mkdir()
    plugin.restore([wanted], POLICY)
    plugin.verify([archived], POLICY)
    plugin.delete([archived], POLICY)
    trail = entries(plugin)
    assert [e.operation for e in trail] == ["config", "archive", "restore", "verify", "delete"]
    assert [e.id for e in trail] == [1, 2, 3, 4, 5]
    first = trail[1]
    assert first.actor == "Portal job VX-JOB-7" and first.policy == POLICY
    assert first.outcome == "1 ok, 0 failed"
    [file] = json.loads(first.subject)["files"]
    assert file["ok"] and file["external_ids"] == list(archived.external_ids)
    assert file["file"] == original.files[0]
    assert all(e.process for e in trail)
    assert plugin.site().catalog.audit.verify().ok


def test_the_command_line_names_its_user(tmp_path):
    config, _roots = filesys_site(tmp_path)
    source = tmp_path / "clip.mxf"
    source.write_bytes(os.urandom(100))
    result = CliRunner().invoke(
        main, ["--config", str(config), "archive", "--policy", POLICY, str(source)]
    )
    assert result.exit_code == 0, result.output
    [_config, archive] = entries(ArchiveCorePlugin(config))
    assert archive.actor.endswith("(archive-core command line)")


def _tampered(tmp_path, change) -> tuple[int, str]:
    config, _roots = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    for n in range(4):
        plugin.archive([media(tmp_path / "online", f"f{n}.bin", os.urandom(100))], POLICY, f"j{n}")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(change)
    engine.dispose()
    result = CliRunner().invoke(main, ["--config", str(config), "audit", "verify"])
    return result.exit_code, result.output


def test_an_untouched_trail_verifies_and_prints_its_head(tmp_path):
    code, output = _tampered(tmp_path, "SELECT 1")
    assert code == 0 and "audit trail intact: 5 entries; head entry 5, hash" in output, output


def test_an_edited_entry_is_caught(tmp_path):
    code, output = _tampered(
        tmp_path, "UPDATE archive_core_audit SET outcome = '0 ok, 1 failed' WHERE id = 3"
    )
    assert code == 1 and "entry 3 (archive at" in output and "was changed" in output, output


def test_a_removed_entry_is_caught(tmp_path):
    code, output = _tampered(tmp_path, "DELETE FROM archive_core_audit WHERE id = 2")
    assert code == 1 and "entry 2 is missing" in output, output


def test_entries_cut_off_the_end_are_caught(tmp_path):
    code, output = _tampered(tmp_path, "DELETE FROM archive_core_audit WHERE id >= 4")
    assert code == 1 and "the entries after 3 were removed" in output, output


def test_a_rewritten_entry_with_a_fresh_hash_still_breaks_the_chain(tmp_path):
    """An editor who recomputes the edited entry's own hash breaks the next one's link."""
    from archive_core.audit import entry_hash

    config, _roots = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    for n in range(3):
        plugin.archive([media(tmp_path / "online", f"f{n}.bin", os.urandom(100))], POLICY, f"j{n}")
    trail = plugin.site().catalog.audit
    victim = next(e for e in trail.entries() if e.id == 2)
    fields = {
        "id": victim.id,
        "at": victim.at,
        "actor": "someone else",
        "process": victim.process,
        "operation": victim.operation,
        "policy": victim.policy,
        "subject": victim.subject,
        "outcome": victim.outcome,
    }
    forged = entry_hash(prev=victim.prev, **fields)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE archive_core_audit SET actor = :a, hash = :h WHERE id = 2"),
            {"a": "someone else", "h": forged},
        )
    engine.dispose()
    problems = trail.verify().problems
    assert problems == ("entry 3 does not follow entry 2",), problems


def test_a_config_change_is_recorded_once_by_name_never_by_value(tmp_path):
    config, roots = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    plugin.archive([media(tmp_path / "online", "a.bin", os.urandom(100))], POLICY, "j1")
    write_config(
        config,
        targets={
            "disk0": {"driver": "filesys", "settings": {"root": str(roots[0]), "min_free_bytes": 7}}
        },
        policies={POLICY: {"name": "Test archive", "targets": ["disk0"]}},
        catalog_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
    )
    for job in ("j2", "j3"):  # two jobs with the new config: one config entry
        changed = ArchiveCorePlugin(config)
        changed.archive([media(tmp_path / "online", f"{job}.bin", os.urandom(100))], POLICY, job)
    trail = entries(ArchiveCorePlugin(config))
    configs = [e for e in trail if e.operation == "config"]
    assert [c.outcome for c in configs] == ["first seen", "changed"]
    assert json.loads(configs[1].subject)["changes"] == {
        "targets_changed": {"disk0": ["min_free_bytes"]}
    }
    exported = CliRunner().invoke(main, ["--config", str(config), "audit", "export"]).output
    assert len(exported.splitlines()) == len(trail)
    assert str(roots[0]) not in exported  # settings are kept as digests, never as values


def test_workers_appending_at_once_keep_one_unbroken_chain(catalog_url):
    catalogs = [Catalog(catalog_url) for _ in range(3)]
    catalogs[0].copies()  # create the schema before the race

    def append(catalog: Catalog, n: int) -> None:
        for i in range(15):
            catalog.audit.record(
                actor=f"worker {n}", operation="verify", policy=None, subject={"i": i}, outcome="ok"
            )

    threads = [threading.Thread(target=append, args=(c, n)) for n, c in enumerate(catalogs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check = catalogs[0].audit.verify()
    assert check.ok and check.entries == 45 and check.head_id == 45, check.problems
    for catalog in catalogs:
        catalog.close()
