"""One configuration for all workers: targets and policies as versions in the catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive_core import configedit
from archive_core.errors import ConfigConflict, ConfigError
from archive_core.policies import CATALOG, FILE, load_config
from archive_core.portal import ArchiveCorePlugin
from archive_core.testing.siteconfig import write_config
from tests.sites import POLICY, filesys_site, media

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "config_worker.py"
ADMIN = "admin (Portal user)"


def bootstrap(
    tmp_path: Path, catalog_url: str | None = None, *, portal: dict | None = None, **config
) -> Path:
    """A bootstrap file: where the catalog is, no targets or policies."""
    return write_config(
        tmp_path / "bootstrap.toml",
        targets={},
        policies={},
        catalog_url=catalog_url or f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        portal=portal,
        config=config or None,
    )


def disk_document(root: Path, *, name: str = "Nearline", **policy) -> dict:
    return {
        "targets": {"disk": {"driver": "filesys", "settings": {"root": str(root)}}},
        "policies": {POLICY: {"name": name, "targets": ["disk"], **policy}},
    }


def save(plugin: ArchiveCorePlugin, document: dict, **kwargs):
    site = plugin.site()
    based_on = site.catalog.config_versions.latest_number()
    return configedit.save(site, document, actor=ADMIN, based_on=based_on, **kwargs)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "archive"
    path.mkdir()
    return path


def test_a_bootstrap_file_without_targets_leaves_them_to_the_catalog(tmp_path):
    config = load_config(bootstrap(tmp_path))
    assert config.config_source.kind == CATALOG
    assert "declares no targets or policies" in config.config_source.why
    plugin = ArchiveCorePlugin(bootstrap(tmp_path))
    assert plugin.get_policies() == []
    assert plugin.is_ready() is False
    assert "no version is saved yet" in plugin.site().config.config_source.describe()


def test_a_file_declaring_targets_keeps_them_as_before(tmp_path):
    config_path, _ = filesys_site(tmp_path)
    config = load_config(config_path)
    assert config.config_source.kind == FILE
    assert "declares targets or policies itself" in config.config_source.why


def test_a_file_for_the_catalog_must_not_declare_targets_too(tmp_path, root):
    path = write_config(
        tmp_path / "both.toml",
        targets={"disk": {"driver": "filesys", "settings": {"root": str(root)}}},
        policies={},
        config={"source": "catalog"},
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "config import" in caught.value.message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def names(plugin: ArchiveCorePlugin) -> list[str]:
    """The policies' names as a job call of `plugin` would see them now."""
    return [p.name for p in plugin.site().policies()]


def test_a_saved_version_is_used_on_the_next_job_call_without_a_restart(tmp_path, root):
    plugin = ArchiveCorePlugin(bootstrap(tmp_path), clock=Clock())
    site_before = plugin.site()
    saved = save(plugin, disk_document(root), comment="first policy")
    assert saved.number == 1
    # The archive call itself finds the policy the save made: no restart, no wait.
    fs = media(tmp_path / "online", "clip.mxf", b"essence")
    _archived, not_archived, error, _ = plugin.archive([fs], POLICY, "job-1")
    assert error == "" and not not_archived
    assert plugin.site().config.config_source.version.number == 1
    # No new version: the next calls keep the site (and its drivers) they have.
    site = plugin.site()
    assert site is not site_before
    plugin.archive([fs], POLICY, "job-2")
    assert plugin.site() is site


def test_each_job_call_asks_the_catalog_for_the_newest_version_once(tmp_path, root, monkeypatch):
    from archive_core.configstore import ConfigVersions

    plugin = ArchiveCorePlugin(bootstrap(tmp_path), clock=Clock())
    save(plugin, disk_document(root))
    asked = []
    latest_number = ConfigVersions.latest_number
    monkeypatch.setattr(
        ConfigVersions, "latest_number", lambda self: asked.append(1) or latest_number(self)
    )
    files = [
        media(tmp_path / "online", f"clip{n}.mxf", b"essence %d" % n, item_id=f"VX-{n}")
        for n in range(3)
    ]
    archived, not_archived, error, _ = plugin.archive(files, POLICY, "job-1")
    assert error == "" and not not_archived
    assert len(asked) == 1  # not once per file, nor again to put the answer in Portal's shape
    for operation in (plugin.verify, plugin.restore, plugin.delete):
        asked.clear()
        operation(archived, POLICY, "job-2")
        assert len(asked) == 1, operation.__name__


def test_listing_calls_ask_for_a_new_version_at_most_once_per_ready_cache(tmp_path, root):
    path = bootstrap(tmp_path)
    clock = Clock()
    worker = ArchiveCorePlugin(path, clock=clock)
    admin = ArchiveCorePlugin(path)  # the web process saving from the pages
    assert worker.get_policies() == []
    save(admin, disk_document(root))
    # is_ready and get_policies come often and Portal caches them: the check waits its turn.
    clock.now += 14
    assert worker.get_policies() == []
    clock.now += 1  # ready_cache_seconds (15) after the last check
    assert [p["name"] for p in worker.get_policies()] == ["Nearline"]
    save(admin, disk_document(root, name="Renamed"))
    assert [p["name"] for p in worker.get_policies()] == ["Nearline"]
    # A job call asks every time.
    fs = media(tmp_path / "online", "clip.mxf", b"essence")
    worker.archive([fs], POLICY, "job-1")
    assert [p["name"] for p in worker.get_policies()] == ["Renamed"]


def test_a_save_made_from_an_older_version_is_refused(tmp_path, root):
    plugin = ArchiveCorePlugin(bootstrap(tmp_path))
    site = plugin.site()
    configedit.save(site, disk_document(root), actor=ADMIN, based_on=0)
    with pytest.raises(ConfigConflict) as caught:
        configedit.save(site, disk_document(root, name="Other"), actor="someone", based_on=0)
    assert caught.value.latest == 1
    assert "version 1 was saved after version 0" in caught.value.message
    assert site.catalog.config_versions.latest_number() == 1


def test_an_invalid_document_is_refused_whole_with_each_problem_at_its_path(tmp_path, root):
    plugin = ArchiveCorePlugin(bootstrap(tmp_path))
    document = {
        "targets": {
            "disk": {"driver": "filesys", "settings": {"root": "relative/path"}},
            "ghost": {"driver": "no-such-driver", "settings": {}},
        },
        "policies": {POLICY: {"name": "P", "targets": ["disk", "missing"]}},
    }
    with pytest.raises(ConfigError) as caught:
        save(plugin, document)
    problems = "\n".join(caught.value.problems)
    assert "policies." + POLICY + ".targets: no target named 'missing'" in problems
    document["policies"][POLICY]["targets"] = ["disk"]
    with pytest.raises(ConfigError) as caught:
        save(plugin, document)
    problems = "\n".join(caught.value.problems)
    assert "targets.disk.settings.root: must be an absolute path" in problems
    assert "targets.ghost.driver: no installed distribution registers driver 'no-such-d" in problems
    assert plugin.site().catalog.config_versions.latest_number() == 0


def test_a_confined_path_outside_the_allowed_roots_is_refused(tmp_path, root):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    plugin = ArchiveCorePlugin(bootstrap(tmp_path, allowed_roots=[str(root)]))
    for path in (outside, root / ".." / "elsewhere"):
        with pytest.raises(ConfigError) as caught:
            save(plugin, disk_document(path))
        assert f"targets.disk.settings.root: {path} is outside the allowed roots ({root})" in (
            caught.value.message
        )
    (root / "link").symlink_to(outside)
    with pytest.raises(ConfigError):
        save(plugin, disk_document(root / "link"))
    (root / "media").mkdir()
    assert save(plugin, disk_document(root / "media")).number == 1


def test_a_worker_refuses_a_confined_path_from_a_file_too(tmp_path, root):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    path = write_config(
        tmp_path / "site.toml",
        targets={"disk": {"driver": "filesys", "settings": {"root": str(outside)}}},
        policies={POLICY: {"targets": ["disk"]}},
        config={"allowed_roots": [str(root)]},
    )
    plugin = ArchiveCorePlugin(path)
    [state] = plugin.readiness()
    assert not state.readiness.ok
    assert "outside the allowed roots" in state.readiness.reason


def test_a_disabled_policy_refuses_archives_but_restores_what_it_has(tmp_path, root):
    plugin = ArchiveCorePlugin(bootstrap(tmp_path))
    save(plugin, disk_document(root))
    fs = media(tmp_path / "online", "clip.mxf", b"essence")
    [archived], _, _, _ = plugin.archive([fs], POLICY, "job-1")
    save(plugin, disk_document(root, disabled=True))
    other = media(tmp_path / "online", "other.mxf", b"more essence", item_id="VX-2")
    done, not_archived, error, _ = plugin.archive([other], POLICY, "job-2")
    assert done == [] and not_archived == [other]
    assert error == "Policy 'Nearline' is disabled: it takes no new archives."
    [state] = plugin.readiness()
    assert not state.readiness.ok and "disabled" in state.readiness.reason
    back = tmp_path / "back" / "clip.mxf"
    back.parent.mkdir()
    plugin.restore([archived._replace(files=[str(back)])], POLICY)
    assert back.read_bytes() == b"essence"


def test_a_disabled_target_stops_archives_to_its_policies(tmp_path, root):
    plugin = ArchiveCorePlugin(bootstrap(tmp_path))
    document = disk_document(root)
    document["targets"]["disk"]["disabled"] = True
    save(plugin, document)
    fs = media(tmp_path / "online", "clip.mxf", b"essence")
    _, _, error, _ = plugin.archive([fs], POLICY, "job-1")
    assert error == "Policy 'Nearline' takes no new archives: its target disk is disabled."


def test_revert_saves_an_old_version_again_and_history_says_what_changed(tmp_path, root):
    plugin = ArchiveCorePlugin(bootstrap(tmp_path))
    save(plugin, disk_document(root))
    save(plugin, disk_document(root, name="Renamed", bulk={"max_files": 10}))
    site = plugin.site()
    reverted = configedit.revert(site, 1, actor=ADMIN, based_on=2)
    assert reverted.number == 3 and reverted.comment == "revert to version 1"
    assert reverted.digest == site.catalog.config_versions.get(1).digest
    assert names(plugin) == ["Nearline"]
    history = plugin.site().catalog.config_versions.history()
    assert [v.number for v in history] == [3, 2, 1]
    secret = configedit.secret_test(plugin.site().registry)
    lines = configedit.changes(history[2].document, history[1].document, secret=secret)
    assert lines == [
        f"policy Renamed ({POLICY}): bulk set to {{max_files = 10}}",
        f"policy Renamed ({POLICY}): name changed from 'Nearline' to 'Renamed'",
    ]
    assert configedit.changes(None, history[2].document, secret=secret)[0] == (
        "target disk added (driver filesys)"
    )
    # Each save is in the audit trail, with who saved it.
    entries = [e for e in site.catalog.audit.entries() if e.operation == "config"]
    assert [e.outcome for e in entries] == [f"saved as version {n}" for n in (1, 2, 3)]
    assert {e.actor for e in entries} == {ADMIN}


def test_a_secret_setting_is_named_in_the_history_never_shown():
    def secret(driver: str, key: str) -> bool:
        return key == "password"

    before = {"targets": {"s": {"driver": "sftp", "settings": {"password": "env:OLD"}}}}
    after = {"targets": {"s": {"driver": "sftp", "settings": {"password": "env:NEW"}}}}
    lines = configedit.changes(before, after, secret=secret)
    assert lines == ["target s: secret password changed (never shown)"]
    # A policy carrying its own driver and settings: the same.
    own = {"name": "P", "driver": "sftp", "settings": {"password": "env:OLD", "port": 22}}
    changed = {**own, "settings": {"password": "env:NEW", "port": 2222}}
    lines = configedit.changes(
        {"policies": {"u": own}}, {"policies": {"u": changed}}, secret=secret
    )
    assert lines == [
        "policy P (u): secret password changed (never shown)",
        "policy P (u): port changed from 22 to 2222",
    ]
    added = configedit.changes(None, {"policies": {"u": own}}, secret=secret)
    assert added == ["policy P (u) added, with its own driver sftp"]


def test_export_and_import_round_trip_through_toml(tmp_path, root):
    from click.testing import CliRunner

    from archive_core.cli import main

    path = bootstrap(tmp_path)
    runner = CliRunner()
    source = tmp_path / "policies.toml"
    (tmp_path / "old").mkdir()
    site_path, _ = filesys_site(tmp_path / "old")
    exported = runner.invoke(main, ["--config", str(site_path), "config", "export"])
    assert exported.exit_code == 0, exported.output
    source.write_text(exported.output)
    imported = runner.invoke(main, ["--config", str(path), "config", "import", str(source)])
    assert imported.exit_code == 0, imported.output
    assert "saved as configuration version 1" in imported.output
    plugin = ArchiveCorePlugin(path)
    assert [p["name"] for p in plugin.get_policies()] == ["Test archive"]
    again = runner.invoke(main, ["--config", str(path), "config", "export", "--version", "1"])
    assert again.output == exported.output
    history = runner.invoke(main, ["--config", str(path), "config", "history", "--json"])
    [entry] = json.loads(history.output)
    assert entry["comment"] == f"imported from {source}"


def test_import_validates_first_and_takes_only_targets_and_policies(tmp_path, root):
    from click.testing import CliRunner

    from archive_core.cli import main

    path = bootstrap(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text('[targets.disk]\ndriver = "filesys"\nsettings = { root = "nope" }\n')
    result = CliRunner().invoke(main, ["--config", str(path), "config", "import", str(broken)])
    assert result.exit_code == 2
    assert "targets.disk.settings.root: must be an absolute path" in result.output
    assert ArchiveCorePlugin(path).site().catalog.config_versions.latest_number() == 0
    # A site's whole config file: its targets and policies move, the rest stays per machine.
    (tmp_path / "whole").mkdir()
    whole, _ = filesys_site(tmp_path / "whole")
    result = CliRunner().invoke(main, ["--config", str(path), "config", "import", str(whole)])
    assert result.exit_code == 0, result.output
    assert "catalog, state_dir stay per machine in its bootstrap file" in result.output
    assert names(ArchiveCorePlugin(path)) == ["Test archive"]


# --- two worker processes, one PostgreSQL catalog ------------------------------------------


class Worker:
    """A worker process holding one plugin, answering one command per line."""

    def __init__(self, config: Path, cwd: Path) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )

    def ask(self, *command: str):
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"worker exited ({self.process.wait()})"
        return json.loads(line)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture
def two_workers(tmp_path, postgresql_server) -> Iterator[tuple[Path, Worker, Worker]]:
    from tests.pgserver import unique_database_name

    name = unique_database_name("config")
    url = postgresql_server.create_database(name)
    # The workers' get_policies asks the catalog on every call, as job calls always do.
    path = bootstrap(tmp_path, url, portal={"ready_cache_seconds": 0})
    workers = [Worker(path, tmp_path), Worker(path, tmp_path)]
    try:
        yield path, *workers
    finally:
        for worker in workers:
            worker.stop()
        postgresql_server.drop_database(name)


@pytest.mark.postgresql
def test_two_workers_on_one_postgresql_catalog_see_the_same_version(two_workers, tmp_path, root):
    path, first, second = two_workers
    assert first.ask("policies") == second.ask("policies") == {"version": 0, "policies": []}
    admin = ArchiveCorePlugin(path)  # the Portal web process, saving from the pages
    save(admin, disk_document(root))
    expected = {"version": 1, "policies": [[POLICY, "Nearline"]]}
    assert first.ask("policies") == second.ask("policies") == expected
    online = tmp_path / "online"
    fs = media(online, "clip.mxf", b"essence from worker one")
    assert first.ask("archive", fs.files[0], fs.sha1) == {"error": ""}
    save(admin, disk_document(root, name="Renamed"))
    assert second.ask("policies") == {"version": 2, "policies": [[POLICY, "Renamed"]]}
    assert first.ask("policies") == {"version": 2, "policies": [[POLICY, "Renamed"]]}


def test_a_target_whose_driver_stopped_loading_does_not_block_other_changes(tmp_path, root):
    import attrs

    from archive_core.policies import parse_document

    plugin = ArchiveCorePlugin(bootstrap(tmp_path))
    document = disk_document(root)
    document["targets"]["gone"] = {"driver": "uninstalled-since", "settings": {}}
    targets, policies = parse_document(document)
    site = plugin.site()
    config = attrs.evolve(site.config, targets=targets, policies=policies)
    site.catalog.config_versions.save(document, config=config, actor="test", based_on=0)
    renamed = disk_document(root, name="Renamed")
    renamed["targets"]["gone"] = document["targets"]["gone"]
    assert save(plugin, renamed).number == 2
    renamed["targets"]["gone"]["settings"] = {"changed": True}
    with pytest.raises(ConfigError) as caught:
        save(plugin, renamed)
    assert caught.value.problems[0].startswith("targets.gone.driver: ")


def test_config_show_says_which_source_wins_and_revert_goes_back(tmp_path, root):
    from click.testing import CliRunner

    from archive_core.cli import main

    path = bootstrap(tmp_path)
    plugin = ArchiveCorePlugin(path)
    save(plugin, disk_document(root))
    save(plugin, disk_document(root, name="Renamed"))
    runner = CliRunner()
    shown = runner.invoke(main, ["--config", str(path), "config", "show"])
    assert shown.exit_code == 0, shown.output
    assert "come from the catalog, version 2 saved by admin (Portal user)" in shown.output
    assert "versions saved in the catalog: 2" in shown.output
    reverted = runner.invoke(main, ["--config", str(path), "config", "revert", "1"])
    assert "version 1 saved again as configuration version 3" in reverted.output
    assert names(plugin) == ["Nearline"]


def test_two_saves_from_the_same_version_at_once_one_wins_the_other_is_told(
    tmp_path, root, catalog_url
):
    import threading

    path = bootstrap(tmp_path, catalog_url)
    sites = [ArchiveCorePlugin(path).site() for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def admin(n: int) -> None:
        start.wait()
        try:
            document = disk_document(root, name=f"by admin {n}")
            outcomes[n] = configedit.save(sites[n], document, actor=f"admin {n}", based_on=0)
        except ConfigConflict as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=admin, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    conflicts = [o for o in outcomes if isinstance(o, ConfigConflict)]
    saved = [o for o in outcomes if not isinstance(o, ConfigConflict)]
    assert len(conflicts) == 1 and len(saved) == 1, outcomes
    assert saved[0].number == 1 and conflicts[0].latest == 1
    assert [v.number for v in sites[0].catalog.config_versions.history()] == [1]


def test_a_worker_killed_while_saving_leaves_whole_versions_only(tmp_path, root):
    import signal
    import time

    from archive_core.configstore import document_digest

    path = bootstrap(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    saver = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), "--save-forever", str(root)], env=env
    )
    plugin = ArchiveCorePlugin(path)
    versions = plugin.site().catalog.config_versions
    try:
        deadline = time.monotonic() + 60
        while versions.latest_number() < 5:
            assert saver.poll() is None, "the saving worker exited"
            assert time.monotonic() < deadline, "no versions saved within 60 s"
            time.sleep(0.01)
    finally:
        saver.send_signal(signal.SIGKILL)
        saver.wait()
    history = versions.history()
    assert [v.number for v in history] == list(range(len(history), 0, -1))  # no gaps
    for version in history:
        assert document_digest(version.document) == version.digest
        assert version.document["policies"]["p"]["name"].startswith(f"saved {version.number} ")
    trail = plugin.site().catalog.audit
    assert trail.verify().ok
    saved = [e for e in trail.entries() if e.operation == "config"]
    assert [e.outcome for e in saved] == [f"saved as version {v.number}" for v in history[::-1]]
    # The next save follows on from the last whole one.
    assert save(plugin, disk_document(root)).number == len(history) + 1
