"""`archive-core catalog prune`: journal rows of finished work go after the site's
retention, failures later than successes, unfinished work never."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from archive_core.catalog import Catalog, _schema
from archive_core.cli import main
from archive_core.errors import ConfigError
from archive_core.policies import parse_config
from tests.sites import filesys_site

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _journal(url: str, rows: list[tuple[str, str, int]]) -> None:
    """Rows (key, state, days ago) in the catalog at `url`, made by the code's schema."""
    import sqlalchemy as sa

    Catalog(url).close()
    catalog = Catalog(url)
    try:
        catalog.copies()  # made at the code's version
    finally:
        catalog.close()
    journal = _schema(sa).journal
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for key, state, days in rows:
                when = NOW - dt.timedelta(days=days)
                conn.execute(
                    journal.insert(),
                    {
                        "batch": "b1",
                        "policy": "P",
                        "target": "disk0",
                        "operation": "archive",
                        "key": key,
                        "name": key,
                        "state": state,
                        "worker": "h:1:0",
                        "started": when,
                        "finished": None if state == "intent" else when,
                    },
                )
    finally:
        engine.dispose()


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
        dry = catalog.prune(**cut, dry_run=True)
        assert (dry.done, dry.failed) == (2, 1)
        assert len(catalog.journal()) == len(ROWS)  # a dry run removes nothing
        pruned = catalog.prune(**cut)
        assert (pruned.done, pruned.failed) == (2, 1)
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
    assert "Removed 1 journal rows of work done or abandoned more than 3 days ago" in result.output
    assert "1 of work that failed more than 365 days ago" in result.output


def test_failures_kept_shorter_than_successes_is_a_config_error() -> None:
    raw = {"catalog": {"keep_done_days": 60, "keep_failed_days": 30}}
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert any("catalog.keep_failed_days" in p for p in refused.value.problems)
    with pytest.raises(ConfigError) as refused:
        parse_config({"catalog": {"keep_done_days": 0}})
    assert any("catalog.keep_done_days" in p for p in refused.value.problems)
