"""Portal loads portal_app/archive_core_portal as it loads any plugin, and gets archive-core."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from archive_core.testing.fileset import FileSet
from tests.sites import POLICY, filesys_site

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "portal_app" / "archive_core_portal"
STUB_DIR = Path(__file__).resolve().parent / "portal_stub"
APP_MODULE = "portal.plugins.archive_core_portal"

CONTRACT_METHODS = (
    "archive",
    "restore",
    "delete",
    "get_policies",
    "is_ready",
    "get_policy_constrains",
)
ROLES = ("role_archive", "role_restore", "role_purge", "role_delete")


def _forget_portal_modules() -> None:
    for name in [n for n in sys.modules if n == "portal" or n.startswith("portal.")]:
        del sys.modules[name]


@pytest.fixture
def portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A fresh stand-in Portal with our app copied into its plugin folder, as an admin would."""
    monkeypatch.setenv("ARCHIVE_CORE_CONFIG", str(tmp_path / "no-config-here.toml"))
    plugins_dir = tmp_path / "plugins"
    shutil.copytree(
        APP_DIR, plugins_dir / APP_DIR.name, ignore=shutil.ignore_patterns("__pycache__")
    )
    _forget_portal_modules()
    monkeypatch.syspath_prepend(str(STUB_DIR))
    import portal.plugins
    from portal.generic import plugin_interfaces
    from portal.pluginbase import core
    from portal.utils import apps

    portal.plugins.__path__.append(str(plugins_dir))

    def load_app() -> ModuleType:
        return importlib.import_module(APP_MODULE)

    def start() -> None:
        """What Portal does at start-up once every app is imported."""
        for bootstrap in core.plugins_implementing(plugin_interfaces.IPluginBootstrap):
            bootstrap.bootstrap()

    yield SimpleNamespace(
        core=core, interfaces=plugin_interfaces, apps=apps, load_app=load_app, start=start
    )
    _forget_portal_modules()


def _our_app_registrations(portal: SimpleNamespace) -> list:
    return [
        plugin
        for plugin in portal.core.plugins_implementing(portal.interfaces.IAppRegister)
        if type(plugin).__module__.startswith(APP_MODULE)
    ]


def _archive_plugins(portal: SimpleNamespace) -> list:
    return portal.core.plugins_implementing(portal.interfaces.IArchivePlugin)


def test_importing_the_app_registers_it_in_portals_app_list(portal: SimpleNamespace) -> None:
    app = portal.load_app()
    (registration,) = _our_app_registrations(portal)
    entry = registration()
    assert entry["name"] == "archive-core"
    assert entry["app_id"] == app.registration.APP_ID
    assert entry["version"] == importlib.metadata.version("archive-core")
    assert entry["enabled"] is False
    assert str(uuid.UUID(registration.plugin_guid)) == registration.plugin_guid.lower()


def test_disabled_app_does_not_load_the_archive_plugin(portal: SimpleNamespace) -> None:
    portal.load_app()
    portal.start()
    assert _archive_plugins(portal) == []
    assert f"{APP_MODULE}.plugin" not in sys.modules


def test_enabled_app_registers_one_plugin_that_is_portals_and_archive_cores(
    portal: SimpleNamespace,
) -> None:
    from archive_core.portal import ArchiveCorePlugin

    app = portal.load_app()
    portal.apps.enable_app(app.registration.APP_ID)
    portal.start()
    (plugin,) = _archive_plugins(portal)
    assert isinstance(plugin, portal.core.ArchivePlugin)
    assert isinstance(plugin, ArchiveCorePlugin)
    assert _our_app_registrations(portal)[0]()["enabled"] is True


def test_portal_plugin_carries_archive_cores_identity_and_roles(portal: SimpleNamespace) -> None:
    from archive_core.portal import ArchiveCorePlugin

    app = portal.load_app()
    portal.apps.enable_app(app.registration.APP_ID)
    portal.start()
    (plugin,) = _archive_plugins(portal)
    reference = ArchiveCorePlugin()
    assert plugin.plugin_guid == reference.plugin_guid
    uuid.UUID(plugin.plugin_guid)
    assert plugin.plugin_guid != app.registration.REGISTRATION_GUID
    assert plugin.name == reference.name
    for role in ROLES:
        assert getattr(plugin, role) == getattr(reference, role)
        assert isinstance(getattr(plugin, role), str) and getattr(plugin, role)


@pytest.mark.parametrize("method", CONTRACT_METHODS)
def test_portal_plugin_methods_are_archive_cores_not_portals_placeholders(
    portal: SimpleNamespace, method: str
) -> None:
    from archive_core.portal import ArchiveCorePlugin

    app = portal.load_app()
    portal.apps.enable_app(app.registration.APP_ID)
    portal.start()
    (plugin,) = _archive_plugins(portal)
    assert inspect.getattr_static(type(plugin), method) is inspect.getattr_static(
        ArchiveCorePlugin, method
    )


def test_portal_plugin_is_not_ready_and_answers_fast_without_configuration(
    portal: SimpleNamespace,
) -> None:
    app = portal.load_app()
    portal.apps.enable_app(app.registration.APP_ID)
    portal.start()
    (plugin,) = _archive_plugins(portal)
    started = time.monotonic()
    assert plugin.is_ready() is False
    assert time.monotonic() - started < 2.0


def test_portal_archives_and_restores_a_file_through_the_plugin_it_loaded(
    portal: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, (archive_root,) = filesys_site(tmp_path)
    monkeypatch.setenv("ARCHIVE_CORE_CONFIG", str(config))
    app = portal.load_app()
    portal.apps.enable_app(app.registration.APP_ID)
    portal.start()
    (plugin,) = _archive_plugins(portal)
    assert plugin.is_ready() is True
    assert [policy["uuid"] for policy in plugin.get_policies()] == [POLICY]

    content = b"interview take 3 " * 4096
    online = tmp_path / "online" / "take3.mxf"
    online.parent.mkdir()
    online.write_bytes(content)
    file_set = FileSet(files=[str(online)], item_id="VX-3", sha1=hashlib.sha1(content).hexdigest())
    archived, not_archived, error, extra = plugin.archive([file_set], POLICY, "VX-JOB-9")
    assert (not_archived, error, extra) == ([], "", {})
    (done,) = archived
    assert done.external_ids and done._replace(external_ids=[]) == file_set
    copies = [p for p in archive_root.rglob("*") if p.is_file() and ".archive-core" not in p.parts]
    assert [p.read_bytes() for p in copies] == [content]

    online.unlink()  # "purge from online storage"
    assert plugin.restore([done], POLICY) == [done]
    assert online.read_bytes() == content


def test_app_that_cannot_import_archive_core_logs_the_fix_and_keeps_portal_running(
    portal: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "archive_core.portal", None)  # makes the import fail
    app = portal.load_app()
    portal.apps.enable_app(app.registration.APP_ID)
    with caplog.at_level(logging.ERROR, logger=f"{APP_MODULE}.registration"):
        portal.start()
    assert _archive_plugins(portal) == []
    assert "pip install archive-core" in caplog.text
    assert "restart Portal" in caplog.text


def test_archive_core_imports_and_builds_its_plugin_without_portal() -> None:
    # Portal's modules exist only inside Portal: archive_core itself must never need them.
    probe = (
        "import sys\n"
        "from archive_core.portal import ArchiveCorePlugin\n"
        "ArchiveCorePlugin()\n"
        "leaked = sorted(m for m in sys.modules if m == 'portal' or m.startswith('portal.'))\n"
        "assert not leaked, leaked\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"ARCHIVE_CORE_CONFIG": "/nonexistent/archive-core.toml", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
