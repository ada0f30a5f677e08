"""Fake installed distributions (dist-info + modules) and the Python processes that see them.

A directory holding `<name>-<version>.dist-info/` next to the package files is exactly what
importlib.metadata finds on sys.path, so tests get a real third-party distribution in
milliseconds, without pip or a network.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

#: Environment variables of the core that a test process must not inherit from the developer.
_CORE_ENV_PREFIX = "ARCHIVE_CORE_"


def dist_info_stem(name: str, version: str) -> str:
    """The `<name>-<version>` stem installers give a dist-info directory (name normalised)."""
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"


def write_distribution(
    site: Path,
    *,
    name: str,
    version: str = "1.0",
    entry_points: Mapping[str, Mapping[str, str]] | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Install a distribution into `site`: METADATA, entry_points.txt, RECORD and its files.

    `entry_points` maps group -> {entry name: "module:attr"}; `files` maps a path relative to
    `site` (e.g. "acme_s3/driver.py") to its source, dedented. Returns the dist-info directory.
    """
    site.mkdir(parents=True, exist_ok=True)
    dist_info = site / f"{dist_info_stem(name, version)}.dist-info"
    dist_info.mkdir()
    written: list[str] = []
    for relative, source in (files or {}).items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
        written.append(relative)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    sections = []
    for group, names in (entry_points or {}).items():
        lines = [f"[{group}]", *(f"{entry} = {value}" for entry, value in names.items())]
        sections.append("\n".join(lines))
    (dist_info / "entry_points.txt").write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    record = [*written, *(f"{dist_info.name}/{n}" for n in ("METADATA", "entry_points.txt"))]
    (dist_info / "RECORD").write_text(
        "".join(f"{r},,\n" for r in [*record, f"{dist_info.name}/RECORD"]), encoding="utf-8"
    )
    return dist_info


@attrs.frozen(kw_only=True)
class FakeSite:
    """A directory on this process's sys.path with its own entry-point groups and module prefix.

    The token keeps groups and module names unique, so in-process tests neither see installed
    drivers nor reuse a module another test imported.
    """

    path: Path
    token: str

    @property
    def driver_group(self) -> str:
        return f"archive_core_test_{self.token}.drivers"

    @property
    def plugin_group(self) -> str:
        return f"archive_core_test_{self.token}.plugins"

    def module(self, stem: str) -> str:
        """A module name unique to this site."""
        return f"fake_{self.token}_{re.sub(r'[^0-9a-zA-Z_]', '_', stem)}"

    def install(
        self,
        dist: str,
        *,
        version: str = "1.0",
        group: str | None = None,
        modules: Mapping[str, tuple[str, str | None]],
    ) -> dict[str, str]:
        """Install `dist` registering `entry name -> (module source, attribute)` in `group`.

        An attribute of None registers the module itself (how plugins usually register).
        Returns entry name -> module name. The group defaults to this site's driver group.
        """
        values: dict[str, str] = {}
        files: dict[str, str] = {}
        for entry, (source, attribute) in modules.items():
            module = self.module(f"{dist}_{entry}")
            files[f"{module}.py"] = source
            values[entry] = module if attribute is None else f"{module}:{attribute}"
        write_distribution(
            self.path,
            name=dist,
            version=version,
            entry_points={group or self.driver_group: values},
            files=files,
        )
        importlib.invalidate_caches()  # new files in a directory already on sys.path
        return {entry: value.partition(":")[0] for entry, value in values.items()}

    def imported(self) -> set[str]:
        """The modules of this site that this process has imported."""
        return {m for m in sys.modules if m.startswith(f"fake_{self.token}_")}


@contextlib.contextmanager
def fake_site() -> Iterator[FakeSite]:
    """A fresh FakeSite on sys.path, removed with its imported modules afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        site = FakeSite(path=Path(tmp), token=uuid.uuid4().hex[:12])
        sys.path.insert(0, tmp)
        importlib.invalidate_caches()
        try:
            yield site
        finally:
            sys.path.remove(tmp)
            sys.path_importer_cache.pop(tmp, None)
            for module in site.imported():
                del sys.modules[module]
            importlib.invalidate_caches()


def driver_source(
    *,
    name: str,
    class_name: str = "FakeDriver",
    api_version: str = "API_VERSION",
    capabilities: str = "frozenset({Capability.ARCHIVE, Capability.RESTORE})",
    preamble: str = "",
) -> str:
    """Source of a driver module whose class metadata is given as Python expressions."""
    return f"""
import attrs
from archive_core.driver import API_VERSION, BaseDriver, Capability
{textwrap.dedent(preamble)}

class {class_name}(BaseDriver):
    name = {name!r}
    api_version = {api_version}
    capabilities = {capabilities}

    @attrs.frozen(kw_only=True)
    class Config:
        root: str = "/archive"
"""


def process_env(site_dirs: Iterable[Path], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: the sites first on its path, no inherited core vars."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_CORE_ENV_PREFIX)}
    paths = [str(p) for p in site_dirs]
    if base.get("PYTHONPATH"):
        paths.append(base["PYTHONPATH"])
    base["PYTHONPATH"] = os.pathsep.join(paths)
    base.update(env or {})
    return base


def run_python(
    code: str,
    *,
    site_dirs: Iterable[Path],
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter of this environment that sees `site_dirs`."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=process_env(site_dirs, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_python_json(
    code: str,
    *,
    site_dirs: Iterable[Path],
    env: Mapping[str, str] | None = None,
) -> Any:
    """Run `code`, which prints one JSON document as its last stdout line, and return it."""
    result = run_python(code, site_dirs=site_dirs, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"child process exited {result.returncode}\nstdout:\n{result.stdout}\n"
            f"stderr:\n{result.stderr}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
