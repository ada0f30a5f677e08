"""`archive-core catalog prune`: journal rows of finished work go after the site's
retention, failures later than successes, unfinished work never."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from archive_core.catalog import HEARTBEAT_STALE, Catalog, Pruned
from archive_core.cli import main
from archive_core.errors import ConfigError
from archive_core.policies import parse_config
from tests.sites import filesys_site

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _journal(url: str, rows: list[tuple[str, str, int]]) -> None:
    """Work journaled (key, state, days ago) in the catalog at `url`, each file its own
    batch, written through the catalog as a worker writes it. "abandoned": a dead worker's
    batch that a re-run (finished the same day) took the file over from."""
    from archive_core.catalog import JournalEntry, JournalResult
    from archive_core.workers import WorkerId

    dead = WorkerId(host="gone", pid=1, pid_space="old-boot", start=1)
    for key, state, days in rows:
        when = NOW - dt.timedelta(days=days)
        catalog = Catalog(url, clock=lambda when=when: when)
        # Its heartbeat is stale by the time the re-run comes: that worker is gone.
        then = when - HEARTBEAT_STALE - dt.timedelta(seconds=1)
        other = Catalog(url, clock=lambda then=then: then, worker=dead)
        entries = [JournalEntry(key=key, name=key)]
        spec = {"job_id": key, "policy": "P", "target": "disk0", "operation": "archive"}
        try:
            if state in ("intent", "abandoned"):
                other.begin(**spec, entries=entries)
            if state == "intent":
                continue
            batch = catalog.begin(**spec, entries=entries)
            ok = state != "failed"
            catalog.finish(batch.id, [JournalResult(key=key, ok=ok, error=None if ok else "x")])
            catalog.end(batch.id)
        finally:
            catalog.close()
            other.close()


ROWS = [
    ("done-old", "done", 40),
    ("done-new", "done", 5),
    ("abandoned-old", "abandoned", 40),
    ("failed-40", "failed", 40),
    ("failed-old", "failed", 400),
    ("intent-old", "intent", 900),
]


def test_prune_keeps_failures_longer_and_unfinished_work_always(catalog_url: str) -> None:
    _journal(catalog_url, ROWS)
    catalog = Catalog(catalog_url)
    try:
        cut = {
            "done_before": NOW - dt.timedelta(days=30),
            "failed_before": NOW - dt.timedelta(days=365),
        }
        # Old enough: the batches of done-old, abandoned-old (the dead one and its re-run)
        # and of both failures; recording done-old, the re-run and the file taken over.
        expected = Pruned(batches=5, done=3, failed=1)
        assert catalog.prune(**cut, dry_run=True) == expected
        assert len(catalog.journal()) == len(ROWS) + 1  # a dry run removes nothing
        assert catalog.prune(**cut) == expected
        left = sorted(row.key for row in catalog.journal())
    finally:
        catalog.close()
    assert left == ["done-new", "failed-40", "intent-old"]


def test_prune_goes_in_rounds_until_nothing_old_is_left(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_core import catalog as module

    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    _journal(url, [(f"k{n}", "done", 90) for n in range(23)])
    monkeypatch.setattr(module, "PRUNE_ROWS", 5)
    catalog = Catalog(url)
    try:
        far = NOW - dt.timedelta(days=30)
        assert catalog.prune(done_before=far, failed_before=far).done == 23
        assert catalog.journal() == []
    finally:
        catalog.close()


def test_the_prune_command_uses_the_site_retention(tmp_path) -> None:
    config, _ = filesys_site(tmp_path)
    text = config.read_text().replace("[catalog]", "[catalog]\nkeep_done_days = 3")
    config.write_text(text)
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    # Real now: rows far older than any retention, and one done today.
    _journal(url, [("ancient", "done", 4000), ("today", "done", -1), ("lost", "failed", 4000)])
    result = CliRunner().invoke(main, ["--config", str(config), "catalog", "prune"])
    assert result.exit_code == 0, result.output
    assert (
        "Removed the journal of 1 files done or abandoned more than 3 days ago (2 batches)"
        in result.output
    )
    assert "of 1 files that failed more than 365 days ago" in result.output


def test_failures_kept_shorter_than_successes_is_a_config_error() -> None:
    raw = {"catalog": {"keep_done_days": 60, "keep_failed_days": 30}}
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert any("catalog.keep_failed_days" in p for p in refused.value.problems)
    with pytest.raises(ConfigError) as refused:
        parse_config({"catalog": {"keep_done_days": 0}})
    assert any("catalog.keep_done_days" in p for p in refused.value.problems)
