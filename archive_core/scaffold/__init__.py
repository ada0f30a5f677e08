"""`archive-core drivers new`: a new driver distribution, written from the templates beside this.

The generated distribution declares its entry point, an archive-core range and a slot for the
storage's client library, holds a driver on `ObjectStoreDriver` whose `put`, `get` and
`remove` are marked for the author to fill in, runs the conformance kit as its test suite
(and in CI, `.github/workflows/test.yml`), and comes with a `.gitignore` and a licence.
Imported only by that command, so listing drivers and `import archive_core` never pay for it.
"""

from __future__ import annotations

import os
import re
import shutil
import string
from importlib import resources
from pathlib import Path

import attrs

from archive_core.errors import ArchiveCoreError

#: What a driver name may be: it becomes an entry-point name, a Python package suffix and
#: (with `_` as `-`) part of a distribution name.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")

#: The methods a generated driver leaves for its author, in the order they appear.
MARKED_METHODS = ("put", "get", "remove")

#: Template (relative to `templates/`) -> the file it becomes in the distribution.
_FILES = (
    ("pyproject.toml.tmpl", "pyproject.toml"),
    ("README.md.tmpl", "README.md"),
    ("LICENSE.tmpl", "LICENSE"),
    # Without their dot in the templates: a .gitignore there would apply to archive-core's
    # own tree, and a .github directory would look like archive-core's own workflows.
    ("gitignore.tmpl", ".gitignore"),
    ("github/workflows/test.yml.tmpl", ".github/workflows/test.yml"),
    ("package/__init__.py.tmpl", "$package/__init__.py"),
    ("package/driver.py.tmpl", "$package/driver.py"),
    ("tests/test_conformance.py.tmpl", "tests/test_conformance.py"),
)


class InvalidDriverName(ArchiveCoreError, ValueError):
    """The name given for a new driver cannot be an entry-point and package name."""


class ScaffoldError(ArchiveCoreError):
    """The distribution was not written: its directory exists, or the file system refused."""


@attrs.frozen(kw_only=True)
class DriverNames:
    """The names one driver name gives its distribution, package and classes."""

    driver: str  # entry-point name, what admins write as `driver = "..."`: acme_s3
    distribution: str  # archive-core-driver-acme-s3
    package: str  # archive_core_acme_s3
    camel: str  # AcmeS3, as in AcmeS3Driver and AcmeS3Config


def names_for(name: str) -> DriverNames:
    """Every name derived from driver name `name`; InvalidDriverName says what is wrong."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidDriverName(f"driver name {name!r} {_what_is_wrong(name)}")
    # The distribution name swaps `_` for `-`: a trailing one would end it in `-`, which
    # packaging refuses, and `__` would normalise to the same distribution as `_`.
    if name.endswith("_"):
        raise InvalidDriverName(f"driver name {name!r} ends in '_'; end it in a letter or digit")
    if "__" in name:
        raise InvalidDriverName(f"driver name {name!r} holds '__'; separate words with one '_'")
    return DriverNames(
        driver=name,
        distribution=f"archive-core-driver-{name.replace('_', '-')}",
        package=f"archive_core_{name}",
        camel="".join(part[:1].upper() + part[1:] for part in name.split("_")),
    )


_NAME_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "_")


def _what_is_wrong(name: str) -> str:
    rule = "(a lowercase letter, then up to 39 lowercase letters, digits or '_')"
    if not name:
        return f"is empty {rule}"
    if len(name) > 40:
        return f"is {len(name)} characters long, more than 40 {rule}"
    if not ("a" <= name[0] <= "z"):
        return f"starts with {name[0]!r}, not a lowercase letter {rule}"
    bad = sorted(set(name) - _NAME_CHARACTERS)
    return f"holds {', '.join(repr(c) for c in bad)} {rule}"


_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.\d+)*(?P<suffix>[^+]*)(?:\+.*)?")
_PRE_RELEASE = re.compile(r"[-_.]?(a|alpha|b|beta|c|rc|pre|preview|dev)", re.IGNORECASE)


def dependency_range(version: str) -> str:
    """The archive-core range a driver built against `version` declares: `>=X.Y,<X+1`.

    A new major version may change the driver contract, so the range stops before it. For a
    pre-release (`2.0.0rc1`) the lower bound is that version itself: `>=2.0` would exclude
    it, and only a specifier that names a pre-release lets installers pick one.
    """
    match = _VERSION.fullmatch(version.strip())
    if match is None:
        raise ValueError(f"archive-core version {version!r} is not a release number like 1.4.2")
    major, minor, suffix = int(match[1]), int(match[2] or 0), match["suffix"]
    lower = f"{major}.{minor}"
    if suffix and _PRE_RELEASE.match(suffix):
        lower = version.strip().split("+", 1)[0]
    return f">={lower},<{major + 1}"


def render(names: DriverNames, archive_core_version: str) -> dict[str, str]:
    """The distribution's files, path relative to its directory -> text."""
    values = {
        "name": names.driver,
        "distribution": names.distribution,
        "package": names.package,
        "camel": names.camel,
        "range": dependency_range(archive_core_version),
    }
    templates = resources.files(__package__).joinpath("templates")
    files = {}
    for template, target in _FILES:
        text = templates.joinpath(template).read_text(encoding="utf-8")
        # substitute, not safe_substitute: a placeholder left unfilled is a bug here, not
        # text for the author to trip over.
        files[string.Template(target).substitute(values)] = string.Template(text).substitute(values)
    return files


def scaffold(name: str, directory: str | os.PathLike[str]) -> Path:
    """Write a new driver distribution for `name` under `directory`; return its path.

    Refuses (ScaffoldError) when the distribution's directory exists, whatever it holds:
    an author's work is never overwritten. Everything is rendered before the first write,
    and a write that fails removes what this call created.
    """
    import archive_core

    names = names_for(name)
    files = render(names, archive_core.__version__)
    target = Path(directory) / names.distribution
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaffoldError(f"cannot create {target}: {exc.strerror or exc}") from None
    try:
        target.mkdir()  # exclusive: of two runs racing for one name, one is refused
    except FileExistsError:
        raise ScaffoldError(
            f"{target} already exists; nothing was written. Choose another --directory, or "
            "move it away to generate the driver again."
        ) from None
    except OSError as exc:
        raise ScaffoldError(f"cannot create {target}: {exc.strerror or exc}") from None
    try:
        for relative, text in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ScaffoldError(
                f"cannot write {target}: {exc.strerror or exc}; nothing was left behind"
            ) from None
        raise
    return target


__all__ = [
    "MARKED_METHODS",
    "NAME_PATTERN",
    "DriverNames",
    "InvalidDriverName",
    "ScaffoldError",
    "dependency_range",
    "names_for",
    "render",
    "scaffold",
]
