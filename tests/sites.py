"""Building real sites for tests: config files on disk, filesys targets, in-test drivers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from archive_core.driver import API_VERSION, BaseDriver, Capability, setting
from archive_core.model import FileOutcome, Readiness
from archive_core.portal import ArchiveCorePlugin
from archive_core.testing.fileset import FileSet
from archive_core.testing.siteconfig import write_config

POLICY = "7c1f2a9e-1b2c-4d3e-8f40-5a6b7c8d9e01"


def filesys_site(
    tmp_path: Path,
    *,
    copies: int = 1,
    catalog_url: str | None = None,
    portal: Mapping[str, Any] | None = None,
    policy: Mapping[str, Any] | None = None,
) -> tuple[Path, list[Path]]:
    """A config with one policy archiving to `copies` filesys targets (`policy`: more of its
    settings); returns (config, roots)."""
    roots = []
    targets = {}
    for n in range(copies):
        root = tmp_path / f"archive{n}"
        root.mkdir()
        roots.append(root)
        targets[f"disk{n}"] = {
            "driver": "filesys",
            "settings": {"root": str(root), "min_free_bytes": 0},
        }
    config = write_config(
        tmp_path / "archive-core.toml",
        targets=targets,
        policies={POLICY: {"name": "Test archive", "targets": list(targets), **(policy or {})}},
        catalog_url=catalog_url or f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        portal=portal,
    )
    return config, roots


def media(directory: Path, name: str, content: bytes, *, item_id: str = "VX-1") -> FileSet:
    """An online file and the FileSet Portal would pass for it (sha1 as Vidispine computes)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(content)
    return FileSet(
        files=[str(path)],
        external_ids=[],
        item_id=item_id,
        sha1=hashlib.sha1(content).hexdigest(),
        shape_id="VX-9",
        component_id="VX-8",
    )


def files_under(root: Path) -> set[Path]:
    """The files under a target's root but the core's own (`.archive-core/`: manifests)."""
    return {
        p
        for p in root.rglob("*")
        if p.is_file() and ".archive-core" not in p.relative_to(root).parts
    }


def plugin_with_drivers(
    tmp_path: Path,
    drivers: Mapping[str, type],
    policies: Mapping[str, Mapping[str, Any]],
    targets: Mapping[str, Mapping[str, Any]],
    portal: Mapping[str, Any] | None = None,
    catalog_url: str | None = None,
) -> ArchiveCorePlugin:
    from archive_core.hooks import Hooks
    from archive_core.policies import load_config
    from archive_core.registry import FixedRegistry
    from archive_core.site import Site

    config = write_config(
        tmp_path / "archive-core.toml",
        targets=targets,
        policies=policies,
        catalog_url=catalog_url or f"sqlite:///{tmp_path / 'catalog.sqlite'}",
        portal=portal,
    )
    site = Site(load_config(config), registry=FixedRegistry(drivers), hooks=Hooks())
    return ArchiveCorePlugin(config, site=site)


@attrs.frozen(kw_only=True)
class MemoryConfig:
    label: str = setting(help="a label", default="memory")


class MemoryDriver(BaseDriver):
    """Keeps copies in a dict: the smallest honest driver, for core tests."""

    name = "memory"
    api_version = API_VERSION
    capabilities = frozenset(
        {Capability.ARCHIVE, Capability.RESTORE, Capability.DELETE, Capability.VERIFY}
    )
    Config = MemoryConfig
    store: dict[str, bytes] = {}

    def check_ready(self) -> Readiness:
        return Readiness.ready("in memory")

    def stat(self, request) -> Iterable[FileOutcome]:
        for item in request.items:
            data = self.store.get(item.locator)
            if data is None:
                yield FileOutcome.failure(item.key, f"no copy {item.locator}")
            else:
                yield FileOutcome.success(item.key, locator=item.locator, size=len(data))

    def archive(self, request) -> Iterable[FileOutcome]:
        for item in request.items:
            data = Path(item.sources[0]).read_bytes()
            self.store[item.name] = data
            yield FileOutcome.success(
                item.key, locator=item.name, size=len(data), sha1=hashlib.sha1(data).hexdigest()
            )

    def restore(self, request) -> Iterable[FileOutcome]:
        for item in request.items:
            data = self.store.get(item.locator)
            if data is None:
                yield FileOutcome.failure(item.key, f"no copy {item.locator}")
                continue
            Path(item.destination).write_bytes(data)
            yield FileOutcome.success(
                item.key, locator=item.locator, sha1=hashlib.sha1(data).hexdigest()
            )

    def delete(self, request) -> Iterable[FileOutcome]:
        for item in request.items:
            self.store.pop(item.locator, None)
            yield FileOutcome.success(item.key, locator=item.locator)

    def verify(self, request) -> Iterable[FileOutcome]:
        for item in request.items:
            data = self.store.get(item.locator, b"")
            yield FileOutcome.success(
                item.key, locator=item.locator, sha1=hashlib.sha1(data).hexdigest()
            )
