"""Admin configuration: targets (driver instances) and policies, read from TOML and validated.

```toml
[catalog]
url = "postgresql+psycopg://archive@db/portal_archive"   # default: SQLite in state_dir

[targets.nearline]
driver = "filesys"
settings = { root = "/mnt/archive", layout = "item" }

[policies.8f2d6c1e-5b1a-4c1e-9a57-0c6a1c1b2f10]
name = "Nearline archive"
targets = ["nearline"]
bulk = { max_files = 500, max_bytes = 500_000_000_000 }
```

A policy may also carry its own `driver` and `settings` instead of naming targets; that makes
an implicit target named after the policy. Every problem is reported at once with its path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from archive_core.errors import ConfigError
from archive_core.secret import Secret

CONFIG_ENV = "ARCHIVE_CORE_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/archive-core/archive-core.toml")
DEFAULT_STATE_DIR = Path("/var/lib/archive-core")

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class BulkLimits:
    """How much Portal may hand a bulk policy in one call."""

    max_files: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    max_bytes: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )


@attrs.frozen(kw_only=True)
class PortalSettings:
    """How the Portal face behaves."""

    # Old Portal releases expect archive() to return only the list of archived FileSets.
    legacy_archive_result: bool = False
    # Portal caches is_ready() itself; our own cache keeps a burst of calls from probing storage.
    ready_cache_seconds: float = 15.0
    # is_ready() answers False (with the reason logged) rather than block longer than this.
    ready_timeout_seconds: float = 5.0


#: `[catalog] keep_done_days` and `keep_failed_days` when not set.
KEEP_DONE_DAYS, KEEP_FAILED_DAYS = 30, 365

#: `[catalog] lock_wait_seconds` when not set: how long one catalog transaction waits, in all,
#: for locks that other programs or workers hold before its files fail as "locked". Workers
#: taking turns on one catalog hold its locks for milliseconds; a lock held this long is held
#: by something that is not about to let go, and a Portal job must not hang on it.
LOCK_WAIT_SECONDS = 30.0


@attrs.frozen(kw_only=True)
class JournalRetention:
    """How long `archive-core catalog prune` keeps the journal rows of finished work. Failures
    are kept at least as long as successes: they are what an admin comes back to read."""

    done_days: int = KEEP_DONE_DAYS
    failed_days: int = KEEP_FAILED_DAYS


@attrs.frozen(kw_only=True)
class Target:
    """One driver instance: a driver name and its (not yet validated) settings."""

    name: str
    driver: str
    settings: Mapping[str, Any] = attrs.field(repr=False)
    path: str  # where it was declared, for error messages: "targets.nearline"
    verified_copies: int | None = None  # of the policies its driver offers
    # An admin took it out of service: no new archives to it; restore and delete still work.
    disabled: bool = False


@attrs.frozen(kw_only=True)
class Policy:
    uuid: str
    name: str
    targets: tuple[str, ...]  # one archived copy per target
    bulk: BulkLimits | None = None
    offered_by: str | None = None  # the target whose driver offered this policy
    # Copies on distinct targets that must have been read back (or checked by a storage
    # with a trusted checksum) before a file counts as archived; None: no such requirement.
    verified_copies: int | None = None
    # A scrub writes a bad copy again from a good copy on another of the policy's targets.
    repair: bool = False
    # Refuses new archives; what it archived can still be restored and deleted.
    disabled: bool = False


#: Where a site's targets and policies come from (`ConfigSource.kind`).
FILE, CATALOG = "file", "catalog"


@attrs.frozen(kw_only=True)
class ConfigVersion:
    """One saved version of the targets and policies kept in the catalog."""

    number: int  # 1, 2, ... without gaps
    at: Any  # datetime (UTC) of the save
    actor: str  # who saved it: the Portal user, or the user at the command line
    comment: str
    document: Mapping[str, Any] = attrs.field(repr=False)  # {"targets": ..., "policies": ...}
    digest: str  # sha256 of the document's canonical JSON


@attrs.frozen(kw_only=True)
class ConfigSource:
    """Where this site's targets and policies came from, and why: shown on the overview."""

    kind: str  # FILE or CATALOG
    file: str | None  # the bootstrap file (the catalog's location, and with FILE everything)
    why: str
    version: ConfigVersion | None = None  # CATALOG: the version in use (None: none saved yet)

    def describe(self) -> str:
        if self.kind == FILE:
            return f"the file {self.file} ({self.why})"
        if self.version is None:
            return f"the catalog, where no version is saved yet ({self.why})"
        v = self.version
        return f"the catalog, version {v.number} saved by {v.actor} ({self.why})"


def choose_source(declared: str | None, file_defines_targets: bool) -> tuple[str, str]:
    """The one rule for which source's targets and policies a site uses, with the reason.

    `[config] source` in the bootstrap file decides when set. Unset, a file that declares
    targets or policies keeps them (sites that keep their config in files work as before);
    a file that only says where the catalog is leaves them to the catalog, where the
    Portal pages and `archive-core config import` save them.
    """
    if declared == CATALOG:
        return CATALOG, 'the bootstrap file sets [config] source = "catalog"'
    if declared == FILE:
        return FILE, 'it sets [config] source = "file"'
    if file_defines_targets:
        return FILE, "it declares targets or policies itself"
    return CATALOG, "the bootstrap file declares no targets or policies"


def _url_without_password(url: str) -> str:
    """A database URL as it may be shown: any password replaced by a mask."""
    from archive_core.catalog_faults import mask_url

    return repr(mask_url(url))


@attrs.frozen(kw_only=True)
class SiteConfig:
    """The whole validated configuration of one site."""

    source: str | None
    catalog_url: str = attrs.field(repr=_url_without_password)
    # Given by reference (`[catalog] password = "env:NAME"`), so the URL needs none.
    catalog_password: Secret | None = None
    catalog_lock_wait: float = LOCK_WAIT_SECONDS  # seconds
    journal_retention: JournalRetention = attrs.Factory(JournalRetention)
    state_dir: Path
    portal: PortalSettings
    targets: Mapping[str, Target]
    policies: Mapping[str, Policy]
    config_source: ConfigSource
    # Paths a driver declares `confined` must lie under one of these (empty: anywhere).
    allowed_roots: tuple[Path, ...] = ()


# --- the file's shape, structured by cattrs --------------------------------------------------


@attrs.frozen(kw_only=True)
class _CatalogSection:
    url: str | None = None
    password: Secret | None = None
    keep_done_days: int = attrs.field(default=KEEP_DONE_DAYS, validator=attrs.validators.ge(1))
    keep_failed_days: int = attrs.field(default=KEEP_FAILED_DAYS, validator=attrs.validators.ge(1))
    lock_wait_seconds: float = attrs.field(
        default=LOCK_WAIT_SECONDS, validator=attrs.validators.gt(0)
    )


@attrs.frozen(kw_only=True)
class _TargetSection:
    driver: str
    settings: dict[str, Any] = attrs.Factory(dict)
    # For the policies the target's driver offers by itself (one copy each): 1 requires it
    # read back before a file counts as archived.
    verified_copies: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_((0, 1)))
    )
    disabled: bool = False


def _absolute_paths(_instance: Any, _attribute: Any, value: list[Path]) -> None:
    for path in value:
        if not path.is_absolute():
            raise ValueError(f"{path} is not an absolute path")


@attrs.frozen(kw_only=True)
class _ConfigSection:
    # Where targets and policies come from; see choose_source.
    source: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_((FILE, CATALOG)))
    )
    allowed_roots: list[Path] = attrs.field(factory=list, validator=_absolute_paths)


@attrs.frozen(kw_only=True)
class _PolicySection:
    name: str | None = None
    targets: list[str] = attrs.Factory(list)
    target: str | None = None
    driver: str | None = None
    settings: dict[str, Any] | None = None
    bulk: BulkLimits | None = None
    verified_copies: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    repair: bool = False
    disabled: bool = False


@attrs.frozen(kw_only=True)
class _Document:
    """The targets and policies: a config file's sections, or a version in the catalog."""

    targets: dict[str, _TargetSection] = attrs.Factory(dict)
    policies: dict[str, _PolicySection] = attrs.Factory(dict)


@attrs.frozen(kw_only=True)
class _ConfigFile:
    state_dir: str | None = None
    catalog: _CatalogSection = attrs.Factory(_CatalogSection)
    portal: PortalSettings = attrs.Factory(PortalSettings)
    config: _ConfigSection = attrs.Factory(_ConfigSection)
    targets: dict[str, _TargetSection] = attrs.Factory(dict)
    policies: dict[str, _PolicySection] = attrs.Factory(dict)


def default_config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str] | None = None) -> SiteConfig:
    """Read and validate the TOML config at `path` (default: $ARCHIVE_CORE_CONFIG or /etc)."""
    import tomllib

    config_path = Path(path) if path is not None else default_config_path()
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            [f"{config_path}: file not found (set {CONFIG_ENV} or pass the config path)"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{config_path}: cannot be read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{config_path}: not valid TOML: {exc}"]) from None
    return parse_config(raw, source=str(config_path), base_dir=config_path.parent)


def parse_config(
    raw: Mapping[str, Any], *, source: str | None = None, base_dir: Path | None = None
) -> SiteConfig:
    """Validate an already-parsed config file; raises ConfigError listing every problem.

    With the catalog as the source (see `choose_source`) the result has no targets or
    policies yet: `with_version` adds those of a version read from the catalog.
    """
    section, problems = structure(_ConfigFile, raw, path="")
    if section is None:
        raise ConfigError(problems, source=source)
    base = base_dir or Path.cwd()
    state_dir = (base / section.state_dir) if section.state_dir else DEFAULT_STATE_DIR
    catalog_url = section.catalog.url or f"sqlite:///{state_dir / 'catalog.sqlite'}"
    retention = JournalRetention(
        done_days=section.catalog.keep_done_days, failed_days=section.catalog.keep_failed_days
    )
    if retention.failed_days < retention.done_days:
        problems.append(
            f"catalog.keep_failed_days: {retention.failed_days} is less than keep_done_days "
            f"({retention.done_days}); failures are kept at least as long as successes"
        )
    declares = bool(section.targets or section.policies)
    kind, why = choose_source(section.config.source, declares)
    if kind == CATALOG and declares:
        problems.append(
            "targets, policies: this site keeps its targets and policies in the catalog "
            '([config] source = "catalog"), so the file must not declare any; import them '
            "into the catalog first (`archive-core config import` with this file, before "
            "setting the source), then remove them here"
        )
    targets, policies = _targets_and_policies(section, problems)
    if problems:
        raise ConfigError(problems, source=source)
    return SiteConfig(
        source=source,
        catalog_url=catalog_url,
        catalog_password=section.catalog.password,
        catalog_lock_wait=section.catalog.lock_wait_seconds,
        journal_retention=retention,
        state_dir=state_dir,
        portal=section.portal,
        targets=targets,
        policies=policies,
        config_source=ConfigSource(kind=kind, file=source, why=why),
        allowed_roots=tuple(section.config.allowed_roots),
    )


def with_version(config: SiteConfig, version: ConfigVersion | None) -> SiteConfig:
    """`config`, read from its bootstrap file, with the targets and policies of `version`
    (None: the catalog holds no version yet, so there are none)."""
    targets, policies = parse_document(version.document if version else {}, version=version)
    return attrs.evolve(
        config,
        targets=targets,
        policies=policies,
        config_source=attrs.evolve(config.config_source, version=version),
    )


def parse_document(
    document: Mapping[str, Any], *, version: ConfigVersion | None = None
) -> tuple[dict[str, Target], dict[str, Policy]]:
    """The targets and policies of a document (the catalog's shape of them, which is the
    config file's `[targets]` and `[policies]`); raises ConfigError listing every problem."""
    where = f"the catalog's configuration version {version.number}" if version else None
    section, problems = structure(_Document, document, path="")
    if section is None:
        raise ConfigError(problems, source=where)
    targets, policies = _targets_and_policies(section, problems)
    if problems:
        raise ConfigError(problems, source=where)
    return targets, policies


def _targets_and_policies(
    section: _Document | _ConfigFile, problems: list[str]
) -> tuple[dict[str, Target], dict[str, Policy]]:
    targets: dict[str, Target] = {
        name: Target(
            name=name,
            driver=t.driver,
            settings=t.settings,
            path=f"targets.{name}",
            verified_copies=t.verified_copies or None,
            disabled=t.disabled,
        )
        for name, t in section.targets.items()
    }
    policies: dict[str, Policy] = {}
    for uuid, p in section.policies.items():
        path = f"policies.{uuid}"
        names = list(p.targets) + ([p.target] if p.target else [])
        if p.driver is not None:
            if names:
                problems.append(f"{path}: give either targets or driver + settings, not both")
                continue
            if uuid in targets:
                problems.append(f"{path}: a target named {uuid!r} already exists")
                continue
            targets[uuid] = Target(name=uuid, driver=p.driver, settings=p.settings or {}, path=path)
            names = [uuid]
        elif p.settings is not None:
            problems.append(f"{path}.settings: settings need a driver in the same policy")
            continue
        if not names:
            problems.append(f"{path}.targets: names no target (set targets = [...] or driver)")
            continue
        missing = [n for n in names if n not in targets]
        if missing:
            problems.append(f"{path}.targets: no target named {', '.join(map(repr, missing))}")
            continue
        if len(set(names)) != len(names):
            problems.append(f"{path}.targets: a target is listed twice")
            continue
        if p.verified_copies and p.verified_copies > len(names):
            problems.append(
                f"{path}.verified_copies: {p.verified_copies} verified copies cannot come from "
                f"{len(names)} target{'s' if len(names) > 1 else ''}; each target keeps one copy"
            )
            continue
        policies[uuid] = Policy(
            uuid=uuid,
            name=p.name or uuid,
            targets=tuple(names),
            bulk=p.bulk,
            verified_copies=p.verified_copies or None,
            repair=p.repair,
            disabled=p.disabled,
        )
    return targets, policies


# --- structuring with every error at once ----------------------------------------------------


_INDEX = re.compile(r"\[['\"]?([^'\"\]]*)['\"]?\]")


def _converter():
    import cattrs

    from archive_core.secret import Secret, resolve_secret

    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(Secret, lambda value, _: resolve_secret(value))
    conv.register_structure_hook(Path, lambda value, _: _to_path(value))
    # TOML already has types; never let "false" become True or "12" become 12.
    for scalar in (str, int, float, bool):
        conv.register_structure_hook(scalar, _strict(scalar))
    return conv


def _strict(scalar: type):
    accepted = (int, float) if scalar is float else (scalar,)

    def hook(value: object, _: type) -> object:
        if (isinstance(value, bool) and scalar is not bool) or not isinstance(value, accepted):
            raise ValueError(f"expected {_TYPE_WORDS[scalar]}")
        return scalar(value)

    return hook


_TYPE_WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def _to_path(value: object) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise ValueError("expected a path string")
    return Path(value)


def _format_exception(exc: BaseException, type_: Any) -> str:
    """The message an admin reads for one bad value; never includes the value itself."""
    from cattrs.errors import ForbiddenExtraKeysError

    if isinstance(exc, KeyError):
        return "required setting missing"
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(sorted(exc.extra_fields))
        return f"unknown setting{'s' if len(exc.extra_fields) > 1 else ''} ({keys})"
    if isinstance(exc, ValueError) and str(exc) and "invalid literal" not in str(exc):
        return str(exc)
    name = getattr(type_, "__name__", None) or str(type_).replace("typing.", "")
    return f"expected {name}"


def structure(cls: type[T], raw: Any, *, path: str) -> tuple[T | None, list[str]]:
    """Structure `raw` into attrs class `cls`; return (instance or None, every problem).

    Each field is structured and validated on its own so that every failing field is
    reported with its own path (`targets.x.settings.root: must be an absolute path`); cattrs
    alone stops at the first failing validator and loses its field name.
    """
    problems: list[str] = []
    instance = _structure_class(cls, raw, path, problems, _converter())
    return (None if problems else instance), problems


def _structure_class(cls: type, raw: Any, path: str, problems: list[str], conv) -> Any:
    if not isinstance(raw, Mapping):
        problems.append(f"{path or 'config'}: expected a table of settings")
        return None
    try:
        fields = attrs.fields(attrs.resolve_types(cls))
    except (NameError, TypeError) as exc:  # a driver's Config with unresolvable annotations
        problems.append(f"{path or 'config'}: {cls.__qualname__} cannot be read: {exc}")
        return None
    known = {f.name for f in fields}
    extra = sorted(k for k in raw if k not in known)
    if extra:
        problems.append(
            f"{path or 'config'}: unknown setting{'s' if len(extra) > 1 else ''} "
            f"({', '.join(map(str, extra))})"
        )
    kwargs: dict[str, Any] = {}
    start = before = len(problems)
    for field in fields:
        where = _join(path, field.name)
        if field.name not in raw:
            if field.default is attrs.NOTHING:
                problems.append(f"{where}: required setting missing")
            continue
        value = _structure_value(field.type, raw[field.name], where, problems, conv)
        if len(problems) > before:
            before = len(problems)
            continue
        if field.validator is not None:
            try:
                field.validator(None, field, value)
            except (ValueError, TypeError) as exc:
                problems.append(f"{where}: {_validator_message(exc, field)}")
                before = len(problems)
                continue
        kwargs[field.name] = value
    if len(problems) > start:
        return None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a validator that needs the whole object
        problems.append(f"{path or 'config'}: {exc}")
        return None


def _structure_value(type_: Any, value: Any, path: str, problems: list[str], conv) -> Any:
    import typing

    import cattrs

    args = typing.get_args(type_)
    origin = typing.get_origin(type_)
    if origin in (list, tuple) and not isinstance(value, list | tuple):
        problems.append(f"{path}: expected a list")
        return None
    if attrs.has(type_):
        return _structure_class(type_, value, path, problems, conv)
    if origin in (dict, Mapping) and len(args) == 2 and attrs.has(args[1]):
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a table")
            return None
        return {
            k: _structure_class(args[1], v, _join(path, str(k)), problems, conv)
            for k, v in value.items()
        }
    optional = [a for a in args if a is not type(None)]
    if type(None) in args and len(optional) == 1 and attrs.has(optional[0]):
        return None if value is None else _structure_class(optional[0], value, path, problems, conv)
    try:
        return conv.structure(value, type_)
    except Exception as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            for line in cattrs.transform_error(exc, path="$", format_exception=_format_exception):
                message, _, where = line.rpartition(" @ ")
                problems.append(f"{_join(path, where)}: {message}")
        else:
            problems.append(f"{path}: {_format_exception(exc, type_)}")
        return None


def _validator_message(exc: Exception, field: attrs.Attribute) -> str:
    text = str(exc)
    # attrs' own validators phrase errors as "'field' must be ..."; keep only the useful part.
    prefix = f"'{field.name}' "
    if text.startswith(prefix):
        text = text[len(prefix) :].split(": ")[0]
    return text


def _join(path: str, where: str) -> str:
    where = _INDEX.sub(lambda m: f".{m.group(1)}", where.removeprefix("$")).lstrip(".")
    return ".".join(p for p in (path, where) if p)
