"""One driver under test, set up behind the Portal face in a scratch directory of its own."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from archive_core.driver import Capability, DriverContext, declared_capabilities, driver_scheme
from archive_core.testing.fileset import FileSet
from archive_core.testing.siteconfig import write_config

MiB = 1024 * 1024

#: The policy and target every kit site archives with.
KIT_POLICY = "0c0ffee0-4b1d-4c0d-9e57-000000000001"
KIT_TARGET = "kit"


@attrs.frozen(kw_only=True)
class DriverUnderTest:
    """What the kit needs to know about a driver: how to set it up, and what to expect of it.

    Only `driver_class` and `settings` are needed; every other field switches on checks that
    need it (a check whose input is missing is skipped, saying which input).
    """

    driver_class: type
    #: Valid settings, as they would stand in a target's `settings = {...}` in the config.
    settings: Mapping[str, Any]
    #: What the driver stores into. Only a real local directory (an absolute path that is a
    #: directory) is searched by the checks that look for escapes and leftovers; a bucket
    #: name, a URL or a server handle is not, even where a local folder has that name.
    storage: Any = None
    #: Settings that validate but point at storage that does not answer.
    unreachable_settings: Mapping[str, Any] | None = None
    #: (settings, text the error must contain) pairs the driver's Config must refuse.
    invalid_settings: Sequence[tuple[Mapping[str, Any], str]] = ()
    #: The capabilities the driver must declare, exactly; None: not checked.
    expected_capabilities: frozenset[Capability] | None = None
    #: The largest file the kit archives (sparse, so it costs no disk unless the driver
    #: writes it out).
    max_file_size: int = 4 * MiB
    #: (object, attribute) of a callable the driver calls for each write of a copy's bytes.
    write_seam: tuple[Any, str] | None = None
    #: (object, attribute) of a callable the driver calls to read a source's bytes.
    read_seam: tuple[Any, str] | None = None
    #: Part or chunk sizes the driver moves bytes in (a multipart upload's part size, a
    #: block size): files of exactly N, N-1 and N+1 bytes must round-trip, and the fault
    #: checks' files then span more than one part.
    chunk_sizes: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    #: The most memory (bytes) one transfer may hold, whatever the file's size: a part size
    #: times the parts in flight, say. Archiving (and restoring) a much larger file must stay
    #: under it.
    memory_per_transfer: int | None = None
    #: Check name -> why it fails for this driver; those checks are expected to fail.
    known_failures: Mapping[str, str] = attrs.field(factory=dict)
    #: Examples per property-based check.
    examples: int = 10

    @chunk_sizes.validator
    def _positive(self, _attribute: Any, sizes: tuple[int, ...]) -> None:
        bad = [size for size in sizes if not isinstance(size, int) or size < 1]
        if bad:
            raise ValueError(f"chunk_sizes must be byte counts of at least 1, not {bad}")

    @property
    def local_storage(self) -> Path | None:
        """`storage` when it is a real local directory, else None (see `storage`)."""
        return local_directory(self.storage)


def local_directory(value: Any) -> Path | None:
    """`value` as a Path when it names an existing local directory by an absolute path.

    A relative name is never taken for one: `"kit-bucket"` is a bucket, whatever folder of
    that name the current directory happens to hold.
    """
    if not isinstance(value, str | os.PathLike):
        return None
    path = Path(value)
    return path if path.is_absolute() and path.is_dir() else None


class Harness:
    """A driver set up behind `ArchiveCorePlugin` the way Portal calls it, in `base`.

    Everything the kit writes (sources, restores, sites with their catalogs) lives under
    `base/level-1/level-2/kit`, two levels down, so a name that climbs out of the driver's
    storage with `..` still lands inside `base`, where the checks can see it.
    """

    def __init__(self, subject: DriverUnderTest, base: Path) -> None:
        self.subject = subject
        self.base = base
        self.workdir = base / "level-1" / "level-2" / "kit"
        self.online = self.workdir / "online"
        self.restored = self.workdir / "restored"
        for directory in (self.online, self.restored):
            directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count()
        self._plugins: list[Any] = []
        self.plugin = self.plugin_for(subject.settings)

    # --- the driver --------------------------------------------------------------------------

    @property
    def driver_class(self) -> type:
        return self.subject.driver_class

    @property
    def driver_name(self) -> str:
        return self.driver_class.name

    @property
    def scheme(self) -> str:
        return driver_scheme(self.driver_class)

    @property
    def capabilities(self) -> frozenset[Capability]:
        return declared_capabilities(self.driver_class)

    def supports(self, *needed: Capability) -> bool:
        return set(needed) <= self.capabilities

    def site(self, plugin: Any = None) -> Any:
        return (plugin or self.plugin).site()

    # --- sites -------------------------------------------------------------------------------

    def plugin_for(
        self, settings: Mapping[str, Any], *, portal: Mapping[str, Any] | None = None
    ) -> Any:
        """A fresh `ArchiveCorePlugin` (own site, own catalog) whose one target uses `settings`.

        `portal` is the site config's `[portal]` table (readiness timeout and cache).
        """
        from archive_core.hooks import Hooks
        from archive_core.policies import load_config
        from archive_core.portal import ArchiveCorePlugin
        from archive_core.registry import FixedRegistry
        from archive_core.site import Site

        site_dir = self.workdir / f"site-{next(self._counter)}"
        site_dir.mkdir()
        policy: dict[str, Any] = {"name": "Conformance kit", "targets": [KIT_TARGET]}
        if self.supports(Capability.BULK):
            policy["bulk"] = {"max_files": 10_000}
        config = write_config(
            site_dir / "archive-core.toml",
            targets={KIT_TARGET: {"driver": self.driver_name, "settings": dict(settings)}},
            policies={KIT_POLICY: policy},
            catalog_url=f"sqlite:///{site_dir / 'catalog.sqlite'}",
            portal=portal,
        )
        site = Site(
            load_config(config),
            registry=FixedRegistry({self.driver_name: self.driver_class}),
            hooks=Hooks(),
        )
        plugin = ArchiveCorePlugin(config, site=site)
        self._plugins.append(plugin)
        return plugin

    @contextlib.contextmanager
    def driver(self, settings: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A driver instance of its own, built as the core builds one, for calling directly.

        The checks that call the driver themselves use it, so that no repair the core makes
        to what a driver returns can hide a fault.
        """
        from archive_core.policies import structure

        given = self.subject.settings if settings is None else settings
        config, problems = structure(
            self.driver_class.Config, given, path=f"targets.{KIT_TARGET}.settings"
        )
        if config is None:
            raise AssertionError(f"the kit's settings were refused: {'; '.join(problems)}")
        state = self.workdir / f"state-{next(self._counter)}"
        instance = self.driver_class(config, DriverContext(target=KIT_TARGET, state_dir=state))
        try:
            yield instance
        finally:
            instance.close()

    def close(self) -> None:
        for plugin in self._plugins:
            plugin.site().close()
        self._plugins.clear()

    # --- files -------------------------------------------------------------------------------

    def media(
        self,
        name: str,
        content: bytes | None = None,
        *,
        size: int | None = None,
        item_id: str | None = None,
        folder: str | None = None,
    ) -> FileSet:
        """An online file and the FileSet Portal would pass for it (sha1 as Vidispine has it).

        With `size` instead of `content`, a sparse file of zeros ending in one marker byte.
        """
        number = next(self._counter)
        directory = self.online / f"f{number}"
        if folder:
            directory = directory / folder
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        digest = hashlib.sha1()
        if content is not None:
            path.write_bytes(content)
            digest.update(content)
        else:
            total = size or 0
            with open(path, "wb") as out:
                if total:
                    out.truncate(total - 1)
                    out.seek(total - 1)
                    out.write(b"\x01")
            digest = _sparse_sha1(total)
        return FileSet(
            files=[str(path)],
            external_ids=[],
            item_id=item_id or f"VX-{number}",
            sha1=digest.hexdigest(),
            shape_id=f"VX-S{number}",
            component_id=f"VX-C{number}",
        )

    def elsewhere(self, file_set: FileSet) -> FileSet:
        """The same FileSet, to be restored to a path that does not exist yet."""
        number = next(self._counter)
        target = self.restored / f"r{number}" / os.path.basename(file_set.files[0])
        return file_set._replace(files=[str(target)])

    def bytes_of(self, file_set: FileSet) -> bytes:
        return Path(file_set.files[0]).read_bytes()


def _sparse_sha1(size: int) -> Any:
    digest = hashlib.sha1()
    zeros = bytes(MiB)
    left = max(size - 1, 0)
    while left:
        step = min(left, MiB)
        digest.update(zeros[:step])
        left -= step
    if size:
        digest.update(b"\x01")
    return digest
